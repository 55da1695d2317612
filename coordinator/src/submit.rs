//! Submissions and job publication (the service's handlers). A submission is planned by the
//! package table (`PackageTable::plan_submission`, through the lifecycle's transition), its
//! records are written concurrently, each by compare-and-set (`store`), and only then are the
//! jobs of the written ones published (`publish`), in the schedule's order, the big-job
//! threshold computed once for the batch (`big_jobs`). State first: a crash between the two
//! leaves a queued package without a job, which the reconciler repairs; the other order could
//! build a package the coordinator does not know.

use futures::StreamExt;
use schemas::{
    PackageKey, SCHEMA_VERSION, SubmitReply, SubmitRequest, SubmitResult, decode, encode,
};
use tracing::{error, info, warn};

use crate::big_jobs::BigJobs;
use crate::config::Schedule;
use crate::publish::{self, Publication, PublishError, PublishOutcome};
use crate::schedule;
use crate::service::Service;
use crate::store::{self, WRITE_CONCURRENCY, WriteError};
use crate::submission::{NewRecord, SubmitRefusal};
use crate::table::Entry;

/// Job publications awaiting their acknowledgement at once.
const PUBLISH_CONCURRENCY: usize = 128;

impl Service {
    pub(crate) async fn handle_submit(
        &mut self,
        client: &async_nats::Client,
        request: async_nats::Message,
    ) {
        let result = match decode::<SubmitRequest>(&request.payload) {
            Ok(submit) => self.submit(submit).await,
            Err(err) => {
                if let Some(suppressed) = self.refused.allow("malformed submission") {
                    warn!(error = %err, suppressed, "malformed submission discarded");
                }
                SubmitResult::Error {
                    message: err.to_string(),
                }
            }
        };
        let Some(reply) = request.reply else {
            return;
        };
        let reply_msg = SubmitReply {
            v: SCHEMA_VERSION,
            result,
        };
        match encode(&reply_msg) {
            Ok(bytes) => {
                if let Err(err) = client.publish(reply, bytes.into()).await {
                    warn!(error = %err, "cannot answer a submission");
                }
            }
            Err(err) => error!(error = %err, "cannot encode a submission reply"),
        }
    }

    async fn submit(&mut self, request: SubmitRequest) -> SubmitResult {
        let now = runtime::now_ms();
        let plan =
            match self
                .table
                .plan_submission(&request, &self.settings.arches, &self.policy, now)
            {
                Ok(plan) => plan,
                Err(SubmitRefusal::InvalidAtoms(rejections)) => {
                    warn!(
                        rejected = rejections.len(),
                        "submission refused: invalid atoms, nothing enqueued"
                    );
                    return SubmitResult::Rejected { rejections };
                }
                Err(refusal) => {
                    return SubmitResult::Error {
                        message: refusal.to_string(),
                    };
                }
            };
        let already = plan.already_queued;
        // The records are written concurrently (each a compare-and-set on its own key), then
        // the jobs of those written are published.
        let bucket = self.topo.packages.clone();
        let written: Vec<_> = futures::stream::iter(plan.records.into_iter().map(|new| {
            let bucket = bucket.clone();
            async move {
                let NewRecord {
                    key,
                    revision,
                    record,
                } = new;
                let result = store::write_record(&bucket, &key, revision, &record).await;
                (key, record, result)
            }
        }))
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
        let mut queued = 0u32;
        let mut to_publish = Vec::new();
        let mut failures = Vec::new();
        for (key, record, result) in written {
            match result {
                Ok(revision) => {
                    self.table.store(&key, Some(Entry { record, revision }));
                    queued += 1;
                    to_publish.push(key);
                }
                Err(err) => {
                    if matches!(err, WriteError::Conflict) {
                        self.refresh(&key).await;
                    }
                    failures.push(format!("{}: {err}", record.atom));
                }
            }
        }
        self.publish_many(&to_publish, 1).await;
        if let Some(first) = failures.first() {
            warn!(
                failed = failures.len(),
                queued, "submission partly recorded"
            );
            return SubmitResult::Error {
                message: format!(
                    "cannot record {} packages (first: {first}); the other {queued} were queued",
                    failures.len()
                ),
            };
        }
        info!(queued, already_queued = already, "submission accepted");
        SubmitResult::Accepted {
            queued,
            already_queued: already,
        }
    }

    /// Publishes jobs with many acks in flight at once, in the schedule's order; a job that
    /// cannot be published now is left to the reconciler.
    async fn publish_many(&self, keys: &[PackageKey], attempt: u32) {
        let mut ordered: Vec<(&PackageKey, f64)> = keys
            .iter()
            .filter_map(|key| {
                let entry = self.table.get(key)?;
                Some((key, schedule::estimate_secs(&entry.record)))
            })
            .collect();
        if self.settings.schedule == Schedule::LongestFirst {
            schedule::longest_first(&mut ordered);
        }
        let mut big = BigJobs::new(self.settings.schedule, runtime::now_ms());
        let publications: Vec<Publication<'_>> = ordered
            .into_iter()
            .filter_map(|(key, _)| {
                let entry = self.table.get(key)?;
                Some(Publication {
                    key,
                    record: &entry.record,
                    revision: entry.revision,
                    attempt,
                    big: big.is_big(&entry.record, &self.drones, &self.table),
                })
            })
            .collect();
        let (js, builds) = (&self.js, &self.topo.builds);
        let mut results = futures::stream::iter(
            publications
                .into_iter()
                .map(|p| async move { (p.key, publish::publish(js, builds, &p).await) }),
        )
        .buffer_unordered(PUBLISH_CONCURRENCY);
        while let Some((key, result)) = results.next().await {
            if let Err(err) = result {
                warn!(key = %key, error = %err, "job not published; the reconciler will retry");
            }
        }
    }

    /// Publishes one package's job for `entry` (its record as it stands in the table),
    /// deciding its queue in `batch`.
    pub(crate) async fn publish_one(
        &self,
        key: &PackageKey,
        entry: &Entry,
        attempt: u32,
        batch: &mut BigJobs,
    ) -> Result<PublishOutcome, PublishError> {
        let publication = Publication {
            key,
            record: &entry.record,
            revision: entry.revision,
            attempt,
            big: batch.is_big(&entry.record, &self.drones, &self.table),
        };
        publish::publish(&self.js, &self.topo.builds, &publication).await
    }
}
