//! A run's build-dependency graph, pure: cycles refused at submission, what the packages
//! waiting for their dependencies do next (`steps`), and the critical-path priority of each
//! unfinished package (`remaining_path`). The edges are `PackageRecord::deps`.

use std::collections::{BTreeMap, HashMap};

use schemas::{Atom, PackageKey, PackageRecord, PackageState, paths};

use crate::table::PackageTable;

/// A cycle in `deps` (each key's build dependencies), as the keys on it with the first one
/// again at the end; `None` when the graph is acyclic. Deterministic: keys are tried in order.
pub fn find_cycle(deps: &BTreeMap<PackageKey, Vec<PackageKey>>) -> Option<Vec<PackageKey>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    let mut marks: HashMap<&PackageKey, Mark> = HashMap::new();
    for start in deps.keys() {
        if marks.contains_key(start) {
            continue;
        }
        // Depth-first, iteratively: (node, index of the next dependency to visit).
        let mut path: Vec<(&PackageKey, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::OnPath);
        while let Some((node, next)) = path.last_mut() {
            let children = deps.get(*node).map_or(&[][..], Vec::as_slice);
            let Some(child) = children.get(*next) else {
                marks.insert(*node, Mark::Done);
                path.pop();
                continue;
            };
            *next += 1;
            match marks.get(child) {
                Some(Mark::Done) => {}
                Some(Mark::OnPath) => {
                    let from = path.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    let mut cycle: Vec<PackageKey> =
                        path[from..].iter().map(|(n, _)| (*n).clone()).collect();
                    cycle.push(child.clone());
                    return Some(cycle);
                }
                None => {
                    marks.insert(child, Mark::OnPath);
                    path.push((child, 0));
                }
            }
        }
    }
    None
}

/// What a package whose dependencies changed does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every dependency succeeded and is in staging: queue it.
    Release(PackageKey),
    /// `dependency` failed for good or is blocked: it is not built.
    Block { key: PackageKey, dependency: Atom },
    /// The dependency that blocked it is being built again: it waits again.
    Unblock(PackageKey),
}

/// Seconds added to the staging index's own rule (a package is listed from the second after it
/// succeeded) for the clocks of the coordinator's and the binhost's machines to differ by.
pub const STAGING_MARGIN_SECS: u64 = 1;

/// Whether a dependency's binary packages are in the staging view at `now_ms`: it succeeded,
/// and (when it wrote any) the staging index lists it, from the second after its success, here
/// counted `STAGING_MARGIN_SECS` later.
fn staged(record: &PackageRecord, now_ms: u64) -> bool {
    matches!(record.state, PackageState::Succeeded { .. })
        && (record.artifacts.is_empty()
            || record.updated_ms / 1000 + STAGING_MARGIN_SECS < now_ms / 1000)
}

/// A dependency in this state will not be built unless an operator asks again: it failed for
/// good, is blocked itself, or was cancelled.
fn dead_end(state: &PackageState) -> bool {
    matches!(
        state,
        PackageState::Failed { .. } | PackageState::Blocked { .. } | PackageState::Cancelled { .. }
    )
}

/// The steps the waiting and blocked packages take now. A dependency without a record (it was
/// removed) counts as provided from outside.
pub fn steps(table: &PackageTable, now_ms: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    if !table.has_graph() {
        return steps;
    }
    for (key, entry) in table.entries() {
        let record = &entry.record;
        let deps = || {
            record
                .deps
                .iter()
                .filter_map(|d| table.get(d).map(|e| &e.record))
        };
        match &record.state {
            PackageState::Waiting => {
                let failed = deps().find(|d| dead_end(&d.state));
                if let Some(dependency) = failed {
                    steps.push(Step::Block {
                        key: key.clone(),
                        dependency: dependency.atom.clone(),
                    });
                } else if deps().all(|d| staged(d, now_ms)) {
                    steps.push(Step::Release(key.clone()));
                }
            }
            PackageState::Blocked { dependency } => {
                let still = table
                    .get(&dependency.key())
                    .is_some_and(|d| dead_end(&d.record.state));
                if !still {
                    steps.push(Step::Unblock(key.clone()));
                }
            }
            _ => {}
        }
    }
    steps.sort_by(|a, b| step_key(a).cmp(step_key(b)));
    steps
}

fn step_key(step: &Step) -> &PackageKey {
    match step {
        Step::Release(key) | Step::Unblock(key) | Step::Block { key, .. } => key,
    }
}

/// The critical-path priority of every unfinished package: its own estimated work plus the
/// longest chain of unfinished work that waits on it (seconds on 8 cores, by `estimate`).
pub fn remaining_path(
    table: &PackageTable,
    estimate: impl Fn(&PackageRecord) -> f64,
) -> HashMap<PackageKey, f64> {
    paths::remaining_path(
        table.entries().map(|(k, _)| k),
        |k| table.get(k).map(|e| &e.record),
        estimate,
    )
}

/// The longest chain of unfinished work each unfinished package waits for (0 when its
/// dependencies are all done), seconds on 8 cores. With `remaining_path`, a package's slack is
/// the longest path of the run less `head + remaining`.
pub fn head_path(
    table: &PackageTable,
    estimate: impl Fn(&PackageRecord) -> f64,
) -> HashMap<PackageKey, f64> {
    paths::head_path(
        table.entries().map(|(k, _)| k),
        |k| table.get(k).map(|e| &e.record),
        estimate,
    )
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
