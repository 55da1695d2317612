//! The drone's one voice: every event it publishes goes through the [`Reporter`], which numbers
//! them per boot (a counter shared with the drone's records, so an observer reading both can
//! tell which report is newer) and publishes them on the drone's own subject.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishError, message::PublishMessage};
use schemas::{DroneName, EncodeError, Event, EventKind, SCHEMA_VERSION, encode, names};
use tracing::{debug, warn};

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot encode the event: {0}")]
    Encode(#[from] EncodeError),
    /// The stream did not confirm the store (no leader, a lost connection, a timeout).
    #[error("event not stored: {0}")]
    NotStored(#[from] PublishError),
}

/// Publishes this drone's events on its own subject, numbered per boot.
pub struct Reporter {
    client: async_nats::Client,
    js: jetstream::Context,
    name: DroneName,
    subject: String,
    boot_ms: u64,
    seq: AtomicU64,
}

/// Pause between two tries to store a result.
const RESEND_PAUSE: Duration = Duration::from_millis(200);

impl Reporter {
    pub fn new(client: async_nats::Client, name: DroneName, boot_ms: u64) -> Reporter {
        Reporter {
            subject: names::event_subject(&name),
            js: jetstream::new(client.clone()),
            client,
            name,
            boot_ms,
            seq: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &DroneName {
        &self.name
    }

    pub fn boot_ms(&self) -> u64 {
        self.boot_ms
    }

    /// The next number of this boot's counter, for an event or a drone record.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The event encoded, and the headers people read in the stream (`Event::headers`).
    fn encode_as(&self, kind: EventKind, seq: u64) -> Result<(Vec<u8>, HeaderMap), EncodeError> {
        let event = Event {
            v: SCHEMA_VERSION,
            drone: self.name.clone(),
            boot_ms: self.boot_ms,
            seq,
            at_ms: runtime::now_ms(),
            kind,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in event.headers() {
            headers.insert(name, value.as_str());
        }
        Ok((encode(&event)?, headers))
    }

    /// Publishes an event and waits for the stream to store it, trying again until `until` (once
    /// when it is `None`): for results, which must be stored before the job is acknowledged,
    /// through a stream electing a new leader, which takes seconds. Every try carries the same
    /// message id, so one whose store was not confirmed but happened is dropped by the stream as
    /// a duplicate: the event is stored once.
    pub async fn send(&self, kind: EventKind, until: Option<Instant>) -> Result<(), ReportError> {
        let seq = self.next_seq();
        let (bytes, headers) = self.encode_as(kind, seq)?;
        let id = format!("{}.{}.{seq}", self.name, self.boot_ms);
        loop {
            let publish = PublishMessage::build()
                .payload(bytes.clone().into())
                .headers(headers.clone())
                .message_id(id.as_str());
            let stored = match self.js.send_publish(self.subject.clone(), publish).await {
                Ok(ack) => ack.await.map(|_| ()),
                Err(err) => Err(err),
            };
            match stored {
                Ok(()) => return Ok(()),
                Err(err) if until.is_some_and(|until| Instant::now() < until) => {
                    warn!(error = %err, "event not stored yet; sending it again");
                    tokio::time::sleep(RESEND_PAUSE).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Publishes an event without waiting for the stream's acknowledgement: for events that
    /// observers read but no decision depends on. The stream still stores it (the subject is
    /// the stream's), and in order: one connection delivers a drone's messages in the order it
    /// sent them, so a `started` sent before a `finished` is stored before it.
    pub async fn note(&self, kind: EventKind) {
        let (bytes, headers) = match self.encode_as(kind, self.next_seq()) {
            Ok(encoded) => encoded,
            Err(err) => {
                warn!(error = %err, "cannot encode an event");
                return;
            }
        };
        if let Err(err) = self
            .client
            .publish_with_headers(self.subject.clone(), headers, bytes.into())
            .await
        {
            debug!(error = %err, "event not published");
        }
    }
}
