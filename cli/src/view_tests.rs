//! Tests of the read commands' rows, tables and JSON shapes (`view.rs`).

use schemas::AttemptRecord;
use schemas::fixtures::{self, drone_name as name};
use schemas::summary::SwarmStatus;
use serde_json::Value;

use super::*;

fn drone(n: &str, cores: u32, state: DroneState, building: &[&str]) -> DroneRecord {
    DroneRecord {
        slots: 2,
        building: fixtures::running(building, 1),
        ..fixtures::drone_record(n, cores, state)
    }
}

fn failed_attempt(attempt: u32, by: &str) -> AttemptRecord {
    AttemptRecord {
        attempt,
        drone: name(by),
        outcome: BuildOutcome::Failed {
            exit: ExitInfo::code(1),
            log_tail: "make: *** [all] Error 1".into(),
            class: schemas::FailureClass::Package,
            signature: None,
        },
        duration_ms: 10,
        ended_ms: 20,
    }
}

fn package(a: &str, state: PackageState, history: Vec<AttemptRecord>) -> PackageRecord {
    PackageRecord {
        history,
        ..fixtures::package_record(a, state)
    }
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn status_json_has_the_documented_keys() {
    let drones = [
        drone("drone-Izar", 16, DroneState::Building, &["sys-libs/zlib"]),
        drone("drone-Tarn", 10, DroneState::Idle, &[]),
        drone(
            "drone-Tau-Beta",
            8,
            DroneState::Grounded {
                reason: "3 failures".into(),
            },
            &[],
        ),
    ];
    let packages = [
        PackageState::Queued { attempt: 1 },
        PackageState::Building {
            attempt: 1,
            drone: name("drone-Izar"),
            since_ms: 1,
        },
        PackageState::Waiting,
        PackageState::Blocked {
            dependency: schemas::fixtures::atom("sys-libs/zlib"),
        },
        PackageState::Cancelled {
            attempt: 1,
            reason: "cancelled by the operator".into(),
        },
    ];
    let summary = summarize(drones.iter().map(|d| (d, 0)), packages.iter());
    let json = serde_json::to_value(&summary).expect("serializes");
    assert_eq!(
        keys(&json),
        [
            "cores",
            "drones",
            "leader",
            "operator_paused",
            "packages",
            "queue",
            "status"
        ]
    );
    assert_eq!(json["operator_paused"], false);
    assert_eq!(json["leader"], serde_json::Value::Null);
    let led = serde_json::to_value(summary.clone().led_by(Some("coordinator-1".into())))
        .expect("serializes");
    assert_eq!(led["leader"], "coordinator-1");
    // Queued, building, and waiting for its dependencies; blocked and cancelled ones are finished.
    assert_eq!(json["queue"], 3);
    assert_eq!(json["drones"]["active"], 1);
    assert_eq!(json["drones"]["idle"], 1);
    assert_eq!(json["drones"]["grounded"], 1);
    assert_eq!(json["cores"]["active"], 16);
    assert_eq!(json["cores"]["total"], 34);
    assert_eq!(json["status"], "BUILDING");
    for key in [
        "queued",
        "building",
        "succeeded",
        "failed",
        "waiting",
        "blocked",
        "cancelled",
    ] {
        assert_eq!(
            json["packages"][key].as_u64(),
            Some(u64::from(key != "succeeded" && key != "failed")),
            "packages.{key} in {json}"
        );
    }
    assert_eq!(summary.status, SwarmStatus::Building);
}

#[test]
fn package_rows() {
    // (record, state, attempts, drone, has reason)
    let cases = [
        (
            package("a-b/new", PackageState::Queued { attempt: 1 }, vec![]),
            "queued",
            0,
            None,
            false,
        ),
        (
            package(
                "a-b/requeued",
                PackageState::Queued { attempt: 2 },
                vec![failed_attempt(1, "d1")],
            ),
            "queued",
            1,
            None,
            false,
        ),
        (
            package(
                "a-b/retry",
                PackageState::RetryWait {
                    attempt: 3,
                    not_before_ms: 9,
                },
                vec![failed_attempt(1, "d1"), failed_attempt(2, "d2")],
            ),
            "retry_wait",
            2,
            None,
            false,
        ),
        (
            package(
                "a-b/building",
                PackageState::Building {
                    attempt: 2,
                    drone: name("d2"),
                    since_ms: 5,
                },
                vec![failed_attempt(1, "d1")],
            ),
            "building",
            2,
            Some("d2"),
            false,
        ),
        (
            package(
                "a-b/done",
                PackageState::Succeeded {
                    attempt: 1,
                    drone: name("d3"),
                },
                vec![AttemptRecord {
                    attempt: 1,
                    drone: name("d3"),
                    outcome: BuildOutcome::Succeeded,
                    duration_ms: 5,
                    ended_ms: 6,
                }],
            ),
            "succeeded",
            1,
            Some("d3"),
            false,
        ),
        (
            package(
                "a-b/broken",
                PackageState::Failed {
                    attempt: 3,
                    reason: "exit status 1 on 3 attempts".into(),
                },
                vec![
                    failed_attempt(1, "d1"),
                    failed_attempt(2, "d2"),
                    failed_attempt(3, "d1"),
                ],
            ),
            "failed",
            3,
            None,
            true,
        ),
    ];
    for (record, state, attempts, drone, has_reason) in cases {
        let row = PackageRow::from_record(&record);
        assert_eq!(row.state, state, "{row:?}");
        assert_eq!(row.attempts, attempts, "{row:?}");
        assert_eq!(row.drone.as_ref().map(|d| d.as_str()), drone, "{row:?}");
        assert_eq!(row.reason.is_some(), has_reason, "{row:?}");
        let json = serde_json::to_value(&row).expect("serializes");
        let mut expected = vec![
            "atom",
            "attempts",
            "deps",
            "drone",
            "history",
            "learned_secs",
            "priority",
            "run",
            "state",
        ];
        if has_reason {
            expected.push("reason");
            expected.sort_unstable();
        }
        assert_eq!(keys(&json), expected, "{json}");
        assert_eq!(
            json["history"].as_array().map(Vec::len),
            Some(record.history.len())
        );
        for entry in json["history"].as_array().into_iter().flatten() {
            assert_eq!(
                keys(entry),
                [
                    "attempt",
                    "class",
                    "drone",
                    "duration_ms",
                    "exit",
                    "log_tail",
                    "outcome",
                    "signature"
                ]
            );
        }
        let back: PackageRow = serde_json::from_value(json).expect("parses back");
        assert_eq!(back, row);
    }
    let failed = PackageRow::from_record(&package(
        "a-b/broken",
        PackageState::Failed {
            attempt: 1,
            reason: "r".into(),
        },
        vec![failed_attempt(1, "d1")],
    ));
    let json = serde_json::to_value(&failed).expect("serializes");
    assert_eq!(json["history"][0]["exit"]["code"], 1);
    assert_eq!(json["history"][0]["outcome"], "failed");
    assert_eq!(json["drone"], Value::Null);
}

#[test]
fn drone_rows() {
    // (record, heartbeat age, state, reason)
    let cases = [
        (
            drone("d1", 8, DroneState::Building, &["a-b/c", "d-e/f"]),
            0,
            "building",
            None,
        ),
        (drone("d2", 8, DroneState::Idle, &[]), 500, "idle", None),
        (
            drone(
                "d3",
                8,
                DroneState::Grounded {
                    reason: "3 failures".into(),
                },
                &[],
            ),
            0,
            "grounded",
            Some("3 failures"),
        ),
        (
            drone("d4", 8, DroneState::Building, &["a-b/c"]),
            60_000,
            "lost",
            Some("no heartbeat for 60000 ms"),
        ),
        (
            drone("d5", 8, DroneState::Offline, &[]),
            60_000,
            "offline",
            None,
        ),
    ];
    for (record, age, state, reason) in cases {
        let row = DroneRow::from_record(&record, age);
        assert_eq!(row.state, state, "{row:?}");
        assert_eq!(row.reason.as_deref(), reason, "{row:?}");
        assert_eq!(row.building.len(), record.building.len());
        let json = serde_json::to_value(&row).expect("serializes");
        let mut expected = vec![
            "arch",
            "building",
            "cores",
            "fingerprint",
            "heartbeat_age_ms",
            "name",
            "slots",
            "state",
            "version",
        ];
        if reason.is_some() {
            expected.push("reason");
            expected.sort_unstable();
        }
        assert_eq!(keys(&json), expected, "{json}");
        assert!(json["building"].is_array());
    }
}

#[test]
fn tables_align_and_leave_empty_cells_empty() {
    let rows = [
        PackageRow::from_record(&package(
            "sys-libs/zlib",
            PackageState::Succeeded {
                attempt: 1,
                drone: name("drone-Izar"),
            },
            vec![],
        )),
        PackageRow::from_record(&package(
            "a-b/c",
            PackageState::Queued { attempt: 1 },
            vec![],
        )),
    ];
    assert_eq!(
        packages_table(&rows),
        "ATOM           STATE      ATTEMPTS  DRONE       LAST FAILURE\n\
         sys-libs/zlib  succeeded  1         drone-Izar\n\
         a-b/c          queued     0\n"
    );
    let drones = [DroneRow::from_record(
        &drone("d1", 24, DroneState::Building, &["a-b/c", "d-e/f"]),
        0,
    )];
    assert_eq!(
        drones_table(&drones),
        "NAME  CORES  SLOTS  STATE     FINGERPRINT  BUILDING\n\
         d1    24     2      building               a-b/c d-e/f\n"
    );
    assert_eq!(
        drones_table(&[]),
        "NAME  CORES  SLOTS  STATE  FINGERPRINT  BUILDING\n"
    );
    // An excluded drone says why under the table.
    let mut record = drone(
        "d2",
        8,
        DroneState::Excluded {
            reason: "its ebuild tree is older than the run's: sync it".into(),
        },
        &[],
    );
    record.fingerprint = Some(schemas::Fingerprint {
        id: "3f2a9c1d0e4b".into(),
        chost: "x86_64-pc-linux-gnu".into(),
        profile: "default/linux/amd64/23.0".into(),
        settings: "s".into(),
        tree_timestamp: Some(1),
    });
    assert_eq!(
        drones_table(&[DroneRow::from_record(&record, 0)]),
        "NAME  CORES  SLOTS  STATE     FINGERPRINT   BUILDING\n\
         d2    8      2      excluded  3f2a9c1d0e4b\n\
         \n\
         d2 (excluded): its ebuild tree is older than the run's: sync it\n"
    );
}
