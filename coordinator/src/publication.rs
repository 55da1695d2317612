//! The binhost's publication, pure: what a new revision of an arch holds, its number and index
//! `TIMESTAMP`, when a finished run publishes itself, which revisions are kept and which stored
//! objects nothing references any more. The coordinator's `binhost_io.rs` reads and writes what
//! these decide.

use std::collections::BTreeSet;

use schemas::{
    Arch, Artifact, BinhostRevision, PackageRecord, PackageState, RevisionContents, SCHEMA_VERSION,
};

/// The binary packages a new revision of `arch` holds (`schemas::staged_artifacts`).
pub fn staged<'a>(records: impl IntoIterator<Item = &'a PackageRecord>, arch: &Arch) -> Vec<Artifact> {
    schemas::staged_artifacts(records, arch)
}

/// The revision that publishes `packages`, after `current` (its summary and its packages);
/// `None` when `current` already holds exactly these packages. Its `TIMESTAMP` is `now`'s
/// second, or one more than the current one's when that is not earlier: it must strictly
/// increase for clients to read the new list.
pub fn next_revision(
    arch: &Arch,
    current: Option<(&BinhostRevision, &[Artifact])>,
    packages: Vec<Artifact>,
    now_ms: u64,
) -> Option<(BinhostRevision, RevisionContents)> {
    if current.is_some_and(|(_, held)| held == packages.as_slice()) {
        return None;
    }
    let (number, timestamp) = match current {
        Some((c, _)) => (c.number + 1, (now_ms / 1000).max(c.timestamp + 1)),
        None => (1, now_ms / 1000),
    };
    let revision = BinhostRevision {
        v: SCHEMA_VERSION,
        arch: arch.clone(),
        number,
        timestamp,
        created_ms: now_ms,
        packages: packages.len() as u64,
        bytes: packages.iter().map(|a| a.size).sum(),
        contents: BinhostRevision::contents_object(arch, number),
    };
    let contents = RevisionContents {
        v: SCHEMA_VERSION,
        arch: arch.clone(),
        number,
        packages,
    };
    Some((revision, contents))
}

/// Whether the arch's run is over and went well enough to publish by itself: nothing of the
/// arch is queued, building or waiting to retry, something is built, and no package of the arch
/// failed since the current revision was published.
pub fn run_ended_cleanly<'a>(
    records: impl IntoIterator<Item = &'a PackageRecord>,
    arch: &Arch,
    published_ms: Option<u64>,
) -> bool {
    let mut succeeded = false;
    for record in records.into_iter().filter(|r| r.arch == *arch) {
        match &record.state {
            PackageState::Succeeded { .. } => succeeded = true,
            PackageState::Failed { .. } => {
                if published_ms.is_none_or(|at| record.updated_ms > at) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    succeeded
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
