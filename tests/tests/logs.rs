//! End-to-end: build logs. While a build that prints 100,000 lines runs, `swarmctl logs
//! --follow` prints them live, in order, none lost or twice; afterwards the stored log (gzip,
//! in the logs object store) is complete and identical to what the drone wrote.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use swarm_tests::*;

fn expected(lines: u32) -> String {
    (1..=lines).map(|n| format!("line {n}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_log_streams_live_in_order_and_is_stored_complete() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    let logs = swarm.dir.path().join("drone-logs");
    swarm.spawn_drone(
        &DroneSpec::new("l-a", 2, 1)
            .env("SWARM_TEST_PRINT_LINES", "100000")
            .env("SWARM_TEST_PRINT_PAUSE", "0.15")
            .env("SWARM_DRONE__LOG_DIR", &logs.display().to_string()),
    );
    let atom = "dev-test/chatty";
    let (ok, text) = swarm.swarmctl_text(&["submit", atom]);
    assert!(ok, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !swarm.records().iter().any(|r| r.phase == "start") {
        assert!(Instant::now() < deadline, "the build did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Follow it while it runs: its output arrives as it is written, to its end.
    let started = Instant::now();
    let mut follow = swarm
        .swarmctl_command(&["logs", atom, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("swarmctl logs --follow");
    let mut stdout = follow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        // When each chunk arrived, and what.
        let mut chunks: Vec<(Duration, usize)> = Vec::new();
        let mut all = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    chunks.push((started.elapsed(), n));
                    all.extend_from_slice(&buf[..n]);
                }
            }
        }
        (all, chunks)
    });
    let status = follow.wait().expect("follow ends");
    let (live, chunks) = reader.join().expect("reader");
    assert!(status.success(), "follow failed");
    let live = String::from_utf8(live).expect("text");
    assert!(
        live == expected(100_000),
        "the live log is not lines 1..100000 in order: {} bytes",
        live.len()
    );
    // Live: it arrived over the build's run (3 s of bursts), not all at once at its end.
    let first = chunks.first().map(|c| c.0).expect("chunks");
    let last = chunks.last().map(|c| c.0).expect("chunks");
    assert!(chunks.len() >= 5, "{} chunks", chunks.len());
    assert!(
        last - first >= Duration::from_secs(1),
        "arrived within {:?}",
        last - first
    );
    println!(
        "live log: {} chunks over {:?}, {} bytes",
        chunks.len(),
        last - first,
        live.len()
    );

    // Afterwards: the stored log, complete and identical to what the drone wrote.
    let packages = swarm.wait_final(1, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let stored = swarm.swarmctl(&["logs", atom]);
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    let stored = String::from_utf8(stored.stdout).expect("text");
    assert!(
        stored == expected(100_000),
        "the stored log differs: {} bytes",
        stored.len()
    );
    let file = std::fs::read_to_string(logs.join(format!(
        "{}-1.log",
        schemas::Atom::parse(atom).expect("atom").key()
    )))
    .expect("the drone's log file");
    assert!(file == stored, "the drone's file and the stored log differ");
    let by_attempt = swarm.swarmctl(&["logs", atom, "--attempt", "1"]);
    assert_eq!(by_attempt.stdout, stored.as_bytes());

    // An attempt that never ran has no log (exit 1); an unknown package is an error.
    let none = swarm.swarmctl(&["logs", atom, "--attempt", "7"]);
    assert_eq!(none.status.code(), Some(1));
    let unknown = swarm.swarmctl(&["logs", "dev-test/never"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("never submitted"));
}

/// The dashboard's list of failures links to each failed attempt's complete log, which it
/// serves as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_links_a_failure_to_its_complete_log() {
    let mut swarm = Swarm::start_with(&[("SWARM_COORDINATOR__MAX_ATTEMPTS", "1")]).await;
    swarm.wait_coordinator().await;
    let port = testkit::free_port().expect("free port");
    swarm.spawn_dashboard(port);
    swarm.spawn_drone(
        &DroneSpec::new("l-b", 2, 1)
            .env("SWARM_TEST_PRINT_LINES", "3000")
            .env("SWARM_TEST_PRINT_PAUSE", "0")
            .env("SWARM_TEST_FAIL_ALWAYS", "1")
            .env("SWARM_TEST_FAIL_MESSAGE", "make: *** [all] Error 2")
            .env("SWARM_DRONE__GROUND_AFTER_FAILURES", "100"),
    );
    let atom = "dev-test/failing";
    let (ok, text) = swarm.swarmctl_text(&["submit", atom]);
    assert!(ok, "{text}");
    swarm.wait_final(1, Duration::from_secs(60)).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    let link = loop {
        if let Ok(state) = testkit::http::get(addr, "/api/state", Duration::from_secs(5)).await
            && let Ok(json) = state.json()
            && let Some(link) = json["failures"][0]["log"].as_str()
        {
            break link.to_owned();
        }
        assert!(Instant::now() < deadline, "the failure never showed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(link, "/logs/dev-test_2Ffailing/1");
    let log = testkit::http::get(addr, &link, Duration::from_secs(5))
        .await
        .expect("the log");
    assert_eq!(log.status, 200, "{}", log.body);
    assert_eq!(
        log.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // Every line of stdout, and stderr's line where the drone read it among them.
    let error = "make: *** [all] Error 2\n";
    assert!(log.body.contains(error), "{}", log.body.len());
    let stdout = log.body.replacen(error, "", 1);
    assert!(
        stdout == expected(3000),
        "the served log differs: {} bytes",
        log.body.len()
    );
    let missing = testkit::http::get(addr, "/logs/dev-test_2Ffailing/9", Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(missing.status, 404, "{}", missing.body);
    let junk = testkit::http::get(addr, "/logs/not%20a%20key/1", Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(junk.status, 400, "{}", junk.body);
}
