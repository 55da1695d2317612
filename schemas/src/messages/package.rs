//! The coordinator's record of a package: its state in the lifecycle, its finished attempts and
//! what the scheduler knows of its size.

use serde::{Deserialize, Serialize};

use super::{Artifact, BuildOutcome, version};
use crate::codec::Wire;
use crate::ids::{Arch, Atom, DroneName, PackageKey, RunName};

/// Where a package is in its lifecycle; see the coordinator's `lifecycle` module for the
/// transition function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PackageState {
    /// A job for `attempt` is (or is about to be) in the work stream.
    Queued {
        attempt: u32,
    },
    /// A drone claimed the job for `attempt`.
    Building {
        attempt: u32,
        drone: DroneName,
        since_ms: u64,
    },
    /// Attempt `attempt - 1` failed; the job for `attempt` is published after `not_before_ms`.
    RetryWait {
        attempt: u32,
        not_before_ms: u64,
    },
    Succeeded {
        attempt: u32,
        drone: DroneName,
    },
    Failed {
        attempt: u32,
        reason: String,
    },
    /// Some of its build dependencies in the run (`PackageRecord::deps`) have not succeeded
    /// yet: no job is published until they have, and their binary packages are in staging.
    Waiting,
    /// A build dependency in the run failed for good (or is itself blocked): it is not built.
    /// Building that dependency again releases it.
    Blocked {
        dependency: Atom,
    },
    /// An operator cancelled it (`reason` says who or why): not built, not retried; its build,
    /// if one ran, was killed. `swarmctl retry` builds it again.
    Cancelled {
        attempt: u32,
        reason: String,
    },
}

impl PackageState {
    pub fn label(&self) -> &'static str {
        match self {
            PackageState::Queued { .. } => "queued",
            PackageState::Building { .. } => "building",
            PackageState::RetryWait { .. } => "retry_wait",
            PackageState::Succeeded { .. } => "succeeded",
            PackageState::Failed { .. } => "failed",
            PackageState::Waiting => "waiting",
            PackageState::Blocked { .. } => "blocked",
            PackageState::Cancelled { .. } => "cancelled",
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(
            self,
            PackageState::Succeeded { .. }
                | PackageState::Failed { .. }
                | PackageState::Blocked { .. }
                | PackageState::Cancelled { .. }
        )
    }

    pub fn attempt(&self) -> u32 {
        match self {
            PackageState::Queued { attempt }
            | PackageState::Building { attempt, .. }
            | PackageState::RetryWait { attempt, .. }
            | PackageState::Succeeded { attempt, .. }
            | PackageState::Failed { attempt, .. }
            | PackageState::Cancelled { attempt, .. } => *attempt,
            PackageState::Waiting | PackageState::Blocked { .. } => 0,
        }
    }
}

/// One finished attempt of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub drone: DroneName,
    pub outcome: BuildOutcome,
    pub duration_ms: u64,
    pub ended_ms: u64,
}

/// The coordinator's truth about one package, in the packages bucket under the package key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageRecord {
    #[serde(default = "version")]
    pub v: u16,
    pub atom: Atom,
    pub arch: Arch,
    pub submission: u64,
    pub state: PackageState,
    pub history: Vec<AttemptRecord>,
    #[serde(default)]
    pub estimate_secs: Option<f64>,
    /// The size class the submitter gave, the scheduler's fallback when nothing better is known.
    #[serde(default)]
    pub class: Option<SizeClass>,
    /// Learned build time in seconds on 8 cores: a running average over this package's successful
    /// builds (duration × cores used / 8), kept across resubmissions.
    #[serde(default)]
    pub learned_secs: Option<f64>,
    /// The binary packages of the build that succeeded (empty before, and for builders that
    /// write none).
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// The fingerprint id its run targets, when it targets one: its jobs go only to drones of
    /// it, and a binhost revision holds the packages of its arch's target only.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The run the package was last submitted in (records written before runs had names have
    /// none).
    #[serde(default)]
    pub run: Option<RunName>,
    /// Its build dependencies in the run (package keys of the same arch): it is queued only
    /// once every one of them has succeeded.
    #[serde(default)]
    pub deps: Vec<PackageKey>,
    /// The operator's priority: a higher one starts before lower ones queued earlier.
    #[serde(default)]
    pub priority: Priority,
    pub submitted_ms: u64,
    pub updated_ms: u64,
}

impl Wire for PackageRecord {
    const KIND: &'static str = "package record";
}

/// The operator's priority for a package (`swarmctl submit --priority`): every queued package
/// of a higher priority starts before any of a lower one, whenever it was queued; within one
/// priority, the scheduler's own order holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Normal, Priority::High];

    pub fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// How big a package is to build, as a submitter knows it without timings. Each class stands for
/// a default estimate (seconds on 8 cores), the scheduler's last fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeClass {
    Small,
    Medium,
    Heavy,
    Giant,
}

impl SizeClass {
    pub const ALL: [SizeClass; 4] = [
        SizeClass::Small,
        SizeClass::Medium,
        SizeClass::Heavy,
        SizeClass::Giant,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SizeClass::Small => "small",
            SizeClass::Medium => "medium",
            SizeClass::Heavy => "heavy",
            SizeClass::Giant => "giant",
        }
    }

    /// The class named `text` (case-insensitive).
    pub fn parse(text: &str) -> Option<SizeClass> {
        SizeClass::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(text.trim()))
    }
}
