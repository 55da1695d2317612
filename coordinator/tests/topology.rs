//! The topology is created idempotently: a second coordinator start keeps every asset and its
//! contents, and the work stream refuses a second job for a package that still has one.

use std::time::Duration;

use swarm_coordinator::config::Settings;
use swarm_coordinator::topology;

#[tokio::test]
async fn ensure_twice_keeps_assets_and_contents() {
    let server = testkit::NatsServer::start().expect("nats-server");
    let client = server.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let settings = Settings::default();
    let first = topology::ensure(&js, &settings)
        .await
        .expect("first ensure");
    first.packages.put("k", "v".into()).await.expect("put");
    js.publish("swarm.build.amd64.one", "job".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    // One job per package subject: a second is refused while the first is queued.
    let second_job = js
        .publish("swarm.build.amd64.one", "job".into())
        .await
        .expect("publish")
        .await;
    assert!(
        second_job.is_err(),
        "a second job for the same package was accepted"
    );

    let changed = Settings {
        lease_ttl_ms: 5_000,
        ack_wait_ms: 10_000,
        ..Settings::default()
    };
    let again = topology::ensure(&js, &changed)
        .await
        .expect("second ensure");
    assert_eq!(
        again.packages.get("k").await.expect("get"),
        Some("v".into())
    );
    let mut builds = again.builds.clone();
    assert_eq!(builds.info().await.expect("info").state.messages, 1);
    // Settings changed between starts are applied to the existing assets.
    let mut leases = again.leases.stream.clone();
    assert_eq!(
        leases.info().await.expect("info").config.max_age,
        Duration::from_millis(5_000)
    );
    let consumer = again
        .builds
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("builders-amd64")
        .await
        .expect("consumer");
    assert_eq!(
        consumer.cached_info().config.ack_wait,
        Duration::from_millis(10_000)
    );
}
