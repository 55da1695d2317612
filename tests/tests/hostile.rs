//! End-to-end: invalid atoms and malformed messages are refused, the services keep working.

use std::time::Duration;

use schemas::{SubmitResult, names};
use swarm_tests::*;

/// Payloads that are not valid messages of any of our types.
fn payloads() -> Vec<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Future {
        v: u16,
        anything: String,
    }
    let named = |v: u16, text: &str| {
        rmp_serde::to_vec_named(&Future {
            v,
            anything: text.to_owned(),
        })
        .expect("encodes")
    };
    vec![
        Vec::new(),
        b"\xc1\xc1\xc1".to_vec(),
        b"not msgpack at all".to_vec(),
        vec![0x85, 0xa1, 0x76],
        named(99, "x"),
        named(1, "<script>alert(1)</script>"),
        vec![0xdc, 0xff, 0xff],
    ]
}

/// Invalid atoms are rejected with a clear error and nothing is enqueued — both by swarmctl
/// before sending and by the coordinator for a client that skips that check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_atoms_are_rejected_and_nothing_is_enqueued() {
    let swarm = Swarm::start().await;
    let long = "a".repeat(10_000);
    let hostile = [
        "sys-libs/glibc; rm -rf /",
        "../etc/passwd",
        "",
        &long,
        "dev-libs/f\u{f6}\u{f6}",
        "$(reboot)",
    ];
    for bad in hostile {
        // One good atom beside the bad one: the whole submission must be refused.
        let items = vec![("sys-libs/zlib".to_owned(), None), (bad.to_owned(), None)];
        match submit(&swarm.nats, &items).await {
            SubmitResult::Rejected { rejections } => {
                assert_eq!(rejections.len(), 1, "{rejections:?}");
                assert!(!rejections[0].reason.is_empty());
                if !bad.is_empty() && bad.len() < 80 {
                    assert!(
                        rejections[0].reason.contains(bad) || rejections[0].input == bad,
                        "{rejections:?}"
                    );
                }
            }
            other => panic!("{bad:?} accepted: {other:?}"),
        }
        let out = swarm.swarmctl(&["submit", "sys-libs/zlib", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "no error printed for {bad:?}");
    }
    assert!(swarm.packages().await.is_empty(), "something was enqueued");
    let client = swarm.nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut builds = js.get_stream(names::BUILDS_STREAM).await.expect("stream");
    assert_eq!(builds.info().await.expect("info").state.messages, 0);
}

/// Malformed MessagePack and wrong-schema messages published to every subject the coordinator
/// and the drones consume are logged and refused (jobs and events that cannot be read are left
/// unacknowledged, see `upgrade.rs`); the services keep working and a normal queue still
/// completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_discarded_and_the_queue_still_completes() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(&DroneSpec::new("h-a", 2, 2));
    swarm.spawn_drone(&DroneSpec::new("h-b", 2, 2));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let client = swarm.nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let junk_job_subject = format!("{}.amd64.dev-test_2Fjunk", names::BUILD_SUBJECT_PREFIX);
    for payload in payloads() {
        // Requests: submissions and drone control.
        let reply = client
            .request(names::SUBMIT_SUBJECT, payload.clone().into())
            .await
            .expect("coordinator answers");
        // A bad request, coded, naming what it could not read.
        let (code, message) = runtime::service::error_of(&reply).expect("a service error");
        assert_eq!(code, 400, "{message}");
        assert!(message.contains("submit request"), "{message}");
        let drone = schemas::DroneName::parse("h-a").expect("name");
        let reply = client
            .request(names::drone_control_subject(&drone), payload.clone().into())
            .await
            .expect("drone answers");
        let decoded = schemas::decode::<schemas::DroneControlReply>(&reply.payload).expect("reply");
        assert!(!decoded.ok);
        // Stream subjects: events, events under a forged drone name, jobs.
        js.publish(
            format!("{}.h-a", names::EVENT_SUBJECT_PREFIX),
            payload.clone().into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
        let _ = js
            .publish(junk_job_subject.clone(), payload.clone().into())
            .await
            .expect("publish")
            .await;
        // Bucket values the components read.
        let packages = js
            .get_key_value(names::PACKAGES_BUCKET)
            .await
            .expect("bucket");
        let _ = packages
            .put("dev-test_2Fjunk", payload.clone().into())
            .await;
        let drones = js
            .get_key_value(names::DRONES_BUCKET)
            .await
            .expect("bucket");
        let _ = drones.put("h-junk", payload.clone().into()).await;
    }
    // An event that claims to come from another drone.
    let forged = schemas::Event {
        v: schemas::SCHEMA_VERSION,
        drone: schemas::DroneName::parse("h-b").expect("name"),
        boot_ms: 1,
        seq: 1,
        at_ms: 1,
        kind: schemas::EventKind::Grounded {
            reason: "forged".into(),
        },
    };
    js.publish(
        format!("{}.h-a", names::EVENT_SUBJECT_PREFIX),
        schemas::encode(&forged).expect("encode").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");

    let items: Vec<(String, Option<f64>)> = (0..20)
        .map(|i| (format!("=dev-test/after-junk-1.{i}"), None))
        .collect();
    assert!(matches!(
        submit(&swarm.nats, &items).await,
        SubmitResult::Accepted { queued: 20, .. }
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let packages = swarm.packages().await;
        let ours: Vec<_> = packages
            .iter()
            .filter(|(a, _)| a.starts_with("=dev-test/after-junk"))
            .collect();
        if ours.len() == 20
            && ours
                .iter()
                .all(|(_, p)| matches!(p.state, schemas::PackageState::Succeeded { .. }))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue did not complete after junk"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The junk job was not built.
    assert!(
        builds(&swarm.records())
            .iter()
            .all(|b| b.atom.starts_with("=dev-test/after-junk"))
    );
    // Every service is still running.
    for (name, drone) in swarm.drones.iter_mut() {
        assert!(
            drone.wait_exit(Duration::from_millis(10)).is_none(),
            "{name} exited"
        );
    }
    let coordinator = swarm.coordinator.as_mut().expect("coordinator");
    assert!(
        coordinator.wait_exit(Duration::from_millis(10)).is_none(),
        "coordinator exited"
    );
    let out = swarm.swarmctl(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counts the lines of a log that contain `needle`.
fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// A flood of refused input — hundreds of undecodable and forged events, junk jobs, junk
/// submissions and control requests, messages over the size limit — is refused message by
/// message but logged once per kind (with the number left unlogged), and the swarm still
/// builds a queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_is_logged_once_per_kind_and_oversized_messages_are_refused() {
    // The server takes messages up to 4 MiB, above the swarm's own 1 MiB limit per message.
    let nats = testkit::NatsServer::builder()
        .max_payload(4 * 1024 * 1024)
        .start()
        .expect("nats-server");
    let mut swarm = Swarm::start_on(nats, None, &[]).await;
    swarm.spawn_drone(&DroneSpec::new("flood", 4, 2));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let client = swarm.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let forged = schemas::encode(&schemas::Event {
        v: schemas::SCHEMA_VERSION,
        drone: schemas::DroneName::parse("someone-else").expect("name"),
        boot_ms: 1,
        seq: 1,
        at_ms: 1,
        kind: schemas::EventKind::Offline,
    })
    .expect("encode");
    let oversized = vec![0x92u8; 2 * 1024 * 1024];
    for i in 0..300 {
        for payload in [b"\xc1 junk".to_vec(), forged.clone()] {
            js.publish("swarm.event.flood", payload.into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
        if i < 100 {
            let _ = js
                .publish(
                    format!("swarm.build.amd64.dev-test_2Fjunk{i}"),
                    b"\xc1 junk job".to_vec().into(),
                )
                .await
                .expect("publish")
                .await;
            let reply = client
                .request(names::SUBMIT_SUBJECT, b"\xc1 junk".to_vec().into())
                .await
                .expect("the coordinator answers junk");
            assert_eq!(runtime::service::error_of(&reply).map(|e| e.0), Some(400));
            let drone = schemas::DroneName::parse("flood").expect("name");
            let reply = client
                .request(
                    names::drone_control_subject(&drone),
                    b"\xc1".to_vec().into(),
                )
                .await
                .expect("the drone answers junk");
            assert!(
                !schemas::decode::<schemas::DroneControlReply>(&reply.payload)
                    .expect("a reply")
                    .ok
            );
        }
    }
    // Over the swarm's limit: refused by size, before decoding.
    js.publish("swarm.event.flood", oversized.clone().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let reply = client
        .request(names::SUBMIT_SUBJECT, oversized.clone().into())
        .await
        .expect("the coordinator answers an oversized submission");
    match runtime::service::error_of(&reply) {
        Some((400, message)) => assert!(message.contains("exceeds the limit"), "{message}"),
        other => panic!("an oversized submission was not refused: {other:?}"),
    }
    // Over the server's limit: refused by the server; nothing reaches the swarm.
    let too_big = vec![0u8; 5 * 1024 * 1024];
    assert!(
        client
            .publish("swarm.event.flood", too_big.into())
            .await
            .is_err(),
        "a message over the server's max payload was sent"
    );

    // The swarm still builds.
    let items: Vec<(String, Option<f64>)> = (0..10)
        .map(|i| (format!("=dev-test/after-flood-1.{i}"), None))
        .collect();
    assert!(matches!(
        swarm.submit(&items).await,
        SubmitResult::Accepted { queued: 10, .. }
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = swarm
            .packages()
            .await
            .iter()
            .filter(|(a, p)| {
                a.starts_with("=dev-test/after-flood")
                    && matches!(p.state, schemas::PackageState::Succeeded { .. })
            })
            .count();
        if done == 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queue did not complete after the flood"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Hundreds of refusals, a handful of log lines: each kind once, and again (with the count
    // left unlogged) at most once per ten seconds.
    let log = |name: &str| {
        std::fs::read_to_string(swarm.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    };
    let coordinator = log("coordinator");
    let drone = log("flood");
    for (log, needle, what) in [
        (
            &coordinator,
            "unreadable event left unacknowledged",
            "junk events",
        ),
        (
            &coordinator,
            "claims to come from another drone",
            "forged events",
        ),
        (&coordinator, "control request refused", "junk submissions"),
        (
            &drone,
            "unreadable job left in the work stream",
            "junk jobs",
        ),
        (
            &drone,
            "malformed control request discarded",
            "junk control requests",
        ),
    ] {
        let count = lines_with(log, needle);
        assert!(
            (1..=3).contains(&count),
            "{what}: {count} log lines \"{needle}\""
        );
    }
    assert!(
        coordinator.contains("suppressed"),
        "the count of unlogged refusals is not reported"
    );
}
