//! The claim stage: decide whether this drone builds the job at all, and if so hold the
//! package's lease. The lease is created only if no live lease exists, or taken over from a
//! finished build of an earlier attempt or submission (finished leases are kept until they
//! expire); its revision is the fencing token every later write goes through.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use schemas::{
    DroneName, DroneState, Job, Lease, LeasePhase, PackageKey, PackageRecord, PackageState,
    SCHEMA_VERSION, decode, encode,
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
    let key = job.atom.key();

    if job.avoid.contains(&ctx.name)
        && delivery <= 3
        && another_drone_can_take(ctx, &job.avoid).await
    {
        debug!(package = %job.atom, "failed here before; leaving the retry to another drone");
        nak(
            message,
            Some(Duration::from_millis(ctx.settings.avoid_delay_ms)),
        )
        .await;
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
    let Ok(lease_bytes) = encode(&lease) else {
        nak(message, None).await;
        return Err(BuildReport::NotBuilt);
    };
    let claimed_at = Instant::now();
    // The lease and the package state in one round trip: the state read is a filter for stale
    // jobs, not a fence (the lease is), and a package that finishes between the two reads is
    // caught by the same check a moment later (its result commit needs this lease).
    let (created, state) = tokio::join!(
        ctx.leases.create(key.as_str(), lease_bytes.clone().into()),
        current_state(ctx, &key)
    );
    let revision = match created {
        Ok(revision) => revision,
        Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
            match take_over_finished(ctx, &key, job, lease_bytes).await {
                Some(revision) => revision,
                None => {
                    debug!(package = %job.atom, "the lease is held or holds this attempt's result");
                    nak(message, Some(ctx.lease_ttl / 2)).await;
                    return Err(BuildReport::NotBuilt);
                }
            }
        }
        Err(err) => {
            warn!(package = %job.atom, error = %err, "cannot create lease");
            nak(message, Some(Duration::from_secs(1))).await;
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

    // Only build what the coordinator still wants built: this exact attempt of this
    // submission, unfinished.
    match state {
        Ok(Some((
            PackageState::Queued { attempt } | PackageState::Building { attempt, .. },
            submission,
        ))) if attempt == job.attempt && submission == job.submission => Ok(claim),
        Ok(Some((state, _))) => {
            info!(package = %job.atom, attempt = job.attempt, state = state.label(), "stale job acknowledged without building");
            let _ = runtime::ack::double_ack(message, ACK_TIMEOUT).await;
            claim.release(ctx).await;
            Err(BuildReport::NotBuilt)
        }
        Ok(None) => {
            warn!(package = %job.atom, "job for a package the coordinator does not know; leaving it");
            claim.release(ctx).await;
            nak(message, Some(Duration::from_secs(1))).await;
            Err(BuildReport::NotBuilt)
        }
        Err(err) => {
            warn!(package = %job.atom, error = %err, "cannot read package state");
            claim.release(ctx).await;
            nak(message, Some(Duration::from_secs(1))).await;
            Err(BuildReport::NotBuilt)
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
