//! The binhost's publication (the service's handlers): the operator's requests on
//! `swarm.ctl.binhost` (publish, rollback, status), the publication a run that ended cleanly
//! makes by itself, and the retention that follows each. What to publish and keep is decided by
//! `publication`; this writes it.
//!
//! **Atomic by construction:** a revision is written in full under its own key first, and only
//! then does the arch's `current` key switch to it, in one compare-and-set. `swarm-binhost`
//! reads `current`, then the revision it names: a client sees one revision or the next, never a
//! mix, whatever stops in between (the coordinator, the server).

use async_nats::jetstream::kv;
use schemas::{
    Arch, BinhostCommand, BinhostCurrent, BinhostName, BinhostReply, BinhostRequest, BinhostResult,
    RunName, SCHEMA_VERSION, encode, names,
};
use tracing::{debug, info, warn};

use crate::api::{self, Reply};
use crate::binhost_store::{Current, Published};
use crate::publication;
use crate::runs::{self, RunRefusal};
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
    #[error(transparent)]
    Run(#[from] RunRefusal),
}

impl Service {
    /// The `binhost` endpoint: publish, roll back or show a binhost; a request that cannot be
    /// read is a bad request, one that cannot be done is answered with why.
    pub(crate) async fn binhost_request(&mut self, payload: &[u8]) -> Reply {
        let req: BinhostRequest = api::read_required(payload)?;
        let arch = req
            .arch
            .clone()
            .unwrap_or_else(|| self.settings.arches[0].clone());
        let result = match self
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
        };
        api::write(&BinhostReply {
            v: SCHEMA_VERSION,
            result,
        })
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
        if let Some(id) = fingerprint.filter(|id| !schemas::is_fingerprint_id(id)) {
            return Err(BinhostError::BadFingerprint(id.to_owned()));
        }
        // A run is published to the binhost of the fingerprint it was built for.
        let run = match command {
            BinhostCommand::Publish { run: Some(run) } => {
                let standings = runs::standings(self.table.records(), arch);
                Some(runs::target(&standings, arch, run, fingerprint)?)
            }
            _ => None,
        };
        let fingerprint = match (&run, fingerprint) {
            (Some((_, of_run)), _) => of_run.clone(),
            (None, Some(id)) => Some(id.to_owned()),
            (None, None) => self.target_id(arch).await?,
        };
        let binhost = BinhostName::new(arch.clone(), fingerprint.as_deref());
        let (published, changed) = match command {
            BinhostCommand::Status => (self.read_published(&binhost).await?, false),
            BinhostCommand::Publish { .. } => {
                self.publish_binhost(&binhost, run.map(|(name, _)| name))
                    .await?
            }
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
            let run = runs::latest(&runs::standings(self.table.records(), &arch));
            match self.publish_binhost(&binhost, run).await {
                Ok((p, true)) => {
                    info!(%binhost, revision = ?p.current_number(), "run ended cleanly; binhost published")
                }
                Ok(_) => {}
                Err(err) => warn!(%binhost, error = %err, "binhost not published; trying again"),
            }
        }
    }

    /// Publishes what is built now for the binhost's fingerprint as its next revision
    /// (for `run`, an ended one: without what runs under way built); unchanged when nothing is
    /// new. The contents object first, the revision's key next, the switch of `current` last.
    async fn publish_binhost(
        &mut self,
        binhost: &BinhostName,
        run: Option<RunName>,
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
        let (arch, fingerprint) = (&binhost.arch, binhost.fingerprint.as_deref());
        let staged = match &run {
            Some(_) => runs::contents(
                self.table.records(),
                arch,
                fingerprint,
                &runs::standings(self.table.records(), arch),
                serving.map_or(&[], |s| s.packages),
            ),
            None => publication::staged(self.table.records(), arch, fingerprint),
        };
        let Some((revision, contents)) =
            publication::next_revision(binhost, serving, latest, staged, run, runtime::now_ms())
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
}
