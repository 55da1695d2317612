//! Every way a `swarmctl` command can fail. Each error ends the command with exit status 2; a
//! command that ran but found a failure (a failed package, a refused unground) is not an error,
//! it is [`crate::Outcome::Failure`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemas::{AtomRejection, DecodeError, EncodeError};

use crate::input::InvalidAtom;

/// Exit status of every error, and of clap's usage errors.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] runtime::config::ConfigError),
    #[error(transparent)]
    Connect(#[from] runtime::nats::ConnectError),
    #[error("cannot read {path}: {reason}")]
    ReadInput { path: PathBuf, reason: String },
    #[error("{}", InvalidAtoms(.0))]
    InvalidAtoms(Vec<InvalidAtom>),
    #[error("nothing to submit: {what} named no package")]
    NothingToSubmit { what: String },
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
    #[error("no coordinator is answering on {subject}; is swarm-coordinator running?")]
    NoCoordinator { subject: String },
    #[error("no reply on {subject} within {} s", timeout.as_secs_f64())]
    NoReply { subject: String, timeout: Duration },
    #[error("the coordinator refused the request on {subject}: {message} (code {code})")]
    Refused {
        subject: String,
        code: u16,
        message: String,
    },
    #[error("request on {subject} failed: {reason}")]
    Request { subject: String, reason: String },
    #[error("bad reply on {subject}: {source}")]
    BadReply {
        subject: String,
        #[source]
        source: DecodeError,
    },
    #[error("{}", Rejections(.0))]
    Rejected(Vec<AtomRejection>),
    #[error("the coordinator could not handle the submission: {message}")]
    Coordinator { message: String },
    #[error(
        "the swarm's JetStream assets do not exist yet (bucket {bucket} is missing); start swarm-coordinator first"
    )]
    AssetsMissing { bucket: String },
    #[error(transparent)]
    OpenBucket(runtime::kv::KvOpenError),
    #[error(transparent)]
    ReadBucket(#[from] runtime::kv::KvReadError),
    #[error("no log of {atom}: {why}")]
    NoLog { atom: String, why: String },
    #[error("no package was submitted in run {run} (`swarmctl runs` lists the runs)")]
    NoSuchRun { run: schemas::RunName },
    #[error("timed out after {} s with {unfinished} packages unfinished", timeout.as_secs_f64())]
    WaitTimedOut { timeout: Duration, unfinished: u64 },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
}

/// A command-line value that does not parse; clap prints it after the argument's name and exits
/// with [`EXIT_ERROR`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("{input:?} is not a positive number of seconds")]
    NotSeconds { input: String },
    #[error("{input:?} is not a time scale between 0 and 100")]
    NotTimeScale { input: String },
    #[error("{input:?} is not a fingerprint id (hex digits, as `swarmctl drones` shows)")]
    NotFingerprint { input: String },
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        EXIT_ERROR
    }
}

impl From<runtime::kv::KvOpenError> for CliError {
    fn from(err: runtime::kv::KvOpenError) -> Self {
        match err {
            runtime::kv::KvOpenError::Missing { bucket } => CliError::AssetsMissing { bucket },
            other => CliError::OpenBucket(other),
        }
    }
}

/// Renders the local validation failures: a count, then one line per invalid atom.
struct InvalidAtoms<'a>(&'a [InvalidAtom]);

impl fmt::Display for InvalidAtoms<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} invalid {}; nothing was submitted",
            if n == 1 { "atom" } else { "atoms" }
        )?;
        for invalid in self.0 {
            write!(f, "\n  {invalid}")?;
        }
        Ok(())
    }
}

/// Renders the coordinator's rejections the same way.
struct Rejections<'a>(&'a [AtomRejection]);

impl fmt::Display for Rejections<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the coordinator rejected {n} {}; nothing was queued",
            if n == 1 { "atom" } else { "atoms" }
        )?;
        for rejection in self.0 {
            write!(f, "\n  {:?}: {}", rejection.input, rejection.reason)?;
        }
        Ok(())
    }
}
