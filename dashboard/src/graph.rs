//! The run's build-dependency graph as the dashboard shows it: the critical path of its
//! unfinished packages and the earliest the run can end with the drones online
//! (`schemas::paths::forecast`, as `swarmctl status --graph` forecasts it), and which packages
//! wait for which build dependencies (`schemas::paths::waits_for`) or were blocked by a failed
//! one.
//!
//! It is worked out only for a run in which some package has build dependencies, from records
//! rebuilt for that moment out of the fold's small package views (the fold keeps no whole
//! record). The lists are made at every snapshot, looking closely only at the packages listed.
//! The forecast goes through every unfinished package: at most once per snapshot, and the fold's
//! task reuses the last one ([`ForecastCache`]) while nothing changed, or for ten times as long
//! as it took to make, so that a graph of 100,000 packages does not hold up the fold.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use schemas::paths::{forecast, waits_for};
use schemas::{Atom, DroneState, PackageRecord, PackageState, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};

use crate::fold::{PackageView, Swarm};
use crate::view::DroneCard;

/// Packages shown in each list, the first by atom; the totals count them all.
pub const LISTED: usize = 50;

/// The packages held back by their build dependencies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependencies {
    /// Packages waiting for build dependencies of the run, the first [`LISTED`] by atom.
    pub waiting: Vec<Waiting>,
    /// All the packages waiting for build dependencies.
    pub waiting_total: u64,
    /// Packages of the run not built because a dependency failed for good, the first
    /// [`LISTED`] by atom.
    pub blocked: Vec<Blocked>,
    /// All the packages of the run blocked by a failed dependency.
    pub blocked_total: u64,
}

/// A package waiting for build dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub atom: Atom,
    /// Its build dependencies that have not succeeded yet, in its own order.
    pub waits_for: Vec<Atom>,
}

/// A package not built because a build dependency failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub atom: Atom,
    /// The dependency that failed (or was itself blocked).
    pub blocked_by: Atom,
}

/// The forecast of the run's unfinished packages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CriticalPath {
    /// The longest chain of unfinished work, first to last.
    pub path: Vec<Atom>,
    /// Its length, whole seconds on 8 cores (rounded up).
    pub path_secs: u64,
    /// The least time the run still needs with the drones online, whole seconds (rounded up);
    /// `None` with no drone online for its packages.
    pub eta_secs: Option<u64>,
}

/// A package's record as the `schemas::paths` functions read it, rebuilt from its view.
fn record(swarm: &Swarm, view: &PackageView) -> PackageRecord {
    PackageRecord {
        v: SCHEMA_VERSION,
        atom: view.atom.clone(),
        arch: swarm.arch_of(view).cloned().unwrap_or_default(),
        submission: 0,
        state: view.state.clone(),
        history: Vec::new(),
        estimate_secs: Some(view.estimate_secs),
        class: None,
        learned_secs: None,
        artifacts: Vec::new(),
        fingerprint: None,
        run: None,
        deps: view.deps.to_vec(),
        submitted_ms: view.submitted_ms,
        updated_ms: view.updated_ms,
        priority: schemas::Priority::Normal,
    }
}

/// The packages of `run` (each with its key) held back by build dependencies: the first
/// [`LISTED`] waiting ones with what they wait for, the first blocked ones with what blocks
/// them. Only the listed packages and their dependencies are looked at closely.
pub fn dependencies(swarm: &Swarm, run: &[(&str, &PackageView)]) -> Dependencies {
    let mut waiting: Vec<&PackageView> = run
        .iter()
        .map(|(_, view)| *view)
        .filter(|view| view.state == PackageState::Waiting)
        .collect();
    let waiting_total = waiting.len() as u64;
    first_by_atom(&mut waiting, |view| &view.atom);
    // The records of their dependencies, whatever their state or run.
    let mut deps: HashMap<&str, PackageRecord> = HashMap::new();
    for view in &waiting {
        for dep in &view.deps {
            if !deps.contains_key(dep.as_str())
                && let Some((key, dep_view)) = swarm.packages.get_key_value(dep.as_str())
            {
                deps.insert(key.as_str(), record(swarm, dep_view));
            }
        }
    }
    let waiting = waiting
        .into_iter()
        .map(|view| Waiting {
            atom: view.atom.clone(),
            waits_for: waits_for(&record(swarm, view), |k| deps.get(k.as_str())),
        })
        .collect();

    let mut blocked: Vec<(&Atom, &Atom)> = run
        .iter()
        .filter_map(|(_, view)| match &view.state {
            PackageState::Blocked { dependency } => Some((&view.atom, dependency)),
            _ => None,
        })
        .collect();
    let blocked_total = blocked.len() as u64;
    first_by_atom(&mut blocked, |(atom, _)| atom);
    Dependencies {
        waiting,
        waiting_total,
        blocked: blocked
            .into_iter()
            .map(|(atom, dependency)| Blocked {
                atom: atom.clone(),
                blocked_by: dependency.clone(),
            })
            .collect(),
        blocked_total,
    }
}

/// The forecast of the unfinished packages of `run` (`schemas::paths::forecast`) with `cores`
/// online in all and `largest` on the largest drone; `None` when none is unfinished. Every
/// unfinished package is in the latest run, so this is the forecast of all of them.
pub fn critical_path(
    swarm: &Swarm,
    run: &[(&str, &PackageView)],
    (cores, largest): (u32, u32),
    now_ms: u64,
) -> Option<CriticalPath> {
    let records: Vec<PackageRecord> = run
        .iter()
        .filter(|(_, view)| !view.state.is_final())
        .map(|(_, view)| record(swarm, view))
        .collect();
    if records.is_empty() {
        return None;
    }
    let forecast = forecast(&records, cores, largest, now_ms);
    Some(CriticalPath {
        path: forecast.path.into_iter().map(|step| step.atom).collect(),
        path_secs: forecast.path_secs.max(0.0).ceil() as u64,
        eta_secs: forecast.eta_secs.map(|secs| secs.max(0.0).ceil() as u64),
    })
}

/// How long a forecast is reused while neither the packages nor the cores online change: the
/// clock moves building packages on.
const FRESH_MS: u64 = 1_000;
/// A forecast that took `t` is reused for `BUDGET × t` whatever changed, so forecasting costs at
/// most a tenth of a core: at every change for a graph of a few thousand packages (a few
/// milliseconds), every few seconds for one of 100,000.
const BUDGET: u32 = 10;

/// The last forecast, kept by the fold's task between snapshots.
#[derive(Debug, Default)]
pub struct ForecastCache {
    last: Option<Remembered>,
}

#[derive(Debug)]
struct Remembered {
    packages_version: u64,
    cores: (u32, u32),
    at_ms: u64,
    took: Duration,
    critical: Option<CriticalPath>,
}

impl ForecastCache {
    /// The forecast of the packages at `packages_version` with `cores` (in all, on the largest
    /// drone) online at `now_ms`: the remembered one while it serves, its end counted down by
    /// the time since; else `compute`'s, timed and remembered.
    pub fn get(
        &mut self,
        packages_version: u64,
        cores: (u32, u32),
        now_ms: u64,
        compute: impl FnOnce() -> Option<CriticalPath>,
    ) -> Option<CriticalPath> {
        if let Some(critical) = self.serve(packages_version, cores, now_ms) {
            return critical;
        }
        let start = Instant::now();
        let critical = compute();
        self.remember(
            packages_version,
            cores,
            now_ms,
            start.elapsed(),
            critical.clone(),
        );
        critical
    }

    /// The remembered forecast, aged to `now_ms`, when it may stand for a new one.
    fn serve(
        &self,
        packages_version: u64,
        cores: (u32, u32),
        now_ms: u64,
    ) -> Option<Option<CriticalPath>> {
        let last = self.last.as_ref()?;
        let age = now_ms.checked_sub(last.at_ms)?;
        let same = last.packages_version == packages_version && last.cores == cores;
        let within_budget = u128::from(age) < last.took.as_millis() * u128::from(BUDGET);
        if !(same && age < FRESH_MS || within_budget) {
            return None;
        }
        let mut critical = last.critical.clone();
        if let Some(c) = &mut critical {
            c.eta_secs = c.eta_secs.map(|secs| secs.saturating_sub(age / 1_000));
        }
        Some(critical)
    }

    fn remember(
        &mut self,
        packages_version: u64,
        cores: (u32, u32),
        now_ms: u64,
        took: Duration,
        critical: Option<CriticalPath>,
    ) {
        self.last = Some(Remembered {
            packages_version,
            cores,
            at_ms: now_ms,
            took,
            critical,
        });
    }
}

/// Cores of the drones online (idle or building) for the archs of the run's unfinished
/// packages, in all and on the largest of them, as `swarmctl status --graph` counts them.
pub fn online_cores(
    swarm: &Swarm,
    run: &[(&str, &PackageView)],
    drones: &[DroneCard],
) -> (u32, u32) {
    let mut archs: Vec<u32> = Vec::new();
    for (_, view) in run {
        if !view.state.is_final() && !archs.contains(&view.arch) {
            archs.push(view.arch);
        }
    }
    let online = [DroneState::Idle.label(), DroneState::Building.label()];
    let cores = drones
        .iter()
        .filter(|card| online.contains(&card.state.as_str()))
        .filter(|card| {
            card.arch.as_ref().is_some_and(|arch| {
                archs
                    .iter()
                    .any(|i| swarm.archs.get(*i as usize) == Some(arch))
            })
        })
        .filter_map(|card| card.cores);
    cores.fold((0, 0), |(all, largest), c| (all + c, largest.max(c)))
}

/// Keeps the first [`LISTED`] of `items` by atom, sorted.
fn first_by_atom<T>(items: &mut Vec<T>, atom: impl Fn(&T) -> &Atom) {
    let order = |a: &T, b: &T| atom(a).cmp(atom(b));
    if items.len() > LISTED {
        items.select_nth_unstable_by(LISTED - 1, order);
        items.truncate(LISTED);
    }
    items.sort_unstable_by(order);
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
