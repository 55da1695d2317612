//! Leadership among coordinators. Any number may run; one leads. The leader holds a lease, the
//! key `names::LEADER_KEY` of the leader bucket, whose max age is the lease's lifetime: it is
//! created by compare-and-set (only when no lease is alive) and renewed by compare-and-set on its
//! revision every third of its lifetime. A standby tries to create it every tenth of the
//! lifetime, so it leads at most a lifetime and a tenth after the leader's last renewal.
//!
//! Having won the lease, the new leader writes its term, the same record, into the packages
//! bucket (`names::TERM_KEY`), by compare-and-set on the term it read. Every package write of a
//! leader is then fenced by the sequence of its term (`store::write_record`): the server refuses
//! it once a newer term exists. A leader that was frozen past its lease and resumes therefore
//! writes nothing; it learns that it lost the lead from a refused write or renewal, or from its
//! own deadline (the last renewal's sending + the lifetime − a tenth), whichever comes first, and
//! goes back to standing by.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use schemas::{LeaderRecord, SCHEMA_VERSION, encode, names};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The fence of one term: package writes carry it, and the server checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The packages stream's sequence of this leader's term record.
    pub term_seq: u64,
}

/// A lease won: what renewing it needs.
#[derive(Debug)]
pub struct Lead {
    pub record: LeaderRecord,
    pub fence: Fence,
    revision: u64,
    renewed_at: Instant,
    ttl: Duration,
}

impl Lead {
    /// Until when the lease is surely held.
    pub fn deadline(&self) -> Instant {
        self.renewed_at + self.ttl - self.ttl / 10
    }
}

/// Why a coordinator could not take or keep the lead (each is retried, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("another coordinator wrote its term first")]
    TermTaken,
    #[error("cannot write the term: {0}")]
    Term(String),
    #[error("cannot encode the leader record: {0}")]
    Encode(#[from] schemas::EncodeError),
}

/// This coordinator's leader record, now.
pub fn record(name: &str, ttl: Duration, since_ms: u64) -> LeaderRecord {
    LeaderRecord {
        v: SCHEMA_VERSION,
        coordinator: name.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        since_ms,
        renewed_ms: runtime::now_ms(),
        ttl_ms: ttl.as_millis() as u64,
    }
}

/// Stands by until this coordinator wins the lease and has written its term; `None` when
/// `shutdown` came first.
pub async fn campaign(
    leader: &kv::Store,
    packages: &kv::Store,
    name: &str,
    ttl: Duration,
    shutdown: &CancellationToken,
) -> Option<Lead> {
    let mut said = None::<String>;
    loop {
        match try_lead(leader, packages, name, ttl).await {
            Ok(Some(lead)) => {
                info!(coordinator = name, term = lead.fence.term_seq, "leading");
                return Some(lead);
            }
            Ok(None) => {
                let current = current(leader).await.map(|r| r.coordinator);
                if current != said {
                    if let Some(other) = &current {
                        info!(coordinator = name, leader = %other, "standing by: another coordinator leads");
                    }
                    said = current;
                }
            }
            Err(err) => {
                warn!(coordinator = name, error = %err, "could not take the lead; trying again")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(ttl / 10) => {}
        }
    }
}

/// One attempt: create the lease, then write the term. `Ok(None)`: another coordinator leads.
async fn try_lead(
    leader: &kv::Store,
    packages: &kv::Store,
    name: &str,
    ttl: Duration,
) -> Result<Option<Lead>, LeaderError> {
    let sent = Instant::now();
    let record = record(name, ttl, runtime::now_ms());
    let bytes: Bytes = encode(&record)?.into();
    let revision = match leader.create(names::LEADER_KEY, bytes.clone()).await {
        Ok(revision) => revision,
        Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(None),
        Err(err) => {
            debug!(error = %err, "leader lease not created");
            return Ok(None);
        }
    };
    // The term: a compare-and-set on the term last written, so that of two coordinators that
    // both believe they won, one fails here.
    let last = packages
        .entry(names::TERM_KEY)
        .await
        .map_err(|e| LeaderError::Term(e.to_string()))?
        .map(|entry| entry.revision);
    let written = match last {
        Some(last) => packages
            .update(names::TERM_KEY, bytes, last)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => LeaderError::TermTaken,
                _ => LeaderError::Term(e.to_string()),
            }),
        None => packages
            .create(names::TERM_KEY, bytes)
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => LeaderError::TermTaken,
                _ => LeaderError::Term(e.to_string()),
            }),
    };
    let term_seq = match written {
        Ok(seq) => seq,
        Err(err) => {
            // Give the lease back so that the coordinator whose term it is can renew it.
            let _ = leader
                .delete_expect_revision(names::LEADER_KEY, Some(revision))
                .await;
            return Err(err);
        }
    };
    Ok(Some(Lead {
        record,
        fence: Fence { term_seq },
        revision,
        renewed_at: sent,
        ttl,
    }))
}

/// Renews the lease every third of its lifetime until `stop` is cancelled; cancels `lost` (and
/// returns) when a renewal is refused or the deadline passes without one.
pub async fn keep(
    leader: kv::Store,
    mut lead: Lead,
    stop: CancellationToken,
    lost: CancellationToken,
    until: tokio::sync::watch::Sender<Instant>,
) {
    let every = lead.ttl / 3;
    until.send_replace(lead.deadline());
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // Stepping down cleanly: a standby need not wait for the lease to expire.
                let _ = leader.delete_expect_revision(names::LEADER_KEY, Some(lead.revision)).await;
                return;
            }
            _ = tokio::time::sleep_until(lead.deadline().into()) => {
                warn!("leader lease not renewed in time: no longer leading");
                break;
            }
            _ = tokio::time::sleep(every) => {}
        }
        let sent = Instant::now();
        lead.record.renewed_ms = runtime::now_ms();
        let Ok(bytes) = encode(&lead.record) else {
            continue;
        };
        let remaining = lead.deadline().saturating_duration_since(sent);
        match tokio::time::timeout(
            remaining,
            leader.update(names::LEADER_KEY, bytes.into(), lead.revision),
        )
        .await
        {
            Ok(Ok(revision)) => {
                lead.revision = revision;
                lead.renewed_at = sent;
                until.send_replace(lead.deadline());
            }
            Ok(Err(err)) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                warn!("another coordinator took the lead: no longer leading");
                break;
            }
            Ok(Err(err)) => debug!(error = %err, "leader lease not renewed; trying again"),
            Err(_) => {
                warn!("leader lease renewal timed out: no longer leading");
                break;
            }
        }
    }
    lost.cancel();
}

/// The leader record in the bucket, if a lease is alive.
pub async fn current(leader: &kv::Store) -> Option<LeaderRecord> {
    let entry = leader.entry(names::LEADER_KEY).await.ok()??;
    if entry.operation != kv::Operation::Put {
        return None;
    }
    schemas::decode::<LeaderRecord>(&entry.value).ok()
}
