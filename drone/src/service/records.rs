//! The drone record's writer. One task writes the newest record the main loop hands it, so the
//! loop never waits for the bucket (a heartbeat every few hundred milliseconds would otherwise
//! hold up the pulls behind each write), and a record replaced before it was written is never
//! written: no older record can land after a newer one. A write acknowledged quickly is the
//! drone's proof of life (`crate::liveness`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::build::Ctx;

/// Starts the writer on `tracker`; it ends when `stop` is cancelled (a write under way is
/// dropped) or the sender is dropped.
pub(super) fn spawn(
    tracker: &TaskTracker,
    ctx: Arc<Ctx>,
    stop: CancellationToken,
) -> watch::Sender<Option<Bytes>> {
    let (tx, mut rx) = watch::channel(None::<Bytes>);
    tracker.spawn(async move {
        let key = ctx.name.to_string();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = rx.changed() => if changed.is_err() { break },
            }
            let Some(bytes) = rx.borrow_and_update().clone() else {
                continue;
            };
            let sent = Instant::now();
            // A write that waits for NATS does not hold up the drone's stop.
            let written = tokio::select! {
                _ = stop.cancelled() => break,
                written = ctx.drones.put(key.as_str(), bytes) => written,
            };
            match written {
                Ok(_) => ctx.liveness.heard(sent),
                Err(err) => debug!(error = %err, "drone record not written"),
            }
        }
    });
    tx
}
