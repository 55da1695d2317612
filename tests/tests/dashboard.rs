//! End-to-end: the dashboard binary beside a building swarm. A real headless Chromium opens the
//! page and reads the DOM; the dashboard is restarted mid-run and must show the swarm again
//! within two seconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use schemas::SubmitResult;
use serde_json::Value;
use swarm_tests::*;
use testkit::browser::Browser;

/// What the page shows, read from the DOM in one evaluation.
const READ_PAGE: &str = r#"(() => {
  const text = (id) => document.getElementById(id).textContent;
  return {
    conn: document.getElementById('conn').dataset.state,
    conn_text: text('conn'),
    queue: text('queue'),
    active: text('drones-active'),
    idle: text('drones-idle'),
    grounded: text('drones-grounded'),
    cores: text('cores-active'),
    status: text('status'),
    drones: [...document.querySelectorAll('article.drone')].map((card) => ({
      name: card.dataset.drone,
      state: card.dataset.state,
      building: [...card.querySelectorAll('li[data-atom]')].map((li) => li.dataset.atom).sort(),
      reason: card.querySelector('.reason') ? card.querySelector('.reason').textContent : null,
    })),
    failures: text('failures'),
    marker: window.__swarmTestMarker === undefined ? null : window.__swarmTestMarker,
    pwned: document.getElementById('pwned') !== null || window.__pwned !== undefined,
  };
})()"#;

/// A build log line that would run script if the page put it into the DOM as markup.
const HOSTILE_LOG: &str = r#"<img id="pwned" src="x" onerror="window.__pwned=1"><b>bold</b>"#;

/// The swarm's truth as `swarmctl` reads it from the buckets: the operator's block and every
/// drone's effective state and builds.
struct Truth {
    queue: u64,
    active: u64,
    idle: u64,
    grounded: u64,
    cores: u64,
    status: String,
    drones: BTreeMap<String, (String, Vec<String>)>,
}

fn truth(swarm: &Swarm) -> Truth {
    let status = swarm.swarmctl_json(&["status"]);
    let drones = swarm.swarmctl_json(&["drones"]);
    let n = |v: &Value| v.as_u64().expect("a count");
    Truth {
        queue: n(&status["queue"]),
        active: n(&status["drones"]["active"]),
        idle: n(&status["drones"]["idle"]),
        grounded: n(&status["drones"]["grounded"]),
        cores: n(&status["cores"]["active"]),
        status: status["status"].as_str().unwrap_or_default().to_owned(),
        drones: drones
            .as_array()
            .expect("a list")
            .iter()
            .map(|d| {
                let mut building: Vec<String> = d["building"]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|a| a.as_str().unwrap_or_default().to_owned())
                    .collect();
                building.sort();
                (
                    d["name"].as_str().unwrap_or_default().to_owned(),
                    (d["state"].as_str().unwrap_or_default().to_owned(), building),
                )
            })
            .collect(),
    }
}

/// Whether the page shows exactly the truth; `Err` says the first difference.
fn page_matches(page: &Value, truth: &Truth) -> Result<(), String> {
    let field = |key: &str| page[key].as_str().unwrap_or_default().to_owned();
    let block = [
        ("queue", truth.queue.to_string()),
        ("active", truth.active.to_string()),
        ("idle", truth.idle.to_string()),
        ("grounded", truth.grounded.to_string()),
        ("cores", truth.cores.to_string()),
        ("status", truth.status.clone()),
    ];
    for (key, want) in block {
        if field(key) != want {
            return Err(format!(
                "{key}: page shows {:?}, swarm has {want:?}",
                field(key)
            ));
        }
    }
    let cards: BTreeMap<String, (String, Vec<String>)> = page["drones"]
        .as_array()
        .map(|cards| {
            cards
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        (
                            c["state"].as_str().unwrap_or_default().to_owned(),
                            c["building"]
                                .as_array()
                                .map(|b| {
                                    b.iter()
                                        .map(|a| a.as_str().unwrap_or_default().to_owned())
                                        .collect()
                                })
                                .unwrap_or_default(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if cards != truth.drones {
        return Err(format!(
            "drone cards {cards:?} differ from the swarm's {:?}",
            truth.drones
        ));
    }
    Ok(())
}

/// Polls until the page shows the swarm's truth (both move while builds run, so they are read
/// again until one pair agrees); returns the page as read.
async fn wait_page_matches(browser: &mut Browser, swarm: &Swarm, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let page = browser.eval(READ_PAGE).await.expect("page readable");
        let truth = truth(swarm);
        match page_matches(&page, &truth) {
            Ok(()) => return page,
            Err(difference) if Instant::now() > deadline => {
                panic!(
                    "the page never showed the swarm within {timeout:?}: {difference}\npage: {page:#}"
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn seed_drones(fail_message: &str) -> Vec<DroneSpec> {
    vec![
        DroneSpec::new("drone-Izar", 16, 4).env("SWARM_TEST_SLEEP", "5"),
        DroneSpec::new("drone-Tarn", 10, 2).env("SWARM_TEST_SLEEP", "5"),
        DroneSpec::new("drone-Meridian", 24, 6).env("SWARM_TEST_SLEEP", "5"),
        // The smallest drone fails every build, quickly, with a hostile log line that also
        // says its disk is full (the machine's fault): it grounds itself, and its failures land
        // in the page's list.
        DroneSpec::new("drone-Tau-Beta", 8, 2)
            .env("SWARM_TEST_SLEEP", "0.2")
            .env("SWARM_TEST_FAIL_ALWAYS", "1")
            .env(
                "SWARM_TEST_FAIL_MESSAGE",
                &format!("{fail_message} No space left on device"),
            ),
    ]
}

async fn submit_noop(swarm: &Swarm, count: usize) {
    let items: Vec<(String, Option<f64>)> = (0..count)
        .map(|i| (format!("=dev-test/pkg-1.{i}"), None))
        .collect();
    match submit(&swarm.nats, &items).await {
        SubmitResult::Accepted { queued, .. } if queued as usize == count => {}
        other => panic!("unexpected submit reply {other:?}"),
    }
}

async fn wait_http(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while testkit::http::get(addr, "/healthz", Duration::from_secs(2))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "dashboard at {addr} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page in a real browser while four drones build: every card shows its drone's real state,
/// the top block the right counts, a hostile build log stays text; the page survives the
/// dashboard going away and coming back, and shows the run ending, all without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shows_the_swarm_live_and_recovers_from_a_dashboard_restart() {
    let mut swarm = Swarm::start().await;
    for spec in seed_drones(HOSTILE_LOG) {
        swarm.spawn_drone(&spec);
    }
    let port = testkit::free_port().expect("free port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    swarm.spawn_dashboard(port);
    wait_http(addr, Duration::from_secs(20)).await;
    // 36 builds of 5 s on 12 working slots: about 15 s of building.
    submit_noop(&swarm, 36).await;

    let mut browser = Browser::open(&format!("http://{addr}/"), 1400, 1000)
        .await
        .expect("chromium opens the page");
    assert!(
        browser
            .wait_for(
                "document.querySelector('article.drone[data-drone=\"drone-Tau-Beta\"][data-state=\"grounded\"]') !== null",
                Duration::from_secs(30),
            )
            .await,
        "drone-Tau-Beta never showed grounded"
    );
    let page = wait_page_matches(&mut browser, &swarm, Duration::from_secs(20)).await;
    // The seed's swarm mid-run: three drones building, the failing one grounded with its reason.
    assert_eq!(page["status"], "BUILDING", "{page:#}");
    assert_eq!(page["active"], "3");
    assert_eq!(page["grounded"], "1");
    assert_eq!(page["cores"], "50", "16 + 10 + 24 cores building");
    let tau = page["drones"]
        .as_array()
        .and_then(|cards| cards.iter().find(|c| c["name"] == "drone-Tau-Beta"))
        .expect("a card for drone-Tau-Beta");
    assert!(
        tau["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("failed"),
        "{tau}"
    );
    // The hostile log tail is shown as text, and nothing in it ran or became an element.
    assert!(
        browser
            .wait_for(
                &format!(
                    "document.getElementById('failures').textContent.includes({})",
                    serde_json::to_string(HOSTILE_LOG).expect("json")
                ),
                Duration::from_secs(10)
            )
            .await,
        "the failing build's log tail is not in the page"
    );
    let page = browser.eval(READ_PAGE).await.expect("page readable");
    assert_eq!(page["pwned"], false, "a log line became markup");
    // Each failure links to its attempt's complete log, which the dashboard serves as text.
    let link = browser
        .eval("document.querySelector('#failures a.full-log')?.getAttribute('href') ?? null")
        .await
        .expect("page readable");
    let link = link
        .as_str()
        .expect("a failure links to its full log")
        .to_owned();
    assert!(link.starts_with("/logs/"), "{link}");
    let log = testkit::http::get(addr, &link, Duration::from_secs(5))
        .await
        .expect("the full log");
    assert_eq!(log.status, 200, "{}", log.body);
    assert!(log.body.contains(HOSTILE_LOG), "{}", log.body);
    let shot = testkit::workspace_root().join("artifacts/dashboard.png");
    browser.screenshot(&shot).await.expect("screenshot");
    println!("screenshot of the building swarm: {}", shot.display());

    // From here on the page must not reload: a reload would drop this marker.
    browser
        .eval("window.__swarmTestMarker = 42")
        .await
        .expect("marker set");

    // The dashboard goes away: the page says so and keeps trying.
    swarm.dashboard.as_mut().expect("dashboard").kill9();
    assert!(
        browser
            .wait_for(
                "document.getElementById('conn').dataset.state === 'disconnected' && document.getElementById('conn').textContent.includes('reconnecting')",
                Duration::from_secs(10),
            )
            .await,
        "the page did not say it was disconnected"
    );
    // It comes back on the same address: the page reconnects by itself and shows the swarm.
    swarm.spawn_dashboard(port);
    assert!(
        browser
            .wait_for(
                "document.getElementById('conn').dataset.state === 'live'",
                Duration::from_secs(20),
            )
            .await,
        "the page did not reconnect"
    );
    wait_page_matches(&mut browser, &swarm, Duration::from_secs(20)).await;

    // The run ends: the working drones go idle, the queue empties, all without a reload.
    swarm.wait_final(36, Duration::from_secs(120)).await;
    let page = wait_page_matches(&mut browser, &swarm, Duration::from_secs(20)).await;
    assert_eq!(page["status"], "IDLE", "{page:#}");
    assert_eq!(page["queue"], "0");
    assert_eq!(page["idle"], "3");
    assert_eq!(page["marker"], 42, "the page reloaded");
    assert_eq!(page["conn"], "live");
    browser
        .screenshot(&testkit::workspace_root().join("artifacts/dashboard-idle.png"))
        .await
        .expect("screenshot");

    // A drone shuts down: its card turns offline, still without a reload.
    let izar = swarm.drone("drone-Izar");
    izar.signal(Signal::SIGTERM);
    let status = izar
        .wait_exit(Duration::from_secs(20))
        .expect("drone-Izar exits after SIGTERM");
    assert!(status.success(), "drone-Izar exit status {status}");
    let page = wait_page_matches(&mut browser, &swarm, Duration::from_secs(20)).await;
    let izar_card = page["drones"]
        .as_array()
        .and_then(|cards| cards.iter().find(|c| c["name"] == "drone-Izar"))
        .expect("a card for drone-Izar");
    assert_eq!(izar_card["state"], "offline", "{page:#}");
    assert_eq!(page["marker"], 42, "the page reloaded");

    // The drone numbered its record and its events from one counter: it wrote its offline
    // record, then published its offline event, with the next number.
    let client = swarm.nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let drones = js
        .get_key_value(schemas::names::DRONES_BUCKET)
        .await
        .expect("drones bucket");
    let record: schemas::DroneRecord = schemas::decode(
        &drones
            .get("drone-Izar")
            .await
            .expect("read")
            .expect("a record"),
    )
    .expect("decodes");
    let events = js
        .get_stream(schemas::names::EVENTS_STREAM)
        .await
        .expect("events stream");
    let last = events
        .get_last_raw_message_by_subject("swarm.event.drone-Izar")
        .await
        .expect("a last event");
    let event: schemas::Event = schemas::decode(&last.payload).expect("decodes");
    assert!(
        matches!(event.kind, schemas::EventKind::Offline),
        "{event:?}"
    );
    assert_eq!(record.state, schemas::DroneState::Offline);
    assert_eq!((event.boot_ms, event.seq), (record.boot_ms, record.seq + 1));
}

/// The dashboard stopped (gracefully) and started again in the middle of a run shows the swarm
/// as the buckets have it within two seconds of its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_dashboard_matches_the_swarm_within_two_seconds() {
    let mut swarm = Swarm::start().await;
    for spec in [
        DroneSpec::new("drone-Izar", 16, 4),
        DroneSpec::new("drone-Tarn", 10, 2),
        DroneSpec::new("drone-Meridian", 24, 6),
        DroneSpec::new("drone-Tau-Beta", 8, 2),
    ] {
        swarm.spawn_drone(&spec.env("SWARM_TEST_SLEEP", "3"));
    }
    let port = testkit::free_port().expect("free port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    swarm.spawn_dashboard(port);
    wait_http(addr, Duration::from_secs(20)).await;
    // 100 builds of 3 s on 14 slots: over 20 s of building.
    submit_noop(&swarm, 100).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // A graceful stop: SIGTERM, and the process exits cleanly by itself.
    let dashboard = swarm.dashboard.as_mut().expect("dashboard");
    dashboard.signal(Signal::SIGTERM);
    let status = dashboard
        .wait_exit(Duration::from_secs(10))
        .expect("the dashboard exits within 10 s of SIGTERM");
    assert!(status.success(), "dashboard exit status {status}");
    // Builds go on while it is down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = truth(&swarm);
    assert_eq!(before.status, "BUILDING", "the run must still be going");

    swarm.spawn_dashboard(port);
    let started = Instant::now();
    let mut attempts = 0;
    let matched_after = loop {
        attempts += 1;
        if let Ok(response) = testkit::http::get(addr, "/api/state", Duration::from_secs(2)).await
            && response.status == 200
            && let Ok(state) = response.json()
        {
            let truth = truth(&swarm);
            if api_matches(&state, &truth) {
                break started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the restarted dashboard did not match the swarm within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "restarted dashboard matched the swarm {} ms after its start ({attempts} reads)",
        matched_after.as_millis()
    );
    assert!(
        matched_after <= Duration::from_secs(2),
        "matched only after {matched_after:?}"
    );
}

/// Whether `/api/state` shows what `swarmctl` reads from the buckets.
fn api_matches(state: &Value, truth: &Truth) -> bool {
    let summary = &state["summary"];
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    let drones: BTreeMap<String, (String, Vec<String>)> = state["drones"]
        .as_array()
        .map(|cards| {
            cards
                .iter()
                .map(|c| {
                    let mut building: Vec<String> = c["building"]
                        .as_array()
                        .map(|b| {
                            b.iter()
                                .map(|r| r["atom"].as_str().unwrap_or_default().to_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    building.sort();
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        (c["state"].as_str().unwrap_or_default().to_owned(), building),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    n(&summary["queue"]) == truth.queue
        && n(&summary["drones"]["active"]) == truth.active
        && n(&summary["drones"]["idle"]) == truth.idle
        && n(&summary["drones"]["grounded"]) == truth.grounded
        && n(&summary["cores"]["active"]) == truth.cores
        && summary["status"] == truth.status.as_str()
        && drones == truth.drones
}
