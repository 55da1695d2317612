//! Tests of the messages: every one round-trips through MessagePack with its fields named, and
//! bad bytes are refused by kind.

use serde::Serialize;

use super::*;
use crate::codec::{DecodeError, SCHEMA_VERSION, Wire, decode, encode};
use crate::ids::{Arch, Atom, DroneName, RunName};

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
        class: crate::FailureClass::Package,
        signature: None,
    };
    round_trip(Job {
        v: SCHEMA_VERSION,
        atom: atom("sys-libs/zlib"),
        attempt: 2,
        submission: 1,
        avoid: vec![drone("drone-Izar")],
        estimate_secs: Some(20.0),
        fingerprint: None,
        min_cores: Some(24),
        linger: true,
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
        supervise_deadline_ms: None,
        boot_ms: 1,
        seq: 4,
        fingerprint: None,
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
            artifacts: Vec::new(),
        },
        EventKind::Finished {
            atom: atom("a-b/c"),
            attempt: 1,
            lease_rev: 5,
            outcome: BuildOutcome::Succeeded,
            duration_ms: 10,
            jobs: 4,
            artifacts: Vec::new(),
        },
        EventKind::HandedBack {
            atom: atom("a-b/c"),
            attempt: 1,
            reason: "shutdown".into(),
            outcome: None,
            duration_ms: 0,
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
            artifacts: Vec::new(),
            fingerprint: None,
            run: Some(RunName::parse("nightly-1").expect("run name")),
            deps: Vec::new(),
            priority: super::Priority::High,
        });
    }
    round_trip(SubmitRequest {
        v: SCHEMA_VERSION,
        items: vec![SubmitItem {
            class: None,
            atom: "not an atom".into(),
            estimate_secs: None,
            deps: Vec::new(),
        }],
        arch: None,
        fingerprint: None,
        run: Some("nightly-1".into()),
        priority: Some(super::Priority::Low),
    });
    for result in [
        SubmitResult::Accepted {
            queued: 1,
            already_queued: 2,
            run: RunName::parse("nightly-1").ok(),
            notes: vec!["a note".into()],
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

#[test]
fn binhost_names_read_back_and_their_tokens_are_key_safe() {
    type Case = (
        &'static str,
        Result<(&'static str, &'static str), &'static str>,
    );
    let cases: [Case; 6] = [
        ("amd64", Ok(("amd64", "amd64"))),
        (
            "amd64@3f2a9c1d0e4b",
            Ok(("amd64@3f2a9c1d0e4b", "amd64_3f2a9c1d0e4b")),
        ),
        ("arm64-linux@0a", Ok(("arm64-linux@0a", "arm64-linux_0a"))),
        ("amd64@", Err("not a fingerprint id")),
        ("amd64@3F2A", Err("not a fingerprint id")),
        ("../etc@00", Err("not a binhost name")),
    ];
    for (input, expected) in cases {
        match (BinhostName::parse(input), expected) {
            (Ok(name), Ok((shown, token))) => {
                assert_eq!(name.to_string(), shown);
                assert_eq!(name.token(), token);
                assert_eq!(BinhostName::parse(&name.to_string()), Ok(name.clone()));
                assert!(
                    token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "{token}"
                );
            }
            (Err(err), Err(text)) => assert!(err.to_string().contains(text), "{input}: {err}"),
            (got, _) => panic!("{input}: {got:?}"),
        }
    }
    let name = BinhostName::parse("amd64@3f2a9c1d0e4b").expect("name");
    assert_eq!(
        crate::names::binhost_revision_key(&name, 7),
        "rev.amd64_3f2a9c1d0e4b.000000000007"
    );
    assert_eq!(
        crate::names::binhost_current_key(&name),
        "current.amd64_3f2a9c1d0e4b"
    );
    assert_eq!(
        BinhostRevision::contents_object(&name, 7),
        "revision-amd64_3f2a9c1d0e4b-000000000007"
    );
}

#[test]
fn a_publish_request_of_the_previous_release_still_reads() {
    // Before runs had names, `publish` was a unit variant: `{type: "publish"}`.
    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum OldCommand {
        Publish,
    }
    #[derive(Serialize)]
    struct OldRequest {
        v: u16,
        arch: Option<Arch>,
        command: OldCommand,
    }
    let old = rmp_serde::to_vec_named(&OldRequest {
        v: SCHEMA_VERSION,
        arch: None,
        command: OldCommand::Publish,
    })
    .expect("encode");
    let read: BinhostRequest = decode(&old).expect("decode");
    assert_eq!(read.command, BinhostCommand::Publish { run: None });
    let new = BinhostRequest {
        v: SCHEMA_VERSION,
        arch: None,
        fingerprint: Some("3f2a9c1d0e4b".into()),
        command: BinhostCommand::Publish {
            run: Some("nightly-1".into()),
        },
    };
    let bytes = encode(&new).expect("encode");
    assert_eq!(decode::<BinhostRequest>(&bytes).expect("decode"), new);
}

#[test]
fn jobs_and_events_carry_headers_people_read() {
    let job = crate::fixtures::job("=dev-libs/openssl-3.3.2", 2);
    let run = RunName::parse("nightly-1").expect("run");
    assert_eq!(
        job.headers(Some(&run)),
        [
            ("Swarm-Kind", "job".to_owned()),
            ("Swarm-Atom", "=dev-libs/openssl-3.3.2".to_owned()),
            ("Swarm-Attempt", "2".to_owned()),
            ("Swarm-Run", "nightly-1".to_owned()),
        ]
    );
    assert_eq!(job.headers(None).len(), 3, "no run, no run header");
    let event = |kind| Event {
        v: SCHEMA_VERSION,
        drone: drone("drone-Izar"),
        boot_ms: 1,
        seq: 1,
        at_ms: 1,
        kind,
    };
    let finished = event(EventKind::Finished {
        atom: atom("sys-libs/zlib"),
        attempt: 1,
        lease_rev: 3,
        outcome: BuildOutcome::package_failure(ExitInfo::code(1), "boom"),
        duration_ms: 5,
        jobs: 4,
        artifacts: Vec::new(),
    });
    assert_eq!(
        finished.headers(),
        [
            ("Swarm-Kind", "finished".to_owned()),
            ("Swarm-Drone", "drone-Izar".to_owned()),
            ("Swarm-Atom", "sys-libs/zlib".to_owned()),
            ("Swarm-Attempt", "1".to_owned()),
            ("Swarm-Outcome", "failed (package)".to_owned()),
        ]
    );
    assert_eq!(
        event(EventKind::Draining).headers(),
        [
            ("Swarm-Kind", "draining".to_owned()),
            ("Swarm-Drone", "drone-Izar".to_owned()),
        ]
    );
}
