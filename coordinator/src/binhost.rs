//! The binhost's publication (the service's handlers): the operator's requests on
//! `swarm.ctl.binhost` (publish, rollback, status), the publication a run that ended cleanly
//! makes by itself, and the retention that follows each. What to publish and keep is decided by
//! `publication`; this writes it.
//!
//! **Atomic by construction:** a revision is written in full under its own key first, and only
//! then does the arch's `current` key switch to it, in one compare-and-set. `swarm-binhost`
//! reads `current`, then the revision it names: a client sees one revision or the next, never a
//! mix, whatever stops in between (the coordinator, the server).

use std::collections::BTreeMap;

use async_nats::jetstream::kv;
use futures::StreamExt;
use schemas::{
    Arch, BinhostCommand, BinhostCurrent, BinhostName, BinhostReply, BinhostRequest, BinhostResult,
    BinhostRevision, RevisionContents, RevisionSummary, SCHEMA_VERSION, decode, decode_object,
    encode, names,
};
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use crate::publication;
use crate::service::Service;

/// Why a binhost request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BinhostError {
    #[error("arch {0} is not built by this swarm")]
    UnknownArch(Arch),
    #[error("{0:?} is not a fingerprint id (lower-case hex digits, as `swarmctl drones` shows)")]
    BadFingerprint(String),
    #[error("revision {number} of {binhost} is not kept (kept: {kept:?})")]
    NoSuchRevision {
        binhost: BinhostName,
        number: u64,
        kept: Vec<u64>,
    },
    #[error("{binhost} has no earlier revision to roll back to")]
    NothingToRollBackTo { binhost: BinhostName },
    #[error("cannot read the binhost bucket: {0}")]
    Read(String),
    #[error("cannot write the binhost bucket: {0}")]
    Write(String),
    #[error("another writer changed {binhost}'s current revision; try again")]
    Conflict { binhost: BinhostName },
    #[error("cannot encode a binhost record: {0}")]
    Encode(#[from] schemas::EncodeError),
    #[error("cannot read revision contents {object}: {reason}")]
    Contents { object: String, reason: String },
}

/// What the bucket holds for one binhost.
struct Published {
    revisions: BTreeMap<u64, BinhostRevision>,
    /// The `current` key, when one was ever published.
    current: Option<Current>,
}

/// The `current` key of a binhost: the revision served, the `TIMESTAMP` it is served with, and the
/// key's KV revision (for the compare-and-set).
#[derive(Debug, Clone, Copy)]
struct Current {
    number: u64,
    timestamp: u64,
    kv_revision: u64,
}

impl Published {
    fn current_revision(&self) -> Option<&BinhostRevision> {
        self.current.and_then(|c| self.revisions.get(&c.number))
    }

    fn current_number(&self) -> Option<u64> {
        self.current.map(|c| c.number)
    }

    fn summaries(&self) -> Vec<RevisionSummary> {
        self.revisions
            .values()
            .rev()
            .map(|r| RevisionSummary {
                number: r.number,
                timestamp: r.timestamp,
                created_ms: r.created_ms,
                packages: r.packages,
                bytes: r.bytes,
                fingerprint: r.fingerprint.clone(),
            })
            .collect()
    }
}

impl Service {
    pub(crate) async fn handle_binhost(
        &mut self,
        client: &async_nats::Client,
        request: async_nats::Message,
    ) {
        let result = match decode::<BinhostRequest>(&request.payload) {
            Ok(req) => {
                let arch = req
                    .arch
                    .clone()
                    .unwrap_or_else(|| self.settings.arches[0].clone());
                match self
                    .binhost_command(&arch, req.fingerprint.as_deref(), &req.command)
                    .await
                {
                    Ok((binhost, published, changed)) => BinhostResult::State {
                        arch,
                        fingerprint: binhost.fingerprint,
                        current: published.current_number(),
                        revisions: published.summaries(),
                        changed,
                    },
                    Err(err) => BinhostResult::Error {
                        message: err.to_string(),
                    },
                }
            }
            Err(err) => {
                if let Some(suppressed) = self.refused.allow("malformed binhost request") {
                    warn!(error = %err, suppressed, "malformed binhost request discarded");
                }
                BinhostResult::Error {
                    message: err.to_string(),
                }
            }
        };
        let reply = BinhostReply {
            v: SCHEMA_VERSION,
            result,
        };
        if let (Some(to), Ok(bytes)) = (request.reply, encode(&reply)) {
            let _ = client.publish(to, bytes.into()).await;
        }
    }

    /// Carries out an operator's request on the binhost of `fingerprint` of the arch (default:
    /// of the arch's run target); answers which binhost it was.
    async fn binhost_command(
        &mut self,
        arch: &Arch,
        fingerprint: Option<&str>,
        command: &BinhostCommand,
    ) -> Result<(BinhostName, Published, bool), BinhostError> {
        if !self.settings.arches.contains(arch) {
            return Err(BinhostError::UnknownArch(arch.clone()));
        }
        let fingerprint = match fingerprint {
            Some(id) if !schemas::is_fingerprint_id(id) => {
                return Err(BinhostError::BadFingerprint(id.to_owned()));
            }
            Some(id) => Some(id.to_owned()),
            None => self.target_id(arch).await?,
        };
        let binhost = BinhostName::new(arch.clone(), fingerprint.as_deref());
        let (published, changed) = match command {
            BinhostCommand::Status => (self.read_published(&binhost).await?, false),
            BinhostCommand::Publish => self.publish_binhost(&binhost).await?,
            BinhostCommand::Rollback { to } => self.roll_back(&binhost, *to).await?,
        };
        Ok((binhost, published, changed))
    }

    /// Publishes an arch's run (to its target fingerprint's binhost) once it has ended with no
    /// new failure (each reconcile tick).
    pub(crate) async fn publish_finished_runs(&mut self) {
        if !self.settings.binhost_auto_publish {
            return;
        }
        for arch in self.settings.arches.clone() {
            // A run still under way (or none) is the common case: it costs no read of the bucket.
            let under_way = {
                let mut of_arch = self.table.records().filter(|r| r.arch == arch).peekable();
                of_arch.peek().is_none() || of_arch.any(|r| !r.state.is_final())
            };
            if under_way {
                continue;
            }
            let binhost = match self.target_id(&arch).await {
                Ok(id) => BinhostName::new(arch.clone(), id.as_deref()),
                Err(err) => {
                    debug!(error = %err, "run target not read");
                    continue;
                }
            };
            let published = match self.read_published(&binhost).await {
                Ok(published) => published,
                Err(err) => {
                    debug!(error = %err, "binhost state not read");
                    continue;
                }
            };
            let published_ms = published
                .revisions
                .values()
                .next_back()
                .map(|r| r.created_ms);
            let of_binhost = self.table.records().filter(|r| {
                binhost
                    .fingerprint
                    .as_deref()
                    .is_none_or(|id| r.fingerprint.as_deref() == Some(id))
            });
            if !publication::run_ended_cleanly(of_binhost, &arch, published_ms) {
                continue;
            }
            match self.publish_binhost(&binhost).await {
                Ok((p, true)) => {
                    info!(%binhost, revision = ?p.current_number(), "run ended cleanly; binhost published")
                }
                Ok(_) => {}
                Err(err) => warn!(%binhost, error = %err, "binhost not published; trying again"),
            }
        }
    }

    /// Publishes what is built now for the binhost's fingerprint as its next revision;
    /// unchanged when nothing is new. The contents object first, the revision's key next, the
    /// switch of `current` last.
    async fn publish_binhost(
        &mut self,
        binhost: &BinhostName,
    ) -> Result<(Published, bool), BinhostError> {
        let mut published = self.read_published(binhost).await?;
        let current_contents = match published.current_revision() {
            Some(revision) => Some(self.read_contents(revision).await?),
            None => None,
        };
        let serving =
            published
                .current
                .zip(current_contents.as_ref())
                .map(|(current, contents)| publication::Serving {
                    packages: &contents.packages,
                    timestamp: current.timestamp,
                });
        let latest = published.revisions.keys().next_back().copied().unwrap_or(0);
        let staged = publication::staged(
            self.table.records(),
            &binhost.arch,
            binhost.fingerprint.as_deref(),
        );
        let Some((revision, contents)) =
            publication::next_revision(binhost, serving, latest, staged, runtime::now_ms())
        else {
            return Ok((published, false));
        };
        let bytes = encode(&contents)?;
        self.topo
            .artifacts
            .put(revision.contents.as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| BinhostError::Write(e.to_string()))?;
        let key = names::binhost_revision_key(binhost, revision.number);
        self.topo
            .binhost
            .put(key.as_str(), encode(&revision)?.into())
            .await
            .map_err(|e| BinhostError::Write(e.to_string()))?;
        let (number, timestamp) = (revision.number, revision.timestamp);
        info!(%binhost, revision = number, packages = revision.packages, timestamp, "binhost revision written");
        published.revisions.insert(number, revision);
        self.switch_current(binhost, &mut published, number, timestamp)
            .await?;
        self.keep_revisions(binhost, &mut published).await;
        self.collect_garbage().await;
        Ok((published, true))
    }

    /// The fingerprint id the arch's run targets, if any.
    async fn target_id(&self, arch: &Arch) -> Result<Option<String>, BinhostError> {
        match self.topo.targets.get(arch.as_str()).await {
            Ok(Some(bytes)) => Ok(decode::<schemas::RunTarget>(&bytes)
                .ok()
                .map(|t| t.fingerprint.id)),
            Ok(None) => Ok(None),
            Err(err) => Err(BinhostError::Read(err.to_string())),
        }
    }

    /// A revision's packages, from the object store.
    pub(crate) async fn read_contents(
        &self,
        revision: &BinhostRevision,
    ) -> Result<RevisionContents, BinhostError> {
        let failed = |reason: String| BinhostError::Contents {
            object: revision.contents.clone(),
            reason,
        };
        let mut object = self
            .topo
            .artifacts
            .get(&revision.contents)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| failed(e.to_string()))?;
        decode_object(&bytes).map_err(|e| failed(e.to_string()))
    }

    /// Serves an earlier kept revision again: the same packages, byte for byte, in an index whose
    /// only change is a newer `TIMESTAMP`.
    async fn roll_back(
        &mut self,
        binhost: &BinhostName,
        to: Option<u64>,
    ) -> Result<(Published, bool), BinhostError> {
        let mut published = self.read_published(binhost).await?;
        let current = published.current_number();
        let target = match to {
            Some(number) => number,
            None => current
                .and_then(|c| published.revisions.range(..c).next_back().map(|(n, _)| *n))
                .ok_or_else(|| BinhostError::NothingToRollBackTo {
                    binhost: binhost.clone(),
                })?,
        };
        if !published.revisions.contains_key(&target) {
            return Err(BinhostError::NoSuchRevision {
                binhost: binhost.clone(),
                number: target,
                kept: published.revisions.keys().copied().collect(),
            });
        }
        if current == Some(target) {
            return Ok((published, false));
        }
        // Served again with a newer TIMESTAMP: clients holding the newer index read it again.
        let timestamp = publication::served_timestamp(
            published.current.map(|c| c.timestamp),
            runtime::now_ms(),
        );
        self.switch_current(binhost, &mut published, target, timestamp)
            .await?;
        info!(%binhost, revision = target, timestamp, "binhost rolled back");
        Ok((published, true))
    }

    /// Points the binhost's `current` key at `number`, served with `timestamp`, by
    /// compare-and-set.
    async fn switch_current(
        &self,
        binhost: &BinhostName,
        published: &mut Published,
        number: u64,
        timestamp: u64,
    ) -> Result<(), BinhostError> {
        let key = names::binhost_current_key(binhost);
        let bytes = encode(&BinhostCurrent {
            v: SCHEMA_VERSION,
            arch: binhost.arch.clone(),
            number,
            timestamp,
        })?;
        let written = match published.current {
            Some(Current { kv_revision, .. }) => self
                .topo
                .binhost
                .update(key.as_str(), bytes.into(), kv_revision)
                .await
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => BinhostError::Conflict {
                        binhost: binhost.clone(),
                    },
                    _ => BinhostError::Write(e.to_string()),
                })?,
            None => self
                .topo
                .binhost
                .create(key.as_str(), bytes.into())
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => BinhostError::Conflict {
                        binhost: binhost.clone(),
                    },
                    _ => BinhostError::Write(e.to_string()),
                })?,
        };
        published.current = Some(Current {
            number,
            timestamp,
            kv_revision: written,
        });
        Ok(())
    }

    /// Drops the revisions past the newest `binhost_keep_revisions` (never the current one).
    async fn keep_revisions(&self, binhost: &BinhostName, published: &mut Published) {
        let Some(current) = published.current_number() else {
            return;
        };
        let numbers: Vec<u64> = published.revisions.keys().copied().collect();
        for number in publication::to_drop(&numbers, current, self.settings.binhost_keep_revisions)
        {
            let key = names::binhost_revision_key(binhost, number);
            match self.topo.binhost.delete(key.as_str()).await {
                Ok(()) => {
                    published.revisions.remove(&number);
                    info!(%binhost, revision = number, "binhost revision dropped");
                }
                Err(err) => {
                    warn!(%binhost, revision = number, error = %err, "binhost revision not dropped")
                }
            }
        }
    }

    /// Deletes the stored binary packages that no kept revision of any binhost and no package
    /// record references, once they are older than the grace period.
    async fn collect_garbage(&mut self) {
        // Not knowing what a binhost keeps, delete nothing.
        let Ok(revisions) = self.read_revisions("rev.").await else {
            return;
        };
        let mut kept = Vec::new();
        for revision in revisions {
            match self.read_contents(&revision).await {
                Ok(contents) => kept.push(contents),
                Err(_) => return,
            }
        }
        let Ok(mut list) = self.topo.artifacts.list().await else {
            return;
        };
        let grace = self.settings.binhost_gc_grace_secs as i64;
        let now = (runtime::now_ms() / 1000) as i64;
        let mut old = Vec::new();
        while let Some(Ok(info)) = list.next().await {
            let age = info.modified.map(|m| now - m.unix_timestamp()).unwrap_or(0);
            if !info.deleted && age >= grace {
                old.push(info.name);
            }
        }
        let garbage =
            publication::garbage(old.iter().map(String::as_str), &kept, self.table.records());
        for object in garbage {
            match self.topo.artifacts.delete(&object).await {
                Ok(()) => info!(%object, "unreferenced binary package deleted"),
                Err(err) => warn!(%object, error = %err, "unreferenced binary package not deleted"),
            }
        }
    }

    /// Every kept revision of a binhost and its current one.
    async fn read_published(&self, binhost: &BinhostName) -> Result<Published, BinhostError> {
        let revisions: BTreeMap<u64, BinhostRevision> = self
            .read_revisions(&names::binhost_revision_prefix(binhost))
            .await?
            .into_iter()
            .map(|revision| (revision.number, revision))
            .collect();
        let current = match self
            .topo
            .binhost
            .entry(names::binhost_current_key(binhost))
            .await
            .map_err(|e| BinhostError::Read(e.to_string()))?
        {
            Some(entry) if entry.operation == kv::Operation::Put => {
                decode::<BinhostCurrent>(&entry.value)
                    .ok()
                    .map(|c| Current {
                        number: c.number,
                        timestamp: match c.timestamp {
                            0 => revisions.get(&c.number).map_or(0, |r| r.timestamp),
                            served => served,
                        },
                        kv_revision: entry.revision,
                    })
            }
            _ => None,
        };
        Ok(Published { revisions, current })
    }

    /// Every revision whose key starts with `prefix` (`rev.` for those of every binhost).
    async fn read_revisions(&self, prefix: &str) -> Result<Vec<BinhostRevision>, BinhostError> {
        let mut keys = self
            .topo
            .binhost
            .keys()
            .await
            .map_err(|e| BinhostError::Read(e.to_string()))?;
        let mut revisions = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| BinhostError::Read(e.to_string()))?;
            if !key.starts_with(prefix) {
                continue;
            }
            let Some(bytes) = self
                .topo
                .binhost
                .get(key.as_str())
                .await
                .map_err(|e| BinhostError::Read(e.to_string()))?
            else {
                continue;
            };
            match decode::<BinhostRevision>(&bytes) {
                Ok(revision) => revisions.push(revision),
                Err(err) => warn!(%key, error = %err, "undecodable binhost revision ignored"),
            }
        }
        Ok(revisions)
    }
}
