//! What the events add to the history of builds, per drone and for the whole swarm: builds
//! counted by how they ended, each drone's last result, and the most recent failures with the end
//! of their build output.

use std::collections::VecDeque;

use schemas::{Atom, BuildOutcome, DroneName, Event, EventKind, ExitInfo, FailureClass};
use serde::{Deserialize, Serialize};

/// Build output kept per failure: the end of the log tail a drone reported.
pub const FAILURE_TAIL_CHARS: usize = 4_096;

/// Builds counted from events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildCounts {
    /// Build processes started (`started` events).
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Builds given back unbuilt (shutdown, or a builder that could not start).
    pub handed_back: u64,
    /// Builds killed because their lease was lost.
    pub lease_lost: u64,
}

impl BuildCounts {
    /// Counts what one event says about builds; events that start or end no build count nothing.
    pub(super) fn count(&mut self, kind: &EventKind) {
        let counter = match kind {
            EventKind::Started { .. } => &mut self.started,
            EventKind::Finished { outcome, .. } => match outcome {
                BuildOutcome::Succeeded => &mut self.succeeded,
                BuildOutcome::Failed { .. } => &mut self.failed,
            },
            EventKind::HandedBack { .. } => &mut self.handed_back,
            EventKind::LeaseLost { .. } => &mut self.lease_lost,
            _ => return,
        };
        *counter += 1;
    }
}

/// How a drone's most recent build ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ResultKind {
    Succeeded,
    Failed { exit: ExitInfo },
    HandedBack { reason: String },
    LeaseLost { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    pub atom: Atom,
    pub attempt: u32,
    #[serde(flatten)]
    pub kind: ResultKind,
    /// When the drone reported it, by the drone's clock (unix ms).
    pub at_ms: u64,
    /// How long the build ran; only for builds that ran to their end.
    pub duration_ms: Option<u64>,
}

impl LastResult {
    /// The end of a build an event reports; `None` for events that end no build.
    pub(super) fn of(event: &Event) -> Option<LastResult> {
        let (atom, attempt, kind, duration_ms) = match &event.kind {
            EventKind::Finished {
                atom,
                attempt,
                outcome,
                duration_ms,
                ..
            } => {
                let kind = match outcome {
                    BuildOutcome::Succeeded => ResultKind::Succeeded,
                    BuildOutcome::Failed { exit, .. } => ResultKind::Failed { exit: exit.clone() },
                };
                (atom, attempt, kind, Some(*duration_ms))
            }
            EventKind::HandedBack {
                atom,
                attempt,
                reason,
                ..
            } => {
                let reason = reason.clone();
                (atom, attempt, ResultKind::HandedBack { reason }, None)
            }
            EventKind::LeaseLost {
                atom,
                attempt,
                reason,
            } => {
                let reason = reason.clone();
                (atom, attempt, ResultKind::LeaseLost { reason }, None)
            }
            _ => return None,
        };
        Some(LastResult {
            atom: atom.clone(),
            attempt: *attempt,
            kind,
            at_ms: event.at_ms,
            duration_ms,
        })
    }
}

/// One failed build, for the list of recent failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub drone: DroneName,
    pub atom: Atom,
    pub attempt: u32,
    pub exit: ExitInfo,
    /// The end of the build output, at most [`FAILURE_TAIL_CHARS`] characters.
    pub log_tail: String,
    /// Whose fault it was: the package's, a download's or the machine's.
    #[serde(default)]
    pub class: FailureClass,
    /// The log line that decided the class.
    #[serde(default)]
    pub signature: Option<String>,
    pub at_ms: u64,
    pub duration_ms: u64,
    /// Where the page fetches the attempt's complete log (`/logs/<package-key>/<attempt>`).
    #[serde(default)]
    pub log: String,
}

impl Failure {
    /// The failure a drone event reports, if it reports one: a failed build's result, or a
    /// build given back after it failed for a reason not the package's own.
    pub fn of(drone: &DroneName, event: &Event) -> Option<Failure> {
        let (atom, attempt, outcome, duration_ms) = match &event.kind {
            EventKind::Finished {
                atom,
                attempt,
                outcome,
                duration_ms,
                ..
            } => (atom, attempt, outcome, duration_ms),
            EventKind::HandedBack {
                atom,
                attempt,
                outcome: Some(outcome),
                duration_ms,
                ..
            } => (atom, attempt, outcome, duration_ms),
            _ => return None,
        };
        let BuildOutcome::Failed {
            exit,
            log_tail,
            class,
            signature,
        } = outcome
        else {
            return None;
        };
        Some(Failure {
            drone: drone.clone(),
            atom: atom.clone(),
            attempt: *attempt,
            exit: exit.clone(),
            log_tail: tail(log_tail, FAILURE_TAIL_CHARS),
            class: *class,
            signature: signature.clone(),
            at_ms: event.at_ms,
            duration_ms: *duration_ms,
            log: format!("/logs/{}/{attempt}", atom.key()),
        })
    }
}

/// Keeps the `kept` most recent failures, ordered by the time the drones reported them.
pub(super) fn insert_failure(failures: &mut VecDeque<Failure>, failure: Failure, kept: usize) {
    if kept == 0 {
        return;
    }
    let at = failures.partition_point(|f| f.at_ms <= failure.at_ms);
    if failures.len() == kept && at == 0 {
        // Older than every failure kept.
        return;
    }
    failures.insert(at, failure);
    while failures.len() > kept {
        failures.pop_front();
    }
}

/// The last `max` characters of `text`.
pub(super) fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        text.to_owned()
    } else {
        text.chars().skip(count - max).collect()
    }
}
