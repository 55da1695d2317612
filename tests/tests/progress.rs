//! End-to-end: following the swarm. `swarmctl history` keeps every ended attempt across runs
//! and restarts of every component; `swarmctl watch` draws its bar in a terminal until the run
//! ends and exits with the run's status.

use std::time::Duration;

use swarm_tests::*;

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
    swarm
        .wait_for_package(atom, "the second run's build", |r| {
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
