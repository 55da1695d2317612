//! End-to-end: retries keep the command unchanged; grounding and `swarmctl unground`.

use std::time::{Duration, Instant};

use schemas::{BuildOutcome, PackageState, SubmitResult};
use swarm_tests::*;

/// Fails on attempts 1 and 2, succeeds on 3: the three argv vectors are identical, the package
/// ends `succeeded` and leaves the queue, and its history holds the two failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fail_succeed_keeps_the_argv_and_leaves_the_queue() {
    let mut swarm = Swarm::start().await;
    for name in ["r-a", "r-b"] {
        swarm.spawn_drone(&DroneSpec::new(name, 2, 1).env("SWARM_TEST_FAIL_BELOW_ATTEMPT", "3"));
    }
    let atom = ">=dev-libs/flaky-1.0:0::gentoo";
    assert!(matches!(
        submit(&swarm.nats, &[(atom.to_owned(), None)]).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    let packages = swarm.wait_final(1, Duration::from_secs(60)).await;
    let record = &packages[atom];
    assert!(
        matches!(record.state, PackageState::Succeeded { attempt: 3, .. }),
        "{:?}",
        record.state
    );
    assert_eq!(record.history.len(), 3);
    assert!(matches!(
        record.history[0].outcome,
        BuildOutcome::Failed { .. }
    ));
    assert!(matches!(
        record.history[1].outcome,
        BuildOutcome::Failed { .. }
    ));
    assert!(matches!(record.history[2].outcome, BuildOutcome::Succeeded));
    // A retry goes to another drone when one is available.
    assert_ne!(record.history[0].drone, record.history[1].drone);
    let builds = builds(&swarm.records());
    assert_eq!(builds.len(), 3);
    let mut attempts: Vec<u32> = builds.iter().map(|b| b.attempt).collect();
    attempts.sort();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(builds.iter().all(|b| b.argv == atom), "{builds:?}");
    let out = swarm.swarmctl(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["queue"], 0, "{status}");
    assert_eq!(status["packages"]["succeeded"], 1);
}

/// A drone whose builds of different packages fail three times in a row for the machine's
/// fault (its disk is full) grounds itself and pulls nothing more; `swarmctl unground` returns
/// it to work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drone_grounds_itself_and_swarmctl_ungrounds_it() {
    let mut swarm = Swarm::start_with(&[("SWARM_COORDINATOR__MAX_ATTEMPTS", "5")]).await;
    swarm.spawn_drone(
        &DroneSpec::new("g-bad", 2, 1)
            .env("SWARM_TEST_FAIL_ALWAYS", "1")
            .env(
                "SWARM_TEST_FAIL_MESSAGE",
                "cc1: error while writing: No space left on device",
            )
            // The packages it gives back wait for other drones long enough that it meets three
            // different ones before any comes back to it.
            .env("SWARM_DRONE__AVOID_DELAY_MS", "5000"),
    );
    let items: Vec<(String, Option<f64>)> = (0..6)
        .map(|i| (format!("=dev-test/ground-1.{i}"), None))
        .collect();
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted { queued: 6, .. }
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let drones = loop {
        let out = swarm.swarmctl(&["drones", "--json"]);
        let drones: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        if drones[0]["state"] == "grounded" {
            break drones;
        }
        assert!(Instant::now() < deadline, "not grounded: {drones}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        drones[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("3 builds"),
        "{drones}"
    );
    // Grounded: nothing more is pulled.
    let failed_builds = builds(&swarm.records()).len();
    assert_eq!(failed_builds, 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        builds(&swarm.records()).len(),
        3,
        "a grounded drone kept building"
    );
    let status = swarm.swarmctl(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("1 grounded"), "{text}");
    assert!(text.contains("PAUSED"), "{text}");

    // A healthy drone joins; the bad one is ungrounded and works (and fails) again.
    swarm.spawn_drone(&DroneSpec::new("g-good", 2, 1));
    let out = swarm.swarmctl(&["unground", "g-bad"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packages = swarm.wait_final(6, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    assert!(
        builds(&swarm.records())
            .iter()
            .filter(|b| b.drone == "g-bad")
            .count()
            > 3
    );
    // Ungrounding a drone that is not grounded is refused with exit 1.
    let out = swarm.swarmctl(&["unground", "g-good"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A duplicate submission of a queued or building package is idempotent; a submission of a
/// finished package queues a rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_submissions_are_idempotent() {
    let mut swarm = Swarm::start().await;
    let atom = "app-misc/dup";
    let items = vec![(atom.to_owned(), None), (atom.to_owned(), None)];
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted {
            queued: 1,
            already_queued: 1,
            ..
        }
    ));
    assert!(matches!(
        submit(&swarm.nats, &items[..1]).await,
        SubmitResult::Accepted {
            queued: 0,
            already_queued: 1,
            ..
        }
    ));
    swarm.spawn_drone(&DroneSpec::new("dup-a", 2, 1).env("SWARM_TEST_SLEEP", "1"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while builds(&swarm.records()).is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While it builds.
    assert!(matches!(
        submit(&swarm.nats, &items[..1]).await,
        SubmitResult::Accepted {
            queued: 0,
            already_queued: 1,
            ..
        }
    ));
    swarm.wait_final(1, Duration::from_secs(20)).await;
    assert_eq!(builds(&swarm.records()).len(), 1);
    // Finished: a new submission is a rebuild.
    assert!(matches!(
        submit(&swarm.nats, &items[..1]).await,
        SubmitResult::Accepted {
            queued: 1,
            already_queued: 0,
            ..
        }
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let packages = swarm.packages().await;
        if packages[atom].submission == 2 && packages[atom].state.is_final() {
            assert!(matches!(
                packages[atom].state,
                PackageState::Succeeded { .. }
            ));
            break;
        }
        assert!(Instant::now() < deadline, "rebuild did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(builds(&swarm.records()).len(), 2);
}
