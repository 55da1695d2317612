//! Every message that crosses NATS. Each top-level message carries `v` (the schema version);
//! enums are tagged explicitly with a `type` (or `phase`/`state`) field so that a reader in
//! another language, or a future version of ours, can tell variants apart without guessing.
//!
//! They are grouped by what they are about: `job.rs` the job and the lease that fences its build,
//! `drone.rs` a drone's record and events, `package.rs` a package's record, `requests.rs` the
//! requests and replies of submission and drone control. This file has what several of them
//! share: how a build ended.

mod drone;
mod job;
mod package;
mod requests;

use serde::{Deserialize, Serialize};

pub use drone::{DroneRecord, DroneState, Event, EventKind, RunningBuild};
pub use job::{Job, Lease, LeasePhase};
pub use package::{AttemptRecord, PackageRecord, PackageState, SizeClass};
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
    /// The builder ran and failed: this consumes one of the package's attempts.
    Failed {
        exit: ExitInfo,
        log_tail: String,
    },
}

#[cfg(test)]
mod tests;
