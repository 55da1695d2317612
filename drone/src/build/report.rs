//! The report stage: the result is committed on the lease by compare-and-set (a drone whose
//! lease was taken over fails here and reports nothing), the `finished` event is stored, and
//! only then is the job acknowledged. From the commit until the acknowledgement is confirmed
//! the job is kept from being redelivered (progress acknowledgements) and the finished lease
//! alive (created again if it lapsed), so no other drone builds the package meanwhile.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, kv};
use schemas::{Artifact, BuildOutcome, EventKind, Job, Lease, LeasePhase, decode, encode};
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
    // From here until the job is acknowledged, while the result waits to be stored or the
    // acknowledgement to be confirmed (a cluster electing a new leader takes seconds), the job
    // must not go to another drone: it is marked in progress, and the finished lease is kept so
    // that a job delivered again all the same finds this result on it, not an expired lease to
    // build under. After that the lease is left to expire.
    let keeper = keep_result(ctx, message, &claim, bytes, revision);
    tokio::pin!(keeper);
    let persist = (ctx.lease_ttl * 4).max(Duration::from_secs(10));
    let stored = tokio::select! {
        stored = store(ctx, job, finished, persist) => stored,
        taken = &mut keeper => return super::lease_lost(ctx, job, taken).await,
    };
    if !stored {
        return BuildReport::LeaseLost;
    }
    // The result is stored: it is acknowledged whatever becomes of the lease meanwhile.
    tokio::select! {
        () = acknowledge(message, job, persist) => {}
        _ = &mut keeper => acknowledge(message, job, persist).await,
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

/// How long a result is tried at least: a try whose answer did not come (a timeout, or "duplicate
/// message id is in process" while a stream's replicas agree on an earlier try) may still be
/// stored later, and giving up then would let the job be built again beside a stored result.
/// Every try carries the same message id, deduplicated by the event stream for its duplicate
/// window (2 minutes), so trying longer stores the result once.
const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// Stores the `finished` event; false when it could not be stored (the job is left to be
/// redelivered and built again, which is safe, rather than lost).
async fn store(ctx: &Ctx, job: &Job, finished: EventKind, persist: Duration) -> bool {
    // The result is tried again for as long as a stream may take to elect a new leader and
    // commit what it was sent, the job marked in progress and the finished lease kept meanwhile.
    let until = Instant::now() + persist.max(STORE_PATIENCE);
    if let Err(err) = ctx.reporter.send(finished, Some(until)).await {
        warn!(package = %job.atom, error = %err, "result could not be published; the job will be built again");
        return false;
    }
    true
}

/// Acknowledges the job with the server's confirmation, for up to `persist`.
async fn acknowledge(message: &jetstream::Message, job: &Job, persist: Duration) {
    // An acknowledgement is idempotent, so an unconfirmed one is sent again: a consumer whose
    // leader died answers once a new one is elected.
    let ack_until = Instant::now() + persist;
    loop {
        match runtime::ack::double_ack(message, ACK_TIMEOUT).await {
            Ok(()) => return,
            Err(err) if Instant::now() < ack_until => {
                debug!(package = %job.atom, error = %err, "job ack not confirmed; sending it again");
                tokio::time::sleep(ACK_RESEND_PAUSE).await;
            }
            Err(err) => {
                warn!(package = %job.atom, error = %err, "job ack not confirmed; the kept lease stops a rebuild until it expires");
                return;
            }
        }
    }
}

/// Every renewal period, for as long as it is polled: marks the job in progress, so that the
/// server does not deliver it to another drone after its ack wait, and renews the finished
/// lease. A lease that lapsed (its stream could not take a renewal for longer than the TTL) is
/// created again; a failed renewal is tried again at the next period. Returns only when
/// another lease holds the package: the result is no longer this drone's to report.
async fn keep_result(
    ctx: &Ctx,
    message: &jetstream::Message,
    claim: &Claim,
    bytes: Vec<u8>,
    mut revision: u64,
) -> String {
    let key = claim.key.as_str();
    loop {
        tokio::time::sleep(ctx.renew_every).await;
        if let Err(err) = message.ack_with(AckKind::Progress).await {
            debug!(key, error = %err, "progress ack not sent");
        }
        let update = ctx.leases.update(key, bytes.clone().into(), revision);
        let refused = match tokio::time::timeout(ctx.renew_every, update).await {
            Ok(Ok(next)) => {
                revision = next;
                continue;
            }
            Ok(Err(err)) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => err,
            Ok(Err(err)) => {
                debug!(key, error = %err, "finished lease not renewed");
                continue;
            }
            Err(_) => {
                debug!(key, "finished lease renewal timed out");
                continue;
            }
        };
        let found = match ctx.leases.entry(key).await {
            Ok(entry) => entry
                .filter(|e| e.operation == kv::Operation::Put)
                .map(|e| {
                    let lease = decode::<Lease>(&e.value).ok();
                    (e.revision, lease)
                }),
            Err(err) => {
                debug!(key, error = %err, "finished lease not renewed ({refused}) nor read");
                continue;
            }
        };
        match on_refusal(&claim.lease, found) {
            Refused::Adopt(current) => revision = current,
            Refused::Recreate => match ctx.leases.create(key, bytes.clone().into()).await {
                Ok(created) => {
                    info!(key, "finished lease had lapsed; created again");
                    revision = created;
                }
                Err(err) => debug!(key, error = %err, "lapsed finished lease not created again"),
            },
            Refused::Taken => {
                return format!(
                    "the finished lease lapsed and another lease holds the package ({refused})"
                );
            }
        }
    }
}

/// What the keeper of a finished lease found when a renewal was refused for a wrong revision.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// No lease: it expired or was deleted. It is created again.
    Recreate,
    /// This very lease at another revision (a renewal that was stored but whose answer was
    /// lost): kept from that revision on.
    Adopt(u64),
    /// Another lease, or one that cannot be read: the package is no longer fenced by this one.
    Taken,
}

/// `found`: the live lease's revision and the lease, `None` inside when it does not decode;
/// `None` when there is no live lease.
fn on_refusal(ours: &Lease, found: Option<(u64, Option<Lease>)>) -> Refused {
    match found {
        None => Refused::Recreate,
        Some((revision, Some(lease))) if &lease == ours => Refused::Adopt(revision),
        Some(_) => Refused::Taken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures;

    fn lease(drone: &str, attempt: u32, phase: LeasePhase) -> Lease {
        Lease {
            v: schemas::SCHEMA_VERSION,
            drone: fixtures::drone_name(drone),
            atom: fixtures::atom("dev-libs/p"),
            attempt,
            submission: 1,
            stream_seq: 7,
            delivery: 1,
            phase,
        }
    }

    fn finished() -> LeasePhase {
        LeasePhase::Finished {
            outcome: BuildOutcome::Succeeded,
        }
    }

    #[test]
    fn a_refused_renewal_is_judged_by_the_lease_found() {
        let ours = lease("a", 1, finished());
        let cases = [
            (None, Refused::Recreate),
            (Some((9, Some(ours.clone()))), Refused::Adopt(9)),
            // Another drone claimed the package once the lease had lapsed.
            (
                Some((9, Some(lease("b", 1, LeasePhase::Building)))),
                Refused::Taken,
            ),
            // This drone's own later claim, or another attempt's: not this result.
            (
                Some((9, Some(lease("a", 1, LeasePhase::Building)))),
                Refused::Taken,
            ),
            (Some((9, Some(lease("a", 2, finished())))), Refused::Taken),
            (Some((9, None)), Refused::Taken),
        ];
        for (found, expected) in cases {
            assert_eq!(on_refusal(&ours, found.clone()), expected, "{found:?}");
        }
    }
}
