//! End-to-end: drones that die or freeze in the middle of builds.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use nix::sys::signal::Signal;
use schemas::{Event, EventKind, PackageState, SubmitResult, names};
use swarm_tests::*;

/// `kill -9` of a drone in the middle of builds: its packages finish on the other drones, each
/// exactly once, and its orphaned builds die with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_drone_packages_finish_elsewhere_exactly_once() {
    let mut swarm = Swarm::start().await;
    for name in ["k-a", "k-b", "k-c"] {
        swarm.spawn_drone(&DroneSpec::new(name, 4, 2).env("SWARM_TEST_SLEEP", "1.5"));
    }
    let items: Vec<(String, Option<f64>)> = (0..12)
        .map(|i| (format!("=dev-test/kill-1.{i}"), None))
        .collect();
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted { queued: 12, .. }
    ));
    let started = swarm
        .wait_for_builds("k-a to build", Duration::from_secs(30), |b| {
            b.iter().any(|b| b.drone == "k-a" && b.end_ms.is_none())
        })
        .await;
    let victims: HashSet<String> = started
        .iter()
        .filter(|b| b.drone == "k-a" && b.end_ms.is_none())
        .map(|b| b.atom.clone())
        .collect();
    swarm.drone("k-a").kill9();
    let packages = swarm.wait_final(12, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    // Let any orphan that survived write its end record before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let builds = builds(&swarm.records());
    let ok = successes(&builds);
    for (atom, record) in &packages {
        assert_eq!(
            ok.get(atom),
            Some(&1),
            "{atom} succeeded {:?} times",
            ok.get(atom)
        );
        if victims.contains(atom) {
            match &record.state {
                PackageState::Succeeded { drone, .. } => assert_ne!(drone.as_str(), "k-a"),
                other => panic!("{other:?}"),
            }
        }
    }
    for b in builds
        .iter()
        .filter(|b| b.drone == "k-a" && victims.contains(&b.atom))
    {
        assert!(
            b.end_ms.is_none(),
            "the killed drone's build of {} ran on: {b:?}",
            b.atom
        );
    }
    assert!(
        overlaps(&builds, runtime::now_ms())
            .iter()
            .all(|(a, b)| a.drone == "k-a" || b.drone == "k-a")
    );
}

/// `SIGSTOP` a drone past its lease TTL so another drone takes its package, then `SIGCONT`:
/// the frozen drone's build is killed by its supervisor before the lease expires (so the two
/// builds never overlap), the drone reports the lost lease and nothing as success; the package
/// is completed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_drone_loses_its_lease_and_reports_nothing() {
    let mut swarm = Swarm::start().await;
    let observer = swarm_tests::invariants::Observer::start(swarm.record_file());
    for name in ["s-a", "s-b"] {
        swarm.spawn_drone(&DroneSpec::new(name, 2, 1).env("SWARM_TEST_SLEEP", "6"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let items = vec![("=dev-test/frozen-1.0".to_owned(), None)];
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    let first = swarm
        .wait_for_builds("a build to start", Duration::from_secs(20), |b| {
            !b.is_empty()
        })
        .await;
    let frozen = first[0].drone.clone();
    let other = if frozen == "s-a" { "s-b" } else { "s-a" };
    swarm.drone(&frozen).signal(Signal::SIGSTOP);
    // Past the lease TTL and the ack wait: the other drone takes over.
    swarm
        .wait_for_builds("the takeover", Duration::from_secs(20), |b| {
            b.iter().any(|b| b.drone == other)
        })
        .await;
    swarm.drone(&frozen).signal(Signal::SIGCONT);
    let packages = swarm.wait_final(1, Duration::from_secs(30)).await;
    let record = packages.get("=dev-test/frozen-1.0").expect("package");
    match &record.state {
        PackageState::Succeeded { drone, .. } => assert_eq!(drone.as_str(), other),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let builds = builds(&swarm.records());
    let frozen_build = builds
        .iter()
        .find(|b| b.drone == frozen)
        .expect("frozen build recorded");
    assert!(
        frozen_build.end_ms.is_none(),
        "the stale build was not killed: {frozen_build:?}"
    );
    assert_eq!(successes(&builds).get("=dev-test/frozen-1.0"), Some(&1));
    assert_eq!(record.history.len(), 1, "{:?}", record.history);
    // The frozen drone could not kill its build; its supervisor did, before the takeover.
    let completed = swarm_tests::invariants::completed_builds(&swarm.record_file(), &observer);
    let killed_at = completed
        .iter()
        .find(|b| b.drone == frozen)
        .and_then(|b| b.end_ms)
        .expect("the frozen drone's build died");
    let taken_at = completed
        .iter()
        .find(|b| b.drone == other)
        .map(|b| b.start_ms)
        .expect("the takeover");
    assert!(
        killed_at < taken_at,
        "the frozen build ran until {killed_at}, the takeover started at {taken_at}"
    );
    assert!(overlaps(&completed, runtime::now_ms()).is_empty());
    swarm_tests::invariants::check(
        &swarm,
        "drone frozen (SIGSTOP) past its lease, then thawed",
        &["=dev-test/frozen-1.0".to_owned()],
        &observer,
    )
    .await
    .assert_ok();

    // From the event log: the frozen drone reported the lost lease and no result.
    let kinds = event_kinds(&swarm, &frozen).await;
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EventKind::LeaseLost { .. })),
        "{kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, EventKind::Finished { .. })),
        "{kinds:?}"
    );
}

/// Every event a drone published, in stream order.
async fn event_kinds(swarm: &Swarm, drone: &str) -> Vec<EventKind> {
    let client = swarm.nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(names::EVENTS_STREAM).await.expect("events");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: format!("{}.{drone}", names::EVENT_SUBJECT_PREFIX),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer
        .fetch()
        .max_messages(1000)
        .messages()
        .await
        .expect("fetch");
    let mut kinds = Vec::new();
    while let Some(Ok(m)) = messages.next().await {
        if let Ok(event) = schemas::decode::<Event>(&m.payload) {
            kinds.push(event.kind);
        }
    }
    kinds
}

/// A drone frozen past its lease while four builds run wakes to find them killed by their
/// supervisors (and its own deadline passed). Those ends are lost leases, not failed builds:
/// even a drone set to ground itself after one failure stays at work and builds the packages
/// again. (Counting them as failures grounded healthy drones in the soak: four builds of
/// different packages "failing" at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thawed_drone_is_not_grounded_by_the_builds_its_supervisors_killed() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(
        &DroneSpec::new("t-a", 4, 4)
            .env("SWARM_TEST_SLEEP", "4")
            .env("SWARM_DRONE__GROUND_AFTER_FAILURES", "1"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let atoms: Vec<(String, Option<f64>)> = (0..4)
        .map(|i| (format!("=dev-test/thawed-1.{i}"), None))
        .collect();
    assert!(matches!(
        submit(&swarm.nats, &atoms).await,
        SubmitResult::Accepted { queued: 4, .. }
    ));
    swarm
        .wait_for_builds("four builds to start", Duration::from_secs(20), |b| {
            b.len() == 4
        })
        .await;
    // Frozen past the supervisors' deadline (lease TTL 1.5 s less a tenth) and the lease.
    swarm.drone("t-a").signal(Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    swarm.drone("t-a").signal(Signal::SIGCONT);
    let packages = swarm.wait_final(4, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let builds = builds(&swarm.records());
    assert!(
        builds.len() >= 8,
        "the killed builds were built again: {builds:?}"
    );
    let kinds = event_kinds(&swarm, "t-a").await;
    let lost = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::LeaseLost { .. }))
        .count();
    assert_eq!(lost, 4, "{kinds:?}");
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, EventKind::Grounded { .. })),
        "{kinds:?}"
    );
}

/// SIGTERM lets running builds finish within the grace period, then the drone exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_builds_within_grace() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(&DroneSpec::new("t-a", 2, 2).env("SWARM_TEST_SLEEP", "1.5"));
    let items: Vec<(String, Option<f64>)> = (0..2)
        .map(|i| (format!("=dev-test/term-1.{i}"), None))
        .collect();
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted { queued: 2, .. }
    ));
    swarm
        .wait_for_builds("both builds", Duration::from_secs(20), |b| b.len() == 2)
        .await;
    swarm.drone("t-a").signal(Signal::SIGTERM);
    let status = swarm
        .drone("t-a")
        .wait_exit(Duration::from_secs(15))
        .expect("drone exits");
    assert!(status.success(), "{status:?}");
    let packages = swarm.wait_final(2, Duration::from_secs(10)).await;
    assert!(all_succeeded(&packages));
    let out = swarm.swarmctl(&["drones", "--json"]);
    let drones: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(drones[0]["state"], "offline", "{drones}");
}

/// When the grace period ends first, running builds are killed and handed back unbuilt; another
/// drone builds them, exactly once, and no attempt is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_builds_when_grace_runs_out() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(
        &DroneSpec::new("t-slow", 2, 1)
            .env("SWARM_TEST_SLEEP", "4")
            .env("SWARM_DRONE__SHUTDOWN_GRACE_MS", "300"),
    );
    let items = vec![("=dev-test/handback-1.0".to_owned(), None)];
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    swarm
        .wait_for_builds("the build", Duration::from_secs(20), |b| b.len() == 1)
        .await;
    swarm.spawn_drone(&DroneSpec::new("t-other", 2, 1).env("SWARM_TEST_SLEEP", "0.2"));
    swarm.drone("t-slow").signal(Signal::SIGTERM);
    let status = swarm
        .drone("t-slow")
        .wait_exit(Duration::from_secs(10))
        .expect("drone exits");
    assert!(status.success(), "{status:?}");
    let packages = swarm.wait_final(1, Duration::from_secs(20)).await;
    let record = &packages["=dev-test/handback-1.0"];
    match &record.state {
        PackageState::Succeeded { drone, attempt } => {
            assert_eq!(drone.as_str(), "t-other");
            assert_eq!(*attempt, 1, "a hand-back must not consume an attempt");
        }
        other => panic!("{other:?}"),
    }
    let builds = builds(&swarm.records());
    let slow = builds
        .iter()
        .find(|b| b.drone == "t-slow")
        .expect("slow build");
    assert!(
        slow.end_ms.is_none(),
        "handed-back build kept running: {slow:?}"
    );
    assert_eq!(successes(&builds).get("=dev-test/handback-1.0"), Some(&1));
}
