//! `swarmctl plan`: the run file of a Gentoo host's packages, with their build dependencies, as
//! Portage itself resolves them. The planner (`planner/swarm_plan.py`) is built into swarmctl
//! and run with a Python that has Portage (on a Gentoo host, the system's `python3`); this only
//! writes it to a temporary file and runs it without a shell, atoms as arguments.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;

use crate::{CliError, Outcome};

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
}

/// Runs the planner; its run file goes to `out` (or `--output`), what it says to stderr. Exit
/// status 0 when it planned, 1 when Portage could not (it said why).
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
        return Ok(Outcome::Failure);
    }
    match &args.output {
        Some(path) => std::fs::write(path, &output.stdout).map_err(|source| PlanError::Output {
            path: path.clone(),
            source,
        })?,
        None => out.write_all(&output.stdout)?,
    }
    Ok(Outcome::Success)
}
