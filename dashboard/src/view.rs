//! What the dashboard shows: the snapshot served at `/api/state` and pushed over `/ws`, computed
//! from the fold's picture at one instant, and the delta between two snapshots that the
//! WebSocket sends instead of the whole picture.
//!
//! The JSON shapes here are the dashboard's interface (the page, scripts, tests); fields are
//! added, never renamed.

use schemas::summary::{Summary, effective_state, summarize};
use schemas::{Arch, Atom, DroneState, PackageState, RunningBuild};
use serde::{Deserialize, Serialize};

use crate::fold::{BuildCounts, Failure, LastResult, PackageView, Swarm};
use crate::graph::{self, Dependencies, ForecastCache};

/// Version of the snapshot's shape.
pub const VIEW_VERSION: u16 = 1;

/// The whole picture at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u16,
    /// The dashboard's clock when the snapshot was taken (unix ms); elapsed times are measured
    /// against it.
    pub now_ms: u64,
    /// True once the buckets were read and the event stream replayed to where it stood.
    pub ready: bool,
    /// The operator's block, counted exactly as `swarmctl status` counts it.
    pub summary: Summary,
    pub progress: Progress,
    /// Every drone, sorted by name.
    pub drones: Vec<DroneCard>,
    /// The most recent build failures, newest first.
    pub failures: Vec<Failure>,
    /// Builds counted from the events folded.
    pub builds: BuildCounts,
    pub fold: FoldStatus,
    /// The run's packages held back by build dependencies; empty lists unless some package of
    /// the run has build dependencies.
    #[serde(default)]
    pub dependencies: Dependencies,
}

/// One drone as its card shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneCard {
    pub name: String,
    /// `null` until the drone's record or `online` event has been read.
    pub cores: Option<u32>,
    pub slots: Option<u32>,
    pub arch: Option<Arch>,
    pub version: Option<String>,
    /// `building`, `idle`, `grounded`, `draining`, `excluded`, `lost` or `offline`; `lost` when
    /// the drone went silent for three heartbeat intervals, whatever it last said.
    pub state: String,
    /// Why the drone is grounded, excluded from its arch's run or lost; only in those states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The drone's fingerprint id (what its packages are built for); `null` when it
    /// has none or has not said.
    pub fingerprint: Option<String>,
    /// What the drone is building, by atom; `started_ms` is by the drone's clock.
    pub building: Vec<RunningBuild>,
    pub last_result: Option<LastResult>,
    pub builds: BuildCounts,
    /// Failed builds in a row since its last success.
    pub consecutive_failures: u32,
}

/// The run: the packages submitted since the swarm was last idle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Packages in the run.
    pub total: u64,
    /// Of those, finished (succeeded, failed or blocked).
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Not built: a build dependency failed for good.
    #[serde(default)]
    pub blocked: u64,
    /// Queued, waiting to retry, building or waiting for build dependencies.
    pub remaining: u64,
    /// Of `remaining`, those waiting for build dependencies of the run.
    #[serde(default)]
    pub waiting: u64,
    /// When the run's first package was submitted (unix ms); `null` with no packages.
    pub started_ms: Option<u64>,
    /// When its last package finished; `null` while it runs.
    pub finished_ms: Option<u64>,
    /// Packages finished per minute since the run started.
    pub rate_per_min: f64,
    /// Estimated seconds until the run is done at that rate; `null` when unknown or done.
    pub eta_secs: Option<u64>,
    /// The run's critical path: the longest chain of unfinished work through its build
    /// dependencies, first to last. Empty unless some package of the run has build
    /// dependencies and some are unfinished.
    #[serde(default)]
    pub critical_path: Vec<Atom>,
    /// Its length in whole seconds on 8 cores; `null` when there is no critical path.
    #[serde(default)]
    pub critical_path_secs: Option<u64>,
    /// The least time the run still needs, in whole seconds, with the drones online (idle or
    /// building) for its packages: its critical path on the largest of them, or all of its work
    /// spread over their cores, whichever is longer. `null` when there is no critical path or no
    /// such drone online.
    #[serde(default)]
    pub critical_eta_secs: Option<u64>,
}

/// How the dashboard's own reading of NATS stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldStatus {
    pub nats_connected: bool,
    /// Events folded since the dashboard started (its start-up replay included).
    pub events_folded: u64,
    /// Messages of the event stream refused (undecodable, or naming another drone).
    pub events_rejected: u64,
    /// Stream sequence of the last event read.
    pub stream_seq: u64,
    /// Events stored in the stream and not folded yet, by the last poll.
    pub lag_events: u64,
    /// Every event stored one poll interval ago is folded.
    pub caught_up: bool,
}

impl Snapshot {
    /// The picture at `now_ms`. `nats_connected` is the connection's state, which the fold
    /// cannot know.
    pub fn of(swarm: &Swarm, now_ms: u64, nats_connected: bool) -> Snapshot {
        Snapshot::of_cached(swarm, now_ms, nats_connected, &mut ForecastCache::default())
    }

    /// The picture at `now_ms`, its forecast taken from `forecasts` while the one remembered
    /// there still serves.
    pub fn of_cached(
        swarm: &Swarm,
        now_ms: u64,
        nats_connected: bool,
        forecasts: &mut ForecastCache,
    ) -> Snapshot {
        let ages: Vec<_> = swarm
            .drones
            .values()
            .map(|view| (view, now_ms.saturating_sub(view.last_heard_ms)))
            .collect();
        let summary = summarize(
            ages.iter().map(|(view, age)| (&view.record, *age)),
            swarm.packages.values().map(|p| &p.state),
        )
        .led_by(swarm.leader.clone());
        let drones: Vec<DroneCard> = ages
            .iter()
            .map(|(view, age)| {
                let state = effective_state(&view.record, *age);
                let reason = match &state {
                    DroneState::Grounded { reason }
                    | DroneState::Lost { reason }
                    | DroneState::Excluded { reason } => Some(reason.clone()),
                    _ => None,
                };
                let known = |value| view.described.then_some(value);
                DroneCard {
                    name: view.record.name.to_string(),
                    cores: known(view.record.cores),
                    slots: known(view.record.slots),
                    arch: view.described.then(|| view.record.arch.clone()),
                    version: view.described.then(|| view.record.version.clone()),
                    state: state.label().to_owned(),
                    reason,
                    fingerprint: view.record.fingerprint.as_ref().map(|fp| fp.id.clone()),
                    // A lost or offline drone runs nothing we can vouch for.
                    building: match state {
                        DroneState::Lost { .. } | DroneState::Offline => Vec::new(),
                        _ => view.record.building.clone(),
                    },
                    last_result: view.last_result.clone(),
                    builds: view.builds,
                    consecutive_failures: view.record.consecutive_failures,
                }
            })
            .collect();
        let (run, busy_until) = latest_run(
            swarm
                .packages
                .iter()
                .map(|(key, p)| (&p.state, p.submitted_ms, p.updated_ms, (key.as_str(), p))),
        );
        let mut progress = progress_of(&run, busy_until, now_ms);
        let mut dependencies = Dependencies::default();
        if run.iter().any(|span| !span.item.1.deps.is_empty()) {
            let packages: Vec<(&str, &PackageView)> = run.iter().map(|span| span.item).collect();
            dependencies = graph::dependencies(swarm, &packages);
            if progress.remaining > 0 {
                let cores = graph::online_cores(swarm, &packages, &drones);
                let critical = forecasts.get(swarm.packages_version, cores, now_ms, || {
                    graph::critical_path(swarm, &packages, cores, now_ms)
                });
                if let Some(critical) = critical {
                    progress.critical_path = critical.path;
                    progress.critical_path_secs = Some(critical.path_secs);
                    progress.critical_eta_secs = critical.eta_secs;
                }
            }
        }
        Snapshot {
            v: VIEW_VERSION,
            now_ms,
            ready: swarm.ready(),
            summary,
            progress,
            drones,
            failures: swarm.failures.iter().rev().cloned().collect(),
            builds: swarm.builds,
            fold: FoldStatus {
                nats_connected,
                events_folded: swarm.events.folded,
                events_rejected: swarm.events.rejected,
                stream_seq: swarm.events.stream_seq,
                lag_events: swarm.events.lag(),
                caught_up: swarm.events.caught_up(),
            },
            dependencies,
        }
    }
}

/// The run's progress from every package's state, submission time and last update.
///
/// The run is the latest stretch of time in which some package was unfinished: each package is
/// busy from its submission until it finished (its last update, once final), and the run is the
/// last group of overlapping busy intervals. Packages finished in an earlier run, hours ago, do
/// not count towards today's.
pub fn progress<'a>(
    packages: impl IntoIterator<Item = (&'a PackageState, u64, u64)>,
    now_ms: u64,
) -> Progress {
    let (run, busy_until) = latest_run(packages.into_iter().map(|(s, a, b)| (s, a, b, ())));
    progress_of(&run, busy_until, now_ms)
}

/// One package of a run: busy from `start` to `end` (`u64::MAX` while unfinished).
struct Span<'a, T> {
    start: u64,
    end: u64,
    state: &'a PackageState,
    item: T,
}

/// The packages of the latest run (each with its state, submission time, last update and
/// `item`), by submission time, and the end of the run's busy time.
fn latest_run<'a, T>(
    packages: impl IntoIterator<Item = (&'a PackageState, u64, u64, T)>,
) -> (Vec<Span<'a, T>>, u64) {
    let mut spans: Vec<Span<'a, T>> = packages
        .into_iter()
        .map(|(state, submitted, updated, item)| {
            let end = if state.is_final() {
                updated.max(submitted)
            } else {
                u64::MAX
            };
            Span {
                start: submitted,
                end,
                state,
                item,
            }
        })
        .collect();
    spans.sort_unstable_by_key(|span| span.start);
    let mut run_from = 0;
    let mut busy_until = 0;
    for (i, span) in spans.iter().enumerate() {
        if i == 0 || span.start > busy_until {
            run_from = i;
            busy_until = span.end;
        } else {
            busy_until = busy_until.max(span.end);
        }
    }
    spans.drain(..run_from);
    (spans, busy_until)
}

/// The progress of `run` (as [`latest_run`] found it) at `now_ms`.
fn progress_of<T>(run: &[Span<'_, T>], busy_until: u64, now_ms: u64) -> Progress {
    let Some(first) = run.first() else {
        return Progress::default();
    };
    let started_ms = first.start;
    let mut p = Progress {
        total: run.len() as u64,
        started_ms: Some(started_ms),
        ..Progress::default()
    };
    for span in run {
        match span.state {
            PackageState::Succeeded { .. } => p.succeeded += 1,
            PackageState::Failed { .. } => p.failed += 1,
            PackageState::Blocked { .. } => p.blocked += 1,
            PackageState::Waiting => {
                p.remaining += 1;
                p.waiting += 1;
            }
            _ => p.remaining += 1,
        }
    }
    p.done = p.succeeded + p.failed + p.blocked;
    if p.remaining == 0 {
        p.finished_ms = Some(busy_until);
    }
    let until = p.finished_ms.unwrap_or(now_ms);
    let elapsed_min = until.saturating_sub(started_ms) as f64 / 60_000.0;
    if elapsed_min > 0.0 {
        p.rate_per_min = p.done as f64 / elapsed_min;
    }
    if p.remaining > 0 && p.rate_per_min > 0.0 {
        p.eta_secs = Some((p.remaining as f64 / p.rate_per_min * 60.0).ceil() as u64);
    }
    p
}

/// What the WebSocket sends: the whole picture when a client connects, then only what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Push {
    Snapshot { state: Box<Snapshot> },
    Delta(Box<Delta>),
}

/// The changes from one snapshot to the next; absent sections did not change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub now_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<Vec<Failure>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builds: Option<BuildCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<FoldStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Dependencies>,
    /// Drones that appeared or changed, whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drones: Vec<DroneCard>,
    /// Names of drones no longer shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl Delta {
    /// What changed from `old` to `new`; `None` when nothing but the instant did.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Option<Delta> {
        fn changed<T: PartialEq + Clone>(old: &T, new: &T) -> Option<T> {
            (old != new).then(|| new.clone())
        }
        let mut delta = Delta {
            now_ms: new.now_ms,
            ready: changed(&old.ready, &new.ready),
            summary: changed(&old.summary, &new.summary),
            progress: changed(&old.progress, &new.progress),
            failures: changed(&old.failures, &new.failures),
            builds: changed(&old.builds, &new.builds),
            fold: changed(&old.fold, &new.fold),
            dependencies: changed(&old.dependencies, &new.dependencies),
            ..Delta::default()
        };
        // Both lists are sorted by name.
        let (mut i, mut j) = (0, 0);
        while i < old.drones.len() || j < new.drones.len() {
            match (old.drones.get(i), new.drones.get(j)) {
                (Some(a), Some(b)) if a.name == b.name => {
                    if a != b {
                        delta.drones.push(b.clone());
                    }
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a.name < b.name => {
                    delta.removed.push(a.name.clone());
                    i += 1;
                }
                (Some(a), None) => {
                    delta.removed.push(a.name.clone());
                    i += 1;
                }
                (_, Some(b)) => {
                    delta.drones.push(b.clone());
                    j += 1;
                }
                (None, None) => break,
            }
        }
        let empty = Delta {
            now_ms: new.now_ms,
            ..Delta::default()
        };
        (delta != empty).then_some(delta)
    }

    /// Applies the delta to `old`, as the page does; `old` becomes the newer snapshot.
    pub fn apply_to(&self, old: &mut Snapshot) {
        old.now_ms = self.now_ms;
        if let Some(v) = self.ready {
            old.ready = v;
        }
        if let Some(v) = &self.summary {
            old.summary = v.clone();
        }
        if let Some(v) = &self.progress {
            old.progress = v.clone();
        }
        if let Some(v) = &self.failures {
            old.failures = v.clone();
        }
        if let Some(v) = self.builds {
            old.builds = v;
        }
        if let Some(v) = &self.fold {
            old.fold = v.clone();
        }
        if let Some(v) = &self.dependencies {
            old.dependencies = v.clone();
        }
        old.drones.retain(|d| !self.removed.contains(&d.name));
        for card in &self.drones {
            match old.drones.binary_search_by(|d| d.name.cmp(&card.name)) {
                Ok(at) => old.drones[at] = card.clone(),
                Err(at) => old.drones.insert(at, card.clone()),
            }
        }
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
