//! Portage's own Python code as an oracle: the `portage` package from PyPI in the project's
//! venv (`scripts/install-deps.sh --test-tools` installs it), driven through
//! `tests/fixtures/portage_oracle.py`, which prints one JSON document per call.

use std::path::PathBuf;
use std::process::Command;

use crate::paths::{fixture, workspace_root};

/// Why the oracle could not answer.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    #[error(
        "no Python with Portage at {}: run scripts/install-deps.sh --test-tools (or set SWARM_PORTAGE_PYTHON)",
        python.display()
    )]
    NoPortage { python: PathBuf },
    #[error("cannot run the Portage oracle: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("the Portage oracle refused {command}: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("the Portage oracle printed no JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// The Python interpreter that has Portage: `SWARM_PORTAGE_PYTHON`, else the project's venv.
pub fn python() -> Result<PathBuf, OracleError> {
    let python = std::env::var_os("SWARM_PORTAGE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/venv/bin/python"));
    let works = Command::new(&python)
        .args(["-c", "import portage"])
        .output()
        .is_ok_and(|out| out.status.success());
    if works {
        Ok(python)
    } else {
        Err(OracleError::NoPortage { python })
    }
}

/// The oracle script.
pub fn script() -> PathBuf {
    fixture("portage_oracle.py")
}

/// Runs one oracle subcommand and returns its answer.
pub fn oracle(args: &[&str]) -> Result<serde_json::Value, OracleError> {
    let output = Command::new(python()?).arg(script()).args(args).output()?;
    if !output.status.success() {
        return Err(OracleError::Failed {
            command: args.first().copied().unwrap_or_default().to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | "),
        });
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
