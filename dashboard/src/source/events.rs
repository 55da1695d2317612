//! The event stream as the fold's inputs: every event the stream retains, then every new one,
//! read again from the message after the last one read when the connection comes back; and the
//! stream's position, polled for the fold's lag.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, ReplayPolicy, pull},
};
use futures::StreamExt;
use schemas::{Event, names};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{InputError, SourceError, pause, unix_ms};
use crate::fold::{Input, StreamPosition};
use runtime::throttle::Throttle;

/// Longest wait of one pull of the event stream. The ordered consumer's idle heartbeat is half of
/// it, and two missed heartbeats make it re-create itself: the fallback when a reconnect is not
/// seen (the server restarted between two connection checks).
const EVENTS_MAX_EXPIRES: Duration = Duration::from_secs(10);

/// Every event the stream retains, then every new one, through an ordered consumer.
pub(super) async fn follow_events(
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
pub(super) async fn poll_stream(
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
