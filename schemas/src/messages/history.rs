//! The history of builds: one entry per ended attempt of a package, across runs and
//! submissions, kept in its own stream (`names::HISTORY_STREAM`) so that it outlives the package
//! record, which a new submission starts over.

use serde::{Deserialize, Serialize};

use super::{AttemptRecord, version};
use crate::codec::Wire;
use crate::ids::{Arch, Atom, RunName};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default = "version")]
    pub v: u16,
    pub atom: Atom,
    pub arch: Arch,
    /// The run the package was built in.
    #[serde(default)]
    pub run: Option<RunName>,
    pub submission: u64,
    /// The attempt: its number, drone, outcome (exit, failure class, log tail), duration, end.
    pub attempt: AttemptRecord,
    /// What it led to: the package's state after it (`succeeded`, `retry_wait`, `failed`,
    /// `queued` for a build given back without spending the attempt, `cancelled`).
    pub result: String,
}

impl Wire for HistoryEntry {
    const KIND: &'static str = "history entry";
}

impl HistoryEntry {
    /// When the attempt's build started, by the coordinator's clock.
    pub fn started_ms(&self) -> u64 {
        self.attempt
            .ended_ms
            .saturating_sub(self.attempt.duration_ms)
    }

    /// The message id that stores it once: the package, submission, attempt and drone.
    pub fn msg_id(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.atom.key(),
            self.submission,
            self.attempt.attempt,
            self.attempt.drone,
            self.attempt.ended_ms
        )
    }
}
