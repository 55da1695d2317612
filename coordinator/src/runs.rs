//! Runs, pure: where each run of an arch stands (from its packages' records) and what
//! publishing one puts in a revision. A run is published only once it has ended, to the binhost
//! of the fingerprint it was built for, and a revision published for it holds nothing of a run
//! still under way.

use std::collections::{BTreeMap, BTreeSet};

use schemas::{Arch, Artifact, PackageRecord, PackageState, RunName};

/// Where one run stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// Its packages (of the arch).
    pub total: usize,
    /// Those queued, building or waiting to retry.
    pub unfinished: usize,
    /// The fingerprints its packages were built for (`None`: no target).
    pub fingerprints: BTreeSet<Option<String>>,
    /// When its latest package changed.
    pub updated_ms: u64,
}

impl Standing {
    pub fn ended(&self) -> bool {
        self.unfinished == 0
    }
}

/// Every named run of `arch` and where it stands. Records written before runs had names belong
/// to none.
pub fn standings<'a>(
    records: impl IntoIterator<Item = &'a PackageRecord>,
    arch: &Arch,
) -> BTreeMap<RunName, Standing> {
    let mut runs: BTreeMap<RunName, Standing> = BTreeMap::new();
    for record in records.into_iter().filter(|r| r.arch == *arch) {
        let Some(run) = &record.run else { continue };
        let standing = runs.entry(run.clone()).or_default();
        standing.total += 1;
        if !record.state.is_final() {
            standing.unfinished += 1;
        }
        standing.fingerprints.insert(record.fingerprint.clone());
        standing.updated_ms = standing.updated_ms.max(record.updated_ms);
    }
    runs
}

/// Why a run cannot be published; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunRefusal {
    #[error("no package of {arch} belongs to run {run:?}; runs: {known}")]
    Unknown {
        arch: Arch,
        run: String,
        known: String,
    },
    #[error(
        "run {run} has not ended: {unfinished} of its {total} packages are queued, building or waiting to retry; publish it once `swarmctl wait` returns"
    )]
    UnderWay {
        run: RunName,
        unfinished: usize,
        total: usize,
    },
    #[error("run {run} was built for several fingerprints ({ids}); name one with --fingerprint")]
    SeveralFingerprints { run: RunName, ids: String },
    #[error("run {run} was not built for fingerprint {wanted} (it was built for {ids})")]
    OtherFingerprint {
        run: RunName,
        wanted: String,
        ids: String,
    },
}

fn ids(fingerprints: &BTreeSet<Option<String>>) -> String {
    fingerprints
        .iter()
        .map(|f| f.as_deref().unwrap_or("no fingerprint"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fingerprint whose binhost publishing `run` goes to: the one its packages were built for
/// (`requested` must be it). The run must exist and have ended.
pub fn target(
    runs: &BTreeMap<RunName, Standing>,
    arch: &Arch,
    run: &str,
    requested: Option<&str>,
) -> Result<(RunName, Option<String>), RunRefusal> {
    let Some((name, standing)) = runs.iter().find(|(name, _)| name.as_str() == run) else {
        // The newest runs first: the one meant is likely among them.
        let mut newest: Vec<(&RunName, &Standing)> = runs.iter().collect();
        newest.sort_by(|a, b| b.1.updated_ms.cmp(&a.1.updated_ms).then(a.0.cmp(b.0)));
        let mut known: Vec<&str> = newest.iter().take(5).map(|(n, _)| n.as_str()).collect();
        if newest.len() > 5 {
            known.push("...");
        }
        return Err(RunRefusal::Unknown {
            arch: arch.clone(),
            run: schemas::shorten(run, 80),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        });
    };
    if !standing.ended() {
        return Err(RunRefusal::UnderWay {
            run: name.clone(),
            unfinished: standing.unfinished,
            total: standing.total,
        });
    }
    let fingerprint = match requested {
        Some(wanted) if standing.fingerprints.contains(&Some(wanted.to_owned())) => {
            Some(wanted.to_owned())
        }
        Some(wanted) => {
            return Err(RunRefusal::OtherFingerprint {
                run: name.clone(),
                wanted: wanted.to_owned(),
                ids: ids(&standing.fingerprints),
            });
        }
        None => match standing.fingerprints.iter().collect::<Vec<_>>().as_slice() {
            [only] => (*only).clone(),
            _ => {
                return Err(RunRefusal::SeveralFingerprints {
                    run: name.clone(),
                    ids: ids(&standing.fingerprints),
                });
            }
        },
    };
    Ok((name.clone(), fingerprint))
}

/// The binary packages a revision published for an ended run holds: every package of the
/// binhost's fingerprint (`schemas::staged_artifacts`), except what runs still under way have
/// built already; for those, the files of the same packages (`CATEGORY/PF`) the binhost
/// `serving` now stay.
pub fn contents<'a>(
    records: impl IntoIterator<Item = &'a PackageRecord>,
    arch: &Arch,
    fingerprint: Option<&str>,
    runs: &BTreeMap<RunName, Standing>,
    serving: &[Artifact],
) -> Vec<Artifact> {
    let under_way = |record: &PackageRecord| {
        record
            .run
            .as_ref()
            .and_then(|run| runs.get(run))
            .is_some_and(|s| !s.ended())
    };
    let (held_back, settled): (Vec<&PackageRecord>, Vec<&PackageRecord>) = records
        .into_iter()
        .partition(|r| under_way(r) && matches!(r.state, PackageState::Succeeded { .. }));
    let mut packages = schemas::staged_artifacts(settled, arch, fingerprint);
    let rebuilt: BTreeSet<String> = schemas::staged_artifacts(held_back, arch, fingerprint)
        .iter()
        .filter_map(Artifact::cpv)
        .collect();
    let known: BTreeSet<String> = packages.iter().map(|a| a.path.clone()).collect();
    packages.extend(
        serving
            .iter()
            .filter(|a| a.cpv().is_some_and(|cpv| rebuilt.contains(&cpv)))
            .filter(|a| !known.contains(&a.path))
            .cloned(),
    );
    packages.sort_by(|a, b| a.path.cmp(&b.path));
    packages
}

/// The run a revision published by itself is for: the one whose package changed last.
pub fn latest(runs: &BTreeMap<RunName, Standing>) -> Option<RunName> {
    runs.iter()
        .max_by(|a, b| a.1.updated_ms.cmp(&b.1.updated_ms).then(b.0.cmp(a.0)))
        .map(|(name, _)| name.clone())
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
