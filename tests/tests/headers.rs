//! End-to-end: the work and event streams are readable without `swarmctl`. Every job and every
//! drone event carries headers a person reads (`Swarm-Kind`, `Swarm-Atom`, `Swarm-Attempt`,
//! `Swarm-Run` on jobs, `Swarm-Drone` and a finished build's `Swarm-Outcome` on events), checked
//! with a third-party NATS client (nats-py, `tests/fixtures/stream_headers.py`), as the NATS CLI
//! or an operator's own script reads them.

use std::time::Duration;

use schemas::names;
use swarm_tests::*;

/// Every message of `stream` as nats-py reads it: `[{subject, headers}]`.
fn stream_headers(swarm: &Swarm, stream: &str) -> Vec<serde_json::Value> {
    let list = nats_py(swarm, "stream_headers.py", &[stream]);
    list.as_array().expect("a JSON list").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_events_carry_headers_a_person_reads() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    // No drone yet: the jobs stay in the work stream to be read.
    let (ok, text) = swarm.swarmctl_text(&[
        "submit",
        "--run",
        "nightly-1",
        "app-misc/hello",
        "=dev-libs/openssl-3.3.2",
    ]);
    assert!(ok, "{text}");
    let jobs = stream_headers(&swarm, names::BUILDS_STREAM);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let mut atoms: Vec<&str> = jobs
        .iter()
        .map(|job| {
            let h = &job["headers"];
            assert_eq!(h["Swarm-Kind"], "job", "{job}");
            assert_eq!(h["Swarm-Attempt"], "1", "{job}");
            assert_eq!(h["Swarm-Run"], "nightly-1", "{job}");
            h["Swarm-Atom"].as_str().expect("an atom")
        })
        .collect();
    atoms.sort_unstable();
    assert_eq!(atoms, ["=dev-libs/openssl-3.3.2", "app-misc/hello"]);

    swarm.spawn_drone(&DroneSpec::new("drone-h", 2, 2));
    let packages = swarm.wait_final(2, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let events = stream_headers(&swarm, names::EVENTS_STREAM);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["headers"]["Swarm-Kind"].as_str())
        .collect();
    assert_eq!(
        kinds.len(),
        events.len(),
        "every event has a kind: {events:?}"
    );
    assert!(kinds.contains(&"online"), "{kinds:?}");
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["headers"]["Swarm-Kind"] == "finished")
        .collect();
    assert_eq!(finished.len(), 2, "{events:?}");
    for event in finished {
        let h = &event["headers"];
        assert_eq!(h["Swarm-Drone"], "drone-h", "{event}");
        assert_eq!(h["Swarm-Attempt"], "1", "{event}");
        assert_eq!(h["Swarm-Outcome"], "succeeded", "{event}");
        assert!(h["Swarm-Atom"].is_string(), "{event}");
    }

    // The run, as `swarmctl runs` and `status --run` show it.
    let runs = swarm.swarmctl_json(&["runs"]);
    assert_eq!(runs[0]["run"], "nightly-1", "{runs}");
    assert_eq!(runs[0]["state"], "ended", "{runs}");
    assert_eq!(runs[0]["packages"], 2, "{runs}");
    assert_eq!(runs[0]["counts"]["succeeded"], 2, "{runs}");
    let (ok, row) = swarm.swarmctl_text(&["status", "--run", "nightly-1"]);
    assert!(
        ok && row
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("nightly-1  ended")),
        "{row}"
    );
    let (ok, unknown) = swarm.swarmctl_text(&["status", "--run", "nightly-9"]);
    assert!(
        !ok && unknown.contains("no package was submitted in run nightly-9"),
        "{unknown}"
    );
}
