//! `read_bucket` and `open_bucket` against a real nats-server: empty buckets, thousands of keys,
//! deletions, undecodable values and updates.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use swarm_runtime::kv::{KvOpenError, read_bucket};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Probe {
    v: u16,
    n: u32,
}

impl schemas::Wire for Probe {
    const KIND: &'static str = "probe";
}

fn probe(n: u32) -> bytes::Bytes {
    schemas::encode(&Probe {
        v: schemas::SCHEMA_VERSION,
        n,
    })
    .expect("encodes")
    .into()
}

async fn bucket(server: &testkit::NatsServer, name: &str) -> kv::Store {
    let client = server.connect().await.expect("connects");
    jetstream::new(client)
        .create_key_value(kv::Config {
            bucket: name.to_owned(),
            history: 5,
            ..Default::default()
        })
        .await
        .expect("bucket created")
}

/// Generous for a debug build on a busy 2-core machine, far below anything that looks like a hang.
const PROMPT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn empty_bucket_reads_as_empty_promptly() {
    let server = testkit::NatsServer::start().expect("server starts");
    let store = bucket(&server, "empty").await;
    let items = tokio::time::timeout(PROMPT, read_bucket::<Probe>(&store))
        .await
        .expect("does not hang")
        .expect("reads");
    assert!(items.is_empty());

    // A bucket whose only key was deleted holds a delete marker: still empty, still prompt.
    store.put("gone", probe(1)).await.expect("put");
    store.delete("gone").await.expect("delete");
    let items = tokio::time::timeout(PROMPT, read_bucket::<Probe>(&store))
        .await
        .expect("does not hang")
        .expect("reads");
    assert!(items.is_empty(), "{items:?}");
}

#[tokio::test]
async fn thousands_of_keys_are_all_returned() {
    const KEYS: u32 = 3000;
    let server = testkit::NatsServer::start().expect("server starts");
    let store = bucket(&server, "many").await;
    let mut puts = futures::stream::iter(0..KEYS)
        .map(|n| {
            let store = store.clone();
            async move { store.put(format!("key-{n:05}"), probe(n)).await }
        })
        .buffer_unordered(64);
    while let Some(put) = puts.next().await {
        put.expect("put");
    }
    let before = swarm_runtime::now_ms();
    let items = tokio::time::timeout(Duration::from_secs(30), read_bucket::<Probe>(&store))
        .await
        .expect("does not hang")
        .expect("reads");
    assert_eq!(items.len(), KEYS as usize);
    for (n, item) in (0..KEYS).zip(&items) {
        assert_eq!(item.key, format!("key-{n:05}"), "sorted by key");
        assert_eq!(item.value.n, n);
        assert!(item.revision >= 1);
        // Server timestamps of this test's puts: not in the future, not before the test began.
        assert!(item.created_ms <= before + 1_000, "{item:?}");
        assert!(item.created_ms + 120_000 >= before, "{item:?}");
    }
}

#[tokio::test]
async fn deleted_and_purged_keys_are_absent_and_updates_win() {
    let server = testkit::NatsServer::start().expect("server starts");
    let store = bucket(&server, "mixed").await;
    for key in ["a", "b", "c", "d"] {
        store.put(key, probe(1)).await.expect("put");
    }
    store.delete("b").await.expect("delete");
    store.purge("c").await.expect("purge");
    let rev = store.put("d", probe(2)).await.expect("update");
    let items = read_bucket::<Probe>(&store).await.expect("reads");
    let keys: Vec<_> = items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["a", "d"]);
    assert_eq!(items[1].value.n, 2);
    assert_eq!(items[1].revision, rev);
}

/// Collects what the tracing subscriber writes, to check the warnings.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

// `tokio::test` runs on the current thread, so a thread-local subscriber sees the whole read.
#[tokio::test]
async fn undecodable_values_are_skipped_with_a_warning() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = testkit::NatsServer::start().expect("server starts");
    let store = bucket(&server, "garbage").await;
    store.put("good", probe(7)).await.expect("put");
    store
        .put("garbage", bytes::Bytes::from_static(b"\xc1 not msgpack"))
        .await
        .expect("put");
    let other_version = rmp_serde::to_vec_named(&Probe { v: 99, n: 1 }).expect("encodes");
    store
        .put("future", other_version.into())
        .await
        .expect("put");
    // A key that was good and then overwritten with garbage must not show its stale value.
    store.put("spoiled", probe(1)).await.expect("put");
    store
        .put("spoiled", bytes::Bytes::from_static(b""))
        .await
        .expect("put");
    let items = read_bucket::<Probe>(&store).await.expect("reads");
    let keys: Vec<_> = items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["good"]);
    assert_eq!(items[0].value.n, 7);
    let logged = captured.text();
    for (key, reason) in [
        ("garbage", "not valid MessagePack"),
        ("future", "schema version 99"),
        ("spoiled", "not valid MessagePack"),
    ] {
        assert!(
            logged
                .lines()
                .any(|line| line.contains(&format!("key=\"{key}\"")) && line.contains(reason)),
            "no warning for {key} ({reason}) in:\n{logged}"
        );
    }
}

#[tokio::test]
async fn a_missing_bucket_is_reported_as_missing() {
    let server = testkit::NatsServer::start().expect("server starts");
    let js = jetstream::new(server.connect().await.expect("connects"));
    match swarm_runtime::kv::open_bucket(&js, "never-created").await {
        Err(KvOpenError::Missing { bucket }) => assert_eq!(bucket, "never-created"),
        other => panic!("expected a missing bucket, got {other:?}"),
    }
    bucket(&server, "exists").await;
    swarm_runtime::kv::open_bucket(&js, "exists")
        .await
        .expect("opens an existing bucket");
}

#[tokio::test]
async fn reading_leaves_no_consumer_behind() {
    let server = testkit::NatsServer::start().expect("server starts");
    let store = bucket(&server, "tidy").await;
    store.put("k", probe(1)).await.expect("put");
    read_bucket::<Probe>(&store).await.expect("reads");
    read_bucket::<Probe>(&store).await.expect("reads");
    let mut stream = store.stream.clone();
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.consumer_count, 0);
}
