//! The drone record's writer. One task writes the newest record the main loop hands it, so the
//! loop never waits for the bucket (a heartbeat every few hundred milliseconds would otherwise
//! hold up the pulls behind each write), and a record replaced before it was written is never
//! written: no older record can land after a newer one.

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Starts the writer on `tracker`; it ends when `stop` is cancelled or the sender is dropped.
pub(super) fn spawn(
    tracker: &TaskTracker,
    drones: async_nats::jetstream::kv::Store,
    key: String,
    stop: CancellationToken,
) -> watch::Sender<Option<Bytes>> {
    let (tx, mut rx) = watch::channel(None::<Bytes>);
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = rx.changed() => if changed.is_err() { break },
            }
            let Some(bytes) = rx.borrow_and_update().clone() else {
                continue;
            };
            if let Err(err) = drones.put(key.as_str(), bytes).await {
                debug!(error = %err, "drone record not written");
            }
        }
    });
    tx
}
