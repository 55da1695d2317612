//! Applying drone events to package state (the service's handlers). A batch of events is
//! decoded and grouped by package (`events`); claims may wait in the claim hold (`hold`); each
//! package's events are folded into its record (`table::fold`) and the package is written once,
//! all packages of the batch concurrently, each a compare-and-set (`store`). An event is
//! acknowledged only after its package's write succeeded, and then counts towards the
//! watermark (`watermark`); a package whose write conflicts is re-read and its events applied
//! one by one; one whose write failed has its events given back, to be delivered again.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use schemas::{DecodeError, Event, PackageKey, PackageRecord, PackageState};
use tracing::{debug, error, info, warn};

use crate::events::{self, EventRefusal, Unreadable};
use crate::hold::Claim;
use crate::lifecycle::PackageEvent;
use crate::service::{Service, ack_floor, consumer_position};
use crate::store::{self, WRITE_CONCURRENCY, WriteError};
use crate::table::{Change, Entry, fold};

/// An event received and not yet acknowledged, with what it does to its package.
pub struct Pending {
    message: jetstream::Message,
    seq: u64,
    change: Change,
}

impl Claim for Pending {
    fn is_claim(&self) -> bool {
        matches!(self.change.event, PackageEvent::Claimed { .. })
    }
}

impl Service {
    /// Applies a batch of events. Events are grouped by package; each package's events are
    /// applied in stream order to its in-memory record, and the package is written once, all
    /// packages of the batch concurrently (each a compare-and-set on its own key). An event is
    /// acknowledged only after its package's write succeeded; a package whose write conflicts
    /// is re-read and its events applied one by one; one whose write failed is given back to
    /// be delivered again.
    pub(crate) async fn handle_events(&mut self, messages: Vec<jetstream::Message>) {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let change = match self.decode_event(&message.subject, &message.payload) {
                Ok(event) => event.and_then(events::package_change),
                Err(err) => {
                    self.leave_unreadable(&message, seq, &err).await;
                    continue;
                }
            };
            match change {
                Some(change) => pending.push(Pending {
                    message,
                    seq,
                    change,
                }),
                // Forged, or an event no package state depends on: handled.
                None => self.acknowledge(&message, seq).await,
            }
        }
        let now = std::time::Instant::now();
        let mut ready = Vec::new();
        for (key, events) in events::group_by_package(pending, |p| &p.change.key) {
            let known = self.table.contains(&key);
            if let Some(events) = self.held.add(key.clone(), events, known, now) {
                ready.push((key, events));
            }
        }
        self.write_groups(ready).await;
    }

    /// Writes the claims whose delay is over.
    pub(crate) async fn write_due_claims(&mut self) {
        let ready = self.held.take_due(std::time::Instant::now());
        self.write_groups(ready).await;
    }

    /// Folds each package's events into its next record and writes the packages that moved,
    /// all at once; see `handle_events`.
    async fn write_groups(&mut self, groups: Vec<(PackageKey, Vec<Pending>)>) {
        let now = runtime::now_ms();
        let mut writes = Vec::new();
        let mut done = Vec::new();
        for (key, events) in groups {
            let Some(entry) = self.table.get(&key) else {
                debug!(key = %key, "events for an unknown package");
                done.push(events);
                continue;
            };
            let mut record = entry.record.clone();
            let mut moved = false;
            for pending in &events {
                match fold(&mut record, &pending.change, &self.policy, now) {
                    Ok(()) => moved = true,
                    // A late or repeated event: safe to drop, the package has moved on.
                    Err(err) => {
                        debug!(package = %record.atom, error = %err, "event does not move the package");
                        // A drone claimed the job of a package cancelled meanwhile (the job
                        // was on its way): it is told to kill the build.
                        if let (
                            PackageEvent::Claimed { drone, attempt },
                            PackageState::Cancelled {
                                attempt: cancelled, ..
                            },
                        ) = (&pending.change.event, &record.state)
                            && attempt == cancelled
                        {
                            self.cancel_build(drone.clone(), key.clone(), *attempt);
                        }
                    }
                }
            }
            if moved {
                writes.push((key, record, events));
            } else {
                done.push(events);
            }
        }
        for pending in done.into_iter().flatten() {
            self.acknowledge(&pending.message, pending.seq).await;
        }
        if writes.is_empty() {
            return;
        }
        let writer = self.writer.clone();
        let results: Vec<_> =
            futures::stream::iter(writes.into_iter().map(|(key, record, events)| {
                let writer = writer.clone();
                async move {
                    let result = store::write_record(&writer, &key, &record).await;
                    (key, record, events, result)
                }
            }))
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut history = Vec::new();
        for (key, record, events, result) in results {
            match result {
                Ok(revision) => {
                    history.extend(
                        events
                            .iter()
                            .filter_map(|p| p.change.attempt.as_ref())
                            .map(|a| crate::history::entry(&record, a)),
                    );
                    for atom in events.iter().filter_map(|p| p.change.result_of.as_ref()) {
                        info!(package = %atom, state = record.state.label(), "build result recorded");
                    }
                    self.table.store(&key, Some(Entry { record, revision }));
                    for pending in events {
                        self.acknowledge(&pending.message, pending.seq).await;
                    }
                }
                Err(err @ WriteError::Fenced { .. }) => {
                    // Not leading any more: the events stay unacknowledged for the new leader.
                    self.deposed(&err);
                }
                Err(err) => {
                    for pending in events {
                        self.give_back(&pending.message, pending.seq, &err).await;
                    }
                }
            }
        }
        self.record_history(history).await;
    }

    /// Writes a record, fenced by this coordinator's term, and only then updates the table:
    /// memory never runs ahead of the bucket. A refused write means another coordinator leads:
    /// this one stops (`deposed`).
    pub(crate) async fn write(
        &mut self,
        key: &PackageKey,
        record: PackageRecord,
    ) -> Result<(), WriteError> {
        match store::write_record(&self.writer, key, &record).await {
            Ok(revision) => {
                self.table.store(key, Some(Entry { record, revision }));
                Ok(())
            }
            Err(err) => {
                if matches!(err, WriteError::Fenced { .. }) {
                    self.deposed(&err);
                }
                Err(err)
            }
        }
    }

    /// Another coordinator leads: this one writes nothing more and stops leading.
    pub(crate) fn deposed(&mut self, err: &WriteError) {
        if !self.lost.is_cancelled() {
            error!(error = %err, "a write was refused: another coordinator leads; stepping down");
            self.lost.cancel();
        }
    }

    /// Applies one change to a package and writes the result; on a write conflict the record
    /// is re-read and the change applied once more. `Ok(None)`: the change does not move the
    /// package (unknown, late or repeated), which is not an error.
    pub(crate) async fn apply(
        &mut self,
        change: &Change,
    ) -> Result<Option<PackageState>, WriteError> {
        let key = &change.key;
        let Some(entry) = self.table.get(key) else {
            debug!(key = %key, "event for an unknown package");
            return Ok(None);
        };
        let now = runtime::now_ms();
        let mut record = entry.record.clone();
        if let Err(err) = fold(&mut record, change, &self.policy, now) {
            // A late or repeated event: safe to drop, the package has moved on.
            debug!(package = %record.atom, error = %err, "event does not move the package");
            return Ok(None);
        }
        let next = record.state.clone();
        let history: Vec<_> = change
            .attempt
            .iter()
            .map(|a| crate::history::entry(&record, a))
            .collect();
        self.write(key, record).await?;
        self.record_history(history).await;
        Ok(Some(next))
    }

    async fn acknowledge(&mut self, message: &jetstream::Message, seq: u64) {
        self.watermark.mark(seq);
        if let Err(err) = message.ack().await {
            debug!(error = %err, "event ack failed; it will be applied again, harmlessly");
        }
    }

    async fn give_back(&self, message: &jetstream::Message, seq: u64, err: &WriteError) {
        warn!(error = %err, seq, "event not applied; it will be delivered again");
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_millis(500))))
            .await;
    }

    /// Decodes an event of the stream; one forged under another drone's subject is logged
    /// (throttled) and dropped (`Ok(None)`), one that cannot be read is `Err`.
    fn decode_event(&self, subject: &str, payload: &[u8]) -> Result<Option<Event>, DecodeError> {
        match events::decode_event(subject, payload) {
            Ok(event) => Ok(Some(event)),
            Err(EventRefusal::Undecodable(err)) => Err(err),
            Err(EventRefusal::ForeignDrone { drone }) => {
                if let Some(suppressed) = self.refused.allow("event from another drone") {
                    warn!(%subject, %drone, suppressed, "event claims to come from another drone; discarded");
                }
                Ok(None)
            }
        }
    }

    /// An event this coordinator cannot read (a newer release's, or junk) is never
    /// acknowledged away: it is given back to be delivered again later, when a coordinator of
    /// a newer release may be the one reading it (`events::unreadable`). The reconciler does
    /// not wait for it: for the watermark it is handled.
    async fn leave_unreadable(
        &mut self,
        message: &jetstream::Message,
        seq: u64,
        err: &DecodeError,
    ) {
        self.watermark.mark(seq);
        let delivered = message
            .info()
            .map(|i| i.delivered.max(1) as u64)
            .unwrap_or(1);
        let subject = &message.subject;
        let version = err.unsupported_version();
        match events::unreadable(delivered) {
            Unreadable::Leave { delay } => {
                if let Some(suppressed) = self.refused.allow("unreadable event") {
                    warn!(%subject, stream_seq = seq, delivery = delivered, ?version, error = %err, suppressed, "unreadable event left unacknowledged for a coordinator that can read it");
                }
                if let Err(err) = message.ack_with(AckKind::Nak(Some(delay))).await {
                    debug!(error = %err, "nak not sent; the event comes back after its ack wait");
                }
            }
            Unreadable::GiveUp => {
                if let Some(suppressed) = self.refused.allow("unreadable event given up") {
                    error!(%subject, stream_seq = seq, delivery = delivered, ?version, error = %err, suppressed, "unreadable event given up after an hour of deliveries; it stays in the event stream at this sequence for the operator");
                }
                let _ = message.ack().await;
            }
        }
    }

    /// Decodes and applies one event of the stream; forged events are discarded and one that
    /// cannot be read is left to its redelivery (both count as handled). `Err` only when a
    /// package write failed: apply it again later.
    async fn process_event(&mut self, subject: &str, payload: &[u8]) -> Result<(), WriteError> {
        let Ok(Some(change)) = self
            .decode_event(subject, payload)
            .map(|event| event.and_then(events::package_change))
        else {
            return Ok(());
        };
        if let Some(state) = self.apply(&change).await?
            && let Some(atom) = &change.result_of
        {
            info!(package = %atom, state = state.label(), "build result recorded");
        }
        Ok(())
    }

    /// A restarted coordinator applies at once the events its predecessor had received and not
    /// acknowledged. The server gives them back only after their AckWait, and until then their
    /// packages (results already reported) would wait, and the reconciler with them. They are
    /// read from the stream by sequence; the redelivery that follows applies them again,
    /// harmlessly.
    pub(crate) async fn catch_up_unacknowledged(&mut self) {
        let Some((floor, delivered)) = consumer_position(&self.topo.events).await else {
            return;
        };
        if delivered <= floor {
            return;
        }
        info!(
            from = floor + 1,
            to = delivered,
            "applying the events the previous coordinator received but did not acknowledge"
        );
        for seq in floor + 1..=delivered {
            match self.topo.events.get_raw_message(seq).await {
                Ok(message) => {
                    if self
                        .process_event(message.subject.as_str(), &message.payload)
                        .await
                        .is_ok()
                    {
                        self.watermark.mark(seq);
                    }
                }
                // Gone from the stream (aged out): nothing to apply.
                Err(err)
                    if matches!(
                        err.kind(),
                        jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    self.watermark.mark(seq);
                }
                // Anything else: the rest comes back by redelivery.
                Err(err) => {
                    debug!(seq, error = %err, "cannot read an unacknowledged event; waiting for its redelivery");
                    return;
                }
            }
        }
    }

    /// Raises the watermark to the server's ack floor (see `Watermark::raise_floor`).
    pub(crate) async fn refresh_applied_through(&mut self) {
        if let Some(floor) = ack_floor(&self.topo.events).await {
            self.watermark.raise_floor(floor);
        }
    }
}
