//! A run's build-dependency graph, pure: cycles refused at submission, what the packages
//! waiting for their dependencies do next (`steps`), and the critical-path priority of each
//! unfinished package (`remaining_path`). The edges are `PackageRecord::deps`.

use std::collections::{BTreeMap, HashMap, HashSet};

use schemas::{Atom, PackageKey, PackageRecord, PackageState};

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

/// Whether a dependency's binary packages are in the staging view at `now_ms`: it succeeded,
/// and (when it wrote any) in a second already over, as the staging index lists them.
fn staged(record: &PackageRecord, now_ms: u64) -> bool {
    matches!(record.state, PackageState::Succeeded { .. })
        && (record.artifacts.is_empty() || record.updated_ms / 1000 < now_ms / 1000)
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
                let failed = deps().find(|d| {
                    matches!(
                        d.state,
                        PackageState::Failed { .. } | PackageState::Blocked { .. }
                    )
                });
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
                let still = table.get(&dependency.key()).is_some_and(|d| {
                    matches!(
                        d.record.state,
                        PackageState::Failed { .. } | PackageState::Blocked { .. }
                    )
                });
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
    // Who waits on whom: dependency -> its unfinished dependents.
    let mut dependents: HashMap<&PackageKey, Vec<&PackageKey>> = HashMap::new();
    let unfinished: HashSet<&PackageKey> = table
        .entries()
        .filter(|(_, e)| !e.record.state.is_final())
        .map(|(k, _)| k)
        .collect();
    for key in &unfinished {
        if let Some(entry) = table.get(key) {
            for dep in &entry.record.deps {
                if let Some(dep_key) = unfinished.get(dep) {
                    dependents.entry(*dep_key).or_default().push(key);
                }
            }
        }
    }
    let mut path: HashMap<PackageKey, f64> = HashMap::with_capacity(unfinished.len());
    // Iteratively, dependents first (the graph is acyclic: submission refuses cycles; a cycle
    // that slipped in anyway is cut where it is met).
    for start in &unfinished {
        let mut stack: Vec<(&PackageKey, bool)> = vec![(start, false)];
        let mut on_stack: HashSet<&PackageKey> = HashSet::new();
        while let Some((key, expanded)) = stack.pop() {
            if path.contains_key(key) {
                continue;
            }
            let waiting = dependents.get(key).map_or(&[][..], Vec::as_slice);
            if expanded {
                on_stack.remove(key);
                let longest = waiting
                    .iter()
                    .filter_map(|d| path.get(*d))
                    .fold(0.0_f64, |a, b| a.max(*b));
                let own = table.get(key).map_or(0.0, |e| estimate(&e.record));
                path.insert(key.clone(), own + longest);
                continue;
            }
            on_stack.insert(key);
            stack.push((key, true));
            for dependent in waiting {
                if !path.contains_key(*dependent) && !on_stack.contains(dependent) {
                    stack.push((dependent, false));
                }
            }
        }
    }
    path
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
