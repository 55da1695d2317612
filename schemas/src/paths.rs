//! A run's build-dependency graph seen from its package records, pure: each package's estimate,
//! the longest chains of unfinished work before and after it (what the coordinator's scheduler
//! places jobs by), and the run's forecast — its critical path and the earliest it can end —
//! as `swarmctl status --graph` prints it and the dashboard shows it.
//!
//! The records are reached through a lookup (`get`), so the coordinator's table and a reader's
//! map of the packages bucket use the same code.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{Atom, PackageKey, PackageRecord, PackageState, SizeClass};

/// Default estimate of each size class, in seconds on 8 cores.
pub fn class_secs(class: SizeClass) -> f64 {
    match class {
        SizeClass::Small => 120.0,
        SizeClass::Medium => 600.0,
        SizeClass::Heavy => 1_800.0,
        SizeClass::Giant => 7_200.0,
    }
}

/// The estimate of a package with nothing known about it: a medium one.
pub const UNKNOWN_SECS: f64 = 600.0;

/// The best estimate of a package's build time, in seconds on 8 cores: learned from its own
/// builds, else the submitter's estimate, else its size class, else medium.
pub fn estimate_secs(record: &PackageRecord) -> f64 {
    record
        .learned_secs
        .or(record.estimate_secs)
        .or(record.class.map(class_secs))
        .unwrap_or(UNKNOWN_SECS)
}

/// For every unfinished package among `keys`: its own work plus the longest chain of unfinished
/// work that waits on it (seconds on 8 cores, by `estimate`). A dependency without a record is
/// provided from outside and counts for nothing; a cycle (submission refuses them) is cut where
/// it is met.
pub fn remaining_path<'a>(
    keys: impl IntoIterator<Item = &'a PackageKey>,
    get: impl Fn(&PackageKey) -> Option<&'a PackageRecord>,
    estimate: impl Fn(&PackageRecord) -> f64,
) -> HashMap<PackageKey, f64> {
    let unfinished = unfinished(keys, &get);
    // Who waits on whom: dependency -> its unfinished dependents.
    let mut dependents: HashMap<&PackageKey, Vec<&PackageKey>> = HashMap::new();
    for key in &unfinished {
        if let Some(record) = get(key) {
            for dep in &record.deps {
                if let Some(dep) = unfinished.get(dep) {
                    dependents.entry(*dep).or_default().push(key);
                }
            }
        }
    }
    longest(
        &unfinished,
        |k| dependents.get(k).cloned().unwrap_or_default(),
        |k| get(k).map_or(0.0, &estimate),
        true,
    )
}

/// For every unfinished package among `keys`: the longest chain of unfinished work it waits
/// for (the sum of the estimates along its longest chain of unfinished dependencies; 0 when
/// they are all done), seconds on 8 cores.
pub fn head_path<'a>(
    keys: impl IntoIterator<Item = &'a PackageKey>,
    get: impl Fn(&PackageKey) -> Option<&'a PackageRecord>,
    estimate: impl Fn(&PackageRecord) -> f64,
) -> HashMap<PackageKey, f64> {
    let unfinished = unfinished(keys, &get);
    let deps = |key: &PackageKey| -> Vec<&PackageKey> {
        get(key).map_or_else(Vec::new, |r| {
            r.deps
                .iter()
                .filter_map(|d| unfinished.get(d).copied())
                .collect()
        })
    };
    longest(&unfinished, deps, |k| get(k).map_or(0.0, &estimate), false)
}

/// The keys among `keys` whose package is not finished.
fn unfinished<'a>(
    keys: impl IntoIterator<Item = &'a PackageKey>,
    get: &impl Fn(&PackageKey) -> Option<&'a PackageRecord>,
) -> HashSet<&'a PackageKey> {
    keys.into_iter()
        .filter(|k| get(k).is_some_and(|r| !r.state.is_final()))
        .collect()
}

/// The longest weighted chain from each node along `next` (iteratively, memoized): with
/// `inclusive`, a node's own weight plus the longest chain after it; without, the longest
/// chain after it, each node of it counted with its weight.
fn longest<'a>(
    nodes: &HashSet<&'a PackageKey>,
    next: impl Fn(&PackageKey) -> Vec<&'a PackageKey>,
    weight: impl Fn(&PackageKey) -> f64,
    inclusive: bool,
) -> HashMap<PackageKey, f64> {
    // Memoized as (the node's value, its value plus its weight).
    let mut done: HashMap<&PackageKey, (f64, f64)> = HashMap::with_capacity(nodes.len());
    for start in nodes {
        let mut stack: Vec<(&PackageKey, bool)> = vec![(start, false)];
        let mut on_stack: HashSet<&PackageKey> = HashSet::new();
        while let Some((key, expanded)) = stack.pop() {
            if done.contains_key(key) {
                continue;
            }
            let after = next(key);
            if expanded {
                on_stack.remove(key);
                let chain = after
                    .iter()
                    .filter_map(|n| done.get(*n))
                    .map(|(value, with_own)| if inclusive { *value } else { *with_own })
                    .fold(0.0_f64, f64::max);
                let own = weight(key);
                let value = if inclusive { own + chain } else { chain };
                done.insert(key, (value, value + own));
                continue;
            }
            on_stack.insert(key);
            stack.push((key, true));
            for n in after {
                if !done.contains_key(n) && !on_stack.contains(n) {
                    stack.push((n, false));
                }
            }
        }
    }
    done.into_iter()
        .map(|(k, (value, _))| (k.clone(), value))
        .collect()
}

/// One package of the critical path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathStep {
    pub atom: Atom,
    /// Its state's label (`queued`, `building`, `waiting`, ...).
    pub state: String,
    /// Its estimated work left, seconds on 8 cores.
    pub secs: f64,
}

/// What is left of a run, and the earliest it can end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The longest chain of unfinished work, first to last.
    pub path: Vec<PathStep>,
    /// Its length, seconds on 8 cores.
    pub path_secs: f64,
    /// Every unfinished package's work, seconds on 8 cores.
    pub work_secs: f64,
    /// Unfinished packages.
    pub unfinished: usize,
    /// The least time the run still needs, in seconds, with the online drones: its critical
    /// path on the largest of them, or its work spread over all their cores, whichever is
    /// longer. `None` with no drone online or nothing left.
    pub eta_secs: Option<f64>,
}

/// The forecast of the unfinished packages among `records` at `now_ms`, with `cores` online
/// in all and `largest` on the largest online drone. A building package counts what its
/// estimate leaves after the time it has built (taken at 8 cores).
pub fn forecast<'a>(
    records: impl IntoIterator<Item = &'a PackageRecord>,
    cores: u32,
    largest: u32,
    now_ms: u64,
) -> Forecast {
    let by_key: HashMap<PackageKey, &PackageRecord> = records
        .into_iter()
        .filter(|r| !r.state.is_final())
        .map(|r| (r.atom.key(), r))
        .collect();
    let left = |record: &PackageRecord| {
        let own = estimate_secs(record);
        match record.state {
            PackageState::Building { since_ms, .. } => {
                (own - now_ms.saturating_sub(since_ms) as f64 / 1000.0).max(0.0)
            }
            _ => own,
        }
    };
    let get = |k: &PackageKey| by_key.get(k).copied();
    let rest = remaining_path(by_key.keys(), get, left);
    let head = head_path(by_key.keys(), get, left);
    let work_secs: f64 = by_key.values().map(|r| left(r)).sum();
    let mut dependents: HashMap<&PackageKey, Vec<&PackageKey>> = HashMap::new();
    for (key, record) in &by_key {
        for dep in &record.deps {
            dependents.entry(dep).or_default().push(key);
        }
    }
    // The path starts at a package that waits for nothing unfinished, with the longest rest.
    let mut path = Vec::new();
    let mut at = rest
        .iter()
        .filter(|(k, _)| head.get(*k).copied().unwrap_or(0.0) == 0.0)
        .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(k, _)| k.clone());
    let path_secs = at
        .as_ref()
        .and_then(|k| rest.get(k))
        .copied()
        .unwrap_or(0.0);
    while let Some(key) = at.take() {
        let Some(record) = get(&key) else { break };
        path.push(PathStep {
            atom: record.atom.clone(),
            state: record.state.label().to_owned(),
            secs: left(record),
        });
        // Next: the dependent whose rest is this package's rest less its own work.
        let want = rest.get(&key).copied().unwrap_or(0.0) - left(record);
        at = dependents
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|k| Some((*k, *rest.get(*k)?)))
            .filter(|(_, r)| (r - want).abs() <= 1e-6 * want.max(1.0))
            .min_by(|a, b| a.0.cmp(b.0))
            .map(|(k, _)| k.clone());
    }
    let eta_secs = (cores > 0 && largest > 0 && !by_key.is_empty()).then(|| {
        let by_path = path_secs * 8.0 / f64::from(largest);
        let by_work = work_secs * 8.0 / f64::from(cores);
        by_path.max(by_work)
    });
    Forecast {
        path,
        path_secs,
        work_secs,
        unfinished: by_key.len(),
        eta_secs,
    }
}

/// The unfinished build dependencies `record` waits for, in its own order.
pub fn waits_for<'a>(
    record: &'a PackageRecord,
    get: impl Fn(&PackageKey) -> Option<&'a PackageRecord>,
) -> Vec<Atom> {
    record
        .deps
        .iter()
        .filter_map(get)
        .filter(|d| !matches!(d.state, PackageState::Succeeded { .. }))
        .map(|d| d.atom.clone())
        .collect()
}

#[cfg(test)]
#[path = "paths_tests.rs"]
mod tests;
