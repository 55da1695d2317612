//! Reading a whole KV bucket at once (every live key with its decoded value), and opening a bucket
//! with an error that tells "not created yet" apart from other failures.
//!
//! A bucket is read through one ephemeral pull consumer that delivers the last message of every
//! key, fetched in batches with `no_wait`: the server answers "no more messages" when the reader
//! has caught up, so an empty bucket, or keys that expire while they are being read, can never make
//! the read hang, and a bucket of thousands of keys costs a handful of requests, not one per key.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, ReplayPolicy, pull};
use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;
use schemas::Wire;

/// Messages asked for per fetch: large enough that thousands of keys take a few requests, small
/// enough that one batch of package records (each with log tails) stays a few megabytes.
const FETCH_BATCH: usize = 500;
/// How long one batch may take to arrive in full before the read is abandoned. A `no_wait` fetch is
/// answered at once, so this only fires when the connection or the server is in trouble.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The server removes the read's consumer by itself after this much inactivity, in case this
/// process dies before deleting it.
const CONSUMER_INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);

/// The header async-nats and the `nats` CLI write on delete and purge markers.
const KV_OPERATION_HEADER: &str = "KV-Operation";
/// The header the server writes on markers it creates itself (per-key TTL, `max_age` removals).
const MARKER_REASON_HEADER: &str = "Nats-Marker-Reason";

/// One live key of a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct KvItem<T> {
    pub key: String,
    pub value: T,
    /// The KV revision (stream sequence) of this value.
    pub revision: u64,
    /// When the server stored this value, in unix milliseconds by the server's clock. Readers use
    /// it to age heartbeats without trusting the writer's clock.
    pub created_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KvReadError {
    #[error("cannot read bucket {bucket}: cannot create a consumer: {reason}")]
    Consumer { bucket: String, reason: String },
    #[error("cannot read bucket {bucket}: {reason}")]
    Fetch { bucket: String, reason: String },
    #[error("cannot read bucket {bucket}: no answer within {} s", timeout.as_secs())]
    TimedOut { bucket: String, timeout: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum KvOpenError {
    /// The bucket's stream does not exist: whoever creates the JetStream assets has not run yet.
    #[error("bucket {bucket} does not exist")]
    Missing { bucket: String },
    #[error("cannot open bucket {bucket}: {reason}")]
    Other { bucket: String, reason: String },
}

/// Opens an existing bucket; never creates one.
pub async fn open_bucket(js: &jetstream::Context, bucket: &str) -> Result<Store, KvOpenError> {
    js.get_key_value(bucket).await.map_err(|err| {
        let missing = std::error::Error::source(&err)
            .and_then(|source| source.downcast_ref::<jetstream::context::GetStreamError>())
            .is_some_and(|source| {
                matches!(
                    source.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(js_err)
                        if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                )
            });
        if missing {
            KvOpenError::Missing {
                bucket: bucket.to_owned(),
            }
        } else {
            KvOpenError::Other {
                bucket: bucket.to_owned(),
                reason: error_chain(&err),
            }
        }
    })
}

/// Every live key of the bucket with its decoded value, sorted by key. Deleted and purged keys,
/// and keys starting with `=` (bookkeeping, `schemas::names::TERM_KEY`), are absent; a value that does not decode as `T` is skipped with a warning naming the key, so
/// one corrupt entry cannot hide the rest of the bucket.
///
/// The result is a snapshot as of the end of the read: a key written while the read runs shows
/// its newest value.
pub async fn read_bucket<T: Wire>(kv: &Store) -> Result<Vec<KvItem<T>>, KvReadError> {
    let consumer = kv
        .stream
        .create_consumer(pull::Config {
            description: Some("swarm read_bucket".to_owned()),
            filter_subject: format!("{}>", kv.prefix),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            inactive_threshold: CONSUMER_INACTIVE_THRESHOLD,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|err| KvReadError::Consumer {
            bucket: kv.name.clone(),
            reason: error_chain(&err),
        })?;
    let name = consumer.cached_info().name.clone();
    let result = if consumer.cached_info().num_pending == 0 {
        Ok(BTreeMap::new())
    } else {
        drain(kv, &consumer).await
    };
    // The consumer would expire by itself; deleting it keeps the server's consumer list short
    // when a dashboard or a `wait` loop reads every half second.
    if let Err(err) = kv.stream.delete_consumer(&name).await {
        tracing::debug!(bucket = %kv.name, consumer = %name, error = %err, "cannot delete read consumer");
    }
    Ok(result?.into_values().collect())
}

async fn drain<T: Wire>(
    kv: &Store,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
) -> Result<BTreeMap<String, KvItem<T>>, KvReadError> {
    let mut items = BTreeMap::new();
    loop {
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, fetch_batch(kv, consumer, &mut items))
            .await
            .map_err(|_| KvReadError::TimedOut {
                bucket: kv.name.clone(),
                timeout: FETCH_TIMEOUT,
            })??;
        // Caught up when the server had nothing left to send, or when the last message said
        // nothing was pending after it.
        if fetched.received == 0 || fetched.last_pending == Some(0) {
            return Ok(items);
        }
    }
}

struct Fetched {
    received: usize,
    last_pending: Option<u64>,
}

async fn fetch_batch<T: Wire>(
    kv: &Store,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    items: &mut BTreeMap<String, KvItem<T>>,
) -> Result<Fetched, KvReadError> {
    let fetch_error = |reason: String| KvReadError::Fetch {
        bucket: kv.name.clone(),
        reason,
    };
    let mut batch = consumer
        .fetch()
        .max_messages(FETCH_BATCH)
        .messages()
        .await
        .map_err(|err| fetch_error(error_chain(&err)))?;
    let mut fetched = Fetched {
        received: 0,
        last_pending: None,
    };
    while let Some(message) = batch.next().await {
        let message = message.map_err(|err| fetch_error(err.to_string()))?;
        fetched.received += 1;
        let info = match message.info() {
            Ok(info) => info,
            Err(err) => {
                tracing::warn!(bucket = %kv.name, subject = %message.subject, error = %err, "skipping KV message without JetStream metadata");
                continue;
            }
        };
        fetched.last_pending = Some(info.pending);
        let Some(key) = message.subject.as_str().strip_prefix(kv.prefix.as_str()) else {
            continue;
        };
        // Keys starting with `=` are the swarm's own bookkeeping (the leader's term in the
        // packages bucket), never records of the bucket's kind.
        if key.starts_with('=') {
            continue;
        }
        if is_removal(&message) {
            items.remove(key);
            continue;
        }
        match schemas::decode::<T>(&message.payload) {
            Ok(value) => {
                let created_ms =
                    u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                items.insert(
                    key.to_owned(),
                    KvItem {
                        key: key.to_owned(),
                        value,
                        revision: info.stream_sequence,
                        created_ms,
                    },
                );
            }
            Err(err) => {
                tracing::warn!(bucket = %kv.name, key, error = %err, "skipping undecodable KV value");
                // The key's newest value is unreadable, so an older one read earlier is stale.
                items.remove(key);
            }
        }
    }
    Ok(fetched)
}

/// Whether a KV message is a delete or purge marker rather than a value.
fn is_removal(message: &jetstream::Message) -> bool {
    let Some(headers) = message.headers.as_ref() else {
        return false;
    };
    if let Some(op) = headers.get(KV_OPERATION_HEADER) {
        return matches!(
            Operation::from_str(op.as_str()),
            Ok(Operation::Delete | Operation::Purge)
        );
    }
    headers.get(MARKER_REASON_HEADER).is_some()
}

/// An error with its sources, because async-nats puts the useful part ("stream not found",
/// "timed out") in the source while the top level says only "failed to get the bucket".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}
