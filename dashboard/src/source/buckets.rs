//! The drones and packages buckets as the fold's inputs: the last value of every key, then every
//! change, watched again from every key's last value after a reconnect.

use async_nats::jetstream::kv;
use futures::StreamExt;
use schemas::{DroneRecord, PackageRecord};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{InputError, pause, unix_ms};
use crate::fold::{Input, Source};
use runtime::throttle::Throttle;

/// What a bucket entry means to the fold; `Err` names why it means nothing.
type ToInput = fn(kv::Entry) -> Result<Option<Input>, InputError>;

/// Decodes a bucket value; the error names the record and its key.
fn decode_value<T: schemas::Wire>(what: &'static str, entry: &kv::Entry) -> Result<T, InputError> {
    schemas::decode::<T>(&entry.value).map_err(|source| InputError::BadRecord {
        what,
        key: schemas::shorten(&entry.key, 80),
        source,
    })
}

pub(super) fn drone_input(entry: kv::Entry) -> Result<Option<Input>, InputError> {
    match entry.operation {
        kv::Operation::Put => {
            let record = decode_value::<DroneRecord>("drone record", &entry)?;
            Ok(Some(Input::DroneRecord {
                key: entry.key,
                written_ms: unix_ms(entry.created),
                record,
            }))
        }
        // A removed drone record: its card stays, built from its events, until they age out.
        kv::Operation::Delete | kv::Operation::Purge => Ok(None),
    }
}

pub(super) fn package_input(entry: kv::Entry) -> Result<Option<Input>, InputError> {
    // The leader's term shares the bucket; it is not a package.
    if !schemas::names::is_package_key(&entry.key) {
        return Ok(None);
    }
    match entry.operation {
        kv::Operation::Put => {
            let record = decode_value::<PackageRecord>("package record", &entry)?;
            Ok(Some(Input::Package {
                key: entry.key,
                revision: entry.revision,
                record,
            }))
        }
        kv::Operation::Delete | kv::Operation::Purge => Ok(Some(Input::PackageRemoved {
            key: entry.key,
            revision: entry.revision,
        })),
    }
}

/// The last value of every key, then every change. Sends `Loaded` once the values stored when
/// the watch began have all been read.
pub(super) async fn follow_bucket(
    store: kv::Store,
    source: Source,
    to_input: ToInput,
    inputs: mpsc::Sender<Input>,
    mut reconnects: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let mut loaded = false;
    let refused = Throttle::default();
    while !shutdown.is_cancelled() {
        // A watch of an empty bucket says nothing, so emptiness is read from the stream first.
        let mut stream = store.stream.clone();
        let empty = matches!(stream.info().await, Ok(info) if info.state.messages == 0);
        let mut watch = match store.watch_with_history(">").await {
            Ok(watch) => watch,
            Err(err) => {
                warn!(bucket = %store.name, error = %err, "cannot watch bucket; trying again");
                pause(&shutdown).await;
                continue;
            }
        };
        if empty && !loaded {
            loaded = true;
            if inputs.send(Input::Loaded(source)).await.is_err() {
                return;
            }
        }
        reconnects.mark_unchanged();
        loop {
            let entry = tokio::select! {
                _ = shutdown.cancelled() => return,
                // Watched again at once, from every key's last value.
                _ = reconnects.changed() => break,
                entry = watch.next() => entry,
            };
            match entry {
                Some(Ok(entry)) => {
                    let current = entry.seen_current;
                    match to_input(entry) {
                        Ok(Some(input)) => {
                            if inputs.send(input).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(reason) => {
                            if let Some(suppressed) = refused.allow("bucket value") {
                                warn!(bucket = %store.name, %reason, suppressed, "bucket value refused");
                            }
                        }
                    }
                    if current && !loaded {
                        loaded = true;
                        if inputs.send(Input::Loaded(source)).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Err(err)) => {
                    debug!(bucket = %store.name, error = %err, "bucket watch error");
                }
                None => {
                    debug!(bucket = %store.name, "bucket watch ended; watching again");
                    pause(&shutdown).await;
                    break;
                }
            }
        }
    }
}

/// Reads which coordinator leads (the leader bucket's lease) every `every`, and says so when it
/// changes. A bucket that cannot be read (a coordinator of an earlier release makes none) is no
/// leader.
pub(super) async fn poll_leader(
    js: async_nats::jetstream::Context,
    every: std::time::Duration,
    inputs: tokio::sync::mpsc::Sender<Input>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    let mut last = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let read = async {
            let bucket = js.get_key_value(schemas::names::LEADER_BUCKET).await.ok()?;
            let entry = bucket.entry(schemas::names::LEADER_KEY).await.ok()??;
            if entry.operation != kv::Operation::Put {
                return None;
            }
            schemas::decode::<schemas::LeaderRecord>(&entry.value)
                .ok()
                .map(|record| record.coordinator)
        };
        let leader = read.await;
        if last.as_ref() != Some(&leader) {
            last = Some(leader.clone());
            if inputs.send(Input::Leader(leader)).await.is_err() {
                return;
            }
        }
    }
}
