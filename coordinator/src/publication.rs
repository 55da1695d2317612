//! The binhost's publication, pure: what a new revision of an arch holds, its number and index
//! `TIMESTAMP`, when a finished run publishes itself, which revisions are kept and which stored
//! objects nothing references any more. The coordinator's `binhost.rs` reads and writes what
//! these decide; `runs.rs` decides what a run's publication holds.

use std::collections::BTreeSet;

use schemas::{
    Arch, Artifact, BinhostName, BinhostRevision, PackageRecord, PackageState, RevisionContents,
    RunName, SCHEMA_VERSION,
};

/// The binary packages a new revision of `arch` holds (`schemas::staged_artifacts`): those
/// built for its run's `fingerprint`.
pub fn staged<'a>(
    records: impl IntoIterator<Item = &'a PackageRecord>,
    arch: &Arch,
    fingerprint: Option<&str>,
) -> Vec<Artifact> {
    schemas::staged_artifacts(records, arch, fingerprint)
}

/// What an arch's binhost serves now: its packages and the index `TIMESTAMP` clients saw.
#[derive(Debug, Clone, Copy)]
pub struct Serving<'a> {
    pub packages: &'a [Artifact],
    pub timestamp: u64,
}

/// How many seconds Portage's client adds to its copy's `TIMESTAMP` when it asks for a newer
/// index (`TIMESTAMP_TOLERANCE` in `portage/util/_urlopen.py`, sent as `If-Modified-Since`).
pub const PORTAGE_IF_MODIFIED_SINCE_SLACK: u64 = 5;

/// The `TIMESTAMP` of the next index an arch serves (a new revision, or a kept one served again
/// by a rollback): `now`'s second, but always past the last one's plus Portage's
/// `If-Modified-Since` slack. The client reads a remote index only when its `TIMESTAMP` is newer
/// than its copy's, and asks with its copy's `TIMESTAMP` + 5 s: an index only 1 s newer would be
/// answered "not modified" and never read — after two publications in a row, or a rollback
/// right after a publication.
pub fn served_timestamp(previous: Option<u64>, now_ms: u64) -> u64 {
    let now = now_ms / 1000;
    previous.map_or(now, |previous| {
        now.max(previous + PORTAGE_IF_MODIFIED_SINCE_SLACK + 1)
    })
}

/// The revision that publishes `packages` (for `run`) after what the binhost is `serving`
/// (numbered after the `latest` revision ever kept); `None` when it already serves exactly
/// these packages.
pub fn next_revision(
    binhost: &BinhostName,
    serving: Option<Serving<'_>>,
    latest: u64,
    packages: Vec<Artifact>,
    run: Option<RunName>,
    now_ms: u64,
) -> Option<(BinhostRevision, RevisionContents)> {
    if serving.is_some_and(|s| s.packages == packages.as_slice()) {
        return None;
    }
    let number = latest + 1;
    let timestamp = served_timestamp(serving.map(|s| s.timestamp), now_ms);
    let revision = BinhostRevision {
        v: SCHEMA_VERSION,
        arch: binhost.arch.clone(),
        number,
        timestamp,
        created_ms: now_ms,
        packages: packages.len() as u64,
        bytes: packages.iter().map(|a| a.size).sum(),
        contents: BinhostRevision::contents_object(binhost, number),
        fingerprint: binhost.fingerprint.clone(),
        run,
    };
    let contents = RevisionContents {
        v: SCHEMA_VERSION,
        arch: binhost.arch.clone(),
        number,
        packages,
    };
    Some((revision, contents))
}

/// Whether the arch's run is over and went well enough to publish by itself: nothing of the
/// arch is queued, building or waiting to retry, a binary package was built since the latest
/// revision was published (`published_ms`), and nothing of the arch failed since. Builds that
/// wrote no package (the generic `command` builder) publish nothing. Measured from the
/// latest revision, not the one served: a rollback stays until something new is built.
pub fn run_ended_cleanly<'a>(
    records: impl IntoIterator<Item = &'a PackageRecord>,
    arch: &Arch,
    published_ms: Option<u64>,
) -> bool {
    let since = |record: &PackageRecord| published_ms.is_none_or(|at| record.updated_ms > at);
    let mut built = false;
    for record in records.into_iter().filter(|r| r.arch == *arch) {
        match &record.state {
            PackageState::Succeeded { .. } => {
                built |= since(record) && !record.artifacts.is_empty()
            }
            PackageState::Failed { .. } => {
                if since(record) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    built
}

/// Which of the kept revisions `numbers` (any order) to drop: all but the newest `keep`, and
/// never the current one.
pub fn to_drop(numbers: &[u64], current: u64, keep: usize) -> Vec<u64> {
    let mut newest_first: Vec<u64> = numbers.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first
        .into_iter()
        .skip(keep.max(1))
        .filter(|n| *n != current)
        .collect()
}

/// The stored binary packages (objects named `sha256-...`; revision contents are not
/// candidates) that no kept revision and no package record references: what garbage collection
/// may delete.
pub fn garbage<'a>(
    objects: impl IntoIterator<Item = &'a str>,
    kept: &[RevisionContents],
    records: impl IntoIterator<Item = &'a PackageRecord>,
) -> Vec<String> {
    let mut referenced: BTreeSet<&str> = BTreeSet::new();
    for revision in kept {
        referenced.extend(revision.packages.iter().map(|a| a.object.as_str()));
    }
    let records: Vec<&PackageRecord> = records.into_iter().collect();
    for record in &records {
        referenced.extend(record.artifacts.iter().map(|a| a.object.as_str()));
    }
    objects
        .into_iter()
        .filter(|object| object.starts_with("sha256-") && !referenced.contains(object))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
#[path = "publication_tests.rs"]
mod tests;
