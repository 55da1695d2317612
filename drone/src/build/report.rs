//! The report stage: the result is committed on the lease by compare-and-set (a drone whose
//! lease was taken over fails here and reports nothing), the `finished` event is stored, and
//! only then is the job acknowledged. From the commit until the acknowledgement is confirmed
//! the finished lease is kept alive, so a redelivered job finds this result on it.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use schemas::{Artifact, BuildOutcome, EventKind, Job, LeasePhase, PackageKey, encode};
use tracing::{debug, info, warn};

use super::claim::Claim;
use super::{ACK_TIMEOUT, BuildReport, Ctx};

/// Pause between two tries to acknowledge a job.
const ACK_RESEND_PAUSE: Duration = Duration::from_millis(250);

/// What a build that ran to its end has to report.
pub struct Built {
    pub outcome: BuildOutcome,
    pub duration_ms: u64,
    /// The cores it had.
    pub jobs: u32,
    /// Its binary packages, already stored.
    pub artifacts: Vec<Artifact>,
}

/// Commits, reports and acknowledges the result of a build that ran to its end.
pub async fn report(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &Job,
    mut claim: Claim,
    built: Built,
) -> BuildReport {
    let Built {
        outcome,
        duration_ms,
        jobs,
        artifacts,
    } = built;
    claim.lease.phase = LeasePhase::Finished {
        outcome: outcome.clone(),
    };
    let committed = commit(ctx, &claim).await;
    let (bytes, revision) = match committed {
        Ok(done) => done,
        Err(err) => return super::lease_lost(ctx, job, err.to_string()).await,
    };
    let finished = EventKind::Finished {
        atom: job.atom.clone(),
        attempt: job.attempt,
        lease_rev: revision,
        outcome: outcome.clone(),
        duration_ms,
        jobs,
        artifacts,
    };
    // From here until the job is acknowledged, the finished lease is kept alive: while the
    // result waits to be stored or the acknowledgement to be confirmed (a cluster electing a
    // new leader takes seconds), a redelivered job must find this result on the lease, not an
    // expired lease to build under. After that it is left to expire.
    let keeper = keep_lease(ctx, &claim.key, bytes, revision);
    let stored = tokio::select! {
        stored = store_and_acknowledge(ctx, message, job, finished) => stored,
        never = keeper => match never {},
    };
    if !stored {
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
        atom: job.atom.clone(),
        outcome,
    }
}

/// Why a result could not be committed on its lease: the lease is lost, or may be.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("cannot encode the lease: {0}")]
    Encode(#[from] schemas::EncodeError),
    /// Another drone took the lease over, or it expired.
    #[error("result commit refused: {0}")]
    Refused(#[from] async_nats::jetstream::kv::UpdateError),
    #[error("result commit timed out")]
    TimedOut,
}

/// Writes the finished lease at the claim's revision before the lease deadline; the encoded
/// lease and its new revision.
async fn commit(ctx: &Ctx, claim: &Claim) -> Result<(Vec<u8>, u64), CommitError> {
    let bytes = encode(&claim.lease)?;
    // The run stage returns only before the deadline; what is left of it bounds the commit.
    let remaining = claim
        .deadline(ctx.lease_ttl)
        .saturating_duration_since(Instant::now());
    let update = ctx
        .leases
        .update(claim.key.as_str(), bytes.clone().into(), claim.revision);
    match tokio::time::timeout(remaining, update).await {
        Ok(Ok(revision)) => Ok((bytes, revision)),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(CommitError::TimedOut),
    }
}

/// Stores the `finished` event, then acknowledges the job with the server's confirmation;
/// false when the event could not be stored (the job is left to be redelivered and built
/// again, which is safe, rather than lost).
async fn store_and_acknowledge(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &Job,
    finished: EventKind,
) -> bool {
    // The result and then the acknowledgement are each tried again for as long as a stream or
    // a consumer may take to elect a new leader, the finished lease kept meanwhile.
    let persist = (ctx.lease_ttl * 4).max(Duration::from_secs(10));
    if let Err(err) = ctx
        .reporter
        .send(finished, Some(Instant::now() + persist))
        .await
    {
        warn!(package = %job.atom, error = %err, "result could not be published; the job will be built again");
        return false;
    }
    // An acknowledgement is idempotent, so an unconfirmed one is sent again: a consumer whose
    // leader died answers once a new one is elected.
    let ack_until = Instant::now() + persist;
    loop {
        match runtime::ack::double_ack(message, ACK_TIMEOUT).await {
            Ok(()) => return true,
            Err(err) if Instant::now() < ack_until => {
                debug!(package = %job.atom, error = %err, "job ack not confirmed; sending it again");
                tokio::time::sleep(ACK_RESEND_PAUSE).await;
            }
            Err(err) => {
                warn!(package = %job.atom, error = %err, "job ack not confirmed; the kept lease stops a rebuild until it expires");
                return true;
            }
        }
    }
}

/// Renews a finished lease every renewal period, for as long as it is polled; a failed renewal
/// is tried again at the next period (the lease may come back within its TTL).
async fn keep_lease(
    ctx: &Ctx,
    key: &PackageKey,
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
