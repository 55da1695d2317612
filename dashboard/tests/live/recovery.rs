//! How the dashboard comes through trouble: health and metrics through a NATS outage and back, a
//! dashboard started later replaying the same history, and junk and spoofed events refused and
//! counted while it keeps going.

use std::time::Duration;

use schemas::{BuildOutcome, DroneState, EventKind, ExitInfo, PackageState, names};
use swarm_dashboard::metrics;
use swarm_dashboard::view::Snapshot;
use testkit::NatsServer;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_follow_nats_and_the_fold() {
    let mut nats = NatsServer::start().expect("nats-server");
    let topo = topology(&nats).await;
    let mut drone = Reporter::connect(&nats, "drone-Meridian", 24, 6).await;
    drone.online().await;
    drone.record(DroneState::Building, &["dev-lang/rust"]).await;
    let now = runtime::now_ms();
    put_package(
        &topo.packages,
        "dev-lang/rust",
        PackageState::Building {
            attempt: 1,
            drone: name("drone-Meridian"),
            since_ms: now,
        },
        now,
    )
    .await;
    put_package(
        &topo.packages,
        "sys-libs/zlib",
        PackageState::Queued { attempt: 1 },
        now,
    )
    .await;
    drone
        .event(EventKind::Finished {
            atom: atom("dev-libs/openssl"),
            attempt: 1,
            lease_rev: 3,
            outcome: BuildOutcome::Failed {
                exit: ExitInfo::code(2),
                log_tail: "make: *** [all] Error 2".into(),
                class: schemas::FailureClass::Package,
                signature: None,
            },
            duration_ms: 1_000,
            jobs: 4,
            artifacts: Vec::new(),
        })
        .await;
    let dashboard = Dashboard::start(&nats, None).await;
    dashboard
        .wait_for(Duration::from_secs(10), "ready", |s| {
            s.ready && s.fold.caught_up
        })
        .await;

    let health = dashboard.get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let metrics_page = dashboard.get("/metrics").await;
    assert_eq!(metrics_page.status, 200);
    assert_eq!(
        metrics_page.header("content-type"),
        Some(metrics::CONTENT_TYPE)
    );
    let samples = metrics::parse(&metrics_page.body);
    let value = |name: &str| {
        samples
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} missing:\n{}", metrics_page.body))
    };
    assert_eq!(value("swarm_queue_packages"), 2.0);
    assert_eq!(value("swarm_packages{state=\"queued\"}"), 1.0);
    assert_eq!(value("swarm_packages{state=\"building\"}"), 1.0);
    assert_eq!(
        value("swarm_drones{state=\"building\"}"),
        1.0,
        "{}",
        metrics_page.body
    );
    assert_eq!(value("swarm_cores_active"), 24.0);
    assert_eq!(value("swarm_builds_failed_total"), 1.0);
    assert_eq!(value("swarm_dashboard_events_folded_total"), 2.0);
    assert_eq!(value("swarm_dashboard_event_fold_lag_events"), 0.0);
    assert_eq!(value("swarm_dashboard_nats_connected"), 1.0);

    // NATS goes away: unhealthy, and says why; the page and the API still answer.
    nats.kill().expect("kill nats");
    let down = dashboard
        .wait_for(Duration::from_secs(10), "disconnected", |s| {
            !s.fold.nats_connected
        })
        .await;
    assert_eq!(down.drones.len(), 1, "the last picture is kept");
    let health = dashboard.get("/healthz").await;
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.json().expect("JSON")["nats_connected"], false);
    assert_eq!(dashboard.get("/").await.status, 200);

    // It comes back on the same port and store: the dashboard reconnects by itself, re-reads
    // its sources at once (about half a second here; waiting for the consumers' heartbeats to
    // notice instead took 15 s, beyond this test's limit) and is healthy again.
    nats.start_again().expect("nats restarts");
    let mut drone = Reporter::connect(&nats, "drone-Meridian", 24, 6).await;
    drone.online().await;
    drone.record(DroneState::Idle, &[]).await;
    let back = dashboard
        .wait_for(Duration::from_secs(10), "reconnected and following", |s| {
            s.fold.nats_connected
                && s.fold.caught_up
                && s.fold.events_folded == 3
                && s.drones[0].state == "idle"
        })
        .await;
    assert_eq!(back.fold.stream_seq, 3, "{:?}", back.fold);
    assert_eq!(back.fold.events_rejected, 0);
    let health = dashboard.get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_started_later_replays_the_same_history() {
    let nats = NatsServer::start().expect("nats-server");
    let topo = topology(&nats).await;
    let live = Dashboard::start(&nats, None).await;
    live.wait_for(Duration::from_secs(10), "ready", |s| s.ready)
        .await;
    // A short run on two drones, with failures, hand-backs and a grounding.
    let mut a = Reporter::connect(&nats, "drone-a", 16, 4).await;
    let mut b = Reporter::connect(&nats, "drone-b", 8, 2).await;
    a.online().await;
    b.online().await;
    let now = runtime::now_ms();
    for i in 0..30 {
        let pkg = format!("dev-test/p{i}");
        let drone = if i % 3 == 0 { &mut b } else { &mut a };
        drone
            .event(EventKind::Claimed {
                atom: atom(&pkg),
                attempt: 1,
                stream_seq: i,
                delivery: 1,
                lease_rev: 1,
            })
            .await;
        drone
            .event(EventKind::Started {
                atom: atom(&pkg),
                attempt: 1,
                argv: vec!["build".into(), pkg.clone()],
                jobs: 4,
                delivery: 1,
                lease_rev: 1,
            })
            .await;
        let outcome = if i % 7 == 3 {
            BuildOutcome::Failed {
                exit: ExitInfo::code(1),
                log_tail: format!("error in {pkg}"),
                class: schemas::FailureClass::Package,
                signature: None,
            }
        } else {
            BuildOutcome::Succeeded
        };
        let final_state = match &outcome {
            BuildOutcome::Succeeded => PackageState::Succeeded {
                attempt: 1,
                drone: drone.name.clone(),
            },
            BuildOutcome::Failed { .. } => PackageState::Failed {
                attempt: 1,
                reason: "exit status 1".into(),
            },
        };
        drone
            .event(EventKind::Finished {
                atom: atom(&pkg),
                attempt: 1,
                lease_rev: 2,
                outcome,
                duration_ms: 100 + i,
                jobs: 4,
                artifacts: Vec::new(),
            })
            .await;
        put_package(&topo.packages, &pkg, final_state, now).await;
    }
    b.event(EventKind::Grounded {
        reason: "3 failures".into(),
    })
    .await;
    b.record(
        DroneState::Grounded {
            reason: "3 failures".into(),
        },
        &[],
    )
    .await;
    a.record(DroneState::Idle, &[]).await;

    let settled =
        |s: &Snapshot| s.ready && s.fold.caught_up && s.progress.done == 30 && s.drones.len() == 2;
    let watched = live
        .wait_for(Duration::from_secs(10), "live dashboard settled", settled)
        .await;
    let later = Dashboard::start(&nats, None).await;
    let replayed = later
        .wait_for(Duration::from_secs(10), "later dashboard settled", settled)
        .await;
    assert_eq!(replayed.drones, watched.drones);
    assert_eq!(replayed.failures, watched.failures);
    assert_eq!(replayed.builds, watched.builds);
    assert_eq!(replayed.summary, watched.summary);
    assert_eq!(replayed.progress.total, 30);
    assert_eq!(watched.builds.started, 30);
    assert_eq!(watched.builds.failed, 4);
    assert_eq!(watched.failures.len(), 4);
    assert_eq!(watched.drones[1].state, "grounded");
    live.stop().await;
    later.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_spoofed_events_are_refused_and_counted_and_the_dashboard_keeps_going() {
    let nats = NatsServer::start().expect("nats-server");
    let topo = topology(&nats).await;
    let client = nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let dashboard = Dashboard::start(&nats, None).await;
    let mut victim = Reporter::connect(&nats, "drone-victim", 8, 2).await;
    victim.online().await;
    victim.record(DroneState::Idle, &[]).await;

    // Junk on an event subject, a truncated message, and an event that claims another drone.
    for payload in [
        &b"\xc1\xc1 not msgpack"[..],
        &b"\x85\xa1v"[..],
        &[0u8; 0][..],
    ] {
        js.publish("swarm.event.drone-mallory", payload.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let spoof = schemas::Event {
        v: schemas::SCHEMA_VERSION,
        drone: name("drone-victim"),
        boot_ms: victim.boot_ms + 1_000,
        seq: 1,
        at_ms: runtime::now_ms(),
        kind: EventKind::Grounded {
            reason: "<script>alert(1)</script>".into(),
        },
    };
    js.publish(
        names::event_subject(&name("drone-mallory")),
        schemas::encode(&spoof).expect("encode").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    // Junk in the buckets too.
    topo.drones
        .put("drone-junk", b"\x00\x01junk".to_vec().into())
        .await
        .expect("put");
    topo.packages
        .put("junk", b"junk".to_vec().into())
        .await
        .expect("put");

    let state = dashboard
        .wait_for(Duration::from_secs(10), "refusals counted", |s| {
            s.ready && s.fold.caught_up && s.fold.events_rejected == 4
        })
        .await;
    assert_eq!(state.drones.len(), 1, "{:?}", state.drones);
    assert_eq!(
        state.drones[0].state, "idle",
        "the spoofed grounding did nothing"
    );
    assert_eq!(state.summary.queue, 0);
    // Still following: a genuine event after the junk is folded.
    victim
        .event(schemas::fixtures::claimed("sys-libs/zlib", 1))
        .await;
    dashboard
        .wait_for(Duration::from_secs(10), "genuine event after junk", |s| {
            s.drones[0].state == "building"
        })
        .await;
    assert_eq!(dashboard.get("/healthz").await.status, 200);
    dashboard.stop().await;
}
