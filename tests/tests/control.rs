//! End-to-end: the operator's control commands, run as `swarmctl` against real drones. A cancel
//! kills a running build's whole process group within 5 s and nothing builds the package
//! again; a retry builds failed packages again with a fresh budget and releases what they
//! blocked; a pause starts nothing new, survives a coordinator restart, and a resume goes on;
//! a drain and a ground stop a drone taking work until it is ungrounded.

use std::time::{Duration, Instant};

use nix::sys::signal::killpg;
use nix::unistd::Pid;
use schemas::{PackageRecord, PackageState, names};
use swarm_tests::*;

/// Waits until `ready` holds for the package's record.
async fn wait_for(
    swarm: &Swarm,
    atom: &str,
    what: &str,
    ready: impl Fn(&PackageRecord) -> bool,
) -> PackageRecord {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(record) = swarm.packages().await.remove(atom)
            && ready(&record)
        {
            return record;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The builds started so far, in order: (atom, pid).
fn starts(swarm: &Swarm) -> Vec<(String, u32)> {
    swarm
        .records()
        .into_iter()
        .filter(|r| r.phase == "start")
        .map(|r| (r.atom, r.pid))
        .collect()
}

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
        if let Some(start) = starts(&swarm).into_iter().next() {
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
    wait_for(&swarm, &building, "the build's claim", |r| {
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
        let record = wait_for(&swarm, atom, "cancelled", |r| {
            matches!(r.state, PackageState::Cancelled { .. })
        })
        .await;
        assert!(record.state.is_final());
    }
    // Never retried, never taken again: the queued job left the work stream, the drone is
    // idle (not grounded: nobody's build failed) and builds nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(starts(&swarm).len(), 1, "{:?}", starts(&swarm));
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
    wait_for(&swarm, "dev-test/base", "failed for good", |r| {
        matches!(r.state, PackageState::Failed { attempt: 2, .. })
    })
    .await;
    wait_for(&swarm, "dev-test/top", "blocked", |r| {
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
    while starts(&swarm).is_empty() {
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, text) = swarm.swarmctl_text(&["pause", "--reason", "kernel update"]);
    assert!(ok, "{text}");
    assert!(text.contains("paused"), "{text}");
    let (_, status) = swarm.swarmctl_text(&["status"]);
    assert!(status.contains("PAUSED by the operator"), "{status}");

    // The running build finishes; nothing new starts, also after the coordinator restarts.
    let first = wait_for(
        &swarm,
        &starts(&swarm)[0].0,
        "the running build's end",
        |r| r.state.is_final(),
    )
    .await;
    assert_eq!(first.state.label(), "succeeded");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(starts(&swarm).len(), 1, "a build started while paused");
    if let Some(mut coordinator) = swarm.coordinator.take() {
        coordinator.kill9();
    }
    swarm.spawn_coordinator();
    swarm.wait_coordinator().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(starts(&swarm).len(), 1, "a build started while paused");
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
    while starts(&swarm).is_empty() {
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, text) = swarm.swarmctl_text(&["drain", "d-a"]);
    assert!(ok, "{text}");
    assert!(text.contains("draining"), "{text}");
    wait_drone_state(&swarm, "d-a", "draining").await;
    // What it builds finishes; it takes nothing new.
    wait_for(
        &swarm,
        &starts(&swarm)[0].0,
        "the running build's end",
        |r| r.state.is_final(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(starts(&swarm).len(), 1, "a draining drone took work");
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
    assert_eq!(starts(&swarm).len(), 2, "a grounded drone took work");
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
    let order: Vec<String> = starts(&swarm).into_iter().map(|(atom, _)| atom).collect();
    let mut first: Vec<&str> = order[..2].iter().map(String::as_str).collect();
    first.sort_unstable();
    assert_eq!(first, ["dev-test/urgent1", "dev-test/urgent2"], "{order:?}");
    assert_eq!(order[2..8], normal[..], "{order:?}");
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
    while starts(&swarm).is_empty() {
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, text) = swarm.swarmctl_text(&["submit", "--priority", "high", "dev-test/urgent"]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(7, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let order: Vec<String> = starts(&swarm).into_iter().map(|(atom, _)| atom).collect();
    // It starts as soon as the slot frees: after the build running when it was submitted, and
    // at most one more the drone had already been handed.
    let at = order
        .iter()
        .position(|a| a == "dev-test/urgent")
        .expect("built");
    assert!((1..=2).contains(&at), "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_every_attempt_across_runs_and_restarts() {
    let nats = testkit::NatsServer::builder()
        .sync_always(true)
        .start()
        .expect("nats-server");
    let mut swarm = Swarm::start_on(nats, None, &[]).await;
    swarm.wait_coordinator().await;
    // Attempt 1 fails (the package's fault), attempt 2 succeeds.
    swarm.spawn_drone(
        &DroneSpec::new("h-a", 2, 1)
            .env("SWARM_TEST_FAIL_BELOW_ATTEMPT", "2")
            .env("SWARM_DRONE__GROUND_AFTER_FAILURES", "100"),
    );
    let atom = "dev-test/storied";
    let (ok, text) = swarm.swarmctl_text(&["submit", "--run", "first-run", atom]);
    assert!(ok, "{text}");
    swarm.wait_final(1, Duration::from_secs(60)).await;
    // Submitted again in another run: its record starts over, its history does not.
    let (ok, text) = swarm.swarmctl_text(&["submit", "--run", "second-run", atom]);
    assert!(ok, "{text}");
    wait_for(&swarm, atom, "the second run's build", |r| {
        r.run
            .as_ref()
            .is_some_and(|run| run.as_str() == "second-run")
            && r.state.is_final()
    })
    .await;

    // Every component restarts: the coordinator, nats-server (kill -9), the drone.
    swarm.drone("h-a").kill9();
    if let Some(mut coordinator) = swarm.coordinator.take() {
        coordinator.kill9();
    }
    swarm.nats.restart().expect("nats-server restarts");
    swarm.spawn_coordinator();
    swarm.wait_coordinator().await;

    let lines = swarm.swarmctl_json(&["history", atom]);
    let rows: Vec<(&str, u64, &str, &str, &str)> = lines
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| {
            (
                l["run"].as_str().unwrap_or_default(),
                l["attempt"].as_u64().unwrap_or_default(),
                l["drone"].as_str().unwrap_or_default(),
                l["outcome"].as_str().unwrap_or_default(),
                l["result"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("first-run", 1, "h-a", "failed", "retry_wait"),
            ("first-run", 2, "h-a", "succeeded", "succeeded"),
            ("second-run", 1, "h-a", "failed", "retry_wait"),
            ("second-run", 2, "h-a", "succeeded", "succeeded"),
        ],
        "{lines}"
    );
    assert_eq!(lines[0]["class"], "package", "{lines}");
    assert_eq!(lines[0]["exit"], "exit status 1", "{lines}");
    assert!(lines[1]["duration_ms"].as_u64().is_some(), "{lines}");
    let (ok, text) = swarm.swarmctl_text(&["history", atom]);
    assert!(ok, "{text}");
    assert!(text.starts_with("RUN "), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    // A package never built has no history: said, exit 1.
    let out = swarm.swarmctl(&["history", "dev-test/unknown"]);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_draws_a_bar_until_its_run_ends_and_exits_with_its_status() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    swarm.spawn_drone(
        &DroneSpec::new("w-a", 4, 2)
            .env("SWARM_TEST_SLEEP", "0.4")
            .env("SWARM_TEST_FAIL_ATOMS", "dev-test/broken")
            .env("SWARM_DRONE__GROUND_AFTER_FAILURES", "100"),
    );
    let good: Vec<String> = (1..=6).map(|n| format!("dev-test/good{n}")).collect();
    let mut args = vec!["submit", "--run", "w-good"];
    args.extend(good.iter().map(String::as_str));
    let (ok, text) = swarm.swarmctl_text(&args);
    assert!(ok, "{text}");
    let (ok, text) = swarm.swarmctl_text(&["submit", "--run", "w-bad", "dev-test/broken"]);
    assert!(ok, "{text}");

    // In a terminal (a pseudo-terminal by `script`), the bar is drawn while the run builds.
    let watch = swarm.swarmctl_command(&[]);
    let mut line = format!("{}", watch.get_program().to_string_lossy());
    line.push_str(" watch --run w-good --timeout 60");
    let envs: Vec<(String, String)> = watch
        .get_envs()
        .filter_map(|(k, v)| {
            Some((
                k.to_string_lossy().into_owned(),
                v?.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .envs(envs)
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("/6 done"), "no bar drawn: {text}");
    assert!(text.contains("ETA"), "{text}");
    assert!(text.contains("all 6 packages succeeded"), "{text}");

    // Without a terminal: lines instead of a bar, and the run's status as the exit code.
    let out = swarm.swarmctl(&["watch", "--run", "w-bad", "--timeout", "60"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 packages succeeded, 1 failed"), "{text}");
    assert!(text.contains("dev-test/broken"), "{text}");
}
