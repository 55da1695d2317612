//! One build's log, shipped as it is written and kept once it ends. The build's output (stdout
//! and stderr, in the order the log file has them) arrives here in chunks; it goes out on the
//! live log stream (`names::log_subject`) in order, gathered into at most one message per
//! `FLUSH_EVERY` (more only while a backlog exceeds `MAX_CHUNK` a message), each stored once by
//! its message id; the last message carries `HEADER_LOG_END` with the log's length. Everything
//! is also gzip-compressed as it passes, and when the output ends the complete log is put in
//! the logs object store (`names::log_object`). A live chunk that cannot be sent (the server
//! away) is skipped with a warning; the stored log still holds it.

use std::io::Write;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flate2::Compression;
use flate2::write::GzEncoder;
use schemas::{Job, names};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, info, warn};

use super::Ctx;

/// How long output is gathered into one live message.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The most one live message holds.
pub const MAX_CHUNK: usize = 256 * 1024;

/// What was shipped of one build's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shipped {
    /// Bytes of output.
    pub bytes: u64,
    /// Live messages sent (the end marker not counted).
    pub chunks: u64,
    /// The complete log is in the object store.
    pub stored: bool,
}

/// Ships the build's output from `output` until it ends (the channel closes).
pub async fn ship(ctx: &Ctx, job: &Job, mut output: UnboundedReceiver<Bytes>) -> Shipped {
    let key = job.atom.key();
    let subject = names::log_subject(&ctx.name, &key, job.submission, job.attempt);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut shipped = Shipped {
        bytes: 0,
        chunks: 0,
        stored: false,
    };
    let mut live_ok = true;
    let mut pending = BytesMut::new();
    let mut open = true;
    while open {
        match output.recv().await {
            Some(chunk) => pending.extend_from_slice(&chunk),
            None => open = false,
        }
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while open && pending.len() < MAX_CHUNK {
            match tokio::time::timeout_at(deadline, output.recv()).await {
                Ok(Some(chunk)) => pending.extend_from_slice(&chunk),
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        while !pending.is_empty() {
            let piece = pending.split_to(pending.len().min(MAX_CHUNK)).freeze();
            let _ = gz.write_all(&piece);
            shipped.bytes += piece.len() as u64;
            let id = format!("{subject}:{}", shipped.chunks);
            shipped.chunks += 1;
            if live_ok && let Err(err) = publish(ctx, &subject, piece, id, None).await {
                warn!(package = %job.atom, error = %err, "live log not sent; the stored log will have it all");
                live_ok = false;
            }
        }
    }
    if live_ok {
        let id = format!("{subject}:end");
        let end = Some(shipped.bytes.to_string());
        if let Err(err) = publish(ctx, &subject, Bytes::new(), id, end).await {
            debug!(package = %job.atom, error = %err, "live log's end not sent");
        }
    }
    // A build that printed nothing has no log to keep.
    let Some(store) = ctx.logs.as_ref().filter(|_| shipped.bytes > 0) else {
        return shipped;
    };
    let compressed = match gz.finish() {
        Ok(bytes) => bytes,
        Err(err) => {
            warn!(package = %job.atom, error = %err, "build log not compressed; not stored");
            return shipped;
        }
    };
    let name = names::log_object(&key, job.submission, job.attempt);
    let mut reader = std::io::Cursor::new(compressed);
    match store.put(name.as_str(), &mut reader).await {
        Ok(_) => {
            shipped.stored = true;
            info!(package = %job.atom, attempt = job.attempt, bytes = shipped.bytes, object = %name, "build log stored");
        }
        Err(err) => warn!(package = %job.atom, error = %err, "build log not stored"),
    }
    shipped
}

/// Publishes one live message and waits for the stream to store it (in order, once).
async fn publish(
    ctx: &Ctx,
    subject: &str,
    payload: Bytes,
    id: String,
    end: Option<String>,
) -> Result<(), String> {
    let mut message = async_nats::jetstream::message::PublishMessage::build()
        .payload(payload)
        .message_id(id);
    if let Some(length) = end {
        message = message.header(names::HEADER_LOG_END, length.as_str());
    }
    let ack = ctx
        .js
        .send_publish(subject.to_owned(), message)
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map(|_| ()).map_err(|e| e.to_string())
}
