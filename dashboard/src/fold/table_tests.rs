//! The fold's table of cases (`mod.rs`): reports of one or many drones in every order that
//! matters, and what each drone must then show.

use schemas::fixtures::{self, claimed};
use schemas::{DroneState, EventKind};

use super::tests::{building_of, event, finished, online, record, state_of};
use super::*;

/// One row of the table: inputs in arrival order, then what each drone must show.
struct Case {
    name: &'static str,
    inputs: Vec<Input>,
    expect: Vec<(&'static str, &'static str, Vec<&'static str>)>,
    expect_applied_last: Option<Applied>,
}

#[test]
fn fold_table() {
    let cases = vec![
        Case {
            name: "online then claimed: building",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 2, claimed("x-y/z", 1)),
            ],
            expect: vec![("a", "building", vec!["x-y/z"])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "finished returns the drone to idle",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 2, claimed("x-y/z", 1)),
                event("a", 100, 3, finished("x-y/z", true)),
            ],
            expect: vec![("a", "idle", vec![])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "out of order: a late claimed does not resurrect a finished build",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 3, finished("x-y/z", true)),
                event("a", 100, 2, claimed("x-y/z", 1)),
            ],
            expect: vec![("a", "idle", vec![])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "out of order: a late claimed of another package still shows",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 3, claimed("x-y/b", 1)),
                event("a", 100, 2, claimed("x-y/a", 1)),
            ],
            expect: vec![("a", "building", vec!["x-y/a", "x-y/b"])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "duplicate event changes nothing",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 2, claimed("x-y/z", 1)),
                event("a", 100, 2, claimed("x-y/z", 1)),
            ],
            expect: vec![("a", "building", vec!["x-y/z"])],
            expect_applied_last: Some(Applied::Duplicate),
        },
        Case {
            name: "a late record goes underneath newer events",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event(
                    "a",
                    100,
                    5,
                    EventKind::Grounded {
                        reason: "3 failures".into(),
                    },
                ),
                record("a", 100, 4, DroneState::Building, &["x-y/z"]),
            ],
            expect: vec![("a", "grounded", vec!["x-y/z"])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "a late record keeps what newer events did not touch",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 3, finished("x-y/other", false)),
                record("a", 100, 2, DroneState::Building, &["x-y/z"]),
            ],
            expect: vec![("a", "building", vec!["x-y/z"])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "a record older than the newest record changes nothing",
            inputs: vec![
                record("a", 100, 5, DroneState::Idle, &[]),
                record("a", 100, 4, DroneState::Building, &["x-y/z"]),
            ],
            expect: vec![("a", "idle", vec![])],
            expect_applied_last: Some(Applied::Stale),
        },
        Case {
            name: "an event older than the newest record changes nothing",
            inputs: vec![
                record("a", 100, 5, DroneState::Idle, &[]),
                event("a", 100, 4, claimed("x-y/z", 1)),
            ],
            expect: vec![("a", "idle", vec![])],
            expect_applied_last: Some(Applied::Stale),
        },
        Case {
            name: "a newer record replaces what events built",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 2, claimed("x-y/z", 1)),
                record("a", 100, 3, DroneState::Building, &["p-q/r", "x-y/z"]),
            ],
            expect: vec![("a", "building", vec!["p-q/r", "x-y/z"])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "grounding keeps running builds and the reason",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 2, claimed("x-y/z", 1)),
                event(
                    "a",
                    100,
                    3,
                    EventKind::Grounded {
                        reason: "3 failures".into(),
                    },
                ),
            ],
            expect: vec![("a", "grounded", vec!["x-y/z"])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "ungrounded drone goes back to work",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 2, EventKind::Grounded { reason: "r".into() }),
                event("a", 100, 3, EventKind::Ungrounded),
            ],
            expect: vec![("a", "idle", vec![])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "the coordinator's lost mark applies at the same sequence",
            inputs: vec![
                record("a", 100, 7, DroneState::Building, &["x-y/z"]),
                record(
                    "a",
                    100,
                    7,
                    DroneState::Lost {
                        reason: "no heartbeat".into(),
                    },
                    &["x-y/z"],
                ),
            ],
            expect: vec![("a", "lost", vec!["x-y/z"])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "a lost drone that speaks again is back",
            inputs: vec![
                record("a", 100, 7, DroneState::Building, &["x-y/z"]),
                record(
                    "a",
                    100,
                    7,
                    DroneState::Lost {
                        reason: "no heartbeat".into(),
                    },
                    &["x-y/z"],
                ),
                event("a", 100, 8, finished("x-y/z", true)),
            ],
            expect: vec![("a", "idle", vec![])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "a lost mark older than the drone's newest event does not stick",
            inputs: vec![
                record("a", 100, 7, DroneState::Building, &["x-y/z"]),
                event("a", 100, 8, claimed("x-y/y", 1)),
                record(
                    "a",
                    100,
                    7,
                    DroneState::Lost {
                        reason: "no heartbeat".into(),
                    },
                    &["x-y/z"],
                ),
            ],
            expect: vec![("a", "building", vec!["x-y/y", "x-y/z"])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "a restarted drone forgets the old process's builds",
            inputs: vec![
                record("a", 100, 7, DroneState::Building, &["x-y/z"]),
                event("a", 200, 1, online(8, 2)),
            ],
            expect: vec![("a", "idle", vec![])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "an event of the previous process after a restart changes nothing",
            inputs: vec![
                event("a", 200, 1, online(8, 2)),
                event("a", 100, 9, claimed("x-y/z", 1)),
            ],
            expect: vec![("a", "idle", vec![])],
            expect_applied_last: Some(Applied::Duplicate),
        },
        Case {
            name: "draining then offline",
            inputs: vec![
                event("a", 100, 1, online(8, 2)),
                event("a", 100, 2, claimed("x-y/z", 1)),
                event("a", 100, 3, EventKind::Draining),
                event("a", 100, 4, finished("x-y/z", true)),
                event("a", 100, 5, EventKind::Offline),
            ],
            expect: vec![("a", "offline", vec![])],
            expect_applied_last: Some(Applied::Changed),
        },
        Case {
            name: "an event claiming another drone is rejected",
            inputs: vec![Input::Event {
                subject_drone: "b".into(),
                stream_seq: 1,
                stored_ms: 1,
                event: fixtures::event("a", 1, 1, online(8, 2)),
            }],
            expect: vec![],
            expect_applied_last: Some(Applied::Rejected(
                "event 1 on the subject of drone b claims to come from drone a".into(),
            )),
        },
        Case {
            name: "same-instant reports of many drones all appear",
            inputs: vec![
                record("a", 100, 1, DroneState::Building, &["x-y/a"]),
                record("b", 100, 1, DroneState::Idle, &[]),
                record(
                    "c",
                    100,
                    1,
                    DroneState::Grounded { reason: "r".into() },
                    &[],
                ),
                event("d", 100, 1, online(8, 2)),
                event("e", 100, 1, online(8, 2)),
                event("e", 100, 2, claimed("x-y/e", 1)),
            ],
            expect: vec![
                ("a", "building", vec!["x-y/a"]),
                ("b", "idle", vec![]),
                ("c", "grounded", vec![]),
                ("d", "idle", vec![]),
                ("e", "building", vec!["x-y/e"]),
            ],
            expect_applied_last: Some(Applied::Changed),
        },
    ];
    for case in cases {
        let mut swarm = Swarm::new(10);
        let mut last = None;
        for input in case.inputs {
            last = Some(swarm.apply(input));
        }
        for (drone, state, building) in &case.expect {
            assert_eq!(
                state_of(&swarm, drone),
                *state,
                "{}: state of {drone}",
                case.name
            );
            assert_eq!(
                building_of(&swarm, drone),
                building.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{}: builds of {drone}",
                case.name
            );
        }
        assert_eq!(
            swarm.drones.len(),
            case.expect.len(),
            "{}: drones shown",
            case.name
        );
        if let Some(applied) = case.expect_applied_last {
            assert_eq!(last, Some(applied), "{}: last input", case.name);
        }
    }
}
