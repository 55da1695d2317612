//! Every message that crosses NATS. Each top-level message carries `v` (the schema version);
//! enums are tagged explicitly with a `type` (or `phase`/`state`) field so that a reader in
//! another language, or a future version of ours, can tell variants apart without guessing.

use serde::{Deserialize, Serialize};

use crate::codec::{SCHEMA_VERSION, Wire};
use crate::ids::{Arch, Atom, DroneName};

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
    /// Whether the drone takes big builds (given the whole drone) from the big-builds consumer.
    #[serde(default)]
    pub big_builds: bool,
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
    },
    /// The drone gave the job back unbuilt (shutdown, or a fault of its own); the attempt is not
    /// consumed.
    HandedBack {
        atom: Atom,
        attempt: u32,
        reason: String,
    },
    /// The drone lost the lease and killed the build; it reports nothing for it.
    LeaseLost {
        atom: Atom,
        attempt: u32,
        reason: String,
    },
    Grounded {
        reason: String,
    },
    Ungrounded,
    Draining,
    Offline,
}

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
}

impl PackageState {
    pub fn label(&self) -> &'static str {
        match self {
            PackageState::Queued { .. } => "queued",
            PackageState::Building { .. } => "building",
            PackageState::RetryWait { .. } => "retry_wait",
            PackageState::Succeeded { .. } => "succeeded",
            PackageState::Failed { .. } => "failed",
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(
            self,
            PackageState::Succeeded { .. } | PackageState::Failed { .. }
        )
    }

    pub fn attempt(&self) -> u32 {
        match self {
            PackageState::Queued { attempt }
            | PackageState::Building { attempt, .. }
            | PackageState::RetryWait { attempt, .. }
            | PackageState::Succeeded { attempt, .. }
            | PackageState::Failed { attempt, .. } => *attempt,
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
    pub submitted_ms: u64,
    pub updated_ms: u64,
}

impl Wire for PackageRecord {
    const KIND: &'static str = "package record";
}

/// One entry of a submission: an atom as the user typed it (validated by the coordinator) and an
/// optional build-time estimate on an 8-core drone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitItem {
    pub atom: String,
    #[serde(default)]
    pub estimate_secs: Option<f64>,
    /// Size class (`small`, `medium`, `heavy`, `giant`), used when there is no estimate.
    #[serde(default)]
    pub class: Option<SizeClass>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    #[serde(default = "version")]
    pub v: u16,
    pub items: Vec<SubmitItem>,
    /// Arch to build for; the coordinator's default when absent.
    #[serde(default)]
    pub arch: Option<Arch>,
}

impl Wire for SubmitRequest {
    const KIND: &'static str = "submit request";
}

/// Why one atom of a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtomRejection {
    pub input: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitReply {
    #[serde(default = "version")]
    pub v: u16,
    pub result: SubmitResult,
}

impl Wire for SubmitReply {
    const KIND: &'static str = "submit reply";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SubmitResult {
    /// Every atom was valid. `queued` were new or rebuilt, `already_queued` were still queued or
    /// building and left as they were.
    Accepted { queued: u32, already_queued: u32 },
    /// At least one atom was invalid; nothing was enqueued.
    Rejected { rejections: Vec<AtomRejection> },
    /// The request itself could not be handled.
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneControl {
    #[serde(default = "version")]
    pub v: u16,
    pub command: DroneCommand,
}

impl Wire for DroneControl {
    const KIND: &'static str = "drone control";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DroneCommand {
    Unground,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneControlReply {
    #[serde(default = "version")]
    pub v: u16,
    pub ok: bool,
    pub message: String,
}

impl Wire for DroneControlReply {
    const KIND: &'static str = "drone control reply";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DecodeError, decode, encode};

    fn atom(s: &str) -> Atom {
        Atom::parse(s).expect("valid atom")
    }

    fn drone(s: &str) -> DroneName {
        DroneName::parse(s).expect("valid name")
    }

    fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(value: T) {
        let bytes = encode(&value).expect("encodes");
        let back: T = decode(&bytes).expect("decodes");
        assert_eq!(back, value);
    }

    #[test]
    fn every_message_round_trips() {
        let failed = BuildOutcome::Failed {
            exit: ExitInfo::code(1),
            log_tail: "error: <b>".into(),
        };
        round_trip(Job {
            v: SCHEMA_VERSION,
            atom: atom("sys-libs/zlib"),
            attempt: 2,
            submission: 1,
            avoid: vec![drone("drone-Izar")],
            estimate_secs: Some(20.0),
        });
        round_trip(Lease {
            v: SCHEMA_VERSION,
            drone: drone("d1"),
            atom: atom("sys-libs/zlib"),
            attempt: 1,
            submission: 3,
            stream_seq: 7,
            delivery: 1,
            phase: LeasePhase::Finished {
                outcome: failed.clone(),
            },
        });
        round_trip(DroneRecord {
            big_builds: false,
            v: SCHEMA_VERSION,
            name: drone("d1"),
            cores: 24,
            slots: 6,
            arch: Arch::default(),
            version: "0.1.0".into(),
            state: DroneState::Grounded {
                reason: "3 failures".into(),
            },
            building: vec![RunningBuild {
                atom: atom("sys-libs/zlib"),
                attempt: 1,
                started_ms: 5,
            }],
            consecutive_failures: 3,
            heartbeat_ms: 9,
            heartbeat_interval_ms: 1000,
            boot_ms: 1,
            seq: 4,
        });
        for kind in [
            EventKind::Online {
                cores: 8,
                slots: 2,
                arch: Arch::default(),
                version: "x".into(),
            },
            EventKind::Claimed {
                atom: atom("a-b/c"),
                attempt: 1,
                stream_seq: 3,
                delivery: 1,
                lease_rev: 4,
            },
            EventKind::Started {
                atom: atom("a-b/c"),
                attempt: 1,
                argv: vec!["emerge".into(), "a-b/c".into()],
                jobs: 4,
                delivery: 1,
                lease_rev: 1,
            },
            EventKind::Finished {
                atom: atom("a-b/c"),
                attempt: 1,
                lease_rev: 5,
                outcome: failed.clone(),
                duration_ms: 10,
                jobs: 4,
            },
            EventKind::Finished {
                atom: atom("a-b/c"),
                attempt: 1,
                lease_rev: 5,
                outcome: BuildOutcome::Succeeded,
                duration_ms: 10,
                jobs: 4,
            },
            EventKind::HandedBack {
                atom: atom("a-b/c"),
                attempt: 1,
                reason: "shutdown".into(),
            },
            EventKind::LeaseLost {
                atom: atom("a-b/c"),
                attempt: 1,
                reason: "stale".into(),
            },
            EventKind::Grounded { reason: "r".into() },
            EventKind::Ungrounded,
            EventKind::Draining,
            EventKind::Offline,
        ] {
            round_trip(Event {
                v: SCHEMA_VERSION,
                drone: drone("d1"),
                boot_ms: 1,
                seq: 2,
                at_ms: 3,
                kind,
            });
        }
        for state in [
            PackageState::Queued { attempt: 1 },
            PackageState::Building {
                attempt: 1,
                drone: drone("d"),
                since_ms: 3,
            },
            PackageState::RetryWait {
                attempt: 2,
                not_before_ms: 9,
            },
            PackageState::Succeeded {
                attempt: 2,
                drone: drone("d"),
            },
            PackageState::Failed {
                attempt: 3,
                reason: "r".into(),
            },
        ] {
            round_trip(PackageRecord {
                class: None,
                learned_secs: None,
                v: SCHEMA_VERSION,
                atom: atom("a-b/c"),
                arch: Arch::default(),
                submission: 1,
                state,
                history: vec![AttemptRecord {
                    attempt: 1,
                    drone: drone("d"),
                    outcome: failed.clone(),
                    duration_ms: 1,
                    ended_ms: 2,
                }],
                estimate_secs: None,
                submitted_ms: 1,
                updated_ms: 2,
            });
        }
        round_trip(SubmitRequest {
            v: SCHEMA_VERSION,
            items: vec![SubmitItem {
                class: None,
                atom: "not an atom".into(),
                estimate_secs: None,
            }],
            arch: None,
        });
        for result in [
            SubmitResult::Accepted {
                queued: 1,
                already_queued: 2,
            },
            SubmitResult::Rejected {
                rejections: vec![AtomRejection {
                    input: "x".into(),
                    reason: "y".into(),
                }],
            },
            SubmitResult::Error {
                message: "z".into(),
            },
        ] {
            round_trip(SubmitReply {
                v: SCHEMA_VERSION,
                result,
            });
        }
        round_trip(DroneControl {
            v: SCHEMA_VERSION,
            command: DroneCommand::Unground,
        });
        round_trip(DroneControlReply {
            v: SCHEMA_VERSION,
            ok: true,
            message: "ok".into(),
        });
    }

    #[test]
    fn fields_are_named_on_the_wire() {
        let bytes = encode(&DroneControl {
            v: SCHEMA_VERSION,
            command: DroneCommand::Unground,
        })
        .expect("encodes");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("command") && text.contains("unground"),
            "{text}"
        );
    }

    #[test]
    fn bad_bytes_are_rejected_by_kind() {
        assert!(matches!(
            decode::<Job>(b"\xc1\xff garbage"),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<Job>(b""),
            Err(DecodeError::Malformed { .. })
        ));
        let big = vec![0u8; crate::codec::MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode::<Job>(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        #[derive(Serialize)]
        struct Future {
            v: u16,
            atom: String,
        }
        let future = rmp_serde::to_vec_named(&Future {
            v: 99,
            atom: "a-b/c".into(),
        })
        .expect("encodes");
        assert!(matches!(
            decode::<Job>(&future),
            Err(DecodeError::UnsupportedVersion { found: 99, .. })
        ));
        #[derive(Serialize)]
        struct BadAtom {
            v: u16,
            atom: String,
            attempt: u32,
            submission: u64,
        }
        let bad = rmp_serde::to_vec_named(&BadAtom {
            v: SCHEMA_VERSION,
            atom: "$(reboot)".into(),
            attempt: 1,
            submission: 1,
        })
        .expect("encodes");
        match decode::<Job>(&bad) {
            Err(DecodeError::Invalid { reason, .. }) => {
                assert!(reason.contains("$(reboot)"), "{reason}")
            }
            other => panic!("expected an invalid-atom error, got {other:?}"),
        }
    }
}
