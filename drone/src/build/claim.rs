//! The claim stage: decide whether this drone builds the job at all, and if so hold the
//! package's lease. The lease is created only if no live lease exists, or taken over from a
//! finished build of an earlier attempt or submission (finished leases are kept until they
//! expire); its revision is the fencing token every later write goes through.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use schemas::{
    DroneState, Job, Lease, LeasePhase, PackageKey, PackageRecord, PackageState, SCHEMA_VERSION,
    decode, encode,
};
use tracing::{debug, info, warn};

use super::{ACK_TIMEOUT, BuildReport, Ctx, nak};

/// A held lease: what was written, its current revision (the fencing token) and when it was
/// last known good.
pub struct Claim {
    pub key: PackageKey,
    pub lease: Lease,
    pub revision: u64,
    /// When the write that produced `revision` was sent (the create, then each renewal).
    pub renewed_at: Instant,
    /// The job's delivery count, as the server numbers it.
    pub delivery: u64,
}

impl Claim {
    /// Until when the lease is surely held: valid until at least `renewed_at + ttl`, less a
    /// tenth of the TTL kept as a margin for clock rate and delivery.
    pub fn deadline(&self, ttl: Duration) -> Instant {
        self.renewed_at + ttl - ttl / 10
    }

    /// Deletes the lease, if it is still at this revision: for jobs this drone leaves unbuilt.
    pub async fn release(&self, ctx: &Ctx) {
        if let Err(err) = ctx
            .leases
            .delete_expect_revision(self.key.as_str(), Some(self.revision))
            .await
        {
            debug!(key = %self.key, error = %err, "lease not released; it expires by itself");
        }
    }
}

/// Claims `job`, or says how it left this drone unbuilt (the job is nak'ed or acknowledged as
/// fits).
pub async fn claim(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &Job,
) -> Result<Claim, BuildReport> {
    let (stream_seq, delivery) = match message.info() {
        Ok(info) => (info.stream_sequence, info.delivered.max(1) as u64),
        Err(_) => (0, 1),
    };
    if let Some(leave) = leave_to_others(ctx, job, delivery).await {
        let (why, delay) = match leave {
            Leave::Larger => (
                "it asks for more cores than this drone has",
                LARGER_DRONE_DELAY,
            ),
            Leave::FailedHere => (
                "it failed here before",
                Duration::from_millis(ctx.settings.avoid_delay_ms),
            ),
        };
        debug!(package = %job.atom, why, "leaving the job to another drone");
        nak(message, Some(delay)).await;
        return Err(BuildReport::NotBuilt);
    }
    let lease = Lease {
        v: SCHEMA_VERSION,
        drone: ctx.name.clone(),
        atom: job.atom.clone(),
        attempt: job.attempt,
        submission: job.submission,
        stream_seq,
        delivery,
        phase: LeasePhase::Building,
    };
    let key = job.atom.key();
    let claimed_at = Instant::now();
    // The lease and the package state in one round trip: the state read is a filter for stale
    // jobs, not a fence (the lease is), and a package that finishes between the two reads is
    // caught by the same check a moment later (its result commit needs this lease).
    let (held, state) = tokio::join!(hold_lease(ctx, &key, job, &lease), current_state(ctx, &key));
    let revision = match held {
        Ok(revision) => revision,
        Err(delay) => {
            nak(message, delay).await;
            return Err(BuildReport::NotBuilt);
        }
    };
    let claim = Claim {
        key,
        lease,
        revision,
        renewed_at: claimed_at,
        delivery,
    };
    match wanted(job, state) {
        Wanted::Yes => return Ok(claim),
        Wanted::Stale => {
            let _ = runtime::ack::double_ack(message, ACK_TIMEOUT).await;
            claim.release(ctx).await;
        }
        Wanted::Unsure => {
            claim.release(ctx).await;
            nak(message, Some(Duration::from_secs(1))).await;
        }
        Wanted::Unreadable => {
            claim.release(ctx).await;
            nak(message, Some(UNREADABLE_STATE_DELAY)).await;
        }
    }
    Err(BuildReport::NotBuilt)
}

/// Whether the coordinator still wants a job built.
enum Wanted {
    Yes,
    /// The package has moved on (an older attempt, a finished package): acknowledged, since the
    /// drone holds the lease and the ack is its to give.
    Stale,
    /// The package is unknown or its state could not be read: given back for later.
    Unsure,
    /// The package record is one this drone cannot read (a newer release's): given back for a
    /// while, to a drone that can read it; the record is left as it is.
    Unreadable,
}

/// How long a job whose package record this drone cannot read stays away from every drone:
/// long enough not to spend the job's deliveries fast, short enough for a drone of a newer
/// release to take it soon.
const UNREADABLE_STATE_DELAY: Duration = Duration::from_secs(30);

/// Why a drone leaves a job to another.
enum Leave {
    /// The job asks for more cores than this drone has (a package of the run's critical path,
    /// meant for the largest drone).
    Larger,
    /// This drone failed the package before.
    FailedHere,
}

/// How long a job left to a larger drone stays away from this one: briefly, since the larger
/// drone, idle for it, has a pull waiting (`Reservation::Lingering`) or will as soon as its
/// build ends; the critical path waits for nothing else.
const LARGER_DRONE_DELAY: Duration = Duration::from_millis(50);

/// Whether this drone leaves the job to another one while such a working drone of the arch is
/// online: a job that asks for more cores than this drone has, always (the larger drone takes
/// it when it is free, and a busy one stops taking normal work while it waits); one this drone
/// failed before, for its first 3 deliveries.
async fn leave_to_others(ctx: &Ctx, job: &Job, delivery: u64) -> Option<Leave> {
    let cores = ctx.settings.cores;
    if job.min_cores.is_some_and(|wanted| cores < wanted) {
        let wanted = job.min_cores.unwrap_or(0);
        let larger = |d: &schemas::DroneRecord| d.big_builds && d.cores >= wanted;
        if another_drone_can_take(ctx, larger).await {
            return Some(Leave::Larger);
        }
    }
    if job.avoid.contains(&ctx.name) && delivery <= 3 {
        let other = |d: &schemas::DroneRecord| !job.avoid.contains(&d.name);
        if another_drone_can_take(ctx, other).await {
            return Some(Leave::FailedHere);
        }
    }
    None
}

/// Creates the lease, or takes over a finished one of an earlier attempt; its revision, or the
/// delay to give the job back with when the package is held or the lease cannot be written.
async fn hold_lease(
    ctx: &Ctx,
    key: &PackageKey,
    job: &Job,
    lease: &Lease,
) -> Result<u64, Option<Duration>> {
    let Ok(bytes) = encode(lease) else {
        return Err(None);
    };
    match ctx.leases.create(key.as_str(), bytes.clone().into()).await {
        Ok(revision) => Ok(revision),
        Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
            take_over_finished(ctx, key, job, bytes)
                .await
                .ok_or_else(|| {
                    debug!(package = %job.atom, "the lease is held or holds this attempt's result");
                    Some(ctx.lease_ttl / 2)
                })
        }
        Err(err) => {
            warn!(package = %job.atom, error = %err, "cannot create lease");
            Err(Some(Duration::from_secs(1)))
        }
    }
}

/// Only what the coordinator still wants built is built: this exact attempt of this submission,
/// unfinished.
fn wanted(job: &Job, state: Result<Option<(PackageState, u64)>, StateError>) -> Wanted {
    match state {
        Ok(Some((
            PackageState::Queued { attempt } | PackageState::Building { attempt, .. },
            submission,
        ))) if attempt == job.attempt && submission == job.submission => Wanted::Yes,
        Ok(Some((state, _))) => {
            info!(package = %job.atom, attempt = job.attempt, state = state.label(), "stale job acknowledged without building");
            Wanted::Stale
        }
        Ok(None) => {
            warn!(package = %job.atom, "job for a package the coordinator does not know; leaving it");
            Wanted::Unsure
        }
        Err(StateError::Decode(err)) => {
            warn!(package = %job.atom, version = ?err.unsupported_version(), error = %err, "unreadable package record left as it is; the job goes back for a drone that can read it");
            Wanted::Unreadable
        }
        Err(err) => {
            warn!(package = %job.atom, error = %err, "cannot read package state");
            Wanted::Unsure
        }
    }
}

/// Takes over a lease that holds the result of an earlier attempt or submission of the package
/// by compare-and-set on its revision. `None` when the lease is live, holds this very job's
/// result (a redelivery after a lost acknowledgement), or cannot be read or replaced.
async fn take_over_finished(
    ctx: &Ctx,
    key: &PackageKey,
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
    let held = match decode::<Lease>(&entry.value) {
        Ok(held) => held,
        Err(err) => {
            // A newer release's lease, or junk: left as it is (it expires by itself).
            warn!(key = %key, revision = entry.revision, version = ?err.unsupported_version(), error = %err, "unreadable lease left as it is; the job goes back");
            return None;
        }
    };
    let earlier = (held.submission, held.attempt) != (job.submission, job.attempt);
    if !matches!(held.phase, LeasePhase::Finished { .. }) || !earlier {
        return None;
    }
    ctx.leases
        .update(key.as_str(), lease_bytes.into(), entry.revision)
        .await
        .ok()
}

/// Why the package's state could not be read.
#[derive(Debug, thiserror::Error)]
enum StateError {
    #[error("cannot read the package record: {0}")]
    Read(#[from] kv::EntryError),
    #[error(transparent)]
    Decode(#[from] schemas::DecodeError),
}

/// The package's state and submission number, if the coordinator knows the package.
async fn current_state(
    ctx: &Ctx,
    key: &PackageKey,
) -> Result<Option<(PackageState, u64)>, StateError> {
    match ctx.packages.get(key.as_str()).await? {
        Some(bytes) => {
            let record = decode::<PackageRecord>(&bytes)?;
            Ok(Some((record.state, record.submission)))
        }
        None => Ok(None),
    }
}

/// Whether a working drone of the arch, other than this one, that `fits` is online.
async fn another_drone_can_take(ctx: &Ctx, fits: impl Fn(&schemas::DroneRecord) -> bool) -> bool {
    let Ok(drones) = runtime::kv::read_bucket::<schemas::DroneRecord>(&ctx.drones).await else {
        return false;
    };
    let now = runtime::now_ms();
    drones.iter().any(|item| {
        let state =
            schemas::summary::effective_state(&item.value, now.saturating_sub(item.created_ms));
        item.value.name != ctx.name
            && fits(&item.value)
            && item.value.arch == ctx.settings.arch
            && matches!(state, DroneState::Idle | DroneState::Building)
    })
}
