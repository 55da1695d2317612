//! The work: a job, as the coordinator publishes it, and the lease on its package whose revision
//! fences the build.

use serde::{Deserialize, Serialize};

use super::{BuildOutcome, version};
use crate::codec::Wire;
use crate::ids::{Atom, DroneName};

/// One job: "build this atom, attempt N". Published by the coordinator only; the argv a drone
/// runs is derived from `atom` alone, so retry metadata can never leak into the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    #[serde(default = "version")]
    pub v: u16,
    pub atom: Atom,
    /// 1-based attempt number of this job.
    pub attempt: u32,
    /// Which submission of this package the job belongs to (a rebuild request bumps it).
    pub submission: u64,
    /// Drones that already failed this package: they leave it to another drone when one is
    /// available.
    #[serde(default)]
    pub avoid: Vec<DroneName>,
    /// Modelled build time on an 8-core drone, when the submitter knew one.
    #[serde(default)]
    pub estimate_secs: Option<f64>,
    /// The fingerprint id its run targets: only a drone of it builds the job.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The job is on the run's critical path, or so close to it that a slot of a small drone
    /// would delay the run's end: only a drone with at least this many cores builds it while
    /// one is online (others give it back at once).
    #[serde(default)]
    pub min_cores: Option<u32>,
    /// The run's critical path goes on after this package: the drone that builds it keeps
    /// itself free for a moment afterwards (`critical_linger_ms`), so that the next package of
    /// the path starts at once instead of waiting for normal builds taken in between.
    #[serde(default)]
    pub linger: bool,
}

impl Job {
    /// What `nats stream view SWARM_BUILDS` shows a person beside the MessagePack payload:
    /// `Swarm-Kind: job`, the atom, the attempt and the run (when the package has one).
    pub fn headers(&self, run: Option<&crate::RunName>) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (crate::names::HEADER_KIND, "job".to_owned()),
            (crate::names::HEADER_ATOM, self.atom.to_string()),
            (crate::names::HEADER_ATTEMPT, self.attempt.to_string()),
        ];
        if let Some(run) = run {
            headers.push((crate::names::HEADER_RUN, run.to_string()));
        }
        headers
    }
}

impl Wire for Job {
    const KIND: &'static str = "job";
}

/// The lease on one package, in the leases bucket under the package key. Its KV revision is the
/// fencing token: only the holder of the current revision may renew it or commit a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(default = "version")]
    pub v: u16,
    pub drone: DroneName,
    pub atom: Atom,
    pub attempt: u32,
    /// The submission the job belongs to (0 from drones that predate the field).
    #[serde(default)]
    pub submission: u64,
    /// Stream sequence of the job message being built.
    pub stream_seq: u64,
    /// Delivery count of that message when it was claimed.
    pub delivery: u64,
    pub phase: LeasePhase,
}

impl Wire for Lease {
    const KIND: &'static str = "lease";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum LeasePhase {
    Building,
    /// The drone committed this result by a compare-and-set on the lease: a drone whose lease
    /// was taken over can no longer commit anything.
    Finished {
        outcome: BuildOutcome,
    },
}
