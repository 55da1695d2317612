//! One job from receipt to acknowledgement: claim the package with a lease (the fencing token),
//! run the build while renewing the lease and progress-acking the job on one timer, commit the
//! result on the lease by compare-and-set, report it, and only then acknowledge the job.
//!
//! **Invariant:** a build whose lease renewal fails, or whose lease deadline passes without a
//! renewal, is killed at once, and nothing is acknowledged or reported as a result for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, kv, message::PublishMessage};
use schemas::{
    BuildOutcome, DroneName, DroneState, Event, EventKind, Job, Lease, LeasePhase, PackageRecord,
    PackageState, SCHEMA_VERSION, decode, encode, names,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::builder::{self, BuildEnv, Builder, Running};
use crate::config::Settings;

/// Publishes this drone's events on its own subject, numbered per boot.
pub struct Reporter {
    client: async_nats::Client,
    js: jetstream::Context,
    name: DroneName,
    subject: String,
    boot_ms: u64,
    seq: AtomicU64,
}

impl Reporter {
    pub fn new(client: async_nats::Client, name: DroneName, boot_ms: u64) -> Reporter {
        Reporter {
            subject: names::event_subject(&name),
            js: jetstream::new(client.clone()),
            client,
            name,
            boot_ms,
            seq: AtomicU64::new(0),
        }
    }

    pub fn boot_ms(&self) -> u64 {
        self.boot_ms
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn encode(&self, kind: EventKind) -> Result<Vec<u8>, String> {
        self.encode_as(kind, self.next_seq())
    }

    fn encode_as(&self, kind: EventKind, seq: u64) -> Result<Vec<u8>, String> {
        let event = Event {
            v: SCHEMA_VERSION,
            drone: self.name.clone(),
            boot_ms: self.boot_ms,
            seq,
            at_ms: runtime::now_ms(),
            kind,
        };
        encode(&event).map_err(|e| e.to_string())
    }

    /// Publishes an event and waits for the stream to store it, trying up to `attempts` times:
    /// for results, which must be stored before the job is acknowledged. Every attempt carries
    /// the same message id, so one whose store was not confirmed but happened is dropped by the
    /// stream as a duplicate: the event is stored once.
    pub async fn send(&self, kind: EventKind, attempts: u32) -> Result<(), String> {
        let seq = self.next_seq();
        let bytes = self.encode_as(kind, seq)?;
        let id = format!("{}.{}.{seq}", self.name, self.boot_ms);
        let mut last = String::new();
        for attempt in 1..=attempts.max(1) {
            let publish = PublishMessage::build()
                .payload(bytes.clone().into())
                .message_id(id.as_str());
            let stored = match self.js.send_publish(self.subject.clone(), publish).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            match stored {
                Ok(()) => return Ok(()),
                Err(err) if attempt < attempts => {
                    warn!(error = %err, "event not stored yet; sending it again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    last = err;
                }
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    /// Publishes an event without waiting for the stream's acknowledgement: for events that
    /// observers read but no decision depends on. The stream still stores it (the subject is
    /// the stream's), and in order: one connection delivers a drone's messages in the order it
    /// sent them, so a `started` sent before a `finished` is stored before it.
    pub async fn note(&self, kind: EventKind) {
        let published = match self.encode(kind) {
            Ok(bytes) => self
                .client
                .publish(self.subject.clone(), bytes.into())
                .await
                .map_err(|e| e.to_string()),
            Err(err) => Err(err),
        };
        if let Err(err) = published {
            debug!(error = %err, "event not published");
        }
    }
}

/// A build task's hold on its slots. The main loop counts a slot free again as soon as the
/// build's process has ended (`process_exited`): committing, reporting and acknowledging use
/// the network, not the build's cores.
pub struct SlotHandle {
    pub key: schemas::PackageKey,
    tx: tokio::sync::mpsc::UnboundedSender<SlotEvent>,
    /// When the slot this job took had freed, until a build starts in it.
    freed_at: Option<Instant>,
    exited: bool,
    /// For the probe: the build's process start, its slots and cores, and the probe.
    started: Option<(Instant, String)>,
    slots: usize,
    jobs: u32,
    probe: Option<Arc<crate::probe::Probe>>,
}

/// What a build task tells the main loop about its slots.
#[derive(Debug)]
pub enum SlotEvent {
    /// The build's process ended at `at`; its slots are free. `outcome` is the build's result
    /// when it ran to its end (`None` when it was killed because its lease was lost).
    Exited {
        key: schemas::PackageKey,
        at: Instant,
        outcome: Option<BuildOutcome>,
    },
    /// The job left this drone. `unused` is when its slot had freed if no build started in it.
    Done {
        key: schemas::PackageKey,
        report: BuildReport,
        unused: Option<Instant>,
    },
}

impl SlotHandle {
    pub fn new(
        key: schemas::PackageKey,
        tx: tokio::sync::mpsc::UnboundedSender<SlotEvent>,
        freed_at: Option<Instant>,
        (slots, jobs): (usize, u32),
        probe: Option<Arc<crate::probe::Probe>>,
    ) -> SlotHandle {
        SlotHandle {
            key,
            tx,
            freed_at,
            exited: false,
            started: None,
            slots,
            jobs,
            probe,
        }
    }

    fn build_started(&mut self, atom: &schemas::Atom) {
        if let Some(probe) = &self.probe {
            if let Some(freed_at) = self.freed_at.take() {
                probe.record_slot_gap(freed_at.elapsed());
            }
            self.started = Some((Instant::now(), atom.to_string()));
        }
    }

    fn process_exited(&mut self, outcome: Option<&BuildOutcome>) {
        if !self.exited {
            self.exited = true;
            if let (Some(probe), Some((start, atom))) = (&self.probe, self.started.take()) {
                probe.record_build(crate::probe::BuildSpan {
                    atom,
                    start,
                    end: Instant::now(),
                    slots: self.slots,
                    jobs: self.jobs,
                });
            }
            let _ = self.tx.send(SlotEvent::Exited {
                key: self.key.clone(),
                at: Instant::now(),
                outcome: outcome.cloned(),
            });
        }
    }

    /// Tells the main loop the job is gone, with the report.
    pub fn done(self, report: BuildReport) {
        let _ = self.tx.send(SlotEvent::Done {
            key: self.key,
            report,
            unused: self.freed_at,
        });
    }
}

/// Everything a build task needs, shared by all of them.
pub struct Ctx {
    pub name: DroneName,
    pub settings: Settings,
    pub builder: Builder,
    pub leases: kv::Store,
    pub packages: kv::Store,
    pub drones: kv::Store,
    pub reporter: Reporter,
    /// Refused input is logged once per kind and window, not per message.
    pub refused: runtime::throttle::Throttle,
    pub lease_ttl: Duration,
    /// One timer renews the lease and progress-acks the job.
    pub renew_every: Duration,
    pub probe: Option<Arc<crate::probe::Probe>>,
}

/// How a job left this drone.
#[derive(Debug)]
pub enum BuildReport {
    /// Built, result committed and reported, job acknowledged.
    Finished {
        atom: schemas::Atom,
        outcome: BuildOutcome,
    },
    /// Not built here: another drone holds it, it is stale, or it was left to another drone.
    NotBuilt,
    /// Handed back unbuilt at shutdown.
    HandedBack,
    /// The builder could not start: a fault of this drone, not of the package.
    BuilderBroken { atom: schemas::Atom, reason: String },
    /// The lease was lost and the build killed.
    LeaseLost,
}

async fn nak(message: &jetstream::Message, delay: Option<Duration>) {
    if let Err(err) = message.ack_with(AckKind::Nak(delay)).await {
        debug!(error = %err, "nak not sent; the job is redelivered after its ack wait");
    }
}

/// How long one job acknowledgement waits for the server's confirmation.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one received job to its end. The caller has decoded `job` from `message` and checked
/// that it was published under its own package's subject. `jobs` is the cores the build gets.
pub async fn run(
    ctx: Arc<Ctx>,
    message: jetstream::Message,
    job: Job,
    handback: CancellationToken,
    slot: &mut SlotHandle,
    jobs: u32,
) -> BuildReport {
    let (stream_seq, delivery) = match message.info() {
        Ok(info) => (info.stream_sequence, info.delivered.max(1) as u64),
        Err(_) => (0, 1),
    };
    let key = job.atom.key();

    if job.avoid.contains(&ctx.name)
        && delivery <= 3
        && another_drone_can_take(&ctx, &job.avoid).await
    {
        debug!(package = %job.atom, "failed here before; leaving the retry to another drone");
        nak(
            &message,
            Some(Duration::from_millis(ctx.settings.avoid_delay_ms)),
        )
        .await;
        return BuildReport::NotBuilt;
    }

    // Claim: the lease is created only if no live lease exists, or taken over from a finished
    // build of an earlier attempt or submission (finished leases are kept until they expire).
    let mut lease = Lease {
        v: SCHEMA_VERSION,
        drone: ctx.name.clone(),
        atom: job.atom.clone(),
        attempt: job.attempt,
        submission: job.submission,
        stream_seq,
        delivery,
        phase: LeasePhase::Building,
    };
    let Ok(lease_bytes) = encode(&lease) else {
        nak(&message, None).await;
        return BuildReport::NotBuilt;
    };
    let claimed_at = Instant::now();
    // The lease and the package state in one round trip: the state read is a filter for stale
    // jobs, not a fence (the lease is), and a package that finishes between the two reads is
    // caught by the same check a moment later (its result commit needs this lease).
    let (created, state) = tokio::join!(
        ctx.leases.create(key.as_str(), lease_bytes.clone().into()),
        current_state(&ctx, &key)
    );
    let mut revision = match created {
        Ok(revision) => revision,
        Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
            match take_over_finished(&ctx, &key, &job, lease_bytes).await {
                Some(revision) => revision,
                None => {
                    debug!(package = %job.atom, "the lease is held or holds this attempt's result");
                    nak(&message, Some(ctx.lease_ttl / 2)).await;
                    return BuildReport::NotBuilt;
                }
            }
        }
        Err(err) => {
            warn!(package = %job.atom, error = %err, "cannot create lease");
            nak(&message, Some(Duration::from_secs(1))).await;
            return BuildReport::NotBuilt;
        }
    };
    let release = |revision: u64| {
        let leases = ctx.leases.clone();
        let key = key.clone();
        async move {
            if let Err(err) = leases
                .delete_expect_revision(key.as_str(), Some(revision))
                .await
            {
                debug!(key = %key, error = %err, "lease not released; it expires by itself");
            }
        }
    };

    // Only build what the coordinator still wants built: this exact attempt of this
    // submission, unfinished.
    match state {
        Ok(Some((
            PackageState::Queued { attempt } | PackageState::Building { attempt, .. },
            submission,
        ))) if attempt == job.attempt && submission == job.submission => {}
        Ok(Some((state, _))) => {
            info!(package = %job.atom, attempt = job.attempt, state = state.label(), "stale job acknowledged without building");
            let _ = runtime::ack::double_ack(&message, ACK_TIMEOUT).await;
            release(revision).await;
            return BuildReport::NotBuilt;
        }
        Ok(None) => {
            warn!(package = %job.atom, "job for a package the coordinator does not know; leaving it");
            release(revision).await;
            nak(&message, Some(Duration::from_secs(1))).await;
            return BuildReport::NotBuilt;
        }
        Err(err) => {
            warn!(package = %job.atom, error = %err, "cannot read package state");
            release(revision).await;
            nak(&message, Some(Duration::from_secs(1))).await;
            return BuildReport::NotBuilt;
        }
    }

    let env = BuildEnv {
        atom: job.atom.clone(),
        attempt: job.attempt,
        drone: ctx.name.to_string(),
        jobs,
        estimate_secs: job.estimate_secs,
        // The supervisor kills the build when the drone stops renewing, at the same margin
        // the drone itself keeps: a frozen drone's build is dead before its lease expires.
        supervise_deadline: Some(ctx.lease_ttl - ctx.lease_ttl / 10),
    };
    let log_file = ctx
        .settings
        .log_dir
        .as_ref()
        .map(|dir| dir.join(format!("{key}-{}.log", job.attempt)));
    let argv = ctx.builder.argv(&job.atom);
    let mut running = match builder::start(
        &ctx.builder,
        &env,
        ctx.settings.log_tail_bytes,
        log_file,
    ) {
        Ok(running) => running,
        Err(err) => {
            let reason = err.to_string();
            warn!(package = %job.atom, error = %reason, "builder did not start; handing the job back");
            release(revision).await;
            nak(&message, None).await;
            hand_back(&ctx, &job, reason.clone()).await;
            return BuildReport::BuilderBroken {
                atom: job.atom,
                reason,
            };
        }
    };
    slot.build_started(&job.atom);
    ctx.reporter
        .note(EventKind::Started {
            atom: job.atom.clone(),
            attempt: job.attempt,
            argv,
            jobs,
            delivery,
            lease_rev: revision,
        })
        .await;
    info!(package = %job.atom, attempt = job.attempt, delivery, "build started");

    // The lease is valid until at least `sent + ttl` for a renewal sent at `sent` that
    // succeeded; a tenth of the TTL is kept as a margin for clock rate and delivery.
    let margin = ctx.lease_ttl / 10;
    let mut deadline = claimed_at + ctx.lease_ttl - margin;
    let mut renew = tokio::time::interval_at(
        tokio::time::Instant::now() + ctx.renew_every,
        ctx.renew_every,
    );
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let outcome = loop {
        tokio::select! {
            outcome = running.wait() => {
                slot.process_exited(Some(&outcome));
                break outcome;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                return lose(&ctx, &mut running, slot, &job, "lease deadline passed without a renewal").await;
            }
            _ = handback.cancelled() => {
                running.kill().await;
                release(revision).await;
                nak(&message, None).await;
                info!(package = %job.atom, "build handed back at shutdown");
                hand_back(&ctx, &job, "drone shut down before the build finished".to_owned()).await;
                return BuildReport::HandedBack;
            }
            _ = renew.tick() => {
                let sent = Instant::now();
                let Ok(bytes) = encode(&lease) else { continue };
                let remaining = deadline.saturating_duration_since(sent);
                match tokio::time::timeout(remaining, ctx.leases.update(key.as_str(), bytes.into(), revision)).await {
                    Ok(Ok(next)) => {
                        revision = next;
                        deadline = sent + ctx.lease_ttl - margin;
                        running.keep_alive().await;
                        if let Err(err) = message.ack_with(AckKind::Progress).await {
                            debug!(error = %err, "progress ack not sent");
                        }
                    }
                    Ok(Err(err)) => {
                        return lose(&ctx, &mut running, slot, &job, &format!("lease renewal refused: {err}")).await;
                    }
                    Err(_) => {
                        return lose(&ctx, &mut running, slot, &job, "lease renewal timed out").await;
                    }
                }
            }
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;

    // Commit: the result is written on the lease by compare-and-set; a drone whose lease was
    // taken over fails here and reports nothing.
    lease.phase = LeasePhase::Finished {
        outcome: outcome.clone(),
    };
    let Ok(bytes) = encode(&lease) else {
        return lose(&ctx, &mut running, slot, &job, "cannot encode the lease").await;
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(
        remaining,
        ctx.leases
            .update(key.as_str(), bytes.clone().into(), revision),
    )
    .await
    {
        Ok(Ok(next)) => revision = next,
        Ok(Err(err)) => {
            return lose(
                &ctx,
                &mut running,
                slot,
                &job,
                &format!("result commit refused: {err}"),
            )
            .await;
        }
        Err(_) => return lose(&ctx, &mut running, slot, &job, "result commit timed out").await,
    }
    let finished = EventKind::Finished {
        atom: job.atom.clone(),
        attempt: job.attempt,
        lease_rev: revision,
        outcome: outcome.clone(),
        duration_ms,
        jobs,
    };
    // From here until the job is acknowledged, the finished lease is kept alive: while the
    // result waits to be stored or the acknowledgement to be confirmed (a cluster electing a
    // new leader takes seconds), a redelivered job must find this result on the lease, not an
    // expired lease to build under. After that it is left to expire.
    let keeper = keep_lease(&ctx, &key, bytes, revision);
    let report_and_ack = async {
        // The result must be stored before the job is acknowledged; if it cannot be, the job
        // is left to be redelivered and built again, which is safe, rather than lost.
        if let Err(err) = ctx.reporter.send(finished, 5).await {
            warn!(package = %job.atom, error = %err, "result could not be published; the job will be built again");
            return false;
        }
        // An acknowledgement is idempotent, so an unconfirmed one is sent again: a consumer
        // whose leader died answers once a new one is elected.
        let ack_until = Instant::now() + (ctx.lease_ttl * 4).max(Duration::from_secs(10));
        loop {
            match runtime::ack::double_ack(&message, ACK_TIMEOUT).await {
                Ok(()) => return true,
                Err(err) if Instant::now() < ack_until => {
                    debug!(package = %job.atom, error = %err, "job ack not confirmed; sending it again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => {
                    warn!(package = %job.atom, error = %err, "job ack not confirmed; the kept lease stops a rebuild until it expires");
                    return true;
                }
            }
        }
    };
    let reported = tokio::select! {
        reported = report_and_ack => reported,
        never = keeper => match never {},
    };
    if !reported {
        return BuildReport::LeaseLost;
    }
    match &outcome {
        BuildOutcome::Succeeded => {
            info!(package = %job.atom, attempt = job.attempt, duration_ms, "build succeeded")
        }
        BuildOutcome::Failed { exit, .. } => {
            warn!(package = %job.atom, attempt = job.attempt, %exit, "build failed")
        }
    }
    BuildReport::Finished {
        atom: job.atom,
        outcome,
    }
}

/// Renews a finished lease every renewal period, for as long as it is polled; a failed renewal
/// is tried again at the next period (the lease may come back within its TTL).
async fn keep_lease(
    ctx: &Ctx,
    key: &schemas::PackageKey,
    bytes: Vec<u8>,
    mut revision: u64,
) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(ctx.renew_every).await;
        let update = ctx
            .leases
            .update(key.as_str(), bytes.clone().into(), revision);
        match tokio::time::timeout(ctx.renew_every, update).await {
            Ok(Ok(next)) => revision = next,
            Ok(Err(err)) => debug!(key = %key, error = %err, "finished lease not renewed"),
            Err(_) => debug!(key = %key, "finished lease renewal timed out"),
        }
    }
}

/// Reports a job given back unbuilt, waiting for the stream to store it: the coordinator
/// requeues the package at once instead of waiting for the reconciler.
async fn hand_back(ctx: &Ctx, job: &Job, reason: String) {
    let event = EventKind::HandedBack {
        atom: job.atom.clone(),
        attempt: job.attempt,
        reason,
    };
    if let Err(err) = ctx.reporter.send(event, 1).await {
        debug!(package = %job.atom, error = %err, "hand-back not reported; the reconciler requeues the package");
    }
}

/// The lease is gone: kill the build, acknowledge nothing, report nothing as a result.
async fn lose(
    ctx: &Ctx,
    running: &mut Running,
    slot: &mut SlotHandle,
    job: &Job,
    reason: &str,
) -> BuildReport {
    running.kill().await;
    slot.process_exited(None);
    warn!(package = %job.atom, attempt = job.attempt, reason, "lease lost; build killed");
    ctx.reporter
        .note(EventKind::LeaseLost {
            atom: job.atom.clone(),
            attempt: job.attempt,
            reason: reason.to_owned(),
        })
        .await;
    BuildReport::LeaseLost
}

/// Takes over a lease that holds the result of an earlier attempt or submission of the package
/// by compare-and-set on its revision. `None` when the lease is live, holds this very job's
/// result (a redelivery after a lost acknowledgement), or cannot be read or replaced.
async fn take_over_finished(
    ctx: &Ctx,
    key: &schemas::PackageKey,
    job: &Job,
    lease_bytes: Vec<u8>,
) -> Option<u64> {
    let entry = ctx.leases.entry(key.as_str()).await.ok()??;
    if entry.operation != kv::Operation::Put {
        // Deleted since the create failed: try creating again.
        return ctx
            .leases
            .create(key.as_str(), lease_bytes.into())
            .await
            .ok();
    }
    let held = decode::<Lease>(&entry.value).ok()?;
    let earlier = (held.submission, held.attempt) != (job.submission, job.attempt);
    if !matches!(held.phase, LeasePhase::Finished { .. }) || !earlier {
        return None;
    }
    ctx.leases
        .update(key.as_str(), lease_bytes.into(), entry.revision)
        .await
        .ok()
}

/// The package's state and submission number, if the coordinator knows the package.
async fn current_state(
    ctx: &Ctx,
    key: &schemas::PackageKey,
) -> Result<Option<(PackageState, u64)>, String> {
    match ctx.packages.get(key.as_str()).await {
        Ok(Some(bytes)) => decode::<PackageRecord>(&bytes)
            .map(|r| Some((r.state, r.submission)))
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

/// Whether a working drone other than those that already failed this package is online.
async fn another_drone_can_take(ctx: &Ctx, avoid: &[DroneName]) -> bool {
    let Ok(drones) = runtime::kv::read_bucket::<schemas::DroneRecord>(&ctx.drones).await else {
        return false;
    };
    let now = runtime::now_ms();
    drones.iter().any(|item| {
        let state =
            schemas::summary::effective_state(&item.value, now.saturating_sub(item.created_ms));
        !avoid.contains(&item.value.name)
            && item.value.arch == ctx.settings.arch
            && matches!(state, DroneState::Idle | DroneState::Building)
    })
}
