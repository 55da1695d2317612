//! Leadership on a real nats-server: one coordinator wins the lease, a second stands by; once the
//! first's lease is gone the second leads with a newer term, and every package write of the first
//! is refused by the server (its term is over), leaving the bucket as the new leader wrote it.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use schemas::{PackageState, decode, fixtures, names};
use swarm_coordinator::leader;
use swarm_coordinator::store::{self, WriteError, Writer};
use tokio_util::sync::CancellationToken;

async fn buckets(js: &jetstream::Context, ttl: Duration) -> (kv::Store, kv::Store) {
    let leader = js
        .create_key_value(kv::Config {
            bucket: names::LEADER_BUCKET.to_owned(),
            max_age: ttl,
            ..Default::default()
        })
        .await
        .expect("leader bucket");
    let packages = js
        .create_key_value(kv::Config {
            bucket: names::PACKAGES_BUCKET.to_owned(),
            ..Default::default()
        })
        .await
        .expect("packages bucket");
    (leader, packages)
}

#[tokio::test]
async fn a_deposed_leaders_writes_are_refused_by_the_server() {
    let server = testkit::NatsServer::start().expect("nats-server");
    let js = jetstream::new(server.connect().await.expect("connect"));
    let ttl = Duration::from_secs(1);
    let (leader_kv, packages) = buckets(&js, ttl).await;
    let shutdown = CancellationToken::new();

    let first = leader::campaign(&leader_kv, &packages, "c1", ttl, &shutdown)
        .await
        .expect("c1 leads");
    let old = Writer {
        js: js.clone(),
        bucket: packages.clone(),
        fence: first.fence,
    };
    let key = fixtures::atom("=dev-libs/a-1").key();
    let queued = fixtures::package_record("=dev-libs/a-1", PackageState::Queued { attempt: 1 });
    store::write_record(&old, &key, &queued)
        .await
        .expect("the leader writes");

    // A second coordinator stands by while the lease lives.
    let standby = tokio::time::timeout(
        Duration::from_millis(600),
        leader::campaign(&leader_kv, &packages, "c2", ttl, &shutdown),
    )
    .await;
    assert!(standby.is_err(), "c2 led while c1's lease was alive");
    assert_eq!(
        leader::current(&leader_kv)
            .await
            .map(|r| r.coordinator)
            .as_deref(),
        Some("c1")
    );

    // c1 stops renewing (frozen): its lease expires and c2 leads with a newer term.
    let second = leader::campaign(&leader_kv, &packages, "c2", ttl, &shutdown)
        .await
        .expect("c2 leads");
    assert!(second.fence.term_seq > first.fence.term_seq);
    let new = Writer {
        js: js.clone(),
        bucket: packages.clone(),
        fence: second.fence,
    };
    let succeeded = fixtures::package_record(
        "=dev-libs/a-1",
        PackageState::Succeeded {
            attempt: 1,
            drone: fixtures::drone_name("d1"),
        },
    );
    let revision = store::write_record(&new, &key, &succeeded)
        .await
        .expect("the new leader writes");

    // c1 thaws and writes: refused, and the record stays the new leader's.
    match store::write_record(&old, &key, &queued).await {
        Err(WriteError::Fenced { term_seq }) => assert_eq!(term_seq, first.fence.term_seq),
        other => panic!("the deposed leader's write was not refused: {other:?}"),
    }
    let other_key = fixtures::atom("=dev-libs/b-1").key();
    assert!(matches!(
        store::write_record(&old, &other_key, &queued).await,
        Err(WriteError::Fenced { .. })
    ));
    let entry = packages
        .entry(key.as_str())
        .await
        .expect("read")
        .expect("record");
    assert_eq!(entry.revision, revision);
    let stored: schemas::PackageRecord = decode(&entry.value).expect("decodes");
    assert_eq!(stored.state, succeeded.state);
    assert!(
        packages
            .entry(other_key.as_str())
            .await
            .expect("read")
            .is_none()
    );
}
