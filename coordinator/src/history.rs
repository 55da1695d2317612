//! The build history (`swarmctl history`): every ended attempt the coordinator records goes to
//! the history stream too, one message per attempt under its package's subject, stored once
//! (its message id names the package, submission, attempt, drone and end). It outlives the
//! package record, which a new submission starts over. An entry that cannot be stored is
//! logged; the package's state does not wait for it.

use futures::StreamExt;
use schemas::{AttemptRecord, HistoryEntry, PackageRecord, SCHEMA_VERSION, encode, names};
use tracing::warn;

use crate::service::Service;

/// History entries stored at once.
const CONCURRENCY: usize = 64;

/// The entry of `attempt` of the package `record` (its state after the attempt).
pub fn entry(record: &PackageRecord, attempt: &AttemptRecord) -> HistoryEntry {
    HistoryEntry {
        v: SCHEMA_VERSION,
        atom: record.atom.clone(),
        arch: record.arch.clone(),
        run: record.run.clone(),
        submission: record.submission,
        attempt: attempt.clone(),
        result: record.state.label().to_owned(),
    }
}

impl Service {
    /// Stores the history entries of attempts just recorded, all at once.
    pub(crate) async fn record_history(&self, entries: Vec<HistoryEntry>) {
        let js = &self.js;
        let mut stored = futures::stream::iter(entries.into_iter().map(|entry| async move {
            let subject = names::history_subject(&entry.arch, &entry.atom.key());
            let payload = encode(&entry).map_err(|e| e.to_string())?;
            let message = async_nats::jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(entry.msg_id());
            let ack = js
                .send_publish(subject, message)
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map(|_| ()).map_err(|e| e.to_string())
        }))
        .buffer_unordered(CONCURRENCY);
        while let Some(result) = stored.next().await {
            if let Err(err) = result {
                warn!(error = %err, "build history entry not stored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{BuildOutcome, PackageState, fixtures};

    #[test]
    fn an_entry_says_what_the_attempt_led_to() {
        let record = fixtures::package_record(
            "dev-libs/a",
            PackageState::RetryWait {
                attempt: 2,
                not_before_ms: 9,
            },
        );
        let attempt = AttemptRecord {
            attempt: 1,
            drone: fixtures::drone_name("d1"),
            outcome: BuildOutcome::Succeeded,
            duration_ms: 400,
            ended_ms: 1_000,
        };
        let entry = entry(&record, &attempt);
        assert_eq!(entry.result, "retry_wait");
        assert_eq!(entry.started_ms(), 600);
        assert_eq!(entry.msg_id(), "dev-libs_2Fa:1:1:d1:1000");
    }
}
