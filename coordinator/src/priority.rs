//! The operator's priorities (`swarmctl submit --priority`). The work stream hands jobs out in
//! the order they were stored, so a high-priority package queued after normal ones would wait
//! behind them. After jobs of a priority are published, every job of a lower priority still
//! waiting in the stream (stored after what its consumer has delivered) is moved behind them:
//! deleted and stored again, unchanged but for a new message id. A job a drone took in the
//! moment between the look and the move may exist twice; the lease lets one build it and the
//! other is acknowledged as stale, as for any redelivered job.

use std::collections::HashMap;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::PublishMessage;
use schemas::{Arch, PackageKey, PackageState, Priority, names};
use tracing::{debug, info, warn};

use crate::service::Service;

/// A queued package's job as it waits in the work stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub key: PackageKey,
    pub priority: Priority,
    /// Its job's stream sequence.
    pub seq: u64,
    /// The last stream sequence its arch's consumer delivered.
    pub delivered: u64,
}

/// The jobs to move behind those of priority `highest` just stored: every one of a lower
/// priority not yet delivered, in stream order.
pub fn to_move(waiting: &[Waiting], highest: Priority) -> Vec<&Waiting> {
    let mut moving: Vec<&Waiting> = waiting
        .iter()
        .filter(|w| w.priority < highest && w.seq > w.delivered)
        .collect();
    moving.sort_by_key(|w| w.seq);
    moving
}

impl Service {
    /// Moves the lower-priority jobs still waiting in the stream behind the jobs of `highest`
    /// just published (see the module's comment).
    pub(crate) async fn overtake(&self, highest: Priority) {
        let candidates: Vec<(PackageKey, Arch, Priority)> = self
            .table
            .entries()
            .filter(|(_, e)| {
                e.record.priority < highest && matches!(e.record.state, PackageState::Queued { .. })
            })
            .map(|(k, e)| (k.clone(), e.record.arch.clone(), e.record.priority))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let mut delivered: HashMap<Arch, u64> = HashMap::new();
        for arch in &self.settings.arches {
            let name = names::builders_consumer(arch);
            match self.topo.builds.get_consumer::<pull::Config>(&name).await {
                Ok(mut consumer) => match consumer.info().await {
                    Ok(info) => {
                        delivered.insert(arch.clone(), info.delivered.stream_sequence);
                    }
                    Err(err) => warn!(consumer = %name, error = %err, "priorities not applied now"),
                },
                Err(err) => warn!(consumer = %name, error = %err, "priorities not applied now"),
            }
        }
        let mut waiting = Vec::new();
        let mut messages = HashMap::new();
        for (key, arch, priority) in candidates {
            let Some(&done) = delivered.get(&arch) else {
                continue;
            };
            let subject = names::build_subject(&arch, &key);
            // A package without a normal job (a big one, or none yet) has nothing to move.
            let Ok(message) = self
                .topo
                .builds
                .get_last_raw_message_by_subject(&subject)
                .await
            else {
                continue;
            };
            waiting.push(Waiting {
                key: key.clone(),
                priority,
                seq: message.sequence,
                delivered: done,
            });
            messages.insert(key, message);
        }
        let mut moved = 0usize;
        for job in to_move(&waiting, highest) {
            let Some(message) = messages.remove(&job.key) else {
                continue;
            };
            if let Err(err) = self.topo.builds.delete_message(job.seq).await {
                debug!(key = %job.key, error = %err, "job not moved (taken meanwhile?)");
                continue;
            }
            let mut headers = message.headers.clone();
            let id = headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| job.key.to_string());
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{id}:moved{}", job.seq).as_str(),
            );
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers);
            let stored = match self
                .js
                .send_publish(message.subject.to_string(), publish)
                .await
            {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            match stored {
                Ok(()) => moved += 1,
                Err(err) => {
                    warn!(key = %job.key, error = %err, "moved job not stored again; the reconciler publishes it")
                }
            }
        }
        if moved > 0 {
            info!(
                moved,
                priority = highest.name(),
                "queued jobs of lower priority moved behind"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(name: &str, priority: Priority, seq: u64, delivered: u64) -> Waiting {
        Waiting {
            key: schemas::fixtures::atom(name).key(),
            priority,
            seq,
            delivered,
        }
    }

    #[test]
    fn only_undelivered_jobs_of_a_lower_priority_move_in_stream_order() {
        use Priority::{High, Low, Normal};
        let jobs = [
            waiting("a-a/delivered", Normal, 3, 5),
            waiting("a-a/n7", Normal, 7, 5),
            waiting("a-a/n6", Normal, 6, 5),
            waiting("a-a/low", Low, 8, 5),
            waiting("a-a/high", High, 9, 5),
        ];
        let names = |highest| -> Vec<String> {
            to_move(&jobs, highest)
                .iter()
                .map(|w| w.key.as_str().replace("_2F", "/"))
                .collect()
        };
        assert_eq!(names(High), ["a-a/n6", "a-a/n7", "a-a/low"]);
        assert_eq!(names(Normal), ["a-a/low"]);
        assert!(names(Low).is_empty());
    }
}
