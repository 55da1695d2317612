//! End-to-end: standby coordinators. Any number may run; one leads through a lease in the leader
//! bucket, the others stand by. A standby leads within 10 s of the leader's death and the run
//! completes with nothing lost or built twice; a leader frozen past its lease and resumed writes
//! nothing and stands by.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use swarm_tests::invariants::{self, Observer};
use swarm_tests::*;

/// How soon a standby must lead after the leader's death (the lease lives 5 s by default).
const GOAL: Duration = Duration::from_secs(10);

async fn wait_for_leader(swarm: &Swarm, name: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if swarm.leader().await.is_some_and(|l| l.coordinator == name) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{name} did not lead within {timeout:?}; leader: {:?}",
            swarm.leader().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_succeeded(swarm: &Swarm, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = swarm
            .packages()
            .await
            .values()
            .filter(|p| matches!(p.state, schemas::PackageState::Succeeded { .. }))
            .count();
        if done >= count {
            return;
        }
        assert!(Instant::now() < deadline, "only {done} of {count} built");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kill -9` of the leading coordinator in the middle of a run: the standby leads within 10 s,
/// replays from the event watermark, and the run completes, nothing lost, nothing built twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_leads_within_ten_seconds_of_the_leaders_death() {
    let mut swarm = Swarm::start().await;
    let observer = Observer::start(swarm.record_file());
    wait_for_leader(&swarm, "coordinator", Duration::from_secs(10)).await;
    let _standby = swarm.spawn_standby("standby");
    for name in ["sb-a", "sb-b"] {
        swarm.spawn_drone(&DroneSpec::new(name, 8, 4).env("SWARM_TEST_SLEEP", "0.3"));
    }
    let atoms = test_atoms("standby", 120);
    swarm.submit_all(&atoms).await;
    wait_succeeded(&swarm, 20).await;
    // The standby stood by all along.
    assert_eq!(
        swarm.leader().await.map(|l| l.coordinator).as_deref(),
        Some("coordinator")
    );
    swarm.coordinator.as_mut().expect("coordinator").kill9();
    let took = wait_for_leader(&swarm, "standby", GOAL).await;
    println!(
        "the standby led {} ms after the leader's kill -9",
        took.as_millis()
    );
    swarm
        .wait_final(atoms.len(), Duration::from_secs(120))
        .await;
    invariants::check(
        &swarm,
        "leading coordinator killed, standby leads",
        &atoms,
        &observer,
    )
    .await
    .assert_ok();
    assert!(
        swarm.log("standby").contains("standing by"),
        "{}",
        swarm.log("standby")
    );
}

/// The leader frozen (`SIGSTOP`) past its lease: the standby leads; thawed, the old leader finds
/// its lease gone and its term over, writes nothing, and stands by. The run completes right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_resumes() {
    let mut swarm = Swarm::start_with(&[("SWARM_COORDINATOR__LEADER_TTL_MS", "2000")]).await;
    let observer = Observer::start(swarm.record_file());
    wait_for_leader(&swarm, "coordinator", Duration::from_secs(10)).await;
    let _standby = swarm.spawn_standby("standby");
    for name in ["fz-a", "fz-b"] {
        swarm.spawn_drone(&DroneSpec::new(name, 8, 4).env("SWARM_TEST_SLEEP", "0.3"));
    }
    let atoms = test_atoms("frozen-leader", 120);
    swarm.submit_all(&atoms).await;
    wait_succeeded(&swarm, 10).await;
    // Frozen while events flow to it: some are delivered to it and wait in its buffers.
    let coordinator = swarm.coordinator.as_ref().expect("coordinator");
    coordinator.signal(Signal::SIGSTOP);
    let took = wait_for_leader(&swarm, "standby", GOAL).await;
    println!(
        "the standby led {} ms after the leader froze",
        took.as_millis()
    );
    wait_succeeded(&swarm, 60).await;
    let coordinator = swarm.coordinator.as_ref().expect("coordinator");
    coordinator.signal(Signal::SIGCONT);
    // Thawed: it learns it no longer leads (its lease deadline passed, its lease and term are
    // another's) and stands by; whatever it tried to write was refused by the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = swarm.log("coordinator");
        if log.contains("no longer leading; standing by") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "the thawed leader did not stand by: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused = log.matches("a write was refused").count();
    println!("the thawed leader's refused writes: {refused}");
    assert_eq!(
        swarm.leader().await.map(|l| l.coordinator).as_deref(),
        Some("standby")
    );
    swarm
        .wait_final(atoms.len(), Duration::from_secs(120))
        .await;
    invariants::check(
        &swarm,
        "leader frozen past its lease, then thawed",
        &atoms,
        &observer,
    )
    .await
    .assert_ok();
    // Still standing by, not leading again.
    assert_eq!(
        swarm.leader().await.map(|l| l.coordinator).as_deref(),
        Some("standby")
    );
}
