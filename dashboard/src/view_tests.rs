//! Tests of the dashboard's snapshot, run progress and deltas (`view.rs`).

use super::*;
use crate::fold::Input;
use schemas::fixtures::{self, drone_name as name};
use schemas::{DroneRecord, Event, PackageRecord, summary::SwarmStatus};

fn record(drone: &str, cores: u32, state: DroneState, building: &[&str]) -> Input {
    Input::DroneRecord {
        key: drone.into(),
        written_ms: 10_000,
        record: DroneRecord {
            slots: 2,
            building: fixtures::running(building, 9_000),
            boot_ms: 1,
            seq: 1,
            ..fixtures::drone_record(drone, cores, state)
        },
    }
}

fn package(atom: &str, state: PackageState, submitted: u64, updated: u64) -> Input {
    let record = PackageRecord {
        submitted_ms: submitted,
        updated_ms: updated,
        ..fixtures::package_record(atom, state)
    };
    Input::Package {
        key: record.atom.key().to_string(),
        revision: updated,
        record,
    }
}

#[test]
fn snapshot_counts_like_swarmctl_and_ages_silent_drones() {
    let mut swarm = Swarm::new(5);
    swarm.apply(record("a", 16, DroneState::Building, &["x-y/a"]));
    swarm.apply(record("b", 10, DroneState::Idle, &[]));
    swarm.apply(record(
        "c",
        8,
        DroneState::Grounded {
            reason: "3 failures".into(),
        },
        &[],
    ));
    swarm.apply(package(
        "x-y/a",
        PackageState::Building {
            attempt: 1,
            drone: name("a"),
            since_ms: 9_000,
        },
        5_000,
        9_000,
    ));
    swarm.apply(package(
        "x-y/b",
        PackageState::Queued { attempt: 1 },
        5_000,
        5_000,
    ));
    let snap = Snapshot::of(&swarm, 10_500, true);
    assert_eq!(snap.summary.queue, 2);
    assert_eq!(
        (
            snap.summary.drones.active,
            snap.summary.drones.idle,
            snap.summary.drones.grounded
        ),
        (1, 1, 1)
    );
    assert_eq!(snap.summary.cores.active, 16);
    assert_eq!(snap.summary.status, SwarmStatus::Building);
    assert_eq!(snap.drones[2].reason.as_deref(), Some("3 failures"));
    // Four seconds later every heartbeat (1 s interval) is stale: all lost, and nothing
    // shown as building on them.
    let later = Snapshot::of(&swarm, 14_000, true);
    assert!(later.drones.iter().all(|d| d.state == "lost"), "{later:?}");
    assert!(later.drones[0].building.is_empty());
    assert_eq!(later.summary.drones.lost, 3);
    assert_eq!(later.summary.cores.active, 0);
}

#[test]
fn an_excluded_drone_shows_why_and_every_drone_its_fingerprint() {
    let mut swarm = Swarm::new(5);
    let fingerprint = schemas::Fingerprint {
        id: "3f2a9c1d0e4b".into(),
        chost: "x86_64-pc-linux-gnu".into(),
        profile: "default/linux/amd64/23.0".into(),
        settings: "s".into(),
        tree_timestamp: Some(100),
    };
    let mut excluded = record(
        "a",
        8,
        DroneState::Excluded {
            reason: "its ebuild tree is older than the run's: sync it".into(),
        },
        &[],
    );
    if let Input::DroneRecord { record, .. } = &mut excluded {
        record.fingerprint = Some(fingerprint.clone());
    }
    swarm.apply(excluded);
    swarm.apply(record("b", 8, DroneState::Idle, &[]));
    let snap = Snapshot::of(&swarm, 10_500, true);
    assert_eq!(snap.drones[0].state, "excluded");
    assert_eq!(
        snap.drones[0].reason.as_deref(),
        Some("its ebuild tree is older than the run's: sync it")
    );
    assert_eq!(snap.drones[0].fingerprint.as_deref(), Some("3f2a9c1d0e4b"));
    assert_eq!(snap.drones[1].fingerprint, None);
    assert_eq!(snap.drones[1].reason, None);
    assert_eq!(snap.summary.drones.excluded, 1);
}

#[test]
fn progress_covers_the_latest_run_only() {
    let done = |drone: &str| PackageState::Succeeded {
        attempt: 1,
        drone: name(drone),
    };
    let queued = PackageState::Queued { attempt: 1 };
    let failed = PackageState::Failed {
        attempt: 3,
        reason: "r".into(),
    };
    // Yesterday's run: two packages, finished by 2_000.
    // Today's: submitted at 100_000, 100_500 and 101_000, each before the one before it
    // finished, so one run; the last is still queued.
    let states = [
        (done("a"), 1_000, 1_500),
        (done("a"), 1_000, 2_000),
        (done("a"), 100_000, 100_600),
        (failed.clone(), 100_500, 130_000),
        (queued.clone(), 101_000, 101_000),
    ];
    let p = progress(states.iter().map(|(s, a, b)| (s, *a, *b)), 160_000);
    assert_eq!(p.total, 3);
    assert_eq!((p.succeeded, p.failed, p.remaining, p.done), (1, 1, 1, 2));
    assert_eq!(p.started_ms, Some(100_000));
    assert_eq!(p.finished_ms, None);
    assert!((p.rate_per_min - 2.0).abs() < 1e-9, "{}", p.rate_per_min);
    assert_eq!(p.eta_secs, Some(30));
    // Once everything is final the run ends at its last finish.
    let finished = [(done("a"), 100_000, 100_600), (failed, 100_500, 130_000)];
    let p = progress(finished.iter().map(|(s, a, b)| (s, *a, *b)), 999_000);
    assert_eq!(p.finished_ms, Some(130_000));
    assert_eq!(p.eta_secs, None);
    assert_eq!(progress(std::iter::empty(), 5), Progress::default());
    // A run with a graph: one waits for its dependencies (still to do), one is blocked (done,
    // not built).
    let blocked = PackageState::Blocked {
        dependency: fixtures::atom("a-b/x"),
    };
    let graph = [
        (done("a"), 100_000, 100_600),
        (PackageState::Waiting, 100_000, 100_000),
        (blocked, 100_000, 100_700),
    ];
    let p = progress(graph.iter().map(|(s, a, b)| (s, *a, *b)), 160_000);
    assert_eq!(
        (
            p.succeeded,
            p.failed,
            p.blocked,
            p.done,
            p.remaining,
            p.waiting
        ),
        (1, 0, 1, 2, 1, 1)
    );
}

#[test]
fn delta_carries_only_changes_and_rebuilds_the_snapshot() {
    let mut swarm = Swarm::new(5);
    swarm.apply(record("a", 16, DroneState::Idle, &[]));
    swarm.apply(record("b", 10, DroneState::Idle, &[]));
    let old = Snapshot::of(&swarm, 10_100, true);
    assert_eq!(
        Delta::between(&old, &Snapshot::of(&swarm, 10_200, true)),
        None
    );
    swarm.apply(Input::Event {
        subject_drone: "b".into(),
        stream_seq: 1,
        stored_ms: 10_150,
        event: Event {
            at_ms: 10_150,
            ..fixtures::event("b", 1, 2, fixtures::claimed("x-y/z", 1))
        },
    });
    swarm.apply(record("c", 8, DroneState::Idle, &[]));
    let new = Snapshot::of(&swarm, 10_300, true);
    let delta = Delta::between(&old, &new).expect("changes");
    let names: Vec<&str> = delta.drones.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["b", "c"], "only the changed and the new drone");
    assert!(delta.summary.is_some());
    assert!(delta.failures.is_none());
    let mut rebuilt = old.clone();
    delta.apply_to(&mut rebuilt);
    assert_eq!(rebuilt, new);
    // A drone that disappears is named in `removed`.
    let mut fewer = new.clone();
    fewer.drones.remove(0);
    let delta = Delta::between(&new, &fewer).expect("changes");
    assert_eq!(delta.removed, ["a"]);
    let mut rebuilt = new.clone();
    delta.apply_to(&mut rebuilt);
    assert_eq!(rebuilt, fewer);
}

#[test]
fn push_messages_are_tagged() {
    let swarm = Swarm::new(1);
    let snap = Snapshot::of(&swarm, 1, false);
    let text = serde_json::to_string(&Push::Snapshot {
        state: Box::new(snap.clone()),
    })
    .expect("serializes");
    assert!(
        text.starts_with(r#"{"type":"snapshot","state":{"#),
        "{text}"
    );
    let delta = Delta {
        now_ms: 2,
        ready: Some(true),
        ..Delta::default()
    };
    let text = serde_json::to_string(&Push::Delta(Box::new(delta))).expect("serializes");
    assert_eq!(text, r#"{"type":"delta","now_ms":2,"ready":true}"#);
    let back: Push = serde_json::from_str(&text).expect("parses");
    assert!(matches!(back, Push::Delta(_)));
}
