//! The dashboard against a real nats-server: drones reporting at once, the WebSocket's pushes,
//! health and metrics through a NATS outage, a dashboard started later replaying the same
//! history, and refused input.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use schemas::{BuildOutcome, DroneState, EventKind, ExitInfo, PackageState, names};
use swarm_dashboard::metrics;
use swarm_dashboard::view::{Push, Snapshot};
use testkit::NatsServer;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// What drone `i` of the fifty reports, and the state the dashboard must then show.
fn fifty_state(i: usize) -> (&'static str, DroneState) {
    match i % 5 {
        0 => ("building", DroneState::Building),
        1 => ("idle", DroneState::Idle),
        2 => (
            "grounded",
            DroneState::Grounded {
                reason: format!("drone-{i}: 3 builds failed in a row"),
            },
        ),
        3 => ("draining", DroneState::Draining),
        _ => ("offline", DroneState::Offline),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_drones_reporting_in_the_same_instant_all_appear_with_their_states() {
    let nats = NatsServer::start().expect("nats-server");
    let _topology = topology(&nats).await;
    let dashboard = Dashboard::start(&nats, None).await;
    dashboard
        .wait_for(Duration::from_secs(10), "dashboard ready", |s| s.ready)
        .await;

    // Fifty drones, each on its own connection, released together by a barrier.
    let mut reporters = Vec::new();
    for i in 0..50 {
        reporters.push(
            Reporter::connect(&nats, &format!("drone-{i:02}"), 8 + (i as u32 % 4) * 8, 2).await,
        );
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for (i, mut reporter) in reporters.into_iter().enumerate() {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let released = Instant::now();
            let (_, state) = fifty_state(i);
            reporter.online().await;
            let building: Vec<String> = if matches!(state, DroneState::Building) {
                vec![format!("dev-test/pkg{i}")]
            } else {
                vec![]
            };
            let refs: Vec<&str> = building.iter().map(String::as_str).collect();
            reporter.record(state.clone(), &refs).await;
            match state {
                DroneState::Grounded { reason } => {
                    reporter.event(EventKind::Grounded { reason }).await
                }
                DroneState::Draining => reporter.event(EventKind::Draining).await,
                DroneState::Offline => reporter.event(EventKind::Offline).await,
                _ => {}
            }
            released.elapsed()
        }));
    }
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.expect("reporter"));
    }
    let state = dashboard
        .wait_for(Duration::from_secs(10), "all fifty drones shown", |s| {
            s.drones.len() == 50
                && s.drones
                    .iter()
                    .enumerate()
                    .all(|(i, d)| d.state == fifty_state(i).0)
        })
        .await;
    println!(
        "50 drones reported within {} ms of each other; the dashboard showed all of them {} ms after release",
        slowest.as_millis(),
        start.elapsed().as_millis()
    );
    for (i, card) in state.drones.iter().enumerate() {
        assert_eq!(card.name, format!("drone-{i:02}"));
        let (label, drone_state) = fifty_state(i);
        assert_eq!(card.state, label, "{card:?}");
        match drone_state {
            DroneState::Grounded { reason } => assert_eq!(card.reason.as_ref(), Some(&reason)),
            DroneState::Building => {
                assert_eq!(card.building.len(), 1);
                assert_eq!(card.building[0].atom.as_str(), format!("dev-test/pkg{i}"));
            }
            _ => assert!(card.building.is_empty(), "{card:?}"),
        }
    }
    let counts = &state.summary.drones;
    assert_eq!(
        (
            counts.active,
            counts.idle,
            counts.grounded,
            counts.draining,
            counts.offline
        ),
        (10, 10, 10, 10, 10)
    );
    let building_cores: u32 = (0..50)
        .filter(|i| i % 5 == 0)
        .map(|i| 8 + (i as u32 % 4) * 8)
        .sum();
    assert_eq!(state.summary.cores.active, building_cores);

    // The page stays readable with fifty drones: every card, in its state, no sideways
    // scrolling, and the top block's counts.
    let mut browser =
        testkit::browser::Browser::open(&format!("http://{}/", dashboard.addr), 1280, 900)
            .await
            .expect("chromium opens the page");
    let expected: Vec<String> = (0..50)
        .map(|i| format!("drone-{i:02}={}", fifty_state(i).0))
        .collect();
    let shown = format!(
        "JSON.stringify([...document.querySelectorAll('article.drone')].map(c => c.dataset.drone + '=' + c.dataset.state)) === {}",
        serde_json::to_string(&serde_json::to_string(&expected).expect("json")).expect("json")
    );
    assert!(
        browser.wait_for(&shown, Duration::from_secs(20)).await,
        "the page does not show the fifty drones in their states"
    );
    let layout = browser
        .eval(
            "({ overflow: document.documentElement.scrollWidth > window.innerWidth, \
               narrowest: Math.min(...[...document.querySelectorAll('article.drone')].map(c => c.getBoundingClientRect().width)), \
               block: document.getElementById('block').textContent.replace(/\\s+/g, ' ').trim() })",
        )
        .await
        .expect("layout readable");
    assert_eq!(layout["overflow"], false, "{layout}");
    assert!(
        layout["narrowest"].as_f64().unwrap_or(0.0) >= 200.0,
        "{layout}"
    );
    let block = layout["block"].as_str().unwrap_or_default();
    assert!(
        block.contains("10 active, 10 idle, 10 grounded, 10 draining, 10 offline"),
        "{block}"
    );
    browser
        .screenshot(&testkit::workspace_root().join("artifacts/dashboard-50-drones.png"))
        .await
        .expect("screenshot");
    dashboard.stop().await;
}

async fn next_push(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Push {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a push within 10 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("push JSON");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sends_the_picture_then_only_what_changed() {
    let nats = NatsServer::start().expect("nats-server");
    let _topology = topology(&nats).await;
    let mut izar = Reporter::connect(&nats, "drone-Izar", 16, 4).await;
    let mut tarn = Reporter::connect(&nats, "drone-Tarn", 10, 2).await;
    izar.online().await;
    izar.record(DroneState::Idle, &[]).await;
    tarn.online().await;
    tarn.record(DroneState::Idle, &[]).await;
    let dashboard = Dashboard::start(&nats, None).await;
    dashboard
        .wait_for(Duration::from_secs(10), "both drones", |s| {
            s.ready && s.drones.len() == 2
        })
        .await;

    let url = format!("ws://{}/ws", dashboard.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("WebSocket opens");
    let Push::Snapshot { state } = next_push(&mut socket).await else {
        panic!("the first push is the whole picture");
    };
    let mut picture: Snapshot = *state;
    assert_eq!(picture.drones.len(), 2);

    // One drone starts a build: the deltas that follow carry that drone, never the other.
    tarn.event(schemas::fixtures::claimed("sys-libs/zlib", 1))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match next_push(&mut socket).await {
            Push::Delta(delta) => {
                assert!(
                    delta.drones.iter().all(|d| d.name == "drone-Tarn"),
                    "a delta carried an unchanged drone: {delta:?}"
                );
                delta.apply_to(&mut picture);
            }
            Push::Snapshot { .. } => panic!("a second whole picture on the same socket"),
        }
        let tarn_card = &picture.drones[1];
        if tarn_card.state == "building" {
            assert_eq!(tarn_card.building[0].atom.as_str(), "sys-libs/zlib");
            assert_eq!(picture.summary.drones.active, 1);
            assert_eq!(picture.summary.cores.active, 10);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the build never showed: {picture:?}"
        );
    }
    // The picture rebuilt from the deltas is the one the API serves.
    let api = dashboard.state().await;
    assert_eq!(api.drones, picture.drones);
    assert_eq!(api.summary, picture.summary);

    // A page elsewhere cannot open the socket through the operator's browser.
    let mut request = url.as_str().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Origin", "http://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("cross-origin WebSocket was not refused: {other:?}"),
    }
    // Shutting down with the page still open: the socket gets a close frame and the dashboard
    // stops without waiting for the page to go away.
    let stopping = tokio::spawn(dashboard.stop());
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Close(_)) | Err(_) => return true,
                Ok(_) => {}
            }
        }
        true
    })
    .await
    .expect("the socket closes within 10 s of shutdown");
    assert!(closed);
    stopping.await.expect("dashboard stopped");
}

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
            },
            duration_ms: 1_000,
            jobs: 4,
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
