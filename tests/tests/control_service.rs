//! End-to-end: the coordinator's control API is a NATS micro service. A third-party client
//! (nats-py, `tests/fixtures/micro_service.py`) finds it with `$SRV.PING`, reads its endpoints
//! with `$SRV.INFO` and their counts with `$SRV.STATS`, as the services protocol specifies; and
//! malformed requests to every endpoint (fuzzed) get a coded error and change nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use schemas::{PackageRecord, names};
use swarm_tests::*;

/// The protocol's answers as nats-py reads them.
fn micro(swarm: &Swarm) -> serde_json::Value {
    nats_py(swarm, "micro_service.py", &[names::CONTROL_SERVICE])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_client_finds_and_measures_the_service() {
    let swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    // Some requests to count: three submissions, one of them malformed.
    let client = swarm.client().await;
    for payload in [b"\xc1".to_vec(), Vec::new()] {
        let reply = client
            .request(names::SUBMIT_SUBJECT, payload.into())
            .await
            .expect("answered");
        assert_eq!(runtime::service::error_of(&reply).map(|e| e.0), Some(400));
    }
    let (ok, text) = swarm.swarmctl_text(&["submit", "app-misc/hello"]);
    assert!(ok, "{text}");

    let answers = micro(&swarm);
    let version = env!("CARGO_PKG_VERSION");
    let pings = answers["ping_all"].as_array().expect("ping answers");
    assert_eq!(pings.len(), 1, "one coordinator answers: {pings:?}");
    for ping in [&pings[0], &answers["ping"]] {
        assert_eq!(ping["type"], "io.nats.micro.v1.ping_response", "{ping}");
        assert_eq!(ping["name"], names::CONTROL_SERVICE, "{ping}");
        assert_eq!(ping["version"], version, "{ping}");
        assert!(
            ping["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{ping}"
        );
    }
    let info = &answers["info"];
    assert_eq!(info["type"], "io.nats.micro.v1.info_response", "{info}");
    assert_eq!(info["id"], answers["ping"]["id"], "{info}");
    let mut endpoints: Vec<(&str, &str)> = info["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name"),
                e["subject"].as_str().expect("subject"),
            )
        })
        .collect();
    endpoints.sort_unstable();
    let mut expected: Vec<(&str, String)> = names::CONTROL_ENDPOINTS
        .iter()
        .map(|e| (*e, names::control_subject(e)))
        .collect();
    expected.sort_unstable();
    assert_eq!(
        endpoints,
        expected
            .iter()
            .map(|(n, s)| (*n, s.as_str()))
            .collect::<Vec<_>>()
    );
    for endpoint in info["endpoints"].as_array().expect("endpoints") {
        assert!(
            endpoint["metadata"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("->")),
            "every endpoint says its request and reply: {endpoint}"
        );
    }
    let stats = &answers["stats"];
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response", "{stats}");
    let submit = stats["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["name"] == "submit")
        .expect("submit's stats");
    assert_eq!(submit["num_requests"], 3, "{submit}");
    assert_eq!(submit["num_errors"], 2, "{submit}");
    assert!(
        submit["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("400"),
        "{submit}"
    );
    // A third-party client reads a refusal's code and message from the headers.
    let refused = &answers["refused"];
    assert_eq!(refused["Nats-Service-Error-Code"], "400", "{refused}");
    assert!(
        refused["Nats-Service-Error"]
            .as_str()
            .is_some_and(|m| m.contains("submit request")),
        "{refused}"
    );
}

/// A deterministic generator of junk (xorshift), so a failure can be replayed.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = (self.next() % 64) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Whether `payload` is a request the endpoint reads (a valid one is not junk, whatever the
/// generator meant; an empty payload is a pause or resume without a reason).
fn readable(endpoint: &str, payload: &[u8]) -> bool {
    use schemas::decode;
    match endpoint {
        "submit" => decode::<schemas::SubmitRequest>(payload).is_ok(),
        "binhost" => decode::<schemas::BinhostRequest>(payload).is_ok(),
        "cancel" => decode::<schemas::CancelRequest>(payload).is_ok(),
        "retry" => decode::<schemas::RetryRequest>(payload).is_ok(),
        "pause" | "resume" => {
            payload.is_empty() || decode::<schemas::PauseRequest>(payload).is_ok()
        }
        _ => decode::<schemas::DroneRequest>(payload).is_ok(),
    }
}

/// What the swarm's state is: every package's record and revision, the drones' states, and
/// whether its consumers are paused.
async fn state(swarm: &Swarm) -> (BTreeMap<String, (String, u64)>, Vec<String>, bool) {
    let client = swarm.client().await;
    let js = async_nats::jetstream::new(client);
    let bucket = js
        .get_key_value(names::PACKAGES_BUCKET)
        .await
        .expect("bucket");
    let items = runtime::kv::read_bucket::<PackageRecord>(&bucket)
        .await
        .expect("read");
    let packages = items
        .into_iter()
        .map(|i| {
            (
                i.value.atom.to_string(),
                (i.value.state.label().to_owned(), i.revision),
            )
        })
        .collect();
    let drones: Vec<String> = swarm
        .swarmctl_json(&["drones"])
        .as_array()
        .expect("drones")
        .iter()
        .map(|d| format!("{} {}", d["name"], d["state"]))
        .collect();
    let status = swarm.swarmctl_json(&["status"]);
    (packages, drones, status["operator_paused"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_to_every_endpoint_get_a_coded_error_and_change_nothing() {
    let mut swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    // A drone that takes nothing (paused by its own drain), and queued and finished packages.
    swarm.spawn_drone(&DroneSpec::new("f-a", 2, 1));
    let (ok, text) = swarm.swarmctl_text(&["submit", "app-misc/one", "app-misc/two"]);
    assert!(ok, "{text}");
    swarm.wait_final(2, Duration::from_secs(60)).await;
    let (ok, text) = swarm.swarmctl_text(&["drain", "f-a"]);
    assert!(ok, "{text}");
    let (ok, text) = swarm.swarmctl_text(&["submit", "app-misc/three"]);
    assert!(ok, "{text}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = state(&swarm).await;

    let client = swarm.client().await;
    let mut junk = Junk(0x5eed_cafe_f00d_d00d);
    // Hand-picked shapes besides the random ones: nothing, nil, a bare number, a list, a map
    // with a wrong schema version, a map of the wrong types, half a megabyte of junk.
    let mut shapes: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xc0],
        vec![0x2a],
        vec![0x93, 1, 2, 3],
        vec![0x81, 0xa1, b'v', 0xcd, 0x03, 0xe7],
        vec![0x82, 0xa1, b'v', 1, 0xa5, b'a', b't', b'o', b'm', b's', 7],
        vec![0xc1; 512 * 1024],
    ];
    let mut answered = 0;
    for endpoint in names::CONTROL_ENDPOINTS {
        let subject = names::control_subject(endpoint);
        let mut payloads = shapes.clone();
        payloads.extend((0..150).map(|_| junk.bytes()));
        for payload in payloads {
            if readable(endpoint, &payload) {
                continue;
            }
            let reply = client
                .request(subject.clone(), payload.clone().into())
                .await
                .unwrap_or_else(|err| panic!("{endpoint} did not answer {payload:?}: {err}"));
            let (code, message) = runtime::service::error_of(&reply)
                .unwrap_or_else(|| panic!("{endpoint} accepted {payload:?}"));
            assert_eq!(code, 400, "{endpoint} {payload:?}: {message}");
            assert!(
                !message.is_empty(),
                "{endpoint}: a refusal names its reason"
            );
            answered += 1;
        }
    }
    shapes.clear();
    assert!(answered > 1_000, "only {answered} malformed requests sent");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        state(&swarm).await,
        before,
        "a malformed request changed the swarm"
    );
    // The service still works.
    let (ok, text) = swarm.swarmctl_text(&["unground", "f-a"]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(3, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
}
