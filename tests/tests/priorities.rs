//! End-to-end: priorities (`swarmctl submit --priority`). Every queued package of a higher
//! priority starts before any of a lower one not yet handed to a drone, whenever it was queued.

use std::time::{Duration, Instant};

use swarm_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_package_overtakes_a_queue_of_normal_ones() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    // Queued in this order while no drone runs: a low one first, six normal ones, then two high
    // ones.
    let normal: Vec<String> = (1..=6).map(|n| format!("dev-test/normal{n}")).collect();
    let (ok, text) = swarm.swarmctl_text(&["submit", "--priority", "low", "dev-test/low1"]);
    assert!(ok, "{text}");
    let mut args = vec!["submit"];
    args.extend(normal.iter().map(String::as_str));
    let (ok, text) = swarm.swarmctl_text(&args);
    assert!(ok, "{text}");
    let (ok, text) = swarm.swarmctl_text(&[
        "submit",
        "--priority",
        "high",
        "dev-test/urgent1",
        "dev-test/urgent2",
    ]);
    assert!(ok, "{text}");
    // One slot: builds run one after the other, in the order the queue hands them out.
    swarm.spawn_drone(&DroneSpec::new("o-a", 2, 1));
    let packages = swarm.wait_final(9, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let order: Vec<String> = swarm.starts().into_iter().map(|(atom, _)| atom).collect();
    let mut first: Vec<&str> = order[..2].iter().map(String::as_str).collect();
    first.sort_unstable();
    assert_eq!(first, ["dev-test/urgent1", "dev-test/urgent2"], "{order:?}");
    // The normal ones next (published together, concurrently: in any order among themselves).
    let mut middle = order[2..8].to_vec();
    middle.sort();
    assert_eq!(middle, normal, "{order:?}");
    assert_eq!(order[8], "dev-test/low1", "{order:?}");
    assert_eq!(
        packages["dev-test/urgent1"].priority,
        schemas::Priority::High
    );
    assert_eq!(packages["dev-test/low1"].priority, schemas::Priority::Low);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_package_submitted_mid_run_is_next() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    swarm.spawn_drone(&DroneSpec::new("o-b", 2, 1).env("SWARM_TEST_SLEEP", "0.5"));
    let normal: Vec<String> = (1..=6).map(|n| format!("dev-test/normal{n}")).collect();
    let mut args = vec!["submit"];
    args.extend(normal.iter().map(String::as_str));
    let (ok, text) = swarm.swarmctl_text(&args);
    assert!(ok, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while swarm.starts().is_empty() {
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, text) = swarm.swarmctl_text(&["submit", "--priority", "high", "dev-test/urgent"]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(7, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let order: Vec<String> = swarm.starts().into_iter().map(|(atom, _)| atom).collect();
    // It starts as soon as the slot frees: after the build running when it was submitted, and
    // at most one more the drone had already been handed.
    let at = order
        .iter()
        .position(|a| a == "dev-test/urgent")
        .expect("built");
    assert!((1..=2).contains(&at), "{order:?}");
}
