//! The coordinator's one task: it owns every package record (loaded from the packages bucket at
//! start) and is the only writer of package state. It serves submissions, applies drone events
//! through the lifecycle's transition function, publishes retries, handles dead letters, marks
//! silent drones lost and reconciles package state against the work stream and the leases.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, kv, message::PublishMessage};
use futures::StreamExt;
use schemas::{
    Arch, Atom, AtomRejection, AttemptRecord, BuildOutcome, DroneRecord, DroneState, Event,
    EventKind, Job, PackageKey, PackageRecord, PackageState, SCHEMA_VERSION, SubmitReply,
    SubmitRequest, SubmitResult, decode, encode, names,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{Schedule, Settings};
use crate::lifecycle::{PackageEvent, Policy, transition};
use crate::schedule;
use crate::topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot load package state from bucket {bucket}: {reason}")]
    Load {
        bucket: &'static str,
        reason: String,
    },
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
}

/// Why a package write did not happen.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    /// Someone else wrote the key; the in-memory copy was refreshed from the bucket.
    #[error("package record changed underneath")]
    Conflict,
    #[error("{0}")]
    Nats(String),
    #[error("{0}")]
    Encode(String),
}

struct Entry {
    record: PackageRecord,
    revision: u64,
}

struct DroneEntry {
    record: DroneRecord,
    revision: u64,
    /// Server time of the last write of the record (unix ms).
    written_ms: u64,
}

/// A package seen with neither a job in the stream nor a lease. It is re-published only once
/// every event published before that observation has been applied, so a result still in flight
/// is never mistaken for a lost job.
struct Candidate {
    revision: u64,
    events_seq: u64,
}

pub struct Service {
    settings: Settings,
    policy: Policy,
    js: jetstream::Context,
    topo: Topology,
    packages: HashMap<PackageKey, Entry>,
    /// Packages waiting out a retry backoff, by the time their retry is due.
    retries: BTreeSet<(u64, PackageKey)>,
    drones: HashMap<String, DroneEntry>,
    candidates: HashMap<PackageKey, Candidate>,
    /// Every event with a stream sequence up to this one has been applied (or discarded as
    /// junk). Events are applied mostly in order, but after a restart the events the previous
    /// coordinator had received and not acknowledged come back only after their AckWait, behind
    /// newer ones; the reconciler must not take those newer ones for "everything applied".
    applied_through: u64,
    /// Events applied above `applied_through`, waiting for the gap below them to close.
    applied_above: BTreeSet<u64>,
    /// Refused input (malformed, forged) is logged once per kind and window, not per message.
    refused: runtime::throttle::Throttle,
    /// Claims not yet written, by package: a claim is written CLAIM_DELAY after it arrived,
    /// or together with the package's result if that comes first (a short build's claim and
    /// result then cost one write). Their events stay unacknowledged until written.
    held: HashMap<PackageKey, (std::time::Instant, Vec<Pending>)>,
    /// When each held claim is due, in arrival order.
    held_due: std::collections::VecDeque<(std::time::Instant, PackageKey)>,
}

/// An event received and not yet acknowledged, with what it does to its package.
struct Pending {
    message: jetstream::Message,
    seq: u64,
    change: Change,
}

/// The job's message id: the same record revision always gives the same id, so publishing
/// twice after a crash is deduplicated by the server, while a re-publish after the record moved
/// on (a requeue of a lost job) is a new message.
fn msg_id(
    key: &PackageKey,
    record: &PackageRecord,
    revision: u64,
    attempt: u32,
    big: bool,
) -> String {
    let queue = if big { ":big" } else { "" };
    format!("{key}:{}:{attempt}:{revision}{queue}", record.submission)
}

impl Service {
    pub async fn new(
        settings: Settings,
        js: jetstream::Context,
        topo: Topology,
    ) -> Result<Service, ServiceError> {
        let policy = Policy {
            max_attempts: settings.max_attempts,
            backoff_ms: settings.retry_backoff_ms,
            backoff_max_ms: settings.retry_backoff_max_ms,
        };
        let items = runtime::kv::read_bucket::<PackageRecord>(&topo.packages)
            .await
            .map_err(|e| ServiceError::Load {
                bucket: names::PACKAGES_BUCKET,
                reason: e.to_string(),
            })?;
        let loaded = items.len();
        // Events at or below the consumer's ack floor were applied by an earlier run; without
        // this a restarted coordinator would wait for a new event before it could requeue.
        let mut applied_through = 0;
        if let Ok(mut consumer) = topo
            .events
            .get_consumer::<jetstream::consumer::pull::Config>(names::COORDINATOR_EVENTS_CONSUMER)
            .await
            && let Ok(info) = consumer.info().await
        {
            applied_through = info.ack_floor.stream_sequence;
        }
        let mut service = Service {
            settings,
            policy,
            js,
            topo,
            packages: HashMap::with_capacity(loaded),
            retries: BTreeSet::new(),
            drones: HashMap::new(),
            candidates: HashMap::new(),
            applied_through,
            applied_above: BTreeSet::new(),
            refused: runtime::throttle::Throttle::default(),
            held: HashMap::new(),
            held_due: std::collections::VecDeque::new(),
        };
        for item in items {
            let key = item.value.atom.key();
            let entry = Entry {
                record: item.value,
                revision: item.revision,
            };
            service.store(&key, Some(entry));
        }
        info!(packages = loaded, "package state loaded");
        Ok(service)
    }

    pub async fn run(
        mut self,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let mut submissions =
            client
                .subscribe(names::SUBMIT_SUBJECT)
                .await
                .map_err(|e| ServiceError::Subscribe {
                    subject: names::SUBMIT_SUBJECT.to_owned(),
                    reason: e.to_string(),
                })?;
        // Events are taken in batches of whatever has arrived (up to EVENT_BATCH), so that the
        // writes of one batch go out together.
        let mut events = Box::pin(
            open_consumer(&self.topo.events, names::COORDINATOR_EVENTS_CONSUMER)
                .await
                .ready_chunks(EVENT_BATCH),
        );
        let mut deadletters = Box::pin(
            open_consumer(
                &self.topo.deadletter,
                names::COORDINATOR_DEADLETTER_CONSUMER,
            )
            .await,
        );
        let mut drone_watch = self.topo.drones.watch_all().await.ok();
        let mut reconcile =
            tokio::time::interval(Duration::from_millis(self.settings.reconcile_interval_ms));
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retry_tick_ms = (self.settings.retry_backoff_ms / 4).clamp(20, 1_000);
        let mut retries = tokio::time::interval(Duration::from_millis(retry_tick_ms));
        retries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.catch_up_unacknowledged().await;
        info!("coordinator ready");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(request) = submissions.next() => self.handle_submit(&client, request).await,
                batch = events.next() => match batch {
                    Some(batch) => {
                        let mut messages = Vec::with_capacity(batch.len());
                        for item in batch {
                            match item {
                                Ok(message) => messages.push(message),
                                Err(err) => warn!(error = %err, "event consumer"),
                            }
                        }
                        self.handle_events(messages).await;
                    }
                    None => {
                        warn!("event consumer ended, reopening");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        events = Box::pin(open_consumer(&self.topo.events, names::COORDINATOR_EVENTS_CONSUMER).await.ready_chunks(EVENT_BATCH));
                    }
                },
                message = deadletters.next() => match message {
                    Some(Ok(message)) => self.handle_deadletter(message).await,
                    Some(Err(err)) => warn!(error = %err, "dead-letter consumer"),
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        deadletters = Box::pin(open_consumer(&self.topo.deadletter, names::COORDINATOR_DEADLETTER_CONSUMER).await);
                    }
                },
                entry = next_watch(&mut drone_watch) => match entry {
                    Some(entry) => self.handle_drone_entry(entry),
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        drone_watch = self.topo.drones.watch_all().await.ok();
                    }
                },
                _ = sleep_until_first(&self.held_due) => self.write_due_claims().await,
                _ = retries.tick() => self.publish_due_retries().await,
                _ = reconcile.tick() => {
                    self.mark_lost_drones().await;
                    if let Err(err) = self.reconcile_once().await {
                        warn!(error = %err, "reconcile pass failed; trying again next interval");
                    }
                }
            }
        }
        info!("coordinator stopped");
        Ok(())
    }

    // ---- package writes ----

    /// The one place the in-memory records change, so the retry index always matches them.
    fn store(&mut self, key: &PackageKey, entry: Option<Entry>) {
        let old = match entry {
            Some(entry) => {
                let due = retry_due(&entry.record.state);
                let old = self.packages.insert(key.clone(), entry);
                if let Some(at) = due {
                    self.retries.insert((at, key.clone()));
                }
                old
            }
            None => self.packages.remove(key),
        };
        if let Some(at) = old.as_ref().and_then(|e| retry_due(&e.record.state))
            && self
                .packages
                .get(key)
                .and_then(|e| retry_due(&e.record.state))
                != Some(at)
        {
            self.retries.remove(&(at, key.clone()));
        }
    }

    /// Writes a record with compare-and-set on the revision this task last saw, and only then
    /// updates the in-memory copy: memory never runs ahead of the bucket.
    async fn write(&mut self, key: &PackageKey, record: PackageRecord) -> Result<(), WriteError> {
        let revision = self.packages.get(key).map(|entry| entry.revision);
        match write_record(&self.topo.packages, key, revision, &record).await {
            Ok(revision) => {
                self.store(key, Some(Entry { record, revision }));
                Ok(())
            }
            Err(WriteError::Conflict) => {
                self.refresh(key).await;
                Err(WriteError::Conflict)
            }
            Err(err) => Err(err),
        }
    }

    async fn refresh(&mut self, key: &PackageKey) {
        match self.topo.packages.entry(key.as_str()).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                match decode::<PackageRecord>(&entry.value) {
                    Ok(record) => self.store(
                        key,
                        Some(Entry {
                            record,
                            revision: entry.revision,
                        }),
                    ),
                    Err(err) => {
                        if let Some(suppressed) = self.refused.allow("undecodable package record") {
                            warn!(key = %key, error = %err, suppressed, "undecodable package record");
                        }
                    }
                }
            }
            Ok(_) => self.store(key, None),
            Err(err) => warn!(key = %key, error = %err, "cannot refresh package record"),
        }
    }

    /// Applies one lifecycle event to a package and writes the result; on a write conflict the
    /// record is re-read and the event applied once more.
    async fn apply(
        &mut self,
        key: &PackageKey,
        event: PackageEvent,
        attempt_record: Option<AttemptRecord>,
        learned: Option<f64>,
    ) -> Result<Option<PackageState>, WriteError> {
        for _ in 0..2 {
            let Some(entry) = self.packages.get(key) else {
                debug!(key = %key, "event for an unknown package");
                return Ok(None);
            };
            let now = runtime::now_ms();
            let next = match transition(&entry.record.state, &event, &self.policy, now) {
                Ok(next) => next,
                Err(err) => {
                    // A late or repeated event: safe to drop, the package has moved on.
                    debug!(package = %entry.record.atom, error = %err, "event does not move the package");
                    return Ok(None);
                }
            };
            let mut record = entry.record.clone();
            record.state = next.clone();
            record.updated_ms = now;
            if let Some(attempt) = &attempt_record {
                record.history.push(attempt.clone());
            }
            if let Some(observed) = learned {
                record.learned_secs = Some(schedule::learn(record.learned_secs, observed));
            }
            match self.write(key, record).await {
                Ok(()) => return Ok(Some(next)),
                Err(WriteError::Conflict) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(WriteError::Conflict)
    }

    // ---- jobs ----

    /// The estimate above which a job of `arch` is big now (see `schedule::big_above`); `None`
    /// under the FIFO schedule or when no drone online takes big builds.
    fn big_above(&self, arch: &Arch) -> Option<f64> {
        if self.settings.schedule != Schedule::LongestFirst {
            return None;
        }
        let now = runtime::now_ms();
        let mut capacity = schedule::Capacity::default();
        for drone in self.drones.values() {
            let state = schemas::summary::effective_state(
                &drone.record,
                now.saturating_sub(drone.written_ms),
            );
            if drone.record.arch == *arch
                && matches!(state, DroneState::Idle | DroneState::Building)
            {
                capacity.add(
                    drone.record.cores,
                    drone.record.slots,
                    drone.record.big_builds,
                );
            }
        }
        let work: f64 = self
            .packages
            .values()
            .filter(|e| e.record.arch == *arch && !e.record.state.is_final())
            .map(|e| schedule::estimate_secs(&e.record))
            .sum();
        schedule::big_above(&capacity, work)
    }

    /// Whether the package's job goes to the big queue. `cache` keeps `big_above` per arch for
    /// a batch of publications: computing it reads every package record.
    fn is_big(&self, record: &PackageRecord, cache: &mut HashMap<Arch, Option<f64>>) -> bool {
        let above = *cache
            .entry(record.arch.clone())
            .or_insert_with(|| self.big_above(&record.arch));
        schedule::is_big(record, above)
    }

    /// Publishes one package's job, deciding its queue now (`cache`: see `is_big`).
    async fn publish_one(
        &self,
        key: &PackageKey,
        record: &PackageRecord,
        revision: u64,
        attempt: u32,
        cache: &mut HashMap<Arch, Option<f64>>,
    ) -> Result<PublishOutcome, String> {
        let big = self.is_big(record, cache);
        self.publish_job(key, record, revision, attempt, big).await
    }

    async fn publish_job(
        &self,
        key: &PackageKey,
        record: &PackageRecord,
        revision: u64,
        attempt: u32,
        big: bool,
    ) -> Result<PublishOutcome, String> {
        let avoid = record
            .history
            .iter()
            .filter(|a| matches!(a.outcome, BuildOutcome::Failed { .. }))
            .map(|a| a.drone.clone())
            .collect::<Vec<_>>();
        let job = Job {
            v: SCHEMA_VERSION,
            atom: record.atom.clone(),
            attempt,
            submission: record.submission,
            avoid,
            estimate_secs: record.estimate_secs,
        };
        let payload = encode(&job).map_err(|e| e.to_string())?;
        let subject = if big {
            names::big_build_subject(&record.arch, key)
        } else {
            names::build_subject(&record.arch, key)
        };
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(msg_id(key, record, revision, attempt, big));
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| e.to_string())?;
        match ack.await {
            Ok(_) => Ok(PublishOutcome::Published),
            Err(err) => {
                let text = err.to_string();
                if text.contains("maximum messages per subject") {
                    Ok(PublishOutcome::SubjectBusy)
                } else {
                    Err(text)
                }
            }
        }
    }

    // ---- submissions ----

    async fn handle_submit(&mut self, client: &async_nats::Client, request: async_nats::Message) {
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
        let arch = request
            .arch
            .unwrap_or_else(|| self.settings.arches[0].clone());
        if !self.settings.arches.contains(&arch) {
            return SubmitResult::Error {
                message: format!(
                    "arch {arch} is not built by this swarm (configured: {})",
                    self.settings
                        .arches
                        .iter()
                        .map(Arch::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
        if request.items.is_empty() {
            return SubmitResult::Error {
                message: "the submission names no package".to_owned(),
            };
        }
        let mut atoms = Vec::with_capacity(request.items.len());
        let mut rejections = Vec::new();
        for item in &request.items {
            match Atom::parse(&item.atom) {
                Ok(atom) => atoms.push((atom, item.estimate_secs, item.class)),
                Err(err) => rejections.push(AtomRejection {
                    input: schemas::shorten(&item.atom, 80),
                    reason: err.to_string(),
                }),
            }
        }
        if !rejections.is_empty() {
            warn!(
                rejected = rejections.len(),
                "submission refused: invalid atoms, nothing enqueued"
            );
            return SubmitResult::Rejected { rejections };
        }
        let mut already = 0u32;
        let mut seen = HashSet::new();
        let now = runtime::now_ms();
        let mut records = Vec::new();
        for (atom, estimate, class) in atoms {
            let key = atom.key();
            if !seen.insert(key.clone()) {
                already += 1;
                continue;
            }
            // A rebuild keeps what earlier builds taught about the package's build time.
            let (submission, revision, learned_secs) = match self.packages.get(&key) {
                Some(entry) if !entry.record.state.is_final() => {
                    already += 1;
                    continue;
                }
                Some(entry) => (
                    entry.record.submission + 1,
                    Some(entry.revision),
                    entry.record.learned_secs,
                ),
                None => (1, None, None),
            };
            let record = PackageRecord {
                class,
                learned_secs,
                v: SCHEMA_VERSION,
                atom,
                arch: arch.clone(),
                submission,
                state: PackageState::Queued { attempt: 1 },
                history: Vec::new(),
                estimate_secs: estimate,
                submitted_ms: now,
                updated_ms: now,
            };
            records.push((key, revision, record));
        }
        // State first, then the job: a crash between the two leaves a queued package with no
        // job, which the reconciler re-publishes; the reverse could build a package the
        // coordinator does not know. The records are written concurrently (each a
        // compare-and-set on its own key), then the jobs of those written are published.
        let bucket = self.topo.packages.clone();
        let written: Vec<_> =
            futures::stream::iter(records.into_iter().map(|(key, revision, record)| {
                let bucket = bucket.clone();
                async move {
                    let result = write_record(&bucket, &key, revision, &record).await;
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
                    self.store(&key, Some(Entry { record, revision }));
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

    /// Publishes jobs with many acks in flight at once; a job that cannot be published now is
    /// left to the reconciler.
    async fn publish_many(&self, keys: &[PackageKey], attempt: u32) {
        let this = self;
        let mut ordered: Vec<(&PackageKey, f64)> = keys
            .iter()
            .filter_map(|key| {
                let entry = this.packages.get(key)?;
                Some((key, schedule::estimate_secs(&entry.record)))
            })
            .collect();
        if self.settings.schedule == Schedule::LongestFirst {
            schedule::longest_first(&mut ordered);
        }
        let mut cache = HashMap::new();
        let jobs: Vec<_> = ordered
            .into_iter()
            .filter_map(|(key, _)| {
                let entry = this.packages.get(key)?;
                Some((key, entry, this.is_big(&entry.record, &mut cache)))
            })
            .collect();
        let mut results =
            futures::stream::iter(jobs.into_iter().map(|(key, entry, big)| async move {
                (
                    key,
                    this.publish_job(key, &entry.record, entry.revision, attempt, big)
                        .await,
                )
            }))
            .buffer_unordered(128);
        while let Some((key, result)) = results.next().await {
            if let Err(err) = result {
                warn!(key = %key, error = %err, "job not published; the reconciler will retry");
            }
        }
    }

    // ---- events ----

    /// Applies a batch of events. Events are grouped by package; each package's events are
    /// applied in stream order to its in-memory record, and the package is written once, all
    /// packages of the batch concurrently (each a compare-and-set on its own key). An event is
    /// acknowledged only after its package's write succeeded; a package whose write conflicts
    /// is re-read and its events applied one by one; one whose write failed is given back to
    /// be delivered again.
    async fn handle_events(&mut self, messages: Vec<jetstream::Message>) {
        // Per package, in order of first appearance: the events and what they do to it.
        let mut groups: Vec<(PackageKey, Vec<Pending>)> = Vec::new();
        let mut index: HashMap<PackageKey, usize> = HashMap::new();
        for message in messages {
            let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let change = self
                .decode_event(&message.subject, &message.payload)
                .and_then(package_change);
            match change {
                Some(change) => {
                    let at = *index.entry(change.key.clone()).or_insert_with(|| {
                        groups.push((change.key.clone(), Vec::new()));
                        groups.len() - 1
                    });
                    groups[at].1.push(Pending {
                        message,
                        seq,
                        change,
                    });
                }
                // Junk, forged, or an event no package state depends on: handled.
                None => self.acknowledge(&message, seq).await,
            }
        }
        let now = std::time::Instant::now();
        let mut ready = Vec::new();
        for (key, mut events) in groups {
            // Held claims of the package come first: they are older in the stream.
            // (A held package keeps its place in `held_due`.)
            let (due, fresh) = match self.held.remove(&key) {
                Some((due, mut held)) => {
                    held.append(&mut events);
                    events = held;
                    (due, false)
                }
                None => (now + CLAIM_DELAY, true),
            };
            let only_claims = events
                .iter()
                .all(|p| matches!(p.change.event, PackageEvent::Claimed { .. }));
            if only_claims && self.packages.contains_key(&key) {
                if fresh {
                    self.held_due.push_back((due, key.clone()));
                }
                self.held.insert(key, (due, events));
            } else {
                ready.push((key, events));
            }
        }
        self.write_groups(ready).await;
    }

    /// Writes the claims whose delay is over.
    async fn write_due_claims(&mut self) {
        let now = std::time::Instant::now();
        let mut ready = Vec::new();
        while let Some((due, _)) = self.held_due.front() {
            if *due > now {
                break;
            }
            let Some((due, key)) = self.held_due.pop_front() else {
                break;
            };
            // A key re-held later carries a later entry; this one is stale then.
            if self
                .held
                .get(&key)
                .is_some_and(|(held_due, _)| *held_due == due)
                && let Some((_, events)) = self.held.remove(&key)
            {
                ready.push((key, events));
            }
        }
        self.write_groups(ready).await;
    }

    /// Folds each package's events into its next record and writes the packages that moved,
    /// all at once; see `handle_events`.
    async fn write_groups(&mut self, groups: Vec<(PackageKey, Vec<Pending>)>) {
        let now = runtime::now_ms();
        let mut writes = Vec::new();
        let mut done = Vec::new();
        for (key, events) in groups {
            let Some(entry) = self.packages.get(&key) else {
                debug!(key = %key, "events for an unknown package");
                done.push(events);
                continue;
            };
            let mut record = entry.record.clone();
            let mut moved = false;
            for pending in &events {
                if self.fold_change(&mut record, &pending.change, now) {
                    moved = true;
                }
            }
            if moved {
                writes.push((key, entry.revision, record, events));
            } else {
                done.push(events);
            }
        }
        for events in done {
            for pending in events {
                self.acknowledge(&pending.message, pending.seq).await;
            }
        }
        if writes.is_empty() {
            return;
        }
        let bucket = self.topo.packages.clone();
        let results: Vec<_> =
            futures::stream::iter(writes.into_iter().map(|(key, revision, record, events)| {
                let bucket = bucket.clone();
                async move {
                    let result = write_record(&bucket, &key, Some(revision), &record).await;
                    (key, record, events, result)
                }
            }))
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (key, record, events, result) in results {
            match result {
                Ok(revision) => {
                    for pending in &events {
                        if let Some(atom) = &pending.change.result_of {
                            info!(package = %atom, state = record.state.label(), "build result recorded");
                        }
                    }
                    self.store(&key, Some(Entry { record, revision }));
                    for pending in events {
                        self.acknowledge(&pending.message, pending.seq).await;
                    }
                }
                Err(WriteError::Conflict) => {
                    self.refresh(&key).await;
                    for pending in events {
                        let change = pending.change;
                        match self
                            .apply(&change.key, change.event, change.attempt, change.learned)
                            .await
                        {
                            Ok(_) => self.acknowledge(&pending.message, pending.seq).await,
                            Err(err) => self.give_back(&pending.message, pending.seq, &err).await,
                        }
                    }
                }
                Err(err) => {
                    for pending in events {
                        self.give_back(&pending.message, pending.seq, &err).await;
                    }
                }
            }
        }
    }

    /// Applies one change to `record` in memory; whether it moved the package.
    fn fold_change(&self, record: &mut PackageRecord, change: &Change, now: u64) -> bool {
        match transition(&record.state, &change.event, &self.policy, now) {
            Ok(next) => {
                record.state = next;
                record.updated_ms = now;
                if let Some(attempt) = &change.attempt {
                    record.history.push(attempt.clone());
                }
                if let Some(observed) = change.learned {
                    record.learned_secs = Some(schedule::learn(record.learned_secs, observed));
                }
                true
            }
            Err(err) => {
                // A late or repeated event: safe to drop, the package has moved on.
                debug!(package = %record.atom, error = %err, "event does not move the package");
                false
            }
        }
    }

    async fn acknowledge(&mut self, message: &jetstream::Message, seq: u64) {
        self.mark_applied(seq);
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

    /// Decodes an event of the stream; junk and events forged under another drone's subject
    /// are logged (throttled) and dropped.
    fn decode_event(&self, subject: &str, payload: &[u8]) -> Option<Event> {
        match decode::<Event>(payload) {
            Ok(event) => {
                if names::drone_of_event_subject(subject) == Some(event.drone.as_str()) {
                    Some(event)
                } else {
                    if let Some(suppressed) = self.refused.allow("event from another drone") {
                        warn!(%subject, drone = %event.drone, suppressed, "event claims to come from another drone; discarded");
                    }
                    None
                }
            }
            Err(err) => {
                if let Some(suppressed) = self.refused.allow("undecodable event") {
                    warn!(%subject, error = %err, suppressed, "undecodable event discarded");
                }
                None
            }
        }
    }

    /// Decodes and applies one event of the stream; junk and forged events are discarded (and
    /// count as handled). `Err` only when a package write failed: apply it again later.
    async fn process_event(&mut self, subject: &str, payload: &[u8]) -> Result<(), WriteError> {
        let Some(change) = self.decode_event(subject, payload).and_then(package_change) else {
            return Ok(());
        };
        if let Some(state) = self
            .apply(&change.key, change.event, change.attempt, change.learned)
            .await?
            && let Some(atom) = change.result_of
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
    async fn catch_up_unacknowledged(&mut self) {
        let Ok(mut consumer) = self
            .topo
            .events
            .get_consumer::<jetstream::consumer::pull::Config>(names::COORDINATOR_EVENTS_CONSUMER)
            .await
        else {
            return;
        };
        let Ok(info) = consumer.info().await else {
            return;
        };
        let (floor, delivered) = (
            info.ack_floor.stream_sequence,
            info.delivered.stream_sequence,
        );
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
                        self.mark_applied(seq);
                    }
                }
                // Gone from the stream (aged out): nothing to apply.
                Err(err)
                    if matches!(
                        err.kind(),
                        jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    self.mark_applied(seq);
                }
                // Anything else: the rest comes back by redelivery.
                Err(err) => {
                    debug!(seq, error = %err, "cannot read an unacknowledged event; waiting for its redelivery");
                    return;
                }
            }
        }
    }

    /// Records event `seq` as applied and moves the watermark over every gap that closed.
    fn mark_applied(&mut self, seq: u64) {
        if seq <= self.applied_through {
            return;
        }
        self.applied_above.insert(seq);
        while self.applied_above.remove(&(self.applied_through + 1)) {
            self.applied_through += 1;
        }
    }

    /// The server's ack floor: every event at or below it was acknowledged, so applied. It
    /// also carries the watermark over sequences the stream no longer holds.
    async fn refresh_applied_through(&mut self) {
        if let Ok(mut consumer) = self
            .topo
            .events
            .get_consumer::<jetstream::consumer::pull::Config>(names::COORDINATOR_EVENTS_CONSUMER)
            .await
            && let Ok(info) = consumer.info().await
        {
            let floor = info.ack_floor.stream_sequence;
            if floor > self.applied_through {
                self.applied_through = floor;
                self.applied_above = self.applied_above.split_off(&(floor + 1));
                while self.applied_above.remove(&(self.applied_through + 1)) {
                    self.applied_through += 1;
                }
            }
        }
    }

    fn events_applied_through(&self, seq: u64) -> bool {
        self.applied_through >= seq
    }

    // ---- retries, dead letters, drones ----

    async fn publish_due_retries(&mut self) {
        let now = runtime::now_ms();
        let due: Vec<(PackageKey, u32)> = self
            .retries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter_map(|(_, key)| {
                let attempt = self.packages.get(key)?.record.state.attempt();
                Some((key.clone(), attempt))
            })
            .collect();
        let mut cache = HashMap::new();
        for (key, attempt) in due {
            let Some(entry) = self.packages.get(&key) else {
                continue;
            };
            match self
                .publish_one(&key, &entry.record, entry.revision, attempt, &mut cache)
                .await
            {
                Ok(PublishOutcome::Published) => {
                    if let Err(err) = self
                        .apply(&key, PackageEvent::RetryPublished, None, None)
                        .await
                    {
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

    async fn handle_deadletter(&mut self, message: jetstream::Message) {
        #[derive(serde::Deserialize)]
        struct Advisory {
            stream_seq: u64,
            deliveries: u64,
        }
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
        match self.topo.builds.get_raw_message(advisory.stream_seq).await {
            Ok(raw) => {
                let job = decode::<Job>(&raw.payload);
                if let Err(err) = self.topo.builds.delete_message(advisory.stream_seq).await {
                    warn!(error = %err, seq = advisory.stream_seq, "cannot delete dead-lettered job; will retry");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    return;
                }
                match job {
                    Ok(job) => {
                        let key = job.atom.key();
                        warn!(package = %job.atom, attempt = job.attempt, deliveries = advisory.deliveries, "job dead-lettered");
                        let event = PackageEvent::DeadLettered {
                            attempt: job.attempt,
                            deliveries: advisory.deliveries,
                        };
                        if let Err(err) = self.apply(&key, event, None, None).await {
                            warn!(error = %err, "dead letter not recorded; will retry");
                            let _ = message
                                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                                .await;
                            return;
                        }
                    }
                    Err(err) => {
                        if let Some(suppressed) =
                            self.refused.allow("undecodable dead-lettered job")
                        {
                            warn!(error = %err, suppressed, "undecodable dead-lettered job removed");
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

    fn handle_drone_entry(&mut self, entry: kv::Entry) {
        if entry.operation != kv::Operation::Put {
            self.drones.remove(&entry.key);
            return;
        }
        match decode::<DroneRecord>(&entry.value) {
            Ok(record) if record.name.as_str() == entry.key => {
                let written_ms = (entry.created.unix_timestamp_nanos() / 1_000_000) as u64;
                self.drones.insert(
                    entry.key,
                    DroneEntry {
                        record,
                        revision: entry.revision,
                        written_ms,
                    },
                );
            }
            Ok(record) => {
                if let Some(suppressed) = self.refused.allow("drone record under another key") {
                    warn!(key = %entry.key, name = %record.name, suppressed, "drone record under another drone's key ignored");
                }
            }
            Err(err) => {
                if let Some(suppressed) = self.refused.allow("undecodable drone record") {
                    warn!(key = %entry.key, error = %err, suppressed, "undecodable drone record ignored");
                }
            }
        }
    }

    /// A drone whose heartbeat stopped is marked lost. Its builds need nothing from here: their
    /// leases expire on their own and the server redelivers their jobs.
    async fn mark_lost_drones(&mut self) {
        let now = runtime::now_ms();
        let mut lost = Vec::new();
        for (name, entry) in &self.drones {
            let age = now.saturating_sub(entry.written_ms);
            let state = schemas::summary::effective_state(&entry.record, age);
            if matches!(state, DroneState::Lost { .. })
                && !matches!(entry.record.state, DroneState::Lost { .. })
            {
                lost.push((name.clone(), entry.revision, entry.record.clone(), state));
            }
        }
        for (name, revision, mut record, state) in lost {
            warn!(drone = %name, building = record.building.len(), "drone heartbeat stopped; marked lost");
            record.state = state;
            let Ok(bytes) = encode(&record) else { continue };
            // Compare-and-set: if the drone wrote meanwhile it is alive and its word wins.
            if let Err(err) = self.topo.drones.update(&name, bytes.into(), revision).await {
                debug!(drone = %name, error = %err, "lost mark not written");
            }
        }
    }

    // ---- reconciliation ----

    async fn reconcile_once(&mut self) -> Result<(), String> {
        let unfinished: Vec<PackageKey> = self
            .packages
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.record.state,
                    PackageState::Queued { .. } | PackageState::Building { .. }
                )
            })
            .map(|(k, _)| k.clone())
            .collect();
        if unfinished.is_empty() {
            self.candidates.clear();
            return Ok(());
        }
        // Order matters: jobs, then leases, then the event stream's last sequence. A drone
        // publishes its result before it acknowledges the job and before it drops the lease, so
        // a package missing from both lists has its result (if any) at or below that sequence.
        let mut jobs = HashSet::new();
        let mut subjects = self
            .topo
            .builds
            .info_with_subjects(format!("{}.>", names::BUILD_SUBJECT_PREFIX))
            .await
            .map_err(|e| format!("listing jobs: {e}"))?;
        while let Some(item) = subjects.next().await {
            let (subject, _) = item.map_err(|e| format!("listing jobs: {e}"))?;
            if let Some(key) = names::key_of_build_subject(&subject) {
                jobs.insert(key.to_owned());
            }
        }
        let mut leases = HashSet::new();
        match self.topo.leases.keys().await {
            Ok(mut keys) => {
                while let Some(key) = keys.next().await {
                    leases.insert(key.map_err(|e| format!("listing leases: {e}"))?);
                }
            }
            Err(err) => return Err(format!("listing leases: {err}")),
        }
        let events_seq = self
            .topo
            .events
            .info()
            .await
            .map_err(|e| format!("reading event stream info: {e}"))?
            .state
            .last_sequence;
        self.refresh_applied_through().await;

        let mut requeue = Vec::new();
        let mut next_candidates = HashMap::new();
        for key in unfinished {
            if jobs.contains(key.as_str()) || leases.contains(key.as_str()) {
                continue;
            }
            let Some(entry) = self.packages.get(&key) else {
                continue;
            };
            match self.candidates.get(&key) {
                Some(c)
                    if c.revision == entry.revision
                        && self.events_applied_through(c.events_seq) =>
                {
                    requeue.push(key);
                }
                Some(c) if c.revision == entry.revision => {
                    next_candidates.insert(
                        key,
                        Candidate {
                            revision: c.revision,
                            events_seq: c.events_seq,
                        },
                    );
                }
                _ => {
                    next_candidates.insert(
                        key,
                        Candidate {
                            revision: entry.revision,
                            events_seq,
                        },
                    );
                }
            }
        }
        self.candidates = next_candidates;
        let mut cache = HashMap::new();
        for key in requeue {
            let Some(entry) = self.packages.get(&key) else {
                continue;
            };
            let attempt = entry.record.state.attempt();
            warn!(package = %entry.record.atom, attempt, "package has neither a job nor a lease; re-publishing");
            match self.apply(&key, PackageEvent::Requeued, None, None).await {
                Ok(_) => {
                    let Some(entry) = self.packages.get(&key) else {
                        continue;
                    };
                    if let Err(err) = self
                        .publish_one(&key, &entry.record, entry.revision, attempt, &mut cache)
                        .await
                    {
                        warn!(key = %key, error = %err, "re-publish failed; will retry");
                    }
                }
                Err(err) => warn!(key = %key, error = %err, "requeue not recorded"),
            }
        }
        Ok(())
    }
}

/// Writes a package record by compare-and-set: an update of `revision`, or a create when the
/// coordinator knows no record for the key.
async fn write_record(
    bucket: &kv::Store,
    key: &PackageKey,
    revision: Option<u64>,
    record: &PackageRecord,
) -> Result<u64, WriteError> {
    let bytes = encode(record).map_err(|e| WriteError::Encode(e.to_string()))?;
    match revision {
        Some(revision) => bucket
            .update(key.as_str(), bytes.into(), revision)
            .await
            .map_err(|e| {
                if matches!(e.kind(), kv::UpdateErrorKind::WrongLastRevision) {
                    WriteError::Conflict
                } else {
                    WriteError::Nats(e.to_string())
                }
            }),
        None => bucket
            .create(key.as_str(), bytes.into())
            .await
            .map_err(|e| {
                if matches!(e.kind(), kv::CreateErrorKind::AlreadyExists) {
                    WriteError::Conflict
                } else {
                    WriteError::Nats(e.to_string())
                }
            }),
    }
}

/// What one drone event does to one package.
struct Change {
    key: PackageKey,
    event: PackageEvent,
    /// The attempt's record, for a result.
    attempt: Option<AttemptRecord>,
    /// The atom, for a result (logged when it is recorded).
    result_of: Option<Atom>,
    /// What a successful build says about the package's build time (seconds on 8 cores).
    learned: Option<f64>,
}

/// The package change an event asks for; `None` for events only observers read.
fn package_change(event: Event) -> Option<Change> {
    let drone = event.drone;
    match event.kind {
        // Drones since 0.1 send `started` for claim and start together.
        EventKind::Claimed { atom, attempt, .. } | EventKind::Started { atom, attempt, .. } => {
            Some(Change {
                key: atom.key(),
                event: PackageEvent::Claimed { drone, attempt },
                attempt: None,
                result_of: None,
                learned: None,
            })
        }
        EventKind::Finished {
            atom,
            attempt,
            outcome,
            duration_ms,
            jobs,
            ..
        } => {
            let learned = match outcome {
                BuildOutcome::Succeeded => schedule::observed_secs(duration_ms, jobs),
                BuildOutcome::Failed { .. } => None,
            };
            let history = AttemptRecord {
                attempt,
                drone: drone.clone(),
                outcome: outcome.clone(),
                duration_ms,
                ended_ms: event.at_ms,
            };
            let package_event = match outcome {
                BuildOutcome::Succeeded => PackageEvent::Succeeded { drone, attempt },
                BuildOutcome::Failed { exit, .. } => PackageEvent::Failed {
                    drone,
                    attempt,
                    exit,
                },
            };
            Some(Change {
                key: atom.key(),
                event: package_event,
                attempt: Some(history),
                result_of: Some(atom),
                learned,
            })
        }
        EventKind::HandedBack { atom, attempt, .. } => Some(Change {
            key: atom.key(),
            event: PackageEvent::HandedBack { attempt },
            attempt: None,
            result_of: None,
            learned: None,
        }),
        _ => None,
    }
}

/// Events applied together at most.
const EVENT_BATCH: usize = 256;
/// How long a claim waits to be written together with its package's result.
const CLAIM_DELAY: Duration = Duration::from_millis(200);

/// Sleeps until the first held claim is due; never returns while none is held.
async fn sleep_until_first(due: &std::collections::VecDeque<(std::time::Instant, PackageKey)>) {
    match due.front() {
        Some((at, _)) => tokio::time::sleep_until((*at).into()).await,
        None => futures::future::pending().await,
    }
}
/// Package writes in flight at once.
const WRITE_CONCURRENCY: usize = 128;

/// When a package's retry may be published, if it is waiting for one.
fn retry_due(state: &PackageState) -> Option<u64> {
    match state {
        PackageState::RetryWait { not_before_ms, .. } => Some(*not_before_ms),
        _ => None,
    }
}

enum PublishOutcome {
    Published,
    /// A job for this package is still in the stream.
    SubjectBusy,
}

type MessageStream = futures::stream::BoxStream<'static, Result<jetstream::Message, String>>;

/// Opens the continuous pull of a durable consumer; while the consumer cannot be reached the
/// stream is empty and ends, and the caller reopens it.
async fn open_consumer(stream: &jetstream::stream::Stream, name: &str) -> MessageStream {
    let consumer = match stream
        .get_consumer::<jetstream::consumer::pull::Config>(name)
        .await
    {
        Ok(c) => c,
        Err(err) => {
            warn!(consumer = name, error = %err, "cannot open consumer");
            return futures::stream::empty().boxed();
        }
    };
    match consumer.messages().await {
        Ok(messages) => messages.map(|m| m.map_err(|e| e.to_string())).boxed(),
        Err(err) => {
            warn!(consumer = name, error = %err, "cannot pull from consumer");
            futures::stream::empty().boxed()
        }
    }
}

async fn next_watch(watch: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    match watch {
        Some(w) => match w.next().await {
            Some(Ok(entry)) => Some(entry),
            Some(Err(err)) => {
                warn!(error = %err, "drone watch error");
                None
            }
            None => None,
        },
        None => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}
