//! What a drone says about itself: its record in the drones bucket and the events it publishes.

use serde::{Deserialize, Serialize};

use super::{Artifact, BuildOutcome, version};
use crate::codec::Wire;
use crate::ids::{Arch, Atom, DroneName};

/// What a drone is doing, as it reports itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DroneState {
    /// Online with no build running.
    Idle,
    /// Online with at least one build running.
    Building,
    /// Stopped pulling because it is unhealthy; `swarmctl unground` returns it to work.
    Grounded { reason: String },
    /// Shutting down: pulls nothing, finishes or hands back what it runs.
    Draining,
    /// Shut down cleanly.
    Offline,
    /// Set by the coordinator when the drone's heartbeat stopped.
    Lost { reason: String },
    /// Healthy, but takes no work of the arch's run: its fingerprint is not the one the run
    /// targets, or its ebuild tree is older than the run's. It takes work again by itself once
    /// it fits (another run, a synced tree).
    Excluded { reason: String },
}

impl DroneState {
    pub fn label(&self) -> &'static str {
        match self {
            DroneState::Idle => "idle",
            DroneState::Building => "building",
            DroneState::Grounded { .. } => "grounded",
            DroneState::Draining => "draining",
            DroneState::Offline => "offline",
            DroneState::Lost { .. } => "lost",
            DroneState::Excluded { .. } => "excluded",
        }
    }
}

/// A build a drone is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningBuild {
    pub atom: Atom,
    pub attempt: u32,
    pub started_ms: u64,
}

/// A drone's registration and heartbeat, in the drones bucket under its name. The drone rewrites
/// it on every heartbeat and state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneRecord {
    #[serde(default = "version")]
    pub v: u16,
    pub name: DroneName,
    pub cores: u32,
    pub slots: u32,
    pub arch: Arch,
    /// The drone's software version.
    pub version: String,
    pub state: DroneState,
    pub building: Vec<RunningBuild>,
    /// Consecutive failed builds (of different packages) since the last success.
    pub consecutive_failures: u32,
    /// Unix milliseconds of this heartbeat, by the drone's clock.
    pub heartbeat_ms: u64,
    /// How often the drone heartbeats, so readers can tell a stopped heartbeat.
    pub heartbeat_interval_ms: u64,
    /// How long the drone's builds outlive its last acknowledged heartbeat (their supervisors
    /// kill them then), so the coordinator knows when a silent drone's builds are surely dead
    /// and may be given to others (`summary::takeover_after_ms`). `None` from drones that predate
    /// it: their builds live until their lease expires.
    #[serde(default)]
    pub supervise_deadline_ms: Option<u64>,
    /// Whether the drone takes big builds (given the whole drone) from the big-builds consumer.
    #[serde(default)]
    pub big_builds: bool,
    /// What its binary packages depend on; `None` for a drone that does not say.
    #[serde(default)]
    pub fingerprint: Option<super::Fingerprint>,
    /// Identifies one run of the drone process; with `seq` it orders the drone's reports.
    pub boot_ms: u64,
    /// Drawn from the same per-boot counter as the drone's events, so a reader that follows both
    /// the records and the events can tell which report is newer.
    pub seq: u64,
}

impl Wire for DroneRecord {
    const KIND: &'static str = "drone record";
}

/// A status event, published by a drone on its own event subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default = "version")]
    pub v: u16,
    pub drone: DroneName,
    /// Unix milliseconds when the drone process started; orders events across restarts.
    pub boot_ms: u64,
    /// Per-boot sequence number, starting at 1, shared with the drone's records
    /// ([`DroneRecord::seq`]): every report of one drone process has its own, increasing number.
    pub seq: u64,
    pub at_ms: u64,
    pub kind: EventKind,
}

impl Wire for Event {
    const KIND: &'static str = "event";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Online {
        cores: u32,
        slots: u32,
        arch: Arch,
        version: String,
    },
    /// The drone holds the lease and is about to start the build.
    Claimed {
        atom: Atom,
        attempt: u32,
        stream_seq: u64,
        delivery: u64,
        lease_rev: u64,
    },
    /// The drone holds the lease (revision `lease_rev`) and the build process started with
    /// this argv and `jobs` cores (`MAKEOPTS=-j<jobs>`). Drones since 0.1 send this one event
    /// for claim and start; the coordinator takes either as the claim.
    Started {
        atom: Atom,
        attempt: u32,
        argv: Vec<String>,
        #[serde(default)]
        jobs: u32,
        #[serde(default)]
        delivery: u64,
        #[serde(default)]
        lease_rev: u64,
    },
    /// The build ended and its result was committed on the lease. `jobs` is the cores it ran
    /// with (0 when unknown), from which the coordinator learns the package's build cost.
    Finished {
        atom: Atom,
        attempt: u32,
        lease_rev: u64,
        outcome: BuildOutcome,
        duration_ms: u64,
        #[serde(default)]
        jobs: u32,
        /// The binary packages the build wrote, stored in the artifacts bucket before the
        /// result was reported (none for a builder that writes none).
        #[serde(default)]
        artifacts: Vec<Artifact>,
    },
    /// The drone gave the job back (shutdown, or a fault of its own); the attempt is not
    /// consumed. `outcome` is the failed build behind it, when a build ran and failed for a
    /// reason that is not the package's (a fetch or infrastructure failure).
    HandedBack {
        atom: Atom,
        attempt: u32,
        reason: String,
        #[serde(default)]
        outcome: Option<BuildOutcome>,
        /// How long the failed build ran (0 when none ran).
        #[serde(default)]
        duration_ms: u64,
    },
    /// The drone lost the lease and killed the build; it reports nothing for it.
    LeaseLost {
        atom: Atom,
        attempt: u32,
        reason: String,
    },
    /// The operator cancelled the package: the drone killed the build's process group and
    /// gave its job up for good.
    Cancelled {
        atom: Atom,
        attempt: u32,
    },
    Grounded {
        reason: String,
    },
    Ungrounded,
    Draining,
    Offline,
}

impl EventKind {
    /// The kind's name, as the wire's `type` tag spells it.
    pub fn label(&self) -> &'static str {
        match self {
            EventKind::Online { .. } => "online",
            EventKind::Claimed { .. } => "claimed",
            EventKind::Started { .. } => "started",
            EventKind::Finished { .. } => "finished",
            EventKind::HandedBack { .. } => "handed_back",
            EventKind::LeaseLost { .. } => "lease_lost",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Grounded { .. } => "grounded",
            EventKind::Ungrounded => "ungrounded",
            EventKind::Draining => "draining",
            EventKind::Offline => "offline",
        }
    }

    /// The package and attempt the event is about, if any.
    pub fn package(&self) -> Option<(&Atom, u32)> {
        match self {
            EventKind::Claimed { atom, attempt, .. }
            | EventKind::Started { atom, attempt, .. }
            | EventKind::Finished { atom, attempt, .. }
            | EventKind::HandedBack { atom, attempt, .. }
            | EventKind::LeaseLost { atom, attempt, .. }
            | EventKind::Cancelled { atom, attempt } => Some((atom, *attempt)),
            _ => None,
        }
    }
}

impl Event {
    /// What `nats stream view SWARM_EVENTS` shows a person beside the MessagePack payload: the
    /// kind, the drone, and the package, attempt and result when the event has them. Values
    /// are validated names and numbers: never a line break.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (crate::names::HEADER_KIND, self.kind.label().to_owned()),
            (crate::names::HEADER_DRONE, self.drone.to_string()),
        ];
        if let Some((atom, attempt)) = self.kind.package() {
            headers.push((crate::names::HEADER_ATOM, atom.to_string()));
            headers.push((crate::names::HEADER_ATTEMPT, attempt.to_string()));
        }
        if let EventKind::Finished { outcome, .. } = &self.kind {
            headers.push((crate::names::HEADER_OUTCOME, outcome.label()));
        }
        headers
    }
}
