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
/// and the drones consume are logged and discarded; the services keep working and a normal queue
/// still completes.
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
        let decoded =
            schemas::decode::<schemas::SubmitReply>(&reply.payload).expect("a reply of our schema");
        assert!(
            matches!(decoded.result, SubmitResult::Error { .. }),
            "{decoded:?}"
        );
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
    // The junk job was terminated, not built, and nothing of it remains queued.
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
