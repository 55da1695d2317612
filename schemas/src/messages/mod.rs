//! Every message that crosses NATS. Each top-level message carries `v` (the schema version);
//! enums are tagged explicitly with a `type` (or `phase`/`state`) field so that a reader in
//! another language, or a future version of ours, can tell variants apart without guessing.
//!
//! They are grouped by what they are about: `job.rs` the job and the lease that fences its build,
//! `drone.rs` a drone's record and events, `package.rs` a package's record, `fingerprint.rs` what a drone's packages depend on and the
//! fingerprint a run targets, `requests.rs` the
//! requests and replies of submission and drone control, `control.rs` the operator's other
//! requests to the coordinator's control service. This file has what several of them
//! share: how a build ended.

mod artifact;
mod binhost;
mod control;
mod drone;
mod fingerprint;
mod history;
mod job;
mod leader;
mod package;
mod requests;

use serde::{Deserialize, Serialize};

pub use artifact::Artifact;
pub use binhost::{
    BinhostCommand, BinhostCurrent, BinhostName, BinhostNameError, BinhostReply, BinhostRequest,
    BinhostResult, BinhostRevision, RevisionContents, RevisionSummary, is_fingerprint_id,
    staged_artifacts,
};
pub use control::{
    CancelRequest, ControlReply, DroneRequest, PauseRequest, RetryRequest, Unchanged, codes,
};
pub use drone::{DroneRecord, DroneState, Event, EventKind, RunningBuild};
pub use fingerprint::{Fingerprint, RunTarget};
pub use history::HistoryEntry;
pub use job::{Job, Lease, LeasePhase};
pub use leader::LeaderRecord;
pub use package::{AttemptRecord, PackageRecord, PackageState, Priority, SizeClass};
pub use requests::{
    AtomRejection, DroneCommand, DroneControl, DroneControlReply, SubmitItem, SubmitReply,
    SubmitRequest, SubmitResult,
};

use crate::codec::SCHEMA_VERSION;

fn version() -> u16 {
    SCHEMA_VERSION
}

/// How a build process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code when the process exited normally.
    pub code: Option<i32>,
    /// Signal number when the process was killed by a signal.
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn code(code: i32) -> ExitInfo {
        ExitInfo {
            code: Some(code),
            signal: None,
        }
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit status {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("unknown exit"),
        }
    }
}

/// The result of one build attempt as the drone saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuildOutcome {
    Succeeded,
    /// The builder ran and failed. What that costs depends on whose fault it was (`class`).
    Failed {
        exit: ExitInfo,
        log_tail: String,
        /// Whose fault the failure was, from the exit and the log (absent from messages of
        /// drones that predate it: a package failure, as they counted it).
        #[serde(default)]
        class: FailureClass,
        /// The log line that decided the class, when one did.
        #[serde(default)]
        signature: Option<String>,
    },
}

impl BuildOutcome {
    /// `succeeded`, or `failed` with the class: `failed (package)`.
    pub fn label(&self) -> String {
        match self {
            BuildOutcome::Succeeded => "succeeded".to_owned(),
            BuildOutcome::Failed { class, .. } => format!("failed ({})", class.label()),
        }
    }

    /// A failure of the package's own (the class of anything not known to be another's fault).
    pub fn package_failure(exit: ExitInfo, log_tail: impl Into<String>) -> BuildOutcome {
        BuildOutcome::Failed {
            exit,
            log_tail: log_tail.into(),
            class: FailureClass::Package,
            signature: None,
        }
    }
}

/// Whose fault a failed build was, and so what it costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The package's own error (configure, compile, test, install): it spends one of the
    /// package's attempts.
    #[default]
    Package,
    /// A source file (distfile) could not be downloaded: the build is tried again later and
    /// counts against neither the package nor the drone.
    Fetch,
    /// The machine's fault (no space left, out of memory, no builder, a Portage crash, the
    /// binhost unreachable): it counts against the drone, and the package goes to another
    /// drone without spending an attempt.
    Infrastructure,
}

impl FailureClass {
    pub fn label(self) -> &'static str {
        match self {
            FailureClass::Package => "package",
            FailureClass::Fetch => "fetch",
            FailureClass::Infrastructure => "infrastructure",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests;
