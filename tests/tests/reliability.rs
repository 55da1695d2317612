//! The reliability suite: real queues of hundreds of packages on several drones while NATS, the
//! coordinator, the network or a drone's disk fail. After every run the invariant checker
//! (`swarm_tests::invariants`) proves that nothing was lost, nothing was built twice at once and
//! every package ended in the state its reported results justify.
//!
//! The soak runs briefly here; `SWARM_SOAK_SECS=600` makes it run for ten minutes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use schemas::PackageState;
use swarm_tests::invariants::{self, Observer};
use swarm_tests::*;
use testkit::{NatsCluster, NatsServer};

/// Four drones of four slots.
fn drones(prefix: &str, sleep: &str) -> Vec<DroneSpec> {
    (0..4)
        .map(|i| DroneSpec::new(&format!("{prefix}-{i}"), 8, 4).env("SWARM_TEST_SLEEP", sleep))
        .collect()
}

/// Waits until at least `count` packages are final (the fault then hits a run in progress).
async fn wait_finished(swarm: &Swarm, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let done = swarm
            .packages()
            .await
            .values()
            .filter(|p| p.state.is_final())
            .count();
        if done >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {count} packages finished within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_and_restarted_mid_run() {
    let nats = NatsServer::builder()
        .sync_always(true)
        .start()
        .expect("nats-server");
    let mut swarm = Swarm::start_on(nats, None, &[]).await;
    let observer = Observer::start(swarm.record_file());
    for spec in drones("nk", "0.3") {
        swarm.spawn_drone(&spec);
    }
    let atoms = test_atoms("nats-kill", 300);
    swarm.submit_all(&atoms).await;
    wait_finished(&swarm, 60, Duration::from_secs(60)).await;
    // kill -9, and the server comes back on the same port with the same store.
    swarm.nats.restart().expect("nats-server restarts");
    swarm.wait_final(300, Duration::from_secs(180)).await;
    invariants::check(&swarm, "nats-server kill -9 and restart", &atoms, &observer)
        .await
        .assert_ok();
}

/// `swarmctl wait` and `swarmctl watch` started while nats-server is down say that they wait
/// for the server, ride out the outage and report the run once the swarm has finished it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarmctl_wait_and_watch_ride_out_a_nats_restart() {
    let nats = NatsServer::builder()
        .sync_always(true)
        .start()
        .expect("nats-server");
    let mut swarm = Swarm::start_on(nats, None, &[]).await;
    for spec in drones("wr", "0.2") {
        swarm.spawn_drone(&spec);
    }
    let atoms = test_atoms("wait-restart", 60);
    swarm.submit_all(&atoms).await;
    wait_finished(&swarm, 10, Duration::from_secs(60)).await;
    swarm.nats.kill().expect("nats-server killed");
    let followers: Vec<_> = [
        vec!["wait", "--timeout", "120"],
        vec!["watch", "--timeout", "120"],
    ]
    .into_iter()
    .map(|args| {
        swarm
            .swarmctl_command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("swarmctl starts")
    })
    .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    swarm.nats.start_again().expect("nats-server restarts");
    for follower in followers {
        let out = tokio::task::spawn_blocking(move || follower.wait_with_output())
            .await
            .expect("join")
            .expect("swarmctl ends");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(
            stderr.contains("waiting for the NATS server"),
            "it says what it waits for: {stderr} {stdout}"
        );
        assert!(stdout.contains("all 60 packages succeeded"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_and_restarted_mid_run() {
    let mut swarm = Swarm::start().await;
    let observer = Observer::start(swarm.record_file());
    for spec in drones("ck", "0.3") {
        swarm.spawn_drone(&spec.env("SWARM_TEST_FAIL_PERCENT", "10"));
    }
    let atoms = test_atoms("coord-kill", 300);
    swarm.submit_all(&atoms).await;
    // Three times in the run: drones go on building while it is down, their events wait in the
    // stream, and events the dead coordinator had received but not acknowledged come back to the
    // next one only after their AckWait, behind newer ones.
    for done in [60, 120, 180] {
        wait_finished(&swarm, done, Duration::from_secs(60)).await;
        swarm.coordinator.as_mut().expect("coordinator").kill9();
        tokio::time::sleep(Duration::from_secs(2)).await;
        swarm.spawn_coordinator();
    }
    swarm.wait_final(300, Duration::from_secs(180)).await;
    invariants::check(
        &swarm,
        "coordinator kill -9 and restart, three times",
        &atoms,
        &observer,
    )
    .await
    .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drone_cut_off_from_nats_loses_its_lease_and_reports_nothing_stale() {
    let mut swarm = Swarm::start().await;
    let observer = Observer::start(swarm.record_file());
    let proxy = testkit::proxy::TcpProxy::start(
        format!("127.0.0.1:{}", swarm.nats.port())
            .parse()
            .expect("address"),
    )
    .await
    .expect("proxy");
    // The cut-off drone's builds take 2.5 s, longer than the lease, so it is in the middle of
    // them when cut; the others build quickly.
    swarm.spawn_drone(
        &DroneSpec::new("cut", 8, 4)
            .env("SWARM_TEST_SLEEP", "2.5")
            .env("SWARM_NATS__URL", &proxy.url()),
    );
    for name in ["stay-0", "stay-1"] {
        swarm.spawn_drone(&DroneSpec::new(name, 12, 6).env("SWARM_TEST_SLEEP", "0.3"));
    }
    let atoms = test_atoms("partition", 300);
    swarm.submit_all(&atoms).await;
    // Wait for the cut-off drone to be building.
    let deadline = Instant::now() + Duration::from_secs(30);
    let building: HashSet<String> = loop {
        let running: HashSet<String> = builds(&swarm.records())
            .into_iter()
            .filter(|b| b.drone == "cut" && b.end_ms.is_none())
            .map(|b| b.atom)
            .collect();
        if running.len() >= 2 {
            break running;
        }
        assert!(
            Instant::now() < deadline,
            "the drone never started building"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cut_at = runtime::now_ms();
    proxy.cut();
    // Its lease expires and another drone builds what it was building.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let taken: HashSet<String> = builds(&swarm.records())
            .into_iter()
            .filter(|b| b.drone != "cut" && building.contains(&b.atom) && b.start_ms > cut_at)
            .map(|b| b.atom)
            .collect();
        if taken == building {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other drones took over {taken:?} of {building:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The cut-off drone killed those builds itself, before anyone else started them.
    let killed = invariants::completed_builds(&swarm.record_file(), &observer);
    for atom in &building {
        let mine = killed
            .iter()
            .find(|b| &b.atom == atom && b.drone == "cut")
            .expect("its build");
        let theirs = killed
            .iter()
            .filter(|b| &b.atom == atom && b.drone != "cut")
            .map(|b| b.start_ms)
            .min()
            .expect("the takeover");
        let ended = mine.end_ms.expect("the cut-off build was killed");
        assert!(
            mine.exit.is_none(),
            "{atom} ran to its end on the cut-off drone"
        );
        assert!(
            ended < theirs,
            "{atom}: the cut-off build ran until {ended}, the takeover started at {theirs}"
        );
    }
    proxy.restore();
    swarm.wait_final(300, Duration::from_secs(180)).await;
    let verdict = invariants::check(
        &swarm,
        "drone cut off from NATS, then healed",
        &atoms,
        &observer,
    )
    .await;
    // Nothing the cut-off drone built while cut off was reported as a success.
    let reported = invariants::reported_results(&swarm).await;
    for atom in &building {
        assert!(
            !reported
                .iter()
                .any(|r| &r.atom == atom && r.drone == "cut" && r.succeeded),
            "{atom}: the cut-off drone reported a success"
        );
    }
    verdict.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drone_that_cannot_write_its_build_directory_grounds_itself() {
    let mut swarm = Swarm::start().await;
    let observer = Observer::start(swarm.record_file());
    let scratch = tempfile::tempdir().expect("tempdir");
    // A path below a plain file cannot be written, not even by root.
    let blocker = scratch.path().join("not-a-dir");
    std::fs::write(&blocker, "x").expect("file");
    let unwritable = blocker.join("build");
    swarm.spawn_drone(
        &DroneSpec::new("broken-dir", 8, 4)
            .env("SWARM_TEST_SLEEP", "0.2")
            .env("SWARM_DRONE__BUILD_DIR", &unwritable.display().to_string()),
    );
    // And one whose disk is "full": more free space required than any disk has.
    let roomy = tempfile::tempdir().expect("tempdir");
    swarm.spawn_drone(
        &DroneSpec::new("full-disk", 8, 4)
            .env("SWARM_TEST_SLEEP", "0.2")
            .env(
                "SWARM_DRONE__BUILD_DIR",
                &roomy.path().display().to_string(),
            )
            .env("SWARM_DRONE__MIN_FREE_MB", "999999999999"),
    );
    for name in ["healthy-0", "healthy-1"] {
        swarm.spawn_drone(&DroneSpec::new(name, 8, 4).env("SWARM_TEST_SLEEP", "0.2"));
    }
    let atoms = test_atoms("disk", 200);
    swarm.submit_all(&atoms).await;
    let packages = swarm.wait_final(200, Duration::from_secs(120)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    // The two sick drones built nothing and failed no package: every attempt is the first.
    let records = swarm.records();
    assert!(
        records
            .iter()
            .all(|r| r.drone != "broken-dir" && r.drone != "full-disk"),
        "a drone that cannot build built something"
    );
    for (atom, record) in &packages {
        assert_eq!(record.history.len(), 1, "{atom}: {:?}", record.history);
        assert!(matches!(
            record.state,
            PackageState::Succeeded { attempt: 1, .. }
        ));
    }
    // Both are grounded with a reason that names the directory and the fault.
    let drones = swarm.swarmctl_json(&["drones"]);
    let reason = |name: &str| -> String {
        let drone = drones
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == name))
            .unwrap_or_else(|| panic!("{name} missing: {drones}"));
        assert_eq!(drone["state"], "grounded", "{drone}");
        drone["reason"].as_str().unwrap_or_default().to_owned()
    };
    let broken = reason("broken-dir");
    assert!(
        broken.contains(&unwritable.display().to_string()) && broken.contains("not usable"),
        "{broken}"
    );
    let full = reason("full-disk");
    assert!(full.contains("MiB free, below drone.min_free_mb"), "{full}");
    invariants::check(
        &swarm,
        "unwritable and full build directories on two of four drones",
        &atoms,
        &observer,
    )
    .await
    .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_loses_a_node_then_the_work_stream_leader() {
    let cluster = NatsCluster::start(3).expect("a three-node cluster");
    let mut swarm = Swarm::start_on_cluster(cluster, &[("SWARM_COORDINATOR__REPLICAS", "3")]).await;
    // On a failure, the nodes' logs join the swarm's kept directory.
    let logs: Vec<_> = (0..3).map(|i| swarm.node(i).log_file()).collect();
    let _logs = testkit::KeepLogs::new(logs, swarm.dir.path());
    let observer = Observer::start(swarm.record_file());
    for spec in drones("cl", "0.3") {
        swarm.spawn_drone(&spec);
    }
    let atoms = test_atoms("cluster", 300);
    swarm.submit_all(&atoms).await;
    wait_finished(&swarm, 50, Duration::from_secs(60)).await;

    // A node that does not lead the work stream goes, and comes back.
    let leader = work_stream_leader(&swarm).await;
    let follower = (0..3)
        .find(|i| NatsCluster::name(*i) != leader)
        .expect("a follower");
    swarm.node(follower).kill().expect("kill a follower");
    wait_finished(&swarm, 120, Duration::from_secs(60)).await;
    testkit::start_again_patiently(swarm.node(follower), Duration::from_secs(10))
        .expect("the follower restarts");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Then the leader of the work stream goes: a new one is elected and the run goes on.
    let leader = work_stream_leader(&swarm).await;
    let index = (0..3)
        .find(|i| NatsCluster::name(*i) == leader)
        .expect("the leader is a node");
    swarm.node(index).kill().expect("kill the leader");
    swarm.wait_final(300, Duration::from_secs(240)).await;
    let new_leader = work_stream_leader(&swarm).await;
    assert_ne!(new_leader, leader, "a new leader was elected");
    invariants::check(
        &swarm,
        "3-node cluster, R3: a follower killed and restarted, then the work stream's leader killed",
        &atoms,
        &observer,
    )
    .await
    .assert_ok();
}

async fn unfinished(swarm: &Swarm) -> usize {
    swarm
        .packages()
        .await
        .values()
        .filter(|p| !p.state.is_final())
        .count()
}

/// The server name of the work stream's leader.
async fn work_stream_leader(swarm: &Swarm) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let client = swarm.client().await;
        let js = async_nats::jetstream::new(client);
        if let Ok(mut stream) = js.get_stream(schemas::names::BUILDS_STREAM).await
            && let Ok(info) = stream.info().await
            && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
        {
            assert_eq!(info.config.num_replicas, 3, "the work stream is replicated");
            return leader;
        }
        assert!(Instant::now() < deadline, "the work stream has no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Thousands of short builds, one in ten failing, while drones are killed and restarted at
/// random intervals. Briefly by default; `SWARM_SOAK_SECS` sets how long drones keep dying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_failures_and_dying_drones() {
    let soak = std::env::var("SWARM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20);
    // About as many packages as the drones build in the soak time, so they die while busy.
    let packages = (soak as usize * 40).max(1_000);
    let mut swarm = Swarm::start().await;
    let observer = Observer::start(swarm.record_file());
    // The failing builds are the packages' own (chosen by a hash of atom and attempt): they
    // spend the packages' attempts and never ground the healthy drones.
    let specs: Vec<DroneSpec> = drones("soak", "0.2")
        .into_iter()
        .map(|s| s.env("SWARM_TEST_FAIL_PERCENT", "10"))
        .collect();
    for spec in &specs {
        swarm.spawn_drone(spec);
    }
    let atoms = test_atoms("soak", packages);
    swarm.submit_all(&atoms).await;
    // A small deterministic generator: the same kills every run.
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(soak);
    let mut kills = 0;
    while Instant::now() < until && unfinished(&swarm).await > 0 {
        tokio::time::sleep(Duration::from_millis(500 + next(2_000))).await;
        let spec = &specs[next(specs.len() as u64) as usize];
        swarm.drone(&spec.name).kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(200 + next(1_000))).await;
        swarm.spawn_drone(spec);
    }
    let killing = started.elapsed().as_secs();
    swarm
        .wait_final(packages, Duration::from_secs(300 + soak))
        .await;
    invariants::check(
        &swarm,
        &format!(
            "soak, {}: {kills} drone kills (kill -9, restart 0.2-1.2 s later) over {killing} s, 10 % of builds failing",
            if soak > 60 { "long" } else { "short" }
        ),
        &atoms,
        &observer,
    )
    .await
    .assert_ok();
}
