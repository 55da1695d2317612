//! The dashboard's sources: it follows the drones and packages buckets and the event stream, and
//! turns what it reads into the fold's inputs. It writes nothing: it reads through ephemeral
//! ordered consumers, which the server removes by itself when the dashboard goes away.
//!
//! At start every source replays what JetStream holds — the last value of every key, every event
//! the stream retains — and then follows live, so a restarted dashboard rebuilds the same picture.
//! The ordered consumers re-create themselves after a lost connection or a restarted server,
//! resuming after the last message read; a source whose consumer cannot be re-created starts
//! over, which the fold absorbs because it orders everything by revision and sequence.

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, ReplayPolicy, pull},
    kv,
};
use futures::StreamExt;
use schemas::{DecodeError, DroneRecord, Event, PackageRecord, names};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::fold::{Input, Source, StreamPosition};
use runtime::throttle::Throttle;

/// Pause before a source that failed tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the connection's state is looked at, to re-read the sources after a reconnect.
const CONNECTION_CHECK: Duration = Duration::from_millis(200);
/// Longest wait of one pull of the event stream. The ordered consumer's idle heartbeat is half of
/// it, and two missed heartbeats make it re-create itself: the fallback when a reconnect is not
/// seen (the server restarted between two connection checks).
const EVENTS_MAX_EXPIRES: Duration = Duration::from_secs(10);

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

fn drone_input(entry: kv::Entry) -> Result<Option<Input>, InputError> {
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

fn package_input(entry: kv::Entry) -> Result<Option<Input>, InputError> {
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
async fn follow_bucket(
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

/// Every event the stream retains, then every new one, through an ordered consumer.
async fn follow_events(
    stream: jetstream::stream::Stream,
    inputs: mpsc::Sender<Input>,
    mut reconnects: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let mut next_seq = 0;
    let refused = Throttle::default();
    while !shutdown.is_cancelled() {
        let config = pull::OrderedConfig {
            description: Some("swarm-dashboard events".to_owned()),
            filter_subject: names::events_filter(),
            deliver_policy: if next_seq == 0 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: next_seq,
                }
            },
            replay_policy: ReplayPolicy::Instant,
            max_expires: EVENTS_MAX_EXPIRES,
            ..Default::default()
        };
        let messages =
            async {
                let consumer = stream.create_consumer(config).await.map_err(|source| {
                    SourceError::Consumer {
                        stream: names::EVENTS_STREAM,
                        source,
                    }
                })?;
                consumer
                    .messages()
                    .await
                    .map_err(|source| SourceError::Read {
                        stream: names::EVENTS_STREAM,
                        source,
                    })
            };
        let mut messages = match messages.await {
            Ok(messages) => messages,
            Err(reason) => {
                warn!(stream = names::EVENTS_STREAM, %reason, "cannot read the event stream; trying again");
                pause(&shutdown).await;
                continue;
            }
        };
        reconnects.mark_unchanged();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                // Read again at once, from the message after the last one read.
                _ = reconnects.changed() => break,
                message = messages.next() => message,
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    debug!(error = %err, "event stream read error");
                    continue;
                }
                None => {
                    pause(&shutdown).await;
                    break;
                }
            };
            let Ok(info) = message.info() else {
                continue;
            };
            let stream_seq = info.stream_sequence;
            let stored_ms = unix_ms(info.published);
            next_seq = stream_seq + 1;
            let input = match event_input(&message.subject, stream_seq, stored_ms, &message.payload)
            {
                Ok(input) => input,
                Err(reason) => {
                    if let Some(suppressed) = refused.allow("event") {
                        warn!(%reason, suppressed, "event refused");
                    }
                    Input::Undecodable { stream_seq }
                }
            };
            if inputs.send(input).await.is_err() {
                return;
            }
        }
        debug!("reading the event stream again from sequence {next_seq}");
    }
}

/// One message of the event stream as the fold's input; `Err` says why it is not an event.
pub fn event_input(
    subject: &str,
    stream_seq: u64,
    stored_ms: u64,
    payload: &[u8],
) -> Result<Input, InputError> {
    let Some(drone) = names::drone_of_event_subject(subject) else {
        return Err(InputError::NotAnEventSubject {
            stream_seq,
            subject: schemas::shorten(subject, 100),
        });
    };
    let event = schemas::decode::<Event>(payload).map_err(|source| InputError::BadEvent {
        stream_seq,
        subject: schemas::shorten(subject, 100),
        source,
    })?;
    Ok(Input::Event {
        subject_drone: drone.to_owned(),
        stream_seq,
        stored_ms,
        event,
    })
}

/// Polls the event stream's position for the fold lag. Positions polled before a reconnect say
/// nothing about what was stored during the outage, so a reconnect forgets them.
async fn poll_stream(
    mut stream: jetstream::stream::Stream,
    every: Duration,
    inputs: mpsc::Sender<Input>,
    mut reconnects: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
            _ = reconnects.changed() => {
                if inputs.send(Input::EventsStreamUnknown).await.is_err() {
                    return;
                }
            }
        }
        match stream.info().await {
            Ok(info) => {
                let position = StreamPosition {
                    first_seq: info.state.first_sequence,
                    last_seq: info.state.last_sequence,
                    messages: info.state.messages,
                };
                if inputs.send(Input::EventsStream(position)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                debug!(error = %err, "cannot poll the event stream");
                if inputs.send(Input::EventsStreamUnknown).await.is_err() {
                    return;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{DroneName, EventKind, SCHEMA_VERSION};

    #[test]
    fn event_messages_become_inputs_or_name_their_fault() {
        let event = Event {
            v: SCHEMA_VERSION,
            drone: DroneName::parse("drone-Izar").expect("valid"),
            boot_ms: 1,
            seq: 1,
            at_ms: 1,
            kind: EventKind::Draining,
        };
        let bytes = schemas::encode(&event).expect("encodes");
        let input = event_input("swarm.event.drone-Izar", 7, 9, &bytes).expect("an event");
        assert!(matches!(
            input,
            Input::Event { ref subject_drone, stream_seq: 7, stored_ms: 9, .. } if subject_drone == "drone-Izar"
        ));
        let err = event_input("swarm.event.drone-Izar", 8, 9, b"\xc1junk").expect_err("junk");
        assert!(
            matches!(&err, InputError::BadEvent { stream_seq: 8, subject, .. }
                if subject == "swarm.event.drone-Izar"),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.contains("message 8 on swarm.event.drone-Izar"), "{err}");
        let err = event_input("elsewhere", 9, 9, &bytes).expect_err("subject");
        assert!(
            matches!(err, InputError::NotAnEventSubject { stream_seq: 9, .. }),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.contains("not on an event subject"), "{err}");
    }
}
