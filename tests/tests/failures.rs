//! End-to-end: each class of failure goes to its own counter. A package's own error spends one
//! of its attempts and leaves the drone's health alone; the machine's fault (a full disk) spends
//! no attempt, counts against the drone and sends the package to another drone; a download
//! that failed spends nothing and counts against no one, and the build is offered again later.

use std::time::{Duration, Instant};

use schemas::{BuildOutcome, FailureClass, PackageRecord, PackageState, SubmitResult};
use swarm_tests::*;

fn classes(record: &PackageRecord) -> Vec<Option<FailureClass>> {
    record
        .history
        .iter()
        .map(|h| match &h.outcome {
            BuildOutcome::Succeeded => None,
            BuildOutcome::Failed { class, .. } => Some(*class),
        })
        .collect()
}

/// A drone that fails every build with `message` (one slot, grounded after one failure of the
/// machine's).
fn failing(name: &str, message: &str) -> DroneSpec {
    DroneSpec::new(name, 2, 1)
        .env("SWARM_TEST_FAIL_ALWAYS", "1")
        .env("SWARM_TEST_FAIL_MESSAGE", message)
        .env("SWARM_DRONE__GROUND_AFTER_FAILURES", "1")
}

async fn submit_one(swarm: &Swarm, atom: &str) {
    assert!(matches!(
        submit(&swarm.nats, &[(atom.to_owned(), None)]).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
}

fn drone_state(swarm: &Swarm, name: &str) -> String {
    let drones = swarm.swarmctl_json(&["drones"]);
    drones
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == name))
        .map(|d| d["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// The drone's state once it is no longer reporting the build it just finished
/// (its status event may arrive after the coordinator recorded the result).
async fn settled_state(swarm: &Swarm, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = drone_state(swarm, name);
        if state != "building" || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_error_spends_an_attempt_and_leaves_the_drone_working() {
    let mut swarm = Swarm::start_with(&[("SWARM_COORDINATOR__MAX_ATTEMPTS", "2")]).await;
    swarm.spawn_drone(&failing(
        "p-a",
        " * ERROR: dev-test/broken-1.0::gentoo failed (compile phase):",
    ));
    let atom = "=dev-test/broken-1.0";
    submit_one(&swarm, atom).await;
    let packages = swarm.wait_final(1, Duration::from_secs(60)).await;
    let record = &packages[atom];
    assert!(
        matches!(record.state, PackageState::Failed { attempt: 2, .. }),
        "both attempts spent: {:?}",
        record.state
    );
    assert_eq!(
        classes(record),
        [Some(FailureClass::Package), Some(FailureClass::Package)]
    );
    match &record.history[0].outcome {
        BuildOutcome::Failed { signature, .. } => assert_eq!(
            signature.as_deref(),
            Some("* ERROR: dev-test/broken-1.0::gentoo failed (compile phase):")
        ),
        other => panic!("{other:?}"),
    }
    // Set to ground itself after a single failure of its own, it is still at work:
    // once its last build's report is in, it is idle, not grounded.
    assert_eq!(settled_state(&swarm, "p-a").await, "idle");
    // `swarmctl packages` names the class and the line.
    let out = swarm.swarmctl(&["packages"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("package: * ERROR: dev-test/broken-1.0::gentoo failed (compile phase):"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_machines_fault_spends_no_attempt_and_grounds_the_drone() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(&failing(
        "i-full",
        "cc1: error while writing: No space left on device",
    ));
    let atom = "=dev-test/innocent-1.0";
    submit_one(&swarm, atom).await;
    let record = swarm
        .wait_for_package(atom, "the failure to be recorded", |r| {
            !r.history.is_empty()
        })
        .await;
    assert_eq!(classes(&record), [Some(FailureClass::Infrastructure)]);
    assert_eq!(
        record.state,
        PackageState::Queued { attempt: 1 },
        "the attempt is not spent"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while drone_state(&swarm, "i-full") != "grounded" {
        assert!(Instant::now() < deadline, "the full drone did not ground");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another drone builds it, as attempt 1.
    swarm.spawn_drone(&DroneSpec::new("i-good", 2, 1));
    let packages = swarm.wait_final(1, Duration::from_secs(60)).await;
    let record = &packages[atom];
    match &record.state {
        PackageState::Succeeded { attempt, drone } => {
            assert_eq!((*attempt, drone.as_str()), (1, "i-good"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(classes(record), [Some(FailureClass::Infrastructure), None]);
    let out = swarm.swarmctl(&["packages"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("infrastructure: cc1: error while writing: No space left on device"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_download_is_tried_again_later_and_counts_against_no_one() {
    let mut swarm = Swarm::start_with(&[("SWARM_COORDINATOR__MAX_ATTEMPTS", "1")]).await;
    swarm.spawn_drone(
        &failing("f-a", "!!! Couldn't download 'gone-1.0.tar.xz'. Aborting.")
            .env("SWARM_DRONE__FETCH_RETRY_MS", "500"),
    );
    let atom = "=dev-test/gone-1.0";
    submit_one(&swarm, atom).await;
    // Tried again and again, with a single attempt allowed: none is spent.
    let record = swarm
        .wait_for_package(atom, "three tries", |r| r.history.len() >= 3)
        .await;
    assert!(
        classes(&record)
            .iter()
            .all(|c| *c == Some(FailureClass::Fetch)),
        "{:?}",
        record.history
    );
    assert!(
        matches!(
            record.state,
            PackageState::Queued { attempt: 1 } | PackageState::Building { attempt: 1, .. }
        ),
        "{:?}",
        record.state
    );
    // Set to ground itself after a single failure of its own, it is still at work.
    assert_ne!(drone_state(&swarm, "f-a"), "grounded");
}
