//! Golden samples of the other messages: run targets, history, requests and replies, binhost
//! revisions (see `samples.rs`).

use swarm_schemas::*;

use super::samples::{
    EVENTS_ATOM, EVENTS_DRONE, FINGERPRINT_ID, T0, V, arch, artifact, atom, drone, fingerprint, run,
};

pub fn run_target() -> RunTarget {
    RunTarget {
        v: V,
        arch: arch(),
        fingerprint: fingerprint(),
        set_ms: T0,
    }
}

pub fn history_entry() -> HistoryEntry {
    HistoryEntry {
        v: V,
        atom: atom(EVENTS_ATOM),
        arch: arch(),
        run: Some(run()),
        submission: 1,
        attempt: AttemptRecord {
            attempt: 1,
            drone: drone(EVENTS_DRONE),
            outcome: BuildOutcome::Succeeded,
            duration_ms: 95_000,
            ended_ms: T0 + 100_000,
        },
        result: "succeeded".into(),
    }
}

pub fn submit_request() -> SubmitRequest {
    SubmitRequest {
        v: V,
        items: vec![
            SubmitItem {
                atom: EVENTS_ATOM.into(),
                estimate_secs: Some(400.0),
                class: Some(SizeClass::Heavy),
                deps: vec!["sys-libs/zlib".into()],
            },
            SubmitItem {
                atom: "sys-libs/zlib".into(),
                estimate_secs: None,
                class: Some(SizeClass::Small),
                deps: Vec::new(),
            },
        ],
        arch: Some(arch()),
        fingerprint: Some(FINGERPRINT_ID.into()),
        run: Some("nightly-20250601".into()),
        priority: Some(Priority::High),
    }
}

pub fn submit_replies() -> Vec<(&'static str, SubmitReply)> {
    let reply = |result| SubmitReply { v: V, result };
    vec![
        (
            "accepted",
            reply(SubmitResult::Accepted {
                queued: 2,
                already_queued: 1,
                run: Some(run()),
                notes: vec!["dev-libs/openssl depends on sys-libs/zlb: a typo?".into()],
            }),
        ),
        (
            "rejected",
            reply(SubmitResult::Rejected {
                rejections: vec![AtomRejection {
                    input: "sys-libs/glibc; rm -rf /".into(),
                    reason: "not a valid atom".into(),
                }],
            }),
        ),
        (
            "error",
            reply(SubmitResult::Error {
                message: "package state is not writable".into(),
            }),
        ),
    ]
}

pub fn drone_controls() -> Vec<(&'static str, DroneControl)> {
    let control = |command| DroneControl { v: V, command };
    vec![
        ("unground", control(DroneCommand::Unground)),
        (
            "ground",
            control(DroneCommand::Ground {
                reason: "disk replacement".into(),
            }),
        ),
        ("drain", control(DroneCommand::Drain)),
        (
            "cancel",
            control(DroneCommand::Cancel {
                key: atom(EVENTS_ATOM).key(),
                attempt: 1,
            }),
        ),
    ]
}

pub fn drone_control_reply() -> DroneControlReply {
    DroneControlReply {
        v: V,
        ok: true,
        message: "grounded".into(),
    }
}

pub fn cancel_request() -> CancelRequest {
    CancelRequest {
        v: V,
        atoms: vec![EVENTS_ATOM.into()],
        run: Some("nightly-20250601".into()),
    }
}

pub fn retry_request() -> RetryRequest {
    RetryRequest {
        v: V,
        atoms: vec![EVENTS_ATOM.into()],
        failed: true,
        run: Some("nightly-20250601".into()),
    }
}

pub fn pause_request() -> PauseRequest {
    PauseRequest {
        v: V,
        reason: Some("binhost maintenance".into()),
    }
}

pub fn drone_request() -> DroneRequest {
    DroneRequest {
        v: V,
        drone: EVENTS_DRONE.into(),
        reason: Some("disk replacement".into()),
    }
}

pub fn control_reply() -> ControlReply {
    ControlReply {
        v: V,
        message: "cancelled 1 package".into(),
        changed: vec![EVENTS_ATOM.into()],
        unchanged: vec![Unchanged {
            atom: "sys-libs/zlib".into(),
            reason: "already succeeded".into(),
        }],
    }
}

pub fn binhost_revision() -> BinhostRevision {
    BinhostRevision {
        v: V,
        arch: arch(),
        number: 7,
        timestamp: 1_748_780_000,
        created_ms: T0 + 800_000,
        packages: 1,
        bytes: 7_340_032,
        contents: "revision-amd64_3f2a9c1d0e4b-000000000007".into(),
        fingerprint: Some(FINGERPRINT_ID.into()),
        run: Some(run()),
    }
}

pub fn revision_contents() -> RevisionContents {
    RevisionContents {
        v: V,
        arch: arch(),
        number: 7,
        packages: vec![artifact()],
    }
}

pub fn binhost_current() -> BinhostCurrent {
    BinhostCurrent {
        v: V,
        arch: arch(),
        number: 7,
        timestamp: 1_748_780_100,
    }
}

pub fn binhost_requests() -> Vec<(&'static str, BinhostRequest)> {
    let request = |command| BinhostRequest {
        v: V,
        arch: Some(arch()),
        fingerprint: Some(FINGERPRINT_ID.into()),
        command,
    };
    vec![
        (
            "publish",
            request(BinhostCommand::Publish {
                run: Some("nightly-20250601".into()),
            }),
        ),
        (
            "rollback",
            request(BinhostCommand::Rollback { to: Some(6) }),
        ),
        ("status", request(BinhostCommand::Status)),
    ]
}

pub fn binhost_replies() -> Vec<(&'static str, BinhostReply)> {
    vec![
        (
            "state",
            BinhostReply {
                v: V,
                result: BinhostResult::State {
                    arch: arch(),
                    fingerprint: Some(FINGERPRINT_ID.into()),
                    current: Some(7),
                    revisions: vec![RevisionSummary {
                        number: 7,
                        timestamp: 1_748_780_000,
                        created_ms: T0 + 800_000,
                        packages: 1,
                        bytes: 7_340_032,
                        fingerprint: Some(FINGERPRINT_ID.into()),
                        run: Some(run()),
                    }],
                    changed: true,
                },
            },
        ),
        (
            "error",
            BinhostReply {
                v: V,
                result: BinhostResult::Error {
                    message: "no revision 6 is kept".into(),
                },
            },
        ),
    ]
}

pub fn leader_record() -> LeaderRecord {
    LeaderRecord {
        v: V,
        coordinator: "coordinator-1".into(),
        version: "0.1.0".into(),
        since_ms: T0,
        renewed_ms: T0 + 1_500,
        ttl_ms: 5_000,
    }
}
