//! End-to-end: rolling upgrades. A message of a schema version a component cannot read (a newer
//! release's) is logged with its subject, sequence and version and left where a component that
//! can read it will find it, while the component goes on with the rest; and every message of
//! the previous release (the golden fixtures, `tests/fixtures/golden/`) is handled by this
//! release's running components. docs/upgrades.md has the rules.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use nix::sys::signal::Signal;
use schemas::{Atom, PackageState, SubmitResult, names};
use swarm_tests::*;

/// A message a future release might write: schema version 99 and a field nobody knows yet.
fn future_message(fields: serde_json::Value) -> Vec<u8> {
    let mut message = serde_json::json!({"v": 99, "added_in_v99": {"anything": [1, 2]}});
    let map = message.as_object_mut().expect("a map");
    map.extend(fields.as_object().expect("a map").clone());
    rmp_serde::to_vec_named(&message).expect("encodes")
}

/// Waits (up to 30 s) for a line of `name`'s log containing every one of `needles`; returns it.
async fn wait_for_line(swarm: &Swarm, name: &str, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = swarm.log(name);
        if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?} in {name}.log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits `count` packages named after `prefix` and waits until each has succeeded.
async fn build_some(swarm: &Swarm, prefix: &str, count: usize) {
    let items: Vec<(String, Option<f64>)> = (0..count)
        .map(|i| (format!("={prefix}-1.{i}"), None))
        .collect();
    assert!(matches!(
        swarm.submit(&items).await,
        SubmitResult::Accepted { queued, .. } if queued as usize == count
    ));
    for (atom, _) in &items {
        swarm
            .wait_for_package(atom, atom, |r| {
                matches!(r.state, PackageState::Succeeded { .. })
            })
            .await;
    }
}

fn assert_running(proc: &mut Proc) {
    assert!(
        proc.wait_exit(Duration::from_millis(10)).is_none(),
        "{} exited",
        proc.name
    );
}

/// A drone of an older release never takes a job it cannot read and drops it: the job of
/// schema version 99 is refused with its subject, sequence and version, never built, and stays
/// in the work stream (for a newer drone), while the drone builds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_newer_release_is_left_in_the_work_stream_unbuilt() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(&DroneSpec::new("up-old", 2, 2));
    let js = jetstream::new(swarm.client().await);
    let atom = Atom::parse("=dev-test/from-the-future-1.0").expect("atom");
    let subject = names::build_subject(&schemas::Arch::default(), &atom.key());
    let mut headers = HeaderMap::new();
    headers.insert(names::HEADER_KIND, "job");
    headers.insert(names::HEADER_ATOM, atom.to_string().as_str());
    let payload = future_message(serde_json::json!({
        "atom": atom.to_string(), "attempt": 1, "submission": 1,
    }));
    let seq = js
        .publish_with_headers(subject.clone(), headers, payload.clone().into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence;

    let line = wait_for_line(&swarm, "up-old", &["unreadable job", &subject]).await;
    assert!(
        line.contains("schema version 99")
            && line.contains(&format!("stream_seq={seq}"))
            && line.contains("newer release"),
        "{line}"
    );
    // The drone goes on building what it can read.
    build_some(&swarm, "dev-test/beside-the-future", 4).await;

    assert!(
        swarm.starts().iter().all(|(a, _)| *a != atom.to_string()),
        "the unreadable job was built"
    );
    let stream = js.get_stream(names::BUILDS_STREAM).await.expect("stream");
    let kept = stream
        .get_raw_message(seq)
        .await
        .expect("the job is still in the stream");
    assert_eq!(
        (kept.subject.as_str(), &kept.payload[..]),
        (subject.as_str(), &payload[..])
    );
    assert_running(swarm.drone("up-old"));
}

/// A coordinator of an older release never acknowledges away an event it cannot read: it logs
/// it and leaves it unacknowledged on its consumer (for a newer coordinator), while it applies
/// every other event. The dashboard shows the rest and says what it refused; a control request
/// of a newer release is answered with an error naming its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_newer_release_is_left_unacknowledged_and_the_rest_applied() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(&DroneSpec::new("up-new", 2, 2));
    let port = testkit::free_port().expect("free port");
    swarm.spawn_dashboard(port);
    let client = swarm.client().await;
    let js = jetstream::new(client.clone());
    // As a drone of a newer release would report a build, on its own subject.
    let subject = format!("{}.up-new", names::EVENT_SUBJECT_PREFIX);
    let payload = future_message(serde_json::json!({
        "drone": "up-new", "boot_ms": 1, "seq": 1, "at_ms": 1,
        "kind": {"type": "teleported", "atom": "dev-test/x"},
    }));
    let seq = js
        .publish(subject.clone(), payload.clone().into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence;

    // Every event after it is applied.
    build_some(&swarm, "dev-test/after-the-future", 4).await;
    let line = wait_for_line(&swarm, "coordinator", &["unreadable event", &subject]).await;
    assert!(
        line.contains("schema version 99") && line.contains(&format!("stream_seq={seq}")),
        "{line}"
    );
    let mut events = js.get_stream(names::EVENTS_STREAM).await.expect("stream");
    let kept = events
        .get_raw_message(seq)
        .await
        .expect("still in the stream");
    assert_eq!(&kept.payload[..], &payload[..]);
    // Not acknowledged: the coordinator's consumer still has it pending, below its ack floor.
    let info = events
        .get_consumer::<pull::Config>(names::COORDINATOR_EVENTS_CONSUMER)
        .await
        .expect("consumer")
        .info()
        .await
        .expect("consumer info")
        .clone();
    assert!(
        info.ack_floor.stream_sequence < seq && info.num_ack_pending >= 1,
        "the unreadable event was acknowledged: {:?}",
        info.ack_floor
    );
    assert!(events.info().await.expect("info").state.last_sequence > seq);

    // The dashboard refuses it by name and serves the rest.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let healthy = testkit::http::get(addr, "/healthz", Duration::from_secs(2))
            .await
            .is_ok_and(|r| r.status == 200);
        if healthy && swarm.log("dashboard").contains("schema version 99") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", swarm.log("dashboard"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A request of a newer release: refused, naming the version, and nothing changes.
    let request = future_message(serde_json::json!({"items": [{"atom": "dev-test/y"}]}));
    let reply = client
        .request(names::SUBMIT_SUBJECT, request.into())
        .await
        .expect("the coordinator answers");
    let (code, message) = runtime::service::error_of(&reply).expect("an error");
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("schema version 99"), "{message}");
    assert!(!swarm.packages().await.contains_key("dev-test/y"));
    assert_running(swarm.coordinator.as_mut().expect("coordinator"));
    assert_running(swarm.drone("up-new"));
}

/// Waits (up to 30 s) until the coordinator has acknowledged every event in the stream.
async fn wait_events_handled(js: &jetstream::Context) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut consumer = js
            .get_stream(names::EVENTS_STREAM)
            .await
            .expect("stream")
            .get_consumer::<pull::Config>(names::COORDINATOR_EVENTS_CONSUMER)
            .await
            .expect("consumer");
        let info = consumer.info().await.expect("info");
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "events not all handled: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn golden(name: &str) -> Vec<u8> {
    let path = testkit::fixture(format!("golden/{name}"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Whether a control service's answer says it could not read the request.
fn unread(reply: &async_nats::Message) -> Option<String> {
    let (code, message) = runtime::service::error_of(reply)?;
    let unread = ["schema", "MessagePack", "does not match"];
    (code == 400 && unread.iter().any(|u| message.contains(u))).then_some(message)
}

/// The messages the previous release wrote (the golden fixtures) are handled by this one, live:
/// its drone record is read, its events are applied, its package record and job are built by a
/// drone of this release, its history entry is listed, and each of its requests is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_the_previous_release_are_handled_by_this_one() {
    let mut swarm = Swarm::start().await;
    let client = swarm.client().await;
    let js = jetstream::new(client.clone());
    let bucket = |name: &'static str| {
        let js = js.clone();
        async move { js.get_key_value(name).await.expect("bucket") }
    };

    // A drone record, read by the coordinator and by swarmctl.
    let drones = bucket(names::DRONES_BUCKET).await;
    drones
        .put(
            "drone-Izar",
            golden("drone-record.offline.v1.msgpack").into(),
        )
        .await
        .expect("put");

    // Events of a build of a package queued by this release.
    let openssl = "=dev-libs/openssl-3.3.2";
    assert!(matches!(
        swarm.submit(&[(openssl.to_owned(), None)]).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    let events_subject = format!("{}.drone-Izar", names::EVENT_SUBJECT_PREFIX);
    let publish_event = |name: &str| {
        let (js, subject, bytes) = (js.clone(), events_subject.clone(), golden(name));
        async move {
            js.publish(subject, bytes.into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    };
    for name in ["online", "claimed", "started", "finished"] {
        publish_event(&format!("event.{name}.v1.msgpack")).await;
    }
    let built = swarm
        .wait_for_package(openssl, "the previous release's events applied", |r| {
            matches!(r.state, PackageState::Succeeded { attempt: 1, .. })
        })
        .await;
    assert_eq!(built.history.len(), 1);
    assert_eq!(
        (
            built.history[0].drone.as_str(),
            built.history[0].duration_ms
        ),
        ("drone-Izar", 95_000)
    );
    assert_eq!(
        built
            .artifacts
            .iter()
            .map(|a| a.path.as_str())
            .collect::<Vec<_>>(),
        ["dev-libs/openssl/openssl-3.3.2-1.gpkg.tar"]
    );
    // Every other event kind is read (about a finished package, they change nothing).
    for path in std::fs::read_dir(testkit::fixture("golden"))
        .expect("fixtures")
        .flatten()
    {
        let name = path.file_name().to_string_lossy().into_owned();
        if name.starts_with("event.") && name.ends_with(".msgpack") {
            publish_event(&name).await;
        }
    }
    wait_events_handled(&js).await;
    let first = swarm.log("coordinator");
    for refusal in ["unreadable", "undecodable"] {
        assert!(!first.contains(refusal), "{refusal}:\n{first}");
    }

    // A package record and its job, built by a drone of this release once a restarted
    // coordinator has loaded the record.
    let zlib = Atom::parse("sys-libs/zlib").expect("atom");
    let packages = bucket(names::PACKAGES_BUCKET).await;
    packages
        .put(
            zlib.key().as_str(),
            golden("package-record.queued.v1.msgpack").into(),
        )
        .await
        .expect("put");
    let mut headers = HeaderMap::new();
    headers.insert(names::HEADER_KIND, "job");
    headers.insert(names::HEADER_ATOM, zlib.to_string().as_str());
    js.publish_with_headers(
        names::build_subject(&schemas::Arch::default(), &zlib.key()),
        headers,
        golden("job.plain.v1.msgpack").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let mut coordinator = swarm.coordinator.take().expect("coordinator");
    coordinator.signal(Signal::SIGTERM);
    assert!(coordinator.wait_exit(Duration::from_secs(20)).is_some());
    swarm.spawn_coordinator();
    swarm.wait_coordinator().await;
    swarm.spawn_drone(&DroneSpec::new("up-new", 2, 2));
    let zlib_record = swarm
        .wait_for_package("sys-libs/zlib", "the previous release's job built", |r| {
            matches!(r.state, PackageState::Succeeded { attempt: 1, .. })
        })
        .await;
    assert_eq!(zlib_record.history[0].drone.as_str(), "up-new");
    let starts = swarm.starts();
    assert_eq!(
        starts.iter().filter(|(a, _)| a == "sys-libs/zlib").count(),
        1,
        "{starts:?}"
    );
    assert!(starts.iter().all(|(a, _)| a != openssl), "{starts:?}");

    // A history entry, listed by swarmctl.
    let history_subject = names::history_subject(
        &schemas::Arch::default(),
        &Atom::parse(openssl).expect("atom").key(),
    );
    js.publish(history_subject, golden("history-entry.v1.msgpack").into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let (ok, history) = swarm.swarmctl_text(&["history", openssl]);
    assert!(ok && history.contains("nightly-20250601"), "{history}");
    let (ok, drones_out) = swarm.swarmctl_text(&["drones"]);
    assert!(ok && drones_out.contains("drone-Izar"), "{drones_out}");

    // Every request kind, to the endpoint that takes it: read, whatever the answer.
    let unground = golden("drone-control.unground.v1.msgpack");
    let drone = schemas::DroneName::parse("up-new").expect("name");
    let reply = client
        .request(names::drone_control_subject(&drone), unground.into())
        .await
        .expect("the drone answers");
    let answer: schemas::DroneControlReply = schemas::decode(&reply.payload).expect("a reply");
    assert!(!answer.message.contains("malformed"), "{}", answer.message);
    for (fixture, endpoint) in [
        ("binhost-request.status", "binhost"),
        ("binhost-request.publish", "binhost"),
        ("binhost-request.rollback", "binhost"),
        ("cancel-request", "cancel"),
        ("retry-request", "retry"),
        ("drone-request", "drain"),
        ("submit-request", "submit"),
        ("pause-request", "pause"),
        ("pause-request", "resume"),
    ] {
        let reply = client
            .request(
                names::control_subject(endpoint),
                golden(&format!("{fixture}.v1.msgpack")).into(),
            )
            .await
            .expect("the coordinator answers");
        assert_eq!(unread(&reply), None, "{fixture} to {endpoint}");
    }
    for log in ["coordinator", "up-new"] {
        let text = swarm.log(log);
        for refusal in ["unreadable", "undecodable", "malformed"] {
            assert!(!text.contains(refusal), "{log}.log: {refusal}:\n{text}");
        }
    }
    assert_running(swarm.coordinator.as_mut().expect("coordinator"));
}

/// A package record a newer release wrote is never overwritten: the coordinator skips it when
/// loading, and a submission of its package is refused, naming it, with nothing queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_record_of_a_newer_release_is_never_overwritten() {
    let mut swarm = Swarm::start().await;
    let js = jetstream::new(swarm.client().await);
    let packages = js
        .get_key_value(names::PACKAGES_BUCKET)
        .await
        .expect("packages bucket");
    let atom = Atom::parse("=dev-test/future-1").expect("valid");
    let key = atom.key();
    let future = future_message(serde_json::json!({"atom": atom.as_str()}));
    let revision = packages
        .put(key.as_str(), future.clone().into())
        .await
        .expect("stored");
    // A coordinator of this release starts on that bucket.
    swarm.coordinator.as_mut().expect("coordinator").kill9();
    swarm.spawn_coordinator();
    wait_for_line(&swarm, "coordinator", &["cannot read are left as they are"]).await;
    wait_for_line(&swarm, "coordinator", &["coordinator ready"]).await;
    let items = vec![
        (atom.to_string(), None),
        ("=dev-test/today-1".to_owned(), None),
    ];
    match swarm.submit(&items).await {
        SubmitResult::Error { message } => {
            assert!(
                message.contains("=dev-test/future-1") && message.contains("newer release"),
                "{message}"
            );
        }
        other => panic!("the submission was not refused: {other:?}"),
    }
    let entry = packages
        .entry(key.as_str())
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(entry.revision, revision);
    assert_eq!(entry.value.as_ref(), future.as_slice());
    assert!(!swarm.packages().await.contains_key("=dev-test/today-1"));
}
