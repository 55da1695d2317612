//! What the binhost bucket holds, read (`read_published`, `read_revisions`, `read_contents`,
//! the arch's run target), and the retention that follows each publication (`keep_revisions`,
//! `collect_garbage`, as `publication` decides). `binhost.rs` has the requests that write it.

use std::collections::BTreeMap;

use async_nats::jetstream::kv;
use futures::StreamExt;
use schemas::{
    Arch, BinhostCurrent, BinhostName, BinhostRevision, RevisionContents, RevisionSummary, decode,
    decode_object, names,
};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use crate::binhost::BinhostError;
use crate::publication;
use crate::service::Service;

/// What the bucket holds for one binhost.
pub(crate) struct Published {
    pub(crate) revisions: BTreeMap<u64, BinhostRevision>,
    /// The `current` key, when one was ever published.
    pub(crate) current: Option<Current>,
}

/// The `current` key of a binhost: the revision served, the `TIMESTAMP` it is served with, and the
/// key's KV revision (for the compare-and-set).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current {
    pub(crate) number: u64,
    pub(crate) timestamp: u64,
    pub(crate) kv_revision: u64,
}

impl Published {
    pub(crate) fn current_revision(&self) -> Option<&BinhostRevision> {
        self.current.and_then(|c| self.revisions.get(&c.number))
    }

    pub(crate) fn current_number(&self) -> Option<u64> {
        self.current.map(|c| c.number)
    }

    pub(crate) fn summaries(&self) -> Vec<RevisionSummary> {
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
                run: r.run.clone(),
            })
            .collect()
    }
}

impl Service {
    /// The fingerprint id the arch's run targets, if any.
    pub(crate) async fn target_id(&self, arch: &Arch) -> Result<Option<String>, BinhostError> {
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

    /// Drops the revisions past the newest `binhost_keep_revisions` (never the current one).
    pub(crate) async fn keep_revisions(&self, binhost: &BinhostName, published: &mut Published) {
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
    pub(crate) async fn collect_garbage(&mut self) {
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
    pub(crate) async fn read_published(
        &self,
        binhost: &BinhostName,
    ) -> Result<Published, BinhostError> {
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
    pub(crate) async fn read_revisions(
        &self,
        prefix: &str,
    ) -> Result<Vec<BinhostRevision>, BinhostError> {
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
