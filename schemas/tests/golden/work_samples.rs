//! Golden samples of the build's messages: jobs, leases, drone records, events and package
//! records (see `samples.rs`).

use swarm_schemas::*;

use super::samples::{
    EVENTS_ATOM, EVENTS_DRONE, FINGERPRINT_ID, QUEUED_ATOM, T0, V, arch, artifact, atom, drone,
    failed, fingerprint, killed, run,
};

pub fn jobs() -> Vec<(&'static str, Job)> {
    vec![
        // As every release so far wrote a first attempt of a package without a plan.
        (
            "plain",
            Job {
                v: V,
                atom: atom(QUEUED_ATOM),
                attempt: 1,
                submission: 1,
                avoid: Vec::new(),
                estimate_secs: None,
                fingerprint: None,
                min_cores: None,
                linger: false,
            },
        ),
        (
            "placed",
            Job {
                v: V,
                atom: atom(EVENTS_ATOM),
                attempt: 2,
                submission: 3,
                avoid: vec![drone("drone-Tarn")],
                estimate_secs: Some(412.5),
                fingerprint: Some(FINGERPRINT_ID.into()),
                min_cores: Some(24),
                linger: true,
            },
        ),
    ]
}

pub fn leases() -> Vec<(&'static str, Lease)> {
    let lease = |phase| Lease {
        v: V,
        drone: drone(EVENTS_DRONE),
        atom: atom(EVENTS_ATOM),
        attempt: 1,
        submission: 1,
        stream_seq: 41,
        delivery: 1,
        phase,
    };
    vec![
        ("building", lease(LeasePhase::Building)),
        (
            "finished",
            lease(LeasePhase::Finished {
                outcome: BuildOutcome::Succeeded,
            }),
        ),
    ]
}

pub fn drone_records() -> Vec<(&'static str, DroneRecord)> {
    let record = |state: DroneState| DroneRecord {
        supervise_deadline_ms: (state == DroneState::Idle).then_some(27_000),
        v: V,
        name: drone(EVENTS_DRONE),
        cores: 16,
        slots: 4,
        arch: arch(),
        version: "0.1.0".into(),
        building: if state == DroneState::Building {
            vec![RunningBuild {
                atom: atom(EVENTS_ATOM),
                attempt: 1,
                started_ms: T0 + 1_000,
            }]
        } else {
            Vec::new()
        },
        state,
        consecutive_failures: 1,
        heartbeat_ms: T0 + 2_000,
        heartbeat_interval_ms: 2_000,
        big_builds: true,
        fingerprint: Some(fingerprint()),
        boot_ms: T0,
        seq: 17,
    };
    let reason = |text: &str| text.to_owned();
    vec![
        ("idle", record(DroneState::Idle)),
        ("building", record(DroneState::Building)),
        (
            "grounded",
            record(DroneState::Grounded {
                reason: reason("3 infrastructure failures in a row"),
            }),
        ),
        ("draining", record(DroneState::Draining)),
        ("offline", record(DroneState::Offline)),
        (
            "lost",
            record(DroneState::Lost {
                reason: reason("no heartbeat for 6 s"),
            }),
        ),
        (
            "excluded",
            record(DroneState::Excluded {
                reason: reason("fingerprint 3f2a9c1d0e4b is not the run's"),
            }),
        ),
    ]
}

/// Every kind of event, in the order a drone sends them for one build (then the drone's own).
pub fn events() -> Vec<(&'static str, Event)> {
    let atom = || atom(EVENTS_ATOM);
    let mut seq = 0;
    let mut event = |kind| {
        seq += 1;
        Event {
            v: V,
            drone: drone(EVENTS_DRONE),
            boot_ms: T0,
            seq,
            at_ms: T0 + seq * 1_000,
            kind,
        }
    };
    vec![
        (
            "online",
            event(EventKind::Online {
                cores: 16,
                slots: 4,
                arch: arch(),
                version: "0.1.0".into(),
            }),
        ),
        (
            "claimed",
            event(EventKind::Claimed {
                atom: atom(),
                attempt: 1,
                stream_seq: 41,
                delivery: 1,
                lease_rev: 7,
            }),
        ),
        (
            "started",
            event(EventKind::Started {
                atom: atom(),
                attempt: 1,
                argv: vec![
                    "emerge".into(),
                    "--oneshot".into(),
                    "--buildpkg".into(),
                    EVENTS_ATOM.into(),
                ],
                jobs: 4,
                delivery: 1,
                lease_rev: 7,
            }),
        ),
        (
            "finished",
            event(EventKind::Finished {
                atom: atom(),
                attempt: 1,
                lease_rev: 9,
                outcome: BuildOutcome::Succeeded,
                duration_ms: 95_000,
                jobs: 4,
                artifacts: vec![artifact()],
            }),
        ),
        (
            "finished-failed",
            event(EventKind::Finished {
                atom: atom(),
                attempt: 1,
                lease_rev: 9,
                outcome: failed(FailureClass::Package, Some("Error 1")),
                duration_ms: 12_000,
                jobs: 4,
                artifacts: Vec::new(),
            }),
        ),
        (
            "handed-back",
            event(EventKind::HandedBack {
                atom: atom(),
                attempt: 1,
                reason: "fetch failed".into(),
                outcome: Some(failed(FailureClass::Fetch, Some("Couldn't download"))),
                duration_ms: 3_000,
            }),
        ),
        (
            "handed-back-killed",
            event(EventKind::HandedBack {
                atom: atom(),
                attempt: 1,
                reason: "no space left on the build directory".into(),
                outcome: Some(killed()),
                duration_ms: 41_000,
            }),
        ),
        (
            "lease-lost",
            event(EventKind::LeaseLost {
                atom: atom(),
                attempt: 1,
                reason: "renewal refused".into(),
            }),
        ),
        (
            "cancelled",
            event(EventKind::Cancelled {
                atom: atom(),
                attempt: 1,
            }),
        ),
        (
            "grounded",
            event(EventKind::Grounded {
                reason: "3 infrastructure failures in a row".into(),
            }),
        ),
        ("ungrounded", event(EventKind::Ungrounded)),
        ("draining", event(EventKind::Draining)),
        ("offline", event(EventKind::Offline)),
    ]
}

pub fn package_records() -> Vec<(&'static str, PackageRecord)> {
    let record = |text: &str, state| PackageRecord {
        v: V,
        atom: atom(text),
        arch: arch(),
        submission: 1,
        state,
        history: Vec::new(),
        estimate_secs: None,
        class: None,
        learned_secs: None,
        artifacts: Vec::new(),
        fingerprint: None,
        run: Some(run()),
        deps: Vec::new(),
        priority: Priority::Normal,
        submitted_ms: T0,
        updated_ms: T0 + 500,
    };
    let izar = || drone(EVENTS_DRONE);
    let attempt = |n, outcome| AttemptRecord {
        attempt: n,
        drone: izar(),
        outcome,
        duration_ms: 95_000,
        ended_ms: T0 + 100_000 * u64::from(n),
    };
    let succeeded = PackageRecord {
        submission: 2,
        history: vec![
            attempt(1, failed(FailureClass::Package, Some("Error 1"))),
            attempt(2, BuildOutcome::Succeeded),
        ],
        estimate_secs: Some(400.0),
        class: Some(SizeClass::Heavy),
        learned_secs: Some(190.25),
        artifacts: vec![artifact()],
        fingerprint: Some(FINGERPRINT_ID.into()),
        deps: vec![atom("sys-libs/zlib").key(), atom("dev-lang/perl").key()],
        priority: Priority::High,
        ..record(
            EVENTS_ATOM,
            PackageState::Succeeded {
                attempt: 2,
                drone: izar(),
            },
        )
    };
    let with_class = |class, priority, record: PackageRecord| PackageRecord {
        class: Some(class),
        priority,
        ..record
    };
    vec![
        // Its job is `job.plain`.
        (
            "queued",
            record(QUEUED_ATOM, PackageState::Queued { attempt: 1 }),
        ),
        (
            "building",
            with_class(
                SizeClass::Small,
                Priority::Low,
                record(
                    EVENTS_ATOM,
                    PackageState::Building {
                        attempt: 1,
                        drone: izar(),
                        since_ms: T0 + 1_000,
                    },
                ),
            ),
        ),
        (
            "retry-wait",
            PackageRecord {
                history: vec![attempt(1, killed())],
                ..with_class(
                    SizeClass::Medium,
                    Priority::Normal,
                    record(
                        EVENTS_ATOM,
                        PackageState::RetryWait {
                            attempt: 2,
                            not_before_ms: T0 + 200_000,
                        },
                    ),
                )
            },
        ),
        ("succeeded", succeeded),
        (
            "failed",
            with_class(
                SizeClass::Giant,
                Priority::Normal,
                record(
                    EVENTS_ATOM,
                    PackageState::Failed {
                        attempt: 3,
                        reason: "3 attempts failed".into(),
                    },
                ),
            ),
        ),
        ("waiting", record(EVENTS_ATOM, PackageState::Waiting)),
        (
            "blocked",
            record(
                EVENTS_ATOM,
                PackageState::Blocked {
                    dependency: atom("sys-libs/zlib"),
                },
            ),
        ),
        (
            "cancelled",
            record(
                EVENTS_ATOM,
                PackageState::Cancelled {
                    attempt: 1,
                    reason: "cancelled by the operator".into(),
                },
            ),
        ),
    ]
}
