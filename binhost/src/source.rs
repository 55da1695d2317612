//! What the binhost serves, read from NATS: a published binhost's current revision (an arch and
//! a fingerprint, `BinhostName`: the `current` key, then the revision it names, then its
//! contents object) and the drones' staging view of an arch (every succeeded package's artifacts
//! of its run's fingerprint).
//!
//! A published revision never changes once written, so its packages are kept by number and its
//! view by (number, served `TIMESTAMP`). A client that read revision N's index may ask for N's
//! files after `current` moved on: files are looked up in the current revision first, then in
//! every other kept one, so a publication never breaks a download under way. Staging is read
//! afresh once per wall-clock second at most, and a view is never served past the second it was
//! read in (`fresh`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, kv, object_store::ObjectStore};
use bytes::Bytes;
use futures::StreamExt;
use schemas::{
    Arch, Artifact, BinhostCurrent, BinhostName, BinhostRevision, PackageRecord, PackageState,
    RevisionContents, decode, decode_object, names,
};
use tokio::io::AsyncReadExt;

use crate::index;

/// Whether a staging view read at `read_ms` may still be served at `now_ms`: only within the
/// same wall-clock second. A view read in second T lists every package that succeeded before T,
/// so from second T on every view served lists them: the coordinator releases a dependent in
/// the second after its dependencies succeeded (with a second's margin for the machines'
/// clocks), and its drone then finds them in the index. Drones read the index once per emerge;
/// one read of the packages bucket per second at most spares the bucket.
fn fresh(read_ms: u64, now_ms: u64) -> bool {
    read_ms / 1000 == now_ms / 1000
}

/// Why a view could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {what}: {reason}")]
    Open { what: &'static str, reason: String },
    #[error("cannot read {what}: {reason}")]
    Read { what: String, reason: String },
}

fn read_error(what: impl Into<String>) -> impl FnOnce(&dyn std::fmt::Display) -> SourceError {
    let what = what.into();
    move |err| SourceError::Read {
        what,
        reason: err.to_string(),
    }
}

/// Where one file of a binhost is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub object: String,
    pub size: u64,
}

/// One binhost as served: its index and where each of its files is stored.
#[derive(Debug)]
pub struct View {
    /// The index's `TIMESTAMP`, also its `Last-Modified`.
    pub timestamp: u64,
    pub index: Bytes,
    /// Path below the binhost's root → where it is stored.
    pub files: HashMap<String, Stored>,
}

impl View {
    fn of(arch: &Arch, timestamp: u64, packages: &[Artifact]) -> View {
        View {
            timestamp,
            index: Bytes::from(index::render(arch.as_str(), timestamp, packages)),
            files: files(packages),
        }
    }
}

fn files(packages: &[Artifact]) -> HashMap<String, Stored> {
    packages
        .iter()
        .map(|a| {
            let stored = Stored {
                object: a.object.clone(),
                size: a.size,
            };
            (a.path.clone(), stored)
        })
        .collect()
}

/// A revision's files by path.
type Files = Arc<HashMap<String, Stored>>;

/// A binhost's published view and the (revision number, served `TIMESTAMP`) it was made for.
struct PublishedView {
    number: u64,
    timestamp: u64,
    view: Arc<View>,
}

/// The binhost's handles on NATS and what it keeps of them.
pub struct Sources {
    binhost: kv::Store,
    packages: kv::Store,
    targets: kv::Store,
    pub artifacts: ObjectStore,
    /// Kept revisions' files by (binhost, number): immutable once written.
    revisions: Mutex<HashMap<(BinhostName, u64), Files>>,
    published: Mutex<HashMap<BinhostName, PublishedView>>,
    /// Each arch's staging view and the wall-clock time (unix ms) it was read at.
    staging: Mutex<HashMap<Arch, (u64, Arc<View>)>>,
}

impl Sources {
    /// Opens the buckets and the object store the coordinator created.
    pub async fn open(js: &jetstream::Context) -> Result<Sources, SourceError> {
        let open = |what: &'static str| {
            move |err: &dyn std::fmt::Display| SourceError::Open {
                what,
                reason: err.to_string(),
            }
        };
        Ok(Sources {
            binhost: js
                .get_key_value(names::BINHOST_BUCKET)
                .await
                .map_err(|e| open(names::BINHOST_BUCKET)(&e))?,
            packages: js
                .get_key_value(names::PACKAGES_BUCKET)
                .await
                .map_err(|e| open(names::PACKAGES_BUCKET)(&e))?,
            targets: js
                .get_key_value(names::TARGETS_BUCKET)
                .await
                .map_err(|e| open(names::TARGETS_BUCKET)(&e))?,
            artifacts: js
                .get_object_store(names::ARTIFACTS_BUCKET)
                .await
                .map_err(|e| open(names::ARTIFACTS_BUCKET)(&e))?,
            revisions: Mutex::new(HashMap::new()),
            published: Mutex::new(HashMap::new()),
            staging: Mutex::new(HashMap::new()),
        })
    }

    /// The binhost's published view; `None` before its first publication.
    pub async fn published(&self, binhost: &BinhostName) -> Result<Option<Arc<View>>, SourceError> {
        let key = names::binhost_current_key(binhost);
        let Some(bytes) = self
            .binhost
            .get(key.as_str())
            .await
            .map_err(|e| read_error(&key)(&e))?
        else {
            return Ok(None);
        };
        let current: BinhostCurrent = decode(&bytes).map_err(|e| read_error(&key)(&e))?;
        if let Some(cached) = lock(&self.published).get(binhost)
            && cached.number == current.number
            && cached.timestamp == current.timestamp
        {
            return Ok(Some(cached.view.clone()));
        }
        let revision = self
            .revision(binhost, current.number)
            .await?
            .ok_or_else(|| SourceError::Read {
                what: names::binhost_revision_key(binhost, current.number),
                reason: "the current revision is missing".to_owned(),
            })?;
        let packages = self.contents(&revision).await?;
        // Records written before `timestamp` existed serve the revision's own.
        let timestamp = match current.timestamp {
            0 => revision.timestamp,
            served => served,
        };
        let view = Arc::new(View::of(&binhost.arch, timestamp, &packages.packages));
        let files = Arc::new(files(&packages.packages));
        lock(&self.revisions).insert((binhost.clone(), current.number), files);
        lock(&self.published).insert(
            binhost.clone(),
            PublishedView {
                number: current.number,
                timestamp: current.timestamp,
                view: view.clone(),
            },
        );
        Ok(Some(view))
    }

    /// Where a published file of `binhost` is stored: in the current revision, else in any
    /// other kept one (a client may still be downloading what the previous index listed).
    pub async fn published_file(
        &self,
        binhost: &BinhostName,
        path: &str,
    ) -> Result<Option<Stored>, SourceError> {
        let Some(view) = self.published(binhost).await? else {
            return Ok(None);
        };
        if let Some(stored) = view.files.get(path) {
            return Ok(Some(stored.clone()));
        }
        let kept = self.kept_numbers(binhost).await?;
        lock(&self.revisions).retain(|(b, n), _| b != binhost || kept.contains(n));
        for number in kept.iter().rev() {
            let cached = lock(&self.revisions)
                .get(&(binhost.clone(), *number))
                .cloned();
            let files = match cached {
                Some(files) => files,
                None => {
                    let Some(revision) = self.revision(binhost, *number).await? else {
                        continue;
                    };
                    let files = Arc::new(files(&self.contents(&revision).await?.packages));
                    lock(&self.revisions).insert((binhost.clone(), *number), files.clone());
                    files
                }
            };
            if let Some(stored) = files.get(path) {
                return Ok(Some(stored.clone()));
            }
        }
        Ok(None)
    }

    /// The numbers of the binhost's kept revisions, ascending.
    async fn kept_numbers(&self, binhost: &BinhostName) -> Result<Vec<u64>, SourceError> {
        let prefix = names::binhost_revision_prefix(binhost);
        let mut keys = self
            .binhost
            .keys()
            .await
            .map_err(|e| read_error(names::BINHOST_BUCKET)(&e))?;
        let mut numbers = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| read_error(names::BINHOST_BUCKET)(&e))?;
            if let Some(number) = key.strip_prefix(&prefix).and_then(|n| n.parse().ok()) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    async fn revision(
        &self,
        binhost: &BinhostName,
        number: u64,
    ) -> Result<Option<BinhostRevision>, SourceError> {
        let key = names::binhost_revision_key(binhost, number);
        match self
            .binhost
            .get(key.as_str())
            .await
            .map_err(|e| read_error(&key)(&e))?
        {
            Some(bytes) => decode(&bytes).map(Some).map_err(|e| read_error(&key)(&e)),
            None => Ok(None),
        }
    }

    async fn contents(&self, revision: &BinhostRevision) -> Result<RevisionContents, SourceError> {
        let name = revision.contents.as_str();
        let mut object = self
            .artifacts
            .get(name)
            .await
            .map_err(|e| read_error(name)(&e))?;
        let mut raw = Vec::new();
        object
            .read_to_end(&mut raw)
            .await
            .map_err(|e| read_error(name)(&e))?;
        decode_object(&raw).map_err(|e| read_error(name)(&e))
    }

    /// Every package of the arch built so far: what drones install dependencies from
    /// (`staged`).
    pub async fn staging(&self, arch: &Arch) -> Result<Arc<View>, SourceError> {
        // Read before the bucket, so that the view is dated no later than what it holds.
        let read_ms = runtime::now_ms();
        if let Some((read_at, view)) = lock(&self.staging).get(arch)
            && fresh(*read_at, read_ms)
        {
            return Ok(view.clone());
        }
        let records = runtime::kv::read_bucket::<PackageRecord>(&self.packages)
            .await
            .map_err(|e| read_error(names::PACKAGES_BUCKET)(&e))?;
        let records: Vec<PackageRecord> = records.into_iter().map(|item| item.value).collect();
        let target = self.target_id(arch).await?;
        let (timestamp, packages) = staged(&records, arch, target.as_deref(), read_ms);
        let view = Arc::new(View::of(arch, timestamp, &packages));
        lock(&self.staging).insert(arch.clone(), (read_ms, view.clone()));
        Ok(view)
    }
}

impl Sources {
    /// The fingerprint id the arch's run targets, if any: staging serves its packages only.
    async fn target_id(&self, arch: &Arch) -> Result<Option<String>, SourceError> {
        let bytes = self
            .targets
            .get(arch.as_str())
            .await
            .map_err(|e| read_error(names::TARGETS_BUCKET)(&e))?;
        Ok(bytes
            .and_then(|b| decode::<schemas::RunTarget>(&b).ok())
            .map(|t| t.fingerprint.id))
    }
}

/// The staging view of `arch` at `now_ms`, pure: the artifacts of every package that succeeded
/// in a second already over, dated by the newest such second. A package that succeeded in the
/// current second waits for the next one: Portage's client rereads an index only when its
/// `TIMESTAMP` grew, so a view dated T must already hold everything of second T.
pub fn staged(
    records: &[PackageRecord],
    arch: &Arch,
    fingerprint: Option<&str>,
    now_ms: u64,
) -> (u64, Vec<Artifact>) {
    let now = now_ms / 1000;
    let done: Vec<&PackageRecord> = records
        .iter()
        .filter(|r| r.arch == *arch && matches!(r.state, PackageState::Succeeded { .. }))
        .filter(|r| fingerprint.is_none_or(|id| r.fingerprint.as_deref() == Some(id)))
        .filter(|r| r.updated_ms / 1000 < now)
        .collect();
    let timestamp = done.iter().map(|r| r.updated_ms / 1000).max().unwrap_or(0);
    (
        timestamp,
        schemas::staged_artifacts(done, arch, fingerprint),
    )
}

/// A cache's lock; a panic elsewhere while it was held leaves a cache, still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use schemas::fixtures;

    use super::*;

    fn built(name: &str, path: &str, updated_ms: u64) -> PackageRecord {
        let state = PackageState::Succeeded {
            attempt: 1,
            drone: fixtures::drone_name("d"),
        };
        let mut record = fixtures::package_record(name, state);
        record.updated_ms = updated_ms;
        record.artifacts = vec![Artifact {
            object: format!("sha256-{name}"),
            path: path.to_owned(),
            size: 1,
            md5: String::new(),
            sha1: String::new(),
            metadata: Default::default(),
        }];
        record
    }

    #[test]
    fn a_staging_view_is_served_within_the_second_it_was_read_in() {
        assert!(fresh(4_000, 4_999));
        assert!(fresh(4_500, 4_500));
        // Read at 4.9 s, it lacks what succeeded in second 4: not served at 5.0 s.
        assert!(!fresh(4_900, 5_000));
        assert!(!fresh(4_000, 6_100));
    }

    #[test]
    fn staging_holds_what_succeeded_in_seconds_already_over() {
        let records = [
            built("a-b/old", "a-b/old/old-1-1.gpkg.tar", 7_000),
            built("a-b/late", "a-b/late/late-1-1.gpkg.tar", 9_400),
            built("a-b/now", "a-b/now/now-1-1.gpkg.tar", 10_200),
            fixtures::package_record("a-b/queued", PackageState::Queued { attempt: 1 }),
        ];
        let amd64 = Arch::default();
        #[rustfmt::skip]
        let cases: [(u64, u64, &[&str]); 4] = [
            (0, 0, &[]),
            (9_999, 7, &["a-b/old/old-1-1.gpkg.tar"]),
            (10_999, 9, &["a-b/late/late-1-1.gpkg.tar", "a-b/old/old-1-1.gpkg.tar"]),
            (11_000, 10, &["a-b/late/late-1-1.gpkg.tar", "a-b/now/now-1-1.gpkg.tar", "a-b/old/old-1-1.gpkg.tar"]),
        ];
        for (now_ms, timestamp, paths) in cases {
            let (at, packages) = staged(&records, &amd64, None, now_ms);
            let got: Vec<&str> = packages.iter().map(|a| a.path.as_str()).collect();
            assert_eq!((at, got.as_slice()), (timestamp, paths), "at {now_ms}");
        }
        let other = Arch::parse("arm64").expect("arch");
        assert_eq!(staged(&records, &other, None, 11_000), (0, vec![]));
        // Only what was built for the run's fingerprint.
        let mut targeted = records.clone();
        targeted[1].fingerprint = Some("f1".into());
        let (_, only) = staged(&targeted, &amd64, Some("f1"), 11_000);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].path, "a-b/late/late-1-1.gpkg.tar");
    }
}
