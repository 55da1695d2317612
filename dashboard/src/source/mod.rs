//! The dashboard's sources: it follows the drones and packages buckets and the event stream, and
//! turns what it reads into the fold's inputs. It writes nothing: it reads through ephemeral
//! ordered consumers, which the server removes by itself when the dashboard goes away.
//!
//! At start every source replays what JetStream holds — the last value of every key, every event
//! the stream retains — and then follows live, so a restarted dashboard rebuilds the same picture.
//! The ordered consumers re-create themselves after a lost connection or a restarted server,
//! resuming after the last message read; a source whose consumer cannot be re-created starts
//! over, which the fold absorbs because it orders everything by revision and sequence.
//!
//! The buckets are followed in `buckets.rs`, the event stream and its position in `events.rs`;
//! this file waits for the topology, starts them and tells them when the connection came back.

mod buckets;
mod events;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use schemas::{DecodeError, names};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::fold::{Input, Source};
use buckets::{drone_input, follow_bucket, package_input};
pub use events::event_input;
use events::{follow_events, poll_stream};

/// Pause before a source that failed tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the connection's state is looked at, to re-read the sources after a reconnect.
const CONNECTION_CHECK: Duration = Duration::from_millis(200);

/// Why a message read from a source means nothing to the fold. Such a message is refused and
/// logged (throttled); the source goes on.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("message {stream_seq} on {subject} is not on an event subject")]
    NotAnEventSubject { stream_seq: u64, subject: String },
    #[error("message {stream_seq} on {subject}: {source}")]
    BadEvent {
        stream_seq: u64,
        subject: String,
        #[source]
        source: DecodeError,
    },
    /// A bucket value that does not decode; `what` names the record (`drone record`,
    /// `package record`).
    #[error("{what} {key}: {source}")]
    BadRecord {
        what: &'static str,
        key: String,
        #[source]
        source: DecodeError,
    },
}

/// Why a source cannot be read (yet): the coordinator has not created it, or the server is in
/// trouble. The source waits and tries again.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error(transparent)]
    Bucket(#[from] runtime::kv::KvOpenError),
    #[error("stream {stream}: {source}")]
    Stream {
        stream: &'static str,
        #[source]
        source: jetstream::context::GetStreamError,
    },
    #[error("cannot create a consumer on stream {stream}: {source}")]
    Consumer {
        stream: &'static str,
        #[source]
        source: jetstream::stream::ConsumerError,
    },
    #[error("cannot read stream {stream}: {source}")]
    Read {
        stream: &'static str,
        #[source]
        source: jetstream::consumer::StreamError,
    },
}

/// Follows every source until `shutdown` is cancelled. Waits for the coordinator to have created
/// the topology first; the dashboard never creates it.
pub async fn follow(
    client: async_nats::Client,
    stream_poll: Duration,
    inputs: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let js = jetstream::new(client.clone());
    let mut warned = false;
    let mut warned_connection = false;
    let started = Instant::now();
    let (drones, packages, events) = loop {
        if client.connection_state() != async_nats::connection::State::Connected {
            // The first connection is made in the background; a slow one is worth a line.
            if !warned_connection && started.elapsed() > Duration::from_secs(2) {
                warn!(
                    "not connected to NATS yet; the page is served and says so, and the client keeps trying"
                );
                warned_connection = true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(CONNECTION_CHECK) => continue,
            }
        }
        let found = async {
            let drones = runtime::kv::open_bucket(&js, names::DRONES_BUCKET).await?;
            let packages = runtime::kv::open_bucket(&js, names::PACKAGES_BUCKET).await?;
            let events = js
                .get_stream(names::EVENTS_STREAM)
                .await
                .map_err(|source| SourceError::Stream {
                    stream: names::EVENTS_STREAM,
                    source,
                })?;
            Ok::<_, SourceError>((drones, packages, events))
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            found = found => match found {
                Ok(found) => break found,
                Err(reason) => {
                    if warned {
                        debug!(%reason, "still waiting for the swarm's JetStream assets");
                    } else {
                        warn!(%reason, "waiting for the swarm's JetStream assets; is swarm-coordinator running?");
                        warned = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    };
    info!("following the drones and packages buckets and the event stream");
    let tracker = TaskTracker::new();
    let (reconnected, reconnects) = watch::channel(0u64);
    tracker.spawn(watch_connection(client, reconnected, shutdown.clone()));
    tracker.spawn(follow_bucket(
        drones,
        Source::Drones,
        drone_input,
        inputs.clone(),
        reconnects.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(follow_bucket(
        packages,
        Source::Packages,
        package_input,
        inputs.clone(),
        reconnects.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(follow_events(
        events.clone(),
        inputs.clone(),
        reconnects.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(buckets::poll_leader(
        js.clone(),
        stream_poll,
        inputs.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(poll_stream(
        events,
        stream_poll,
        inputs,
        reconnects,
        shutdown,
    ));
    tracker.close();
    tracker.wait().await;
}

/// Counts the connection's returns: every time the client connects again (the client's own count
/// of established connections goes up), the sources re-read from where they were instead of
/// waiting for their consumers to notice. Outages shorter than a check are caught too.
async fn watch_connection(
    client: async_nats::Client,
    reconnected: watch::Sender<u64>,
    shutdown: CancellationToken,
) {
    let connects = || {
        client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut seen = connects();
    let mut was_up = true;
    let mut ticker = tokio::time::interval(CONNECTION_CHECK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let up = client.connection_state() == async_nats::connection::State::Connected;
        if was_up && !up {
            warn!("lost the NATS connection; the picture is frozen until it is back");
        }
        was_up = up;
        let now = connects();
        if now > seen {
            seen = now;
            info!("connected to NATS again; re-reading the sources");
            reconnected.send_modify(|n| *n += 1);
        }
    }
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(RETRY) => {}
    }
}

fn unix_ms(time: async_nats::datetime::DateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
