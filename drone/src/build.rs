//! One job from receipt to acknowledgement: claim the package with a lease (the fencing token),
//! run the build while renewing the lease and progress-acking the job on one timer, commit the
//! result on the lease by compare-and-set, report it, and only then acknowledge the job.
//!
//! **Invariant:** a build whose lease renewal fails, or whose lease deadline passes without a
//! renewal, is killed at once, and nothing is acknowledged or reported as a result for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, kv};
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
    js: jetstream::Context,
    name: DroneName,
    subject: String,
    boot_ms: u64,
    seq: AtomicU64,
}

impl Reporter {
    pub fn new(js: jetstream::Context, name: DroneName, boot_ms: u64) -> Reporter {
        Reporter {
            subject: names::event_subject(&name),
            js,
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

    /// Publishes an event and waits for the stream to store it.
    pub async fn send(&self, kind: EventKind) -> Result<(), String> {
        let event = Event {
            v: SCHEMA_VERSION,
            drone: self.name.clone(),
            boot_ms: self.boot_ms,
            seq: self.next_seq(),
            at_ms: runtime::now_ms(),
            kind,
        };
        let bytes = encode(&event).map_err(|e| e.to_string())?;
        self.js
            .publish(self.subject.clone(), bytes.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Best effort: an informational event that is lost costs nothing but a line on the
    /// dashboard.
    pub async fn note(&self, kind: EventKind) {
        if let Err(err) = self.send(kind).await {
            debug!(error = %err, "event not published");
        }
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

/// Runs one received job to its end.
/// Runs one received job to its end. The caller has decoded `job` from `message` and checked
/// that it was published under its own package's subject.
pub async fn run(
    ctx: Arc<Ctx>,
    message: jetstream::Message,
    job: Job,
    handback: CancellationToken,
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

    // Claim: the lease is created only if no live lease exists.
    let mut lease = Lease {
        v: SCHEMA_VERSION,
        drone: ctx.name.clone(),
        atom: job.atom.clone(),
        attempt: job.attempt,
        stream_seq,
        delivery,
        phase: LeasePhase::Building,
    };
    let Ok(lease_bytes) = encode(&lease) else {
        nak(&message, None).await;
        return BuildReport::NotBuilt;
    };
    let claimed_at = Instant::now();
    let mut revision = match ctx.leases.create(key.as_str(), lease_bytes.into()).await {
        Ok(revision) => revision,
        Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
            debug!(package = %job.atom, "another drone holds the lease");
            nak(&message, Some(ctx.lease_ttl / 2)).await;
            return BuildReport::NotBuilt;
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

    // Only build what the coordinator still wants built: this exact attempt, unfinished.
    match current_state(&ctx, &key).await {
        Ok(Some(PackageState::Queued { attempt } | PackageState::Building { attempt, .. }))
            if attempt == job.attempt => {}
        Ok(Some(state)) => {
            info!(package = %job.atom, attempt = job.attempt, state = state.label(), "stale job acknowledged without building");
            let _ = message.double_ack().await;
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

    ctx.reporter
        .note(EventKind::Claimed {
            atom: job.atom.clone(),
            attempt: job.attempt,
            stream_seq,
            delivery,
            lease_rev: revision,
        })
        .await;
    let env = BuildEnv {
        atom: job.atom.clone(),
        attempt: job.attempt,
        drone: ctx.name.to_string(),
        jobs: ctx.settings.cores_per_slot(),
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
            ctx.reporter
                .note(EventKind::HandedBack {
                    atom: job.atom.clone(),
                    attempt: job.attempt,
                    reason: reason.clone(),
                })
                .await;
            return BuildReport::BuilderBroken {
                atom: job.atom,
                reason,
            };
        }
    };
    ctx.reporter
        .note(EventKind::Started {
            atom: job.atom.clone(),
            attempt: job.attempt,
            argv,
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
            outcome = running.wait() => break outcome,
            _ = tokio::time::sleep_until(deadline.into()) => {
                return lose(&ctx, &mut running, &job, "lease deadline passed without a renewal").await;
            }
            _ = handback.cancelled() => {
                running.kill().await;
                release(revision).await;
                nak(&message, None).await;
                info!(package = %job.atom, "build handed back at shutdown");
                ctx.reporter.note(EventKind::HandedBack {
                    atom: job.atom.clone(),
                    attempt: job.attempt,
                    reason: "drone shut down before the build finished".to_owned(),
                }).await;
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
                        return lose(&ctx, &mut running, &job, &format!("lease renewal refused: {err}")).await;
                    }
                    Err(_) => {
                        return lose(&ctx, &mut running, &job, "lease renewal timed out").await;
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
        return lose(&ctx, &mut running, &job, "cannot encode the lease").await;
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(
        remaining,
        ctx.leases.update(key.as_str(), bytes.into(), revision),
    )
    .await
    {
        Ok(Ok(next)) => revision = next,
        Ok(Err(err)) => {
            return lose(
                &ctx,
                &mut running,
                &job,
                &format!("result commit refused: {err}"),
            )
            .await;
        }
        Err(_) => return lose(&ctx, &mut running, &job, "result commit timed out").await,
    }
    let finished = EventKind::Finished {
        atom: job.atom.clone(),
        attempt: job.attempt,
        lease_rev: revision,
        outcome: outcome.clone(),
        duration_ms,
    };
    // The result must be stored before the job is acknowledged; if it cannot be, the job is
    // left to be redelivered and built again, which is safe, rather than lost.
    let mut reported = false;
    for _ in 0..5 {
        match ctx.reporter.send(finished.clone()).await {
            Ok(()) => {
                reported = true;
                break;
            }
            Err(err) => {
                warn!(package = %job.atom, error = %err, "result not published yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if !reported {
        warn!(package = %job.atom, "result could not be published; the job will be built again");
        return BuildReport::LeaseLost;
    }
    if let Err(err) = message.double_ack().await {
        debug!(package = %job.atom, error = %err, "job ack not confirmed; a redelivery will find the package finished");
    }
    release(revision).await;
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

/// The lease is gone: kill the build, acknowledge nothing, report nothing as a result.
async fn lose(ctx: &Ctx, running: &mut Running, job: &Job, reason: &str) -> BuildReport {
    running.kill().await;
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

async fn current_state(
    ctx: &Ctx,
    key: &schemas::PackageKey,
) -> Result<Option<PackageState>, String> {
    match ctx.packages.get(key.as_str()).await {
        Ok(Some(bytes)) => decode::<PackageRecord>(&bytes)
            .map(|r| Some(r.state))
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
