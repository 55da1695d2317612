//! The service's housekeeping handlers: packages whose build dependencies moved, retries whose
//! backoff is over, dead letters, the drones bucket's watch, lost drones and the takeover of
//! their builds, and the reconcile pass. Each reads what it needs, asks the pure part for a decision (`graph`, `table`,
//! `drones`, `reconcile`) and writes it.

use std::time::Duration;

use async_nats::jetstream::{AckKind, kv, stream};
use futures::StreamExt;
use schemas::{Job, Lease, LeasePhase, PackageState, decode, encode, names};
use tracing::{debug, info, warn};

use crate::big_jobs::BigJobs;
use crate::drones::{DroneRefusal, WatchEntry};
use crate::graph::{self, Step};
use crate::lifecycle::PackageEvent;
use crate::publish::PublishOutcome;
use crate::reconcile::{Action, Evidence};
use crate::service::Service;
use crate::table::Change;

/// Why a reconcile pass could not read what it needs; it is tried again next interval.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("listing jobs: {0}")]
    Jobs(#[source] stream::InfoError),
    #[error("listing leases: {0}")]
    Leases(#[source] kv::HistoryError),
    #[error("listing leases: {0}")]
    LeaseKeys(#[source] kv::WatcherError),
    #[error("reading event stream info: {0}")]
    Events(#[source] stream::InfoError),
}

/// The part of the server's max-deliveries advisory the coordinator reads.
#[derive(serde::Deserialize)]
struct Advisory {
    stream_seq: u64,
    deliveries: u64,
}

impl Service {
    /// Moves the packages that wait on their build dependencies (`graph::steps`): releases
    /// those whose dependencies all succeeded and are in staging, and publishes their jobs in
    /// critical-path order; blocks those with a dependency failed for good; lets blocked ones
    /// wait again when their dependency is built again. Until nothing moves: a block reaches
    /// every transitive dependent.
    pub(crate) async fn advance_graph(&mut self) {
        let mut released = Vec::new();
        loop {
            let steps = graph::steps(&self.table, runtime::now_ms());
            let mut moved = false;
            for step in steps {
                let (key, event) = match step {
                    Step::Release(key) => (key, PackageEvent::Released),
                    Step::Block { key, dependency } => {
                        (key, PackageEvent::DependencyFailed { dependency })
                    }
                    Step::Unblock(key) => (key, PackageEvent::Unblocked),
                };
                match self.apply(&Change::new(key.clone(), event)).await {
                    Ok(Some(PackageState::Queued { .. })) => released.push(key),
                    Ok(Some(PackageState::Blocked { dependency })) => {
                        moved = true;
                        info!(key = %key, %dependency, "blocked: a build dependency failed");
                    }
                    Ok(Some(_)) => moved = true,
                    Ok(None) => {}
                    Err(err) => {
                        warn!(key = %key, error = %err, "dependency step not recorded; trying again")
                    }
                }
            }
            if !moved {
                break;
            }
        }
        if !released.is_empty() {
            debug!(
                released = released.len(),
                "build dependencies done; jobs published"
            );
            self.publish_many(&released, 1).await;
        }
    }

    pub(crate) async fn publish_due_retries(&mut self) {
        let now = runtime::now_ms();
        let due = self.table.due_retries(now);
        let mut batch = BigJobs::new(self.settings.schedule, now);
        for (key, attempt) in due {
            let Some(entry) = self.table.get(&key) else {
                continue;
            };
            match self.publish_one(&key, entry, attempt, &mut batch).await {
                Ok(PublishOutcome::Published) => {
                    let change = Change::new(key.clone(), PackageEvent::RetryPublished);
                    if let Err(err) = self.apply(&change).await {
                        warn!(key = %key, error = %err, "retry published but not recorded; it will be recorded on the next tick");
                    }
                }
                // The previous attempt's job is still acknowledged-pending; try on the next tick.
                Ok(PublishOutcome::SubjectBusy) => {
                    debug!(key = %key, "previous job still in the stream")
                }
                Err(err) => warn!(key = %key, error = %err, "cannot publish retry"),
            }
        }
    }

    /// Removes a job the server gave up delivering (a WorkQueue stream keeps it, blocking its
    /// package's subject for ever) and fails its package. The advisory is acknowledged only
    /// when that is done.
    pub(crate) async fn handle_deadletter(&mut self, message: async_nats::jetstream::Message) {
        let advisory = match serde_json::from_slice::<Advisory>(&message.payload) {
            Ok(a) => a,
            Err(err) => {
                if let Some(suppressed) = self.refused.allow("undecodable advisory") {
                    warn!(error = %err, suppressed, "undecodable max-deliveries advisory discarded");
                }
                let _ = message.ack().await;
                return;
            }
        };
        let retry_later = || message.ack_with(AckKind::Nak(Some(Duration::from_secs(1))));
        match self.topo.builds.get_raw_message(advisory.stream_seq).await {
            Ok(raw) => {
                let job = decode::<Job>(&raw.payload);
                if let Err(err) = self.topo.builds.delete_message(advisory.stream_seq).await {
                    warn!(error = %err, seq = advisory.stream_seq, "cannot delete dead-lettered job; will retry");
                    let _ = retry_later().await;
                    return;
                }
                match job {
                    Ok(job) => {
                        warn!(package = %job.atom, attempt = job.attempt, deliveries = advisory.deliveries, "job dead-lettered");
                        let event = PackageEvent::DeadLettered {
                            attempt: job.attempt,
                            deliveries: advisory.deliveries,
                        };
                        if let Err(err) = self.apply(&Change::new(job.atom.key(), event)).await {
                            warn!(error = %err, "dead letter not recorded; will retry");
                            let _ = retry_later().await;
                            return;
                        }
                    }
                    // No drone read it in all its deliveries (junk, or a release newer than
                    // every drone's): it would block its package's subject for ever.
                    Err(err) => {
                        if let Some(suppressed) =
                            self.refused.allow("undecodable dead-lettered job")
                        {
                            let atom = raw.headers.get(names::HEADER_ATOM).map(|a| a.to_string());
                            warn!(subject = %raw.subject, stream_seq = advisory.stream_seq, deliveries = advisory.deliveries, ?atom, version = ?err.unsupported_version(), error = %err, suppressed, "unreadable job dead-lettered: no drone could read it; removed from the work stream");
                        }
                    }
                }
            }
            Err(err) => {
                debug!(error = %err, seq = advisory.stream_seq, "dead-lettered job already gone")
            }
        }
        let _ = message.ack().await;
    }

    pub(crate) fn handle_drone_entry(&mut self, entry: kv::Entry) {
        let watched = if entry.operation == kv::Operation::Put {
            WatchEntry::Put {
                key: &entry.key,
                value: &entry.value,
                revision: entry.revision,
                written_ms: (entry.created.unix_timestamp_nanos() / 1_000_000) as u64,
            }
        } else {
            WatchEntry::Delete { key: &entry.key }
        };
        let Err(refusal) = self.drones.apply(watched) else {
            match self.drones.get(&entry.key) {
                Some(known) => self.takeover.heard(
                    &entry.key,
                    known.record.boot_ms,
                    known.record.seq,
                    std::time::Instant::now(),
                ),
                None => self.takeover.forget(&entry.key),
            }
            return;
        };
        let Some(suppressed) = self.refused.allow(refusal.kind()) else {
            return;
        };
        match refusal {
            DroneRefusal::ForeignKey { name } => {
                warn!(key = %entry.key, %name, suppressed, "drone record under another drone's key ignored")
            }
            DroneRefusal::Undecodable(err) => {
                warn!(key = %entry.key, revision = entry.revision, version = ?err.unsupported_version(), error = %err, suppressed, "undecodable drone record ignored; left as it is")
            }
        }
    }

    /// Reads every drone record now, so that a submission is placed (its run's fingerprint, its
    /// big jobs) by the drones online at that moment, not by what the bucket's watch has
    /// delivered so far.
    pub(crate) async fn refresh_drones(&mut self) {
        let Ok(keys) = self.topo.drones.keys().await else {
            return;
        };
        let keys: Vec<String> = keys.filter_map(|k| async { k.ok() }).collect().await;
        for key in keys {
            if let Ok(Some(entry)) = self.topo.drones.entry(key.as_str()).await {
                self.handle_drone_entry(entry);
            }
        }
    }

    /// A drone whose heartbeat stopped is marked lost (what readers show); its builds are
    /// released by [`Service::release_silent_drones`] once they are surely dead.
    pub(crate) async fn mark_lost_drones(&mut self) {
        for lost in self.drones.newly_lost(runtime::now_ms()) {
            warn!(drone = %lost.name, building = lost.record.building.len(), "drone heartbeat stopped; marked lost");
            let Ok(bytes) = encode(&lost.record) else {
                continue;
            };
            // Compare-and-set: if the drone wrote meanwhile it is alive and its word wins.
            if let Err(err) = self
                .topo
                .drones
                .update(&lost.name, bytes.into(), lost.revision)
                .await
            {
                debug!(drone = %lost.name, error = %err, "lost mark not written");
            }
        }
    }

    /// Every package a silent drone was building, once its builds are surely dead
    /// (`takeover`), is given to the other drones at once: its lease is deleted at the revision
    /// read (a drone that renewed meanwhile is alive and keeps it), its job deleted by the
    /// stream sequence the lease records, and the package queued and published again. Whatever
    /// the drone does if it comes back is fenced: its renewals and its result's commit fail on
    /// the lease, and its late acknowledgement names a message that is gone.
    pub(crate) async fn release_silent_drones(&mut self) {
        let due = self
            .takeover
            .pending(&self.drones, std::time::Instant::now());
        if due.is_empty() {
            return;
        }
        // As for the reconciler: every event stored so far is applied first, so that a result
        // the drone stored before it fell silent is recorded, not built again.
        let Ok(stored) = self.topo.events.info().await.map(|i| i.state.last_sequence) else {
            return;
        };
        self.refresh_applied_through().await;
        if !self.watermark.covers(stored) {
            debug!(stored, "takeover waits until every stored event is applied");
            return;
        }
        self.takeover.released(&due);
        let Ok(keys) = self.topo.leases.keys().await else {
            warn!("cannot list leases; silent drones' builds wait for their leases to expire");
            return;
        };
        let keys: Vec<String> = keys.filter_map(|k| async { k.ok() }).collect().await;
        let mut batch = BigJobs::new(self.settings.schedule, runtime::now_ms());
        for key in keys {
            let Ok(Some(entry)) = self.topo.leases.entry(key.as_str()).await else {
                continue;
            };
            let Ok(lease) = decode::<Lease>(&entry.value) else {
                continue;
            };
            if !matches!(lease.phase, LeasePhase::Building) || !due.contains(&lease.drone) {
                continue;
            }
            self.release(&lease, entry.revision, &mut batch).await;
        }
    }

    async fn release(&mut self, lease: &Lease, revision: u64, batch: &mut BigJobs) {
        let key = lease.atom.key();
        // Only a build the package is recorded as doing: one whose result is recorded is done.
        let building = self.table.get(&key).is_some_and(|entry| {
            matches!(&entry.record.state, PackageState::Building { attempt, drone, .. }
                if *attempt == lease.attempt && *drone == lease.drone)
        });
        if !building {
            debug!(package = %lease.atom, "not building on the silent drone by its record; left alone");
            return;
        }
        if let Err(err) = self
            .topo
            .leases
            .delete_expect_revision(key.as_str(), Some(revision))
            .await
        {
            debug!(package = %lease.atom, error = %err, "lease moved on; not released");
            return;
        }
        if let Err(err) = self.topo.builds.delete_message(lease.stream_seq).await {
            debug!(package = %lease.atom, seq = lease.stream_seq, error = %err, "job already gone");
        }
        warn!(package = %lease.atom, drone = %lease.drone, attempt = lease.attempt, "silent drone's build is dead by now; giving the package to the other drones");
        let attempt = match self.table.get(&key) {
            Some(entry) => entry.record.state.attempt(),
            None => return,
        };
        if let Err(err) = self
            .apply(&Change::new(key.clone(), PackageEvent::Requeued))
            .await
        {
            warn!(package = %lease.atom, error = %err, "takeover not recorded; the reconciler will re-publish");
            return;
        }
        let Some(entry) = self.table.get(&key) else {
            return;
        };
        if let Err(err) = self.publish_one(&key, entry, attempt, batch).await {
            warn!(package = %lease.atom, error = %err, "re-publish failed; the reconciler will retry");
        }
    }

    /// One reconcile pass: read the evidence, plan, requeue and re-publish what the plan says.
    pub(crate) async fn reconcile_once(&mut self) -> Result<(), ReconcileError> {
        if self.table.live().next().is_none() {
            self.reconciler.forget();
            return Ok(());
        }
        let evidence = self.read_evidence().await?;
        self.refresh_applied_through().await;
        let actions = self
            .reconciler
            .plan(&self.table, &evidence, &self.watermark);
        let mut batch = BigJobs::new(self.settings.schedule, runtime::now_ms());
        for Action::Requeue { key, attempt } in actions {
            let Some(entry) = self.table.get(&key) else {
                continue;
            };
            warn!(package = %entry.record.atom, attempt, "package has neither a job nor a lease; re-publishing");
            match self
                .apply(&Change::new(key.clone(), PackageEvent::Requeued))
                .await
            {
                Ok(_) => {
                    let Some(entry) = self.table.get(&key) else {
                        continue;
                    };
                    if let Err(err) = self.publish_one(&key, entry, attempt, &mut batch).await {
                        warn!(key = %key, error = %err, "re-publish failed; will retry");
                    }
                }
                Err(err) => warn!(key = %key, error = %err, "requeue not recorded"),
            }
        }
        Ok(())
    }

    /// Reads, in this order, the jobs in the work stream, the leases, and the event stream's
    /// last sequence. A drone publishes its result before it acknowledges the job and before
    /// it drops the lease, so a package missing from both lists has its result (if any) at or
    /// below that sequence.
    async fn read_evidence(&mut self) -> Result<Evidence, ReconcileError> {
        let mut evidence = Evidence::default();
        let mut subjects = self
            .topo
            .builds
            .info_with_subjects(format!("{}.>", names::BUILD_SUBJECT_PREFIX))
            .await
            .map_err(ReconcileError::Jobs)?;
        while let Some(item) = subjects.next().await {
            let (subject, _) = item.map_err(ReconcileError::Jobs)?;
            if let Some(key) = names::key_of_build_subject(&subject) {
                evidence.jobs.insert(key.to_owned());
            }
        }
        let mut keys = self
            .topo
            .leases
            .keys()
            .await
            .map_err(ReconcileError::Leases)?;
        while let Some(key) = keys.next().await {
            evidence
                .leases
                .insert(key.map_err(ReconcileError::LeaseKeys)?);
        }
        evidence.events_seq = self
            .topo
            .events
            .info()
            .await
            .map_err(ReconcileError::Events)?
            .state
            .last_sequence;
        Ok(evidence)
    }
}
