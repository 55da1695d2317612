//! The plan of a submission, pure: validate its arch, its items and every atom (one invalid
//! atom refuses the whole request, nothing is written), and produce the package records to
//! write, each through `lifecycle::transition` (`PackageEvent::Submitted`).

use std::collections::{BTreeMap, HashSet};

use schemas::{
    Arch, Atom, AtomRejection, NameError, PackageKey, PackageRecord, PackageState, RunName,
    SCHEMA_VERSION, SizeClass, SubmitRequest,
};

use crate::graph::find_cycle;
use crate::lifecycle::{PackageEvent, Policy, transition};
use crate::table::PackageTable;

impl PackageTable {
    /// Validates a submission and plans the records to write: a new or finished package gets a
    /// record queued for attempt 1 (a finished one as its next submission, keeping what it
    /// taught about its build time); a package named twice, or still unfinished, is counted as
    /// already queued. `arches[0]` is the default arch.
    pub fn plan_submission(
        &self,
        request: &SubmitRequest,
        arches: &[Arch],
        policy: &Policy,
        now_ms: u64,
    ) -> Result<Submission, SubmitRefusal> {
        let arch = match (&request.arch, arches.first()) {
            (Some(arch), _) => arch.clone(),
            (None, Some(default)) => default.clone(),
            (None, None) => return Err(SubmitRefusal::NoArch),
        };
        if !arches.contains(&arch) {
            return Err(SubmitRefusal::UnknownArch {
                arch,
                configured: arches.to_vec(),
            });
        }
        if request.items.is_empty() {
            return Err(SubmitRefusal::Empty);
        }
        let run = match &request.run {
            Some(name) => RunName::parse(name).map_err(SubmitRefusal::BadRun)?,
            None => default_run(now_ms).map_err(SubmitRefusal::BadRun)?,
        };
        let mut atoms = Vec::with_capacity(request.items.len());
        let mut rejections = Vec::new();
        for item in &request.items {
            let mut deps = Vec::with_capacity(item.deps.len());
            for dep in &item.deps {
                match Atom::parse(dep) {
                    Ok(atom) => deps.push(atom.key()),
                    Err(err) => rejections.push(AtomRejection {
                        input: schemas::shorten(dep, 80),
                        reason: format!(
                            "build dependency of {}: {err}",
                            schemas::shorten(&item.atom, 80)
                        ),
                    }),
                }
            }
            match Atom::parse(&item.atom) {
                Ok(atom) => atoms.push((atom, item.estimate_secs, item.class, deps)),
                Err(err) => rejections.push(AtomRejection {
                    input: schemas::shorten(&item.atom, 80),
                    reason: err.to_string(),
                }),
            }
        }
        if !rejections.is_empty() {
            // The reply must fit in one message: a few thousand refusals would not.
            if rejections.len() > MAX_REJECTIONS_LISTED {
                let more = rejections.len() - MAX_REJECTIONS_LISTED;
                rejections.truncate(MAX_REJECTIONS_LISTED);
                rejections.push(AtomRejection {
                    input: "…".to_owned(),
                    reason: format!(
                        "and {more} more refused (only the first {MAX_REJECTIONS_LISTED} are listed)"
                    ),
                });
            }
            return Err(SubmitRefusal::InvalidAtoms(rejections));
        }
        let graph = self.run_graph(&run, &arch, &atoms)?;
        let notes = typo_notes(&atoms, &graph);
        let mut plan = Submission {
            run: run.clone(),
            records: Vec::new(),
            already_queued: 0,
            notes,
        };
        let mut seen = HashSet::new();
        for (atom, estimate_secs, class, _) in atoms {
            let key = atom.key();
            let deps = graph.get(&key).cloned().unwrap_or_default();
            // Ready when every build dependency in the run has succeeded already (one submitted
            // now is built now, so not yet).
            let ready = deps.iter().all(|dep| {
                !graph.contains_key(dep)
                    && self
                        .get(dep)
                        .is_some_and(|e| matches!(e.record.state, PackageState::Succeeded { .. }))
            });
            if !seen.insert(key.clone()) {
                plan.already_queued += 1;
                continue;
            }
            let known = self.get(&key);
            let state = match transition(
                known.map(|e| &e.record.state),
                &PackageEvent::Submitted { ready },
                policy,
                now_ms,
            ) {
                Ok(state) => state,
                Err(_) => {
                    plan.already_queued += 1;
                    continue;
                }
            };
            let record = PackageRecord {
                v: SCHEMA_VERSION,
                atom,
                arch: arch.clone(),
                submission: known.map_or(1, |e| e.record.submission + 1),
                state,
                history: Vec::new(),
                estimate_secs,
                class,
                // A rebuild keeps what earlier builds taught about the package's build time.
                learned_secs: known.and_then(|e| e.record.learned_secs),
                submitted_ms: now_ms,
                updated_ms: now_ms,
                // Its last success's binary packages stay published until a new success
                // replaces them (dropped when the run targets another fingerprint).
                artifacts: known
                    .map(|e| e.record.artifacts.clone())
                    .unwrap_or_default(),
                fingerprint: known.and_then(|e| e.record.fingerprint.clone()),
                run: Some(run.clone()),
                deps,
                priority: request.priority.unwrap_or_default(),
            };
            plan.records.push(NewRecord {
                key,
                revision: known.map(|e| e.revision),
                record,
            });
        }
        Ok(plan)
    }
}

/// One valid item of a submission: its atom, estimate, size class and build dependencies.
type Item = (Atom, Option<f64>, Option<SizeClass>, Vec<PackageKey>);

impl PackageTable {
    /// The build-dependency edges of a submission's packages inside its run: to another
    /// package of the submission, or to one submitted to the same run and arch before. Other
    /// edges are provided from outside (the drones' system, the binhost) and dropped. Refused
    /// when the run's edges, with these, close a cycle.
    fn run_graph(
        &self,
        run: &RunName,
        arch: &Arch,
        items: &[Item],
    ) -> Result<BTreeMap<PackageKey, Vec<PackageKey>>, SubmitRefusal> {
        let submitted: HashSet<PackageKey> = items.iter().map(|item| item.0.key()).collect();
        let of_run =
            |record: &PackageRecord| record.run.as_ref() == Some(run) && record.arch == *arch;
        let in_run = |dep: &PackageKey| {
            submitted.contains(dep) || self.get(dep).is_some_and(|e| of_run(&e.record))
        };
        let mut graph: BTreeMap<PackageKey, Vec<PackageKey>> = BTreeMap::new();
        for (atom, _, _, deps) in items {
            let mut kept: Vec<PackageKey> = deps.iter().filter(|d| in_run(d)).cloned().collect();
            kept.sort();
            kept.dedup();
            graph.entry(atom.key()).or_default().extend(kept);
        }
        // The run's earlier packages, for a cycle through them.
        let mut whole = graph.clone();
        for (key, entry) in self.entries() {
            if of_run(&entry.record) && !submitted.contains(key) {
                whole.insert(key.clone(), entry.record.deps.clone());
            }
        }
        if let Some(cycle) = find_cycle(&whole) {
            let atom_of = |key: &PackageKey| {
                items
                    .iter()
                    .find(|item| item.0.key() == *key)
                    .map(|item| item.0.clone())
                    .or_else(|| self.get(key).map(|e| e.record.atom.clone()))
            };
            return Err(SubmitRefusal::Cycle(
                cycle.iter().filter_map(atom_of).collect(),
            ));
        }
        Ok(graph)
    }
}

/// Refused atoms listed in a reply at most; the rest are counted. A thousand refusals of the
/// longest kind stay well under the message limit.
pub const MAX_REJECTIONS_LISTED: usize = 1_000;

/// The records a submission writes, in submission order.
#[derive(Debug, PartialEq)]
pub struct Submission {
    /// The run its packages are queued in.
    pub run: RunName,
    pub records: Vec<NewRecord>,
    /// Packages named twice, or still queued, building or waiting for a retry.
    pub already_queued: u32,
    /// Build dependencies outside the run that look like typos of a package of it.
    pub notes: Vec<String>,
}

/// For each build dependency that names no package of the run (so it is taken as provided from
/// outside) but whose package name is one or two edits from one of the submission's: a note
/// naming both.
fn typo_notes(items: &[Item], graph: &BTreeMap<PackageKey, Vec<PackageKey>>) -> Vec<String> {
    let names: Vec<(String, &Atom)> = items
        .iter()
        .map(|item| (item.0.package_name(), &item.0))
        .collect();
    let mut notes = Vec::new();
    for (atom, _, _, deps) in items {
        let kept = graph.get(&atom.key());
        for dep in deps {
            if kept.is_some_and(|k| k.contains(dep)) {
                continue;
            }
            let Some(dep_atom) = PackageKey::decode(dep.as_str()) else {
                continue;
            };
            let wanted = dep_atom.package_name();
            if let Some((_, near)) = names
                .iter()
                .find(|(name, _)| *name != wanted && edits(name, &wanted) <= 2)
            {
                notes.push(format!(
                    "build dependency {dep_atom} of {atom} names no package of the run, so it is taken as provided from outside; did you mean {near}?"
                ));
            }
        }
    }
    notes
}

/// The Levenshtein distance between two short names.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// One record to write: a create (`revision` `None`) or a compare-and-set update.
#[derive(Debug, PartialEq)]
pub struct NewRecord {
    pub key: PackageKey,
    pub revision: Option<u64>,
    pub record: PackageRecord,
}

/// Why a submission is refused as a whole; nothing of it is written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitRefusal {
    #[error(
        "arch {arch} is not built by this swarm (configured: {})",
        join(configured)
    )]
    UnknownArch { arch: Arch, configured: Vec<Arch> },
    /// Configuration validation refuses an empty arch list; this is its last line of defence.
    #[error("this swarm is configured to build no arch")]
    NoArch,
    #[error("the submission names no package")]
    Empty,
    #[error("{0}")]
    BadRun(NameError),
    #[error("build dependencies form a cycle: {}", .0.iter().map(Atom::as_str).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<Atom>),
    #[error("{} invalid atoms", .0.len())]
    InvalidAtoms(Vec<AtomRejection>),
}

/// The name of a run submitted at `now_ms` without one: `run-YYYYMMDD-HHMMSS`, UTC.
/// Submissions in the same second share it.
pub fn default_run(now_ms: u64) -> Result<RunName, NameError> {
    let stamp = runtime::dates::format_compact(now_ms / 1000);
    RunName::parse(&format!("run-{stamp}"))
}

fn join(arches: &[Arch]) -> String {
    arches
        .iter()
        .map(Arch::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "submission_tests.rs"]
mod tests;
