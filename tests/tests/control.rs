//! End-to-end: the operator's control commands, run as `swarmctl` against real drones. A cancel
//! kills a running build's whole process group within 5 s and nothing builds the package
//! again; a retry builds failed packages again with a fresh budget and releases what they
//! blocked; a pause starts nothing new, survives a coordinator restart, and a resume goes on;
//! a drain and a ground stop a drone taking work until it is ungrounded. (Priorities are in
//! `priorities.rs`, `history` and `watch` in `progress.rs`.)

use std::time::{Duration, Instant};

use nix::sys::signal::killpg;
use nix::unistd::Pid;
use schemas::{PackageState, names};
use swarm_tests::*;

/// The process group of a running process (field 5 of /proc/<pid>/stat).
fn process_group(pid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the build runs");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    after
        .split(' ')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .expect("pgrp")
}

fn drone_state(swarm: &Swarm, name: &str) -> serde_json::Value {
    let drones = swarm.swarmctl_json(&["drones"]);
    drones
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == name).cloned())
        .unwrap_or_default()
}

async fn wait_drone_state(swarm: &Swarm, name: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let drone = drone_state(swarm, name);
        if drone["state"] == state {
            return drone;
        }
        assert!(Instant::now() < deadline, "{name} never {state}: {drone}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_running_build_and_nothing_builds_it_again() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    // One slot and builds of ten minutes: one package builds, the other stays queued.
    swarm.spawn_drone(&DroneSpec::new("c-a", 2, 1).env("SWARM_TEST_SLEEP", "600"));
    let (ok, text) = swarm.swarmctl_text(&["submit", "dev-test/first", "dev-test/second"]);
    assert!(ok, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (building, pid) = loop {
        if let Some(start) = swarm.starts().into_iter().next() {
            break start;
        }
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let queued = if building == "dev-test/first" {
        "dev-test/second"
    } else {
        "dev-test/first"
    };
    swarm
        .wait_for_package(&building, "the build's claim", |r| {
            matches!(r.state, PackageState::Building { .. })
        })
        .await;
    let group = Pid::from_raw(process_group(pid));

    let asked = Instant::now();
    let (ok, text) = swarm.swarmctl_text(&["cancel", &building, queued]);
    assert!(ok, "{text}");
    assert!(text.starts_with("2 cancelled"), "{text}");
    // The build's whole process group (the script and its `sleep`) is gone within 5 s.
    while killpg(group, None).is_ok() {
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the cancelled build still runs after {:?}",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "cancelled build's process group gone {:?} after the request",
        asked.elapsed()
    );

    for atom in [building.as_str(), queued] {
        let record = swarm
            .wait_for_package(atom, "cancelled", |r| {
                matches!(r.state, PackageState::Cancelled { .. })
            })
            .await;
        assert!(record.state.is_final());
    }
    // Never retried, never taken again: the queued job left the work stream, the drone is
    // idle (not grounded: nobody's build failed) and builds nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(swarm.starts().len(), 1, "{:?}", swarm.starts());
    let packages = swarm.packages().await;
    for atom in [building.as_str(), queued] {
        assert_eq!(packages[atom].state.label(), "cancelled", "{atom}");
    }
    let js = async_nats::jetstream::new(swarm.client().await);
    let mut builds = js.get_stream(names::BUILDS_STREAM).await.expect("stream");
    assert_eq!(builds.info().await.expect("info").state.messages, 0);
    assert_eq!(drone_state(&swarm, "c-a")["state"], "idle");

    let listed = swarm.swarmctl_json(&["packages", "--state", "cancelled"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(listed[0]["reason"], "cancelled by the operator", "{listed}");
    let status = swarm.swarmctl_json(&["status"]);
    assert_eq!(status["packages"]["cancelled"], 2, "{status}");
    assert_eq!(status["status"], "IDLE", "{status}");

    // Cancelling again changes nothing and says why (exit 1); naming nothing known is an error.
    let out = swarm.swarmctl(&["cancel", queued]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("already cancelled"), "{text}");
    let out = swarm.swarmctl(&["cancel", "dev-test/never"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("dev-test/never") && text.contains("code 404"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_builds_failed_packages_again_and_releases_what_they_blocked() {
    let mut swarm = Swarm::start_with(&[("SWARM_COORDINATOR__MAX_ATTEMPTS", "2")]).await;
    swarm.wait_coordinator().await;
    swarm.spawn_drone(
        &DroneSpec::new("r-bad", 2, 1)
            .env("SWARM_TEST_FAIL_ATOMS", "dev-test/base")
            .env("SWARM_DRONE__GROUND_AFTER_FAILURES", "100"),
    );
    let file = swarm.dir.path().join("run.tsv");
    std::fs::write(
        &file,
        "dev-test/base\t1\tsmall\t-\ndev-test/top\t1\tsmall\tdev-test/base\n",
    )
    .expect("run file");
    let (ok, text) = swarm.swarmctl_text(&[
        "submit",
        "--run",
        "nightly-7",
        "--file",
        &file.display().to_string(),
    ]);
    assert!(ok, "{text}");
    swarm
        .wait_for_package("dev-test/base", "failed for good", |r| {
            matches!(r.state, PackageState::Failed { attempt: 2, .. })
        })
        .await;
    swarm
        .wait_for_package("dev-test/top", "blocked", |r| {
            matches!(r.state, PackageState::Blocked { .. })
        })
        .await;

    // The package is fixed (here: a drone that builds it); every failed package of the run is
    // built again, from attempt 1, and the one it blocked follows.
    swarm.drone("r-bad").kill9();
    swarm.spawn_drone(&DroneSpec::new("r-good", 2, 1));
    let (ok, text) = swarm.swarmctl_text(&["retry", "--failed", "--run", "nightly-7"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("1 queued again with a fresh attempt budget"),
        "{text}"
    );
    assert!(text.contains("dev-test/base"), "{text}");
    let packages = swarm.wait_final(2, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let base = &packages["dev-test/base"];
    assert!(
        matches!(&base.state, PackageState::Succeeded { attempt: 1, drone } if drone.as_str() == "r-good"),
        "{:?}",
        base.state
    );
    // A fresh budget: the record starts over, as a new submission's does.
    assert_eq!(base.history.len(), 1, "{:?}", base.history);

    // A package that did not fail is left as it is (exit 1, with the reason); an unknown run is
    // an error.
    let out = swarm.swarmctl(&["retry", "dev-test/base"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("is succeeded"), "{text}");
    let out = swarm.swarmctl(&["retry", "--failed", "--run", "nightly-8"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("no run named nightly-8"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_starts_nothing_new_until_resume_even_across_a_coordinator_restart() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    swarm.spawn_drone(&DroneSpec::new("p-a", 2, 1).env("SWARM_TEST_SLEEP", "1.5"));
    let (ok, text) = swarm.swarmctl_text(&["submit", "dev-test/p1", "dev-test/p2", "dev-test/p3"]);
    assert!(ok, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while swarm.starts().is_empty() {
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, text) = swarm.swarmctl_text(&["pause", "--reason", "kernel update"]);
    assert!(ok, "{text}");
    assert!(text.contains("paused"), "{text}");
    let (_, status) = swarm.swarmctl_text(&["status"]);
    assert!(status.contains("PAUSED by the operator"), "{status}");

    // The running build finishes; nothing new starts, also after the coordinator restarts.
    let first = swarm
        .wait_for_package(&swarm.starts()[0].0, "the running build's end", |r| {
            r.state.is_final()
        })
        .await;
    assert_eq!(first.state.label(), "succeeded");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(swarm.starts().len(), 1, "a build started while paused");
    if let Some(mut coordinator) = swarm.coordinator.take() {
        coordinator.kill9();
    }
    swarm.spawn_coordinator();
    swarm.wait_coordinator().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(swarm.starts().len(), 1, "a build started while paused");
    let status = swarm.swarmctl_json(&["status"]);
    assert_eq!(status["operator_paused"], true, "{status}");
    assert_eq!(status["status"], "PAUSED", "{status}");
    let why = swarm.swarmctl_json(&["packages", "--state", "queued"]);
    assert!(
        why[0]["why"]
            .as_str()
            .unwrap_or_default()
            .contains("paused"),
        "{why}"
    );

    let (ok, text) = swarm.swarmctl_text(&["resume"]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(3, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let status = swarm.swarmctl_json(&["status"]);
    assert_eq!(status["operator_paused"], false, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_ground_stop_a_drone_taking_work_until_unground() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    swarm.spawn_drone(&DroneSpec::new("d-a", 2, 1).env("SWARM_TEST_SLEEP", "1.5"));
    wait_drone_state(&swarm, "d-a", "idle").await;
    let (ok, text) = swarm.swarmctl_text(&["submit", "dev-test/d1", "dev-test/d2"]);
    assert!(ok, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while swarm.starts().is_empty() {
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, text) = swarm.swarmctl_text(&["drain", "d-a"]);
    assert!(ok, "{text}");
    assert!(text.contains("draining"), "{text}");
    wait_drone_state(&swarm, "d-a", "draining").await;
    // What it builds finishes; it takes nothing new.
    swarm
        .wait_for_package(&swarm.starts()[0].0, "the running build's end", |r| {
            r.state.is_final()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(swarm.starts().len(), 1, "a draining drone took work");
    assert_eq!(drone_state(&swarm, "d-a")["state"], "draining");

    let (ok, text) = swarm.swarmctl_text(&["unground", "d-a"]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(2, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");

    let (ok, text) = swarm.swarmctl_text(&["ground", "d-a", "--reason", "disk swap"]);
    assert!(ok, "{text}");
    let drone = wait_drone_state(&swarm, "d-a", "grounded").await;
    assert!(
        drone["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("disk swap"),
        "{drone}"
    );
    let (ok, text) = swarm.swarmctl_text(&["submit", "dev-test/d3"]);
    assert!(ok, "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(swarm.starts().len(), 2, "a grounded drone took work");
    let (ok, text) = swarm.swarmctl_text(&["unground", "d-a"]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(3, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");

    // Ungrounding a working drone is refused by the drone (exit 1); an unknown drone is an
    // error naming it.
    let out = swarm.swarmctl(&["unground", "d-a"]);
    assert_eq!(out.status.code(), Some(1));
    let out = swarm.swarmctl(&["drain", "d-nobody"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("no drone named d-nobody"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_run_withdraws_every_unfinished_package_of_the_run_only() {
    let swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    // No drone: every job waits in the work stream.
    for (run, atom) in [
        ("c-run", "dev-test/in-run1"),
        ("c-run", "dev-test/in-run2"),
        ("c-other", "dev-test/other"),
    ] {
        let (ok, text) = swarm.swarmctl_text(&["submit", "--run", run, atom]);
        assert!(ok, "{text}");
    }
    let (ok, text) = swarm.swarmctl_text(&["cancel", "--run", "c-run"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("2 cancelled"), "{text}");
    let packages = swarm.packages().await;
    assert_eq!(packages["dev-test/in-run1"].state.label(), "cancelled");
    assert_eq!(packages["dev-test/in-run2"].state.label(), "cancelled");
    assert_eq!(packages["dev-test/other"].state.label(), "queued");
    // Their jobs left the work stream; the other run's stays.
    let js = async_nats::jetstream::new(swarm.client().await);
    let mut builds = js.get_stream(names::BUILDS_STREAM).await.expect("stream");
    assert_eq!(builds.info().await.expect("info").state.messages, 1);
    let out = swarm.swarmctl(&["cancel", "--run", "c-none"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run named c-none"));
}
