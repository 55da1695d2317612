//! Submissions and job publication (the service's handlers). A submission is planned by the
//! package table (`PackageTable::plan_submission`, through the lifecycle's transition), its
//! records are written concurrently, each by compare-and-set (`store`), and only then are the
//! jobs of the written ones published (`publish`), in the schedule's order, the big-job
//! threshold computed once for the batch (`big_jobs`). State first: a crash between the two
//! leaves a queued package without a job, which the reconciler repairs; the other order could
//! build a package the coordinator does not know.

use futures::StreamExt;
use schemas::{
    PackageKey, PackageState, Priority, RunTarget, SCHEMA_VERSION, SubmitReply, SubmitRequest,
    SubmitResult, decode, encode,
};
use tracing::{info, warn};

use crate::api::{self, Reply};
use crate::big_jobs::BigJobs;
use crate::config::Schedule;
use crate::graph;
use crate::publish::{self, Publication, PublishError, PublishOutcome};
use crate::schedule;
use crate::service::Service;
use crate::store::{self, WRITE_CONCURRENCY, WriteError};
use crate::submission::{NewRecord, SubmitRefusal};
use crate::table::Entry;
use crate::target;

/// Job publications awaiting their acknowledgement at once.
const PUBLISH_CONCURRENCY: usize = 128;

impl Service {
    /// Chooses the fingerprint a run of `arch` targets (`target::choose`) and writes it when it
    /// changed; the error says why none can be chosen.
    async fn run_target(
        &mut self,
        arch: &schemas::Arch,
        requested: Option<&str>,
        now: u64,
    ) -> Result<Option<RunTarget>, String> {
        let current = match self.topo.targets.get(arch.as_str()).await {
            Ok(Some(bytes)) => decode::<RunTarget>(&bytes).ok(),
            Ok(None) => None,
            Err(err) => return Err(format!("cannot read the run's target: {err}")),
        };
        let online = self.drones.fingerprints(arch, now);
        let chosen = target::choose(arch, requested, current.as_ref(), &online, now)
            .map_err(|refusal| refusal.to_string())?;
        let unchanged = |a: &RunTarget, b: &RunTarget| a.fingerprint == b.fingerprint;
        if let Some(target) = &chosen
            && !current.as_ref().is_some_and(|c| unchanged(c, target))
        {
            let bytes = encode(target).map_err(|e| e.to_string())?;
            self.topo
                .targets
                .put(arch.as_str(), bytes.into())
                .await
                .map_err(|e| format!("cannot write the run's target: {e}"))?;
            info!(%arch, fingerprint = %target.fingerprint.id, tree = ?target.fingerprint.tree_timestamp, "run target set");
        }
        Ok(chosen)
    }

    /// The `submit` endpoint: a submission that cannot be read is a bad request; one that can
    /// is answered with its result (accepted, atoms rejected, or why it could not be handled).
    pub(crate) async fn submit_request(&mut self, payload: &[u8]) -> Reply {
        let submit: SubmitRequest = api::read_required(payload)?;
        let result = self.submit(submit).await;
        api::write(&SubmitReply {
            v: SCHEMA_VERSION,
            result,
        })
    }

    pub(crate) async fn submit(&mut self, request: SubmitRequest) -> SubmitResult {
        self.refresh_drones().await;
        let now = runtime::now_ms();
        let mut plan =
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
        let unreadable: Vec<String> = plan
            .records
            .iter()
            .filter(|new| self.unreadable.contains(new.key.as_str()))
            .map(|new| new.record.atom.to_string())
            .collect();
        if !unreadable.is_empty() {
            warn!(atoms = ?unreadable, "submission refused: package records this coordinator cannot read");
            return SubmitResult::Error {
                message: format!(
                    "the package records of {} were written by a newer release and this coordinator cannot read them; upgrade the coordinator (nothing was queued)",
                    unreadable.join(", ")
                ),
            };
        }
        // The fingerprint the run targets: its records and jobs carry it, and the target is
        // written before any of them, so no drone of another fingerprint takes a job.
        let arch = plan
            .records
            .first()
            .map(|r| r.record.arch.clone())
            .or_else(|| request.arch.clone());
        if let Some(arch) = arch {
            match self
                .run_target(&arch, request.fingerprint.as_deref(), now)
                .await
            {
                Ok(target) => {
                    let id = target.map(|t| t.fingerprint.id);
                    for new in &mut plan.records {
                        if new.record.fingerprint != id {
                            // Packages built for another fingerprint are not this run's.
                            new.record.artifacts.clear();
                        }
                        new.record.fingerprint = id.clone();
                    }
                }
                Err(message) => {
                    warn!(%arch, reason = %message, "submission refused: no fingerprint to target");
                    return SubmitResult::Error { message };
                }
            }
        }
        let (already, run) = (plan.already_queued, plan.run.clone());
        let notes = std::mem::take(&mut plan.notes);
        // The records are written concurrently (each a compare-and-set on its own key), then
        // the jobs of those written are published.
        let writer = self.writer.clone();
        let written: Vec<_> = futures::stream::iter(plan.records.into_iter().map(|new| {
            let writer = writer.clone();
            async move {
                let NewRecord { key, record, .. } = new;
                let result = store::write_record(&writer, &key, &record).await;
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
                    // A package waiting for its build dependencies gets its job when they are
                    // done (`advance_graph`).
                    let ready = matches!(record.state, PackageState::Queued { .. });
                    self.table.store(&key, Some(Entry { record, revision }));
                    queued += 1;
                    if ready {
                        to_publish.push(key);
                    }
                }
                Err(err) => {
                    if matches!(err, WriteError::Fenced { .. }) {
                        self.deposed(&err);
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
        info!(queued, already_queued = already, %run, "submission accepted");
        SubmitResult::Accepted {
            queued,
            already_queued: already,
            run: Some(run),
            notes,
        }
    }

    /// Publishes jobs with many acks in flight at once, in the schedule's order; a job that
    /// cannot be published now is left to the reconciler.
    pub(crate) async fn publish_many(&self, keys: &[PackageKey], attempt: u32) {
        // With build dependencies in the table, a job's priority is its critical path: its own
        // work and the longest chain of work that waits on it.
        let by_graph = self.settings.schedule == Schedule::CriticalPath && self.table.has_graph();
        let paths = by_graph.then(|| graph::remaining_path(&self.table, schedule::estimate_secs));
        let mut ordered: Vec<(&PackageKey, f64)> = keys
            .iter()
            .filter_map(|key| {
                let entry = self.table.get(key)?;
                let own = schedule::estimate_secs(&entry.record);
                let priority = paths.as_ref().and_then(|p| p.get(key).copied());
                Some((key, priority.unwrap_or(own)))
            })
            .collect();
        if self.settings.schedule != Schedule::Fifo {
            schedule::longest_first(&mut ordered);
        }
        // The operator's priority first, the schedule's order within it (a stable sort).
        let priority_of = |key: &PackageKey| self.table.get(key).map(|e| e.record.priority);
        ordered.sort_by_key(|(key, _)| std::cmp::Reverse(priority_of(key)));
        let highest = ordered.iter().filter_map(|(key, _)| priority_of(key)).max();
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
                    placement: big.placement(key, &entry.record, &self.drones, &self.table),
                })
            })
            .collect();
        let (js, builds) = (&self.js, &self.topo.builds);
        // Big jobs one at a time, so that the stream holds them in priority order: a big drone
        // pulls one at a time, and the critical path's next package must come first.
        let (big, normal): (Vec<_>, Vec<_>) =
            publications.into_iter().partition(|p| p.placement.is_big());
        for p in &big {
            if let Err(err) = publish::publish(js, builds, p).await {
                warn!(key = %p.key, error = %err, "job not published; the reconciler will retry");
            }
        }
        let mut results = futures::stream::iter(
            normal
                .into_iter()
                .map(|p| async move { (p.key, publish::publish(js, builds, &p).await) }),
        )
        .buffer_unordered(PUBLISH_CONCURRENCY);
        while let Some((key, result)) = results.next().await {
            if let Err(err) = result {
                warn!(key = %key, error = %err, "job not published; the reconciler will retry");
            }
        }
        drop(results);
        if let Some(highest) = highest
            && highest > Priority::Low
        {
            self.overtake(highest).await;
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
            placement: batch.placement(key, &entry.record, &self.drones, &self.table),
        };
        publish::publish(&self.js, &self.topo.builds, &publication).await
    }
}
