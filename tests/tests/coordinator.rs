//! End-to-end: the coordinator's repairs — a lost job is re-published, exhausted deliveries are
//! dead-lettered, a silent drone is marked lost.

use std::time::{Duration, Instant};

use futures::StreamExt;
use nix::sys::signal::Signal;
use schemas::{DroneRecord, DroneState, PackageState, SubmitResult, names};
use swarm_tests::*;

/// A job that vanished from the work stream (a stale ack, a broker fault) is re-published by
/// the reconciler, and the package is built once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_republishes_a_lost_job() {
    let mut swarm = Swarm::start().await;
    let atom = "app-misc/vanishing";
    assert!(matches!(
        submit(&swarm.nats, &[(atom.to_owned(), None)]).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    let client = swarm.nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(names::BUILDS_STREAM).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
    stream.purge().await.expect("purge");
    assert_eq!(stream.info().await.expect("info").state.messages, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while stream.info().await.expect("info").state.messages == 0 {
        assert!(
            Instant::now() < deadline,
            "the lost job was not re-published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    swarm.spawn_drone(&DroneSpec::new("rc-a", 2, 1));
    let packages = swarm.wait_final(1, Duration::from_secs(20)).await;
    assert!(all_succeeded(&packages));
    assert_eq!(builds(&swarm.records()).len(), 1);
}

/// A job delivered `max_deliver` times without a result is dead-lettered: removed from the
/// stream and the package ends `failed` with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_deliveries_are_dead_lettered() {
    let swarm = Swarm::start_with(&[("SWARM_COORDINATOR__MAX_DELIVER", "2")]).await;
    let atom = "app-misc/poison";
    assert!(matches!(
        submit(&swarm.nats, &[(atom.to_owned(), None)]).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    // Play two drones that take the job and vanish without acknowledging it.
    let client = swarm.nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(names::BUILDS_STREAM).await.expect("stream");
    let consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("builders-amd64")
        .await
        .expect("consumer");
    for delivery in 1..=2 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .expect("fetch");
            if let Some(Ok(message)) = batch.next().await {
                assert_eq!(message.info().expect("info").delivered, delivery);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "delivery {delivery} did not come"
            );
        }
    }
    // The server notices the exhausted job when someone pulls again, as drones always do.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !swarm.packages().await[atom].state.is_final() {
        assert!(Instant::now() < deadline, "not dead-lettered");
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch");
        assert!(batch.next().await.is_none(), "delivered beyond max_deliver");
    }
    let packages = swarm.wait_final(1, Duration::from_secs(5)).await;
    match &packages[atom].state {
        PackageState::Failed { reason, .. } => {
            assert!(reason.contains("dead-lettered"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let mut stream = js.get_stream(names::BUILDS_STREAM).await.expect("stream");
    assert_eq!(
        stream.info().await.expect("info").state.messages,
        0,
        "dead letter left in the stream"
    );
}

/// A drone whose heartbeat stops is shown lost and marked lost by the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_drone_is_marked_lost() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(&DroneSpec::new("l-a", 2, 1));
    let client = swarm.nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let drones = js
        .get_key_value(names::DRONES_BUCKET)
        .await
        .expect("bucket");
    let deadline = Instant::now() + Duration::from_secs(10);
    while drones.get("l-a").await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "drone never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    swarm.drone("l-a").signal(Signal::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bytes = drones.get("l-a").await.expect("get").expect("record");
        let record: DroneRecord = schemas::decode(&bytes).expect("decodes");
        if matches!(record.state, DroneState::Lost { .. }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not marked lost: {:?}",
            record.state
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = swarm.swarmctl(&["drones", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list[0]["state"], "lost", "{list}");
    // It comes back: its own heartbeat wins over the mark.
    swarm.drone("l-a").signal(Signal::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bytes = drones.get("l-a").await.expect("get").expect("record");
        let record: DroneRecord = schemas::decode(&bytes).expect("decodes");
        if matches!(record.state, DroneState::Idle) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not come back: {:?}",
            record.state
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
