//! End-to-end, at the default timings (heartbeat 2 s, lease 30 s, ack wait 60 s): a drone that
//! dies or freezes in the middle of builds has them restarted on the other drones within 15 s,
//! each package built with one result recorded, and never two builds of one package at once.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use schemas::{PackageState, SubmitResult};
use swarm_tests::invariants::{Observer, completed_builds};
use swarm_tests::*;

/// The goal at default settings: a dead drone's builds start again elsewhere this soon.
const GOAL: Duration = Duration::from_secs(15);
const MINUTE: Duration = Duration::from_secs(60);

/// The coordinator's and the drones' default timings (the harness shortens them otherwise).
async fn default_swarm() -> Swarm {
    Swarm::start_with(&[
        ("SWARM_COORDINATOR__LEASE_TTL_MS", "30000"),
        ("SWARM_COORDINATOR__ACK_WAIT_MS", "60000"),
        ("SWARM_COORDINATOR__RECONCILE_INTERVAL_MS", "5000"),
    ])
    .await
}

fn drone(name: &str, sleep: &str) -> DroneSpec {
    DroneSpec::new(name, 4, 2)
        .env("SWARM_TEST_SLEEP", sleep)
        .env("SWARM_DRONE__HEARTBEAT_MS", "2000")
}

async fn submit_six(swarm: &Swarm, prefix: &str) -> Vec<String> {
    let atoms: Vec<String> = (0..6)
        .map(|i| format!("=dev-test/{prefix}-1.{i}"))
        .collect();
    let items: Vec<(String, Option<f64>)> = atoms.iter().map(|a| (a.clone(), None)).collect();
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted { queued: 6, .. }
    ));
    atoms
}

/// The packages `drone` was building when it was stopped, and when each started again on
/// another drone, in ms after `stopped_ms`.
fn restarts(builds: &[Build], drone: &str, victims: &HashSet<String>, stopped_ms: u64) -> Vec<u64> {
    victims
        .iter()
        .map(|atom| {
            builds
                .iter()
                .filter(|b| &b.atom == atom && b.drone != drone && b.start_ms >= stopped_ms)
                .map(|b| b.start_ms - stopped_ms)
                .min()
                .unwrap_or_else(|| panic!("{atom} never started again elsewhere: {builds:?}"))
        })
        .collect()
}

fn assert_each_built_once(
    swarm: &Swarm,
    packages: &std::collections::HashMap<String, schemas::PackageRecord>,
) {
    let ok = successes(&builds(&swarm.records()));
    for (atom, record) in packages {
        assert!(
            matches!(record.state, PackageState::Succeeded { .. }),
            "{atom}: {:?}",
            record.state
        );
        assert_eq!(
            ok.get(atom),
            Some(&1),
            "{atom} succeeded {:?} times",
            ok.get(atom)
        );
    }
}

/// `kill -9` of a drone with two builds running: both start again on the other drones within
/// 15 s (not after the 60 s ack wait), and each package is built once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_drones_builds_restart_elsewhere_within_fifteen_seconds() {
    let mut swarm = default_swarm().await;
    // The victim's builds outlast the takeover; the others' end before it, so that they are free.
    swarm.spawn_drone(&drone("t-dead", "30"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let atoms = submit_six(&swarm, "takeover").await;
    let started = swarm
        .wait_for_builds("t-dead to build two", MINUTE, |b| {
            b.iter().filter(|b| b.drone == "t-dead").count() == 2
        })
        .await;
    for name in ["t-a", "t-b"] {
        swarm.spawn_drone(&drone(name, "2"));
    }
    let victims: HashSet<String> = started.iter().map(|b| b.atom.clone()).collect();
    // Let the others take the rest of the queue first.
    swarm
        .wait_for_builds("the others to build", MINUTE, |b| {
            b.iter().filter(|b| b.drone != "t-dead").count() >= 4
        })
        .await;
    let killed_ms = runtime::now_ms();
    swarm.drone("t-dead").kill9();
    let packages = swarm.wait_final(6, Duration::from_secs(90)).await;
    assert_eq!(packages.len(), atoms.len());
    let after = restarts(&builds(&swarm.records()), "t-dead", &victims, killed_ms);
    println!("kill -9 → restarted elsewhere after {after:?} ms");
    for ms in &after {
        assert!(
            Duration::from_millis(*ms) <= GOAL,
            "restarted {ms} ms after the kill, the goal is {GOAL:?}"
        );
    }
    assert_each_built_once(&swarm, &packages);
}

/// `SIGSTOP` of a drone with a build running: the build's supervisor kills it before the
/// coordinator gives the package to another drone (the two never overlap), which happens within
/// 15 s; thawed, the frozen drone records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_drones_build_dies_before_it_restarts_elsewhere_within_fifteen_seconds() {
    let mut swarm = default_swarm().await;
    let observer = Observer::start(swarm.record_file());
    swarm.spawn_drone(&drone("f-frozen", "40"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let items = vec![("=dev-test/thaw-1.0".to_owned(), None)];
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    swarm
        .wait_for_builds("the build to start", MINUTE, |b| !b.is_empty())
        .await;
    swarm.spawn_drone(&drone("f-other", "1"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen_ms = runtime::now_ms();
    swarm.drone("f-frozen").signal(Signal::SIGSTOP);
    swarm
        .wait_for_builds("the takeover", MINUTE, |b| {
            b.iter().any(|b| b.drone == "f-other")
        })
        .await;
    let packages = swarm.wait_final(1, Duration::from_secs(60)).await;
    swarm.drone("f-frozen").signal(Signal::SIGCONT);
    let completed = completed_builds(&swarm.record_file(), &observer);
    let killed_at = completed
        .iter()
        .find(|b| b.drone == "f-frozen")
        .and_then(|b| b.end_ms)
        .expect("the frozen drone's build died");
    let taken_at = completed
        .iter()
        .find(|b| b.drone == "f-other")
        .map(|b| b.start_ms)
        .expect("the takeover");
    println!(
        "SIGSTOP → build killed by its supervisor after {} ms, restarted elsewhere after {} ms",
        killed_at - frozen_ms,
        taken_at - frozen_ms
    );
    assert!(
        killed_at < taken_at,
        "the frozen build ran until {killed_at}, the takeover started at {taken_at}"
    );
    assert!(Duration::from_millis(taken_at - frozen_ms) <= GOAL);
    assert_each_built_once(&swarm, &packages);
    // Thawed: whatever the frozen drone does now is fenced.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = swarm
        .packages()
        .await
        .remove("=dev-test/thaw-1.0")
        .expect("package");
    match &record.state {
        PackageState::Succeeded { drone, .. } => assert_eq!(drone.as_str(), "f-other"),
        other => panic!("{other:?}"),
    }
    assert_eq!(record.history.len(), 1, "{:?}", record.history);
}
