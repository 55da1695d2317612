//! `swarmctl plan`: the run file of a Gentoo host's packages, with their build dependencies, as
//! Portage itself resolves them. The planner (`planner/swarm_plan.py`) is built into swarmctl
//! and run with a Python that has Portage (on a Gentoo host, the system's `python3`); this only
//! writes it to a temporary file and runs it without a shell, atoms as arguments.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;

use crate::{CliError, Outcome, emerge_log};

/// The planner, as the repository ships it.
const PLANNER: &str = include_str!("../../planner/swarm_plan.py");

#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct PlanArgs {
    /// Atoms or sets to plan (default: @world), resolved as `emerge --pretend --emptytree` does
    #[arg(value_name = "ATOM")]
    pub atoms: Vec<String>,
    /// Also print, to stderr, each package's build dependencies outside the run and the edges
    /// dropped to keep the run acyclic
    #[arg(long)]
    pub show: bool,
    /// Leave installed dependencies installed (as `emerge --pretend --deep`) instead of
    /// rebuilding everything; they are then outside the run
    #[arg(long)]
    pub keep_installed: bool,
    /// The Python that has Portage
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: PathBuf,
    /// Write the run file here instead of to standard output
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Portage's emerge.log (e.g. /var/log/emerge.log): each package's estimate column gets the
    /// median of its past merges there
    #[arg(long, value_name = "FILE")]
    pub estimates: Option<PathBuf>,
}

/// Why the planner could not run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot write the planner to a temporary file: {0}")]
    Script(std::io::Error),
    #[error("cannot run {python} (a Python with Portage; --python names another): {source}")]
    Python {
        python: String,
        source: std::io::Error,
    },
    #[error("cannot write the run file {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the run could not be planned ({status}); the planner said why above")]
    Failed { status: std::process::ExitStatus },
}

/// Runs the planner; its run file goes to `out` (or `--output`), what it says to stderr. An
/// atom Portage cannot resolve is an error (exit status 2) after the planner said why.
pub fn plan(args: &PlanArgs, out: &mut (dyn Write + Send)) -> Result<Outcome, CliError> {
    let mut script = tempfile::Builder::new()
        .prefix("swarm-plan-")
        .suffix(".py")
        .tempfile()
        .map_err(PlanError::Script)?;
    script
        .write_all(PLANNER.as_bytes())
        .map_err(PlanError::Script)?;
    let mut command = Command::new(&args.python);
    command.arg(script.path());
    if args.show {
        command.arg("--show");
    }
    if args.keep_installed {
        command.arg("--keep-installed");
    }
    // Atoms after `--`: one that starts with `-` is an atom to refuse, not an option.
    command.arg("--").args(&args.atoms);
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| PlanError::Python {
            python: args.python.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(PlanError::Failed {
            status: output.status,
        }
        .into());
    }
    let mut run = String::from_utf8_lossy(&output.stdout).into_owned();
    if let Some(path) = &args.estimates {
        let text = std::fs::read_to_string(path).map_err(|err| CliError::ReadInput {
            path: path.clone(),
            reason: err.to_string(),
        })?;
        run = with_estimates(&run, &emerge_log::parse(&text));
    }
    match &args.output {
        Some(path) => std::fs::write(path, run.as_bytes()).map_err(|source| PlanError::Output {
            path: path.clone(),
            source,
        })?,
        None => out.write_all(run.as_bytes())?,
    }
    Ok(Outcome::Success)
}

/// The run file with each empty estimate column filled from `history`.
fn with_estimates(run: &str, history: &emerge_log::History) -> String {
    let mut filled = String::with_capacity(run.len());
    for line in run.lines() {
        let mut columns: Vec<String> = line.split('\t').map(str::to_owned).collect();
        if !line.starts_with('#')
            && columns.len() >= 2
            && columns[1].is_empty()
            && let Some(secs) = schemas::Atom::parse(&columns[0])
                .ok()
                .and_then(|atom| history.estimate(&atom))
        {
            columns[1] = format!("{secs:.0}");
        }
        filled.push_str(&columns.join("\t"));
        filled.push('\n');
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_fill_the_empty_column_only() {
        let history = emerge_log::parse(
            "1:  >>> emerge (1 of 1) sys-libs/zlib-1.3 to /\n61:  ::: completed emerge (1 of 1) sys-libs/zlib-1.3 to /\n",
        );
        let run = "# a comment\twith tabs\n=sys-libs/zlib-1.3.1\t\t\t-\n=dev-libs/a-1\t\t\t=sys-libs/zlib-1.3.1\n=sys-libs/zlib-1.3.2\t7\t\t-\n";
        assert_eq!(
            with_estimates(run, &history),
            "# a comment\twith tabs\n=sys-libs/zlib-1.3.1\t60\t\t-\n=dev-libs/a-1\t\t\t=sys-libs/zlib-1.3.1\n=sys-libs/zlib-1.3.2\t7\t\t-\n"
        );
    }
}
