//! What the dashboard shows: fifty drones reporting in the same instant, in the API and on the
//! page, and the WebSocket's whole picture followed by only what changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use schemas::fixtures::atom;
use schemas::{DroneState, EventKind, PackageRecord, PackageState};
use swarm_dashboard::view::{Push, Snapshot};
use testkit::NatsServer;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::common::*;

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
    let topology = topology(&nats).await;
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

    // A run with build dependencies: the snapshot forecasts its critical path with the drones
    // online and lists what each waiting package waits for, and what a failed one blocks.
    put_graph(&topology.packages).await;
    let state = dashboard
        .wait_for(Duration::from_secs(10), "the run's graph", |s| {
            s.dependencies.waiting_total == 2 && s.dependencies.blocked_total == 1
        })
        .await;
    let path: Vec<&str> = state
        .progress
        .critical_path
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert_eq!(path, ["sys-devel/gcc", "sys-libs/glibc", "app-misc/top"]);
    assert_eq!(state.progress.critical_path_secs, Some(5_760));
    // On the largest drone online (32 cores): 5,760 s × 8 / 32.
    assert_eq!(state.progress.critical_eta_secs, Some(1_440));
    let top = &state.dependencies.waiting[0];
    assert_eq!(
        (top.atom.as_str(), top.waits_for.as_slice()),
        ("app-misc/top", [atom("sys-libs/glibc")].as_slice())
    );

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
    // The run's critical path and end, and the waiting panel: each package with what it waits
    // for, the blocked one with the dependency that failed.
    assert!(
        browser
            .wait_for(SHOWS_THE_GRAPH, Duration::from_secs(10))
            .await,
        "the page does not show the run's graph: {}",
        browser
            .eval("document.getElementById('critical').textContent + ' | ' + document.getElementById('held').textContent")
            .await
            .unwrap_or_default()
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

/// Whether the page shows the graph of [`put_graph`].
const SHOWS_THE_GRAPH: &str = r#"(() => {
  const text = (selector) => {
    const node = document.querySelector(selector);
    return node === null ? '' : node.textContent;
  };
  return !document.getElementById('critical').hidden
    && text('#critical-text') === 'Critical path: 3 packages, 1h 36m of work on 8 cores · ends in about 24m 00s'
    && text('#critical-path').includes('sys-devel/gcc')
    && !document.getElementById('held').hidden
    && text('#held h2').includes('2 waiting, 1 blocked')
    && text('#waiting li[data-atom="app-misc/top"]') === 'app-misc/top waits for sys-libs/glibc'
    && text('#waiting li[data-atom="sys-libs/glibc"]') === 'sys-libs/glibc waits for sys-devel/gcc'
    && text('#blocked li[data-atom="dev-libs/victim"]').startsWith('dev-libs/victim blocked by dev-libs/broken');
})()"#;

/// A run with build dependencies, written as the coordinator writes it: gcc queued, glibc
/// waiting for it and app-misc/top for glibc; dev-libs/broken failed and blocked its dependent.
async fn put_graph(packages: &async_nats::jetstream::kv::Store) {
    let now = runtime::now_ms();
    let failed = PackageState::Failed {
        attempt: 3,
        reason: "failed 3 times".into(),
    };
    let blocked = PackageState::Blocked {
        dependency: atom("dev-libs/broken"),
    };
    let graph = [
        (
            "sys-devel/gcc",
            PackageState::Queued { attempt: 1 },
            vec![],
            4_800.0,
        ),
        (
            "sys-libs/glibc",
            PackageState::Waiting,
            vec!["sys-devel/gcc"],
            900.0,
        ),
        (
            "app-misc/top",
            PackageState::Waiting,
            vec!["sys-libs/glibc"],
            60.0,
        ),
        ("dev-libs/broken", failed, vec![], 60.0),
        ("dev-libs/victim", blocked, vec!["dev-libs/broken"], 60.0),
    ];
    for (text, state, deps, secs) in graph {
        let record = PackageRecord {
            estimate_secs: Some(secs),
            deps: deps.iter().map(|d| atom(d).key()).collect(),
            submitted_ms: now,
            updated_ms: now,
            ..schemas::fixtures::package_record(text, state)
        };
        put_record(packages, &record).await;
    }
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
