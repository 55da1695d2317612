//! The dashboard's picture of the swarm and the pure fold that keeps it. Every input — a drone
//! event, a drone record, a package record, the event stream's position — goes through
//! [`Swarm::apply`], which reads no clock and touches no network, so its behaviour is tested as a
//! table of cases.
//!
//! The picture is kept per drone, keyed by the drone's name, so any number of drones reporting at
//! the same instant all appear. A drone's reports (its events and its records) share one
//! per-process sequence, `(boot_ms, seq)`: a report older than the newest one applied never
//! changes the drone's state, so a late or redelivered event cannot overwrite newer state. What an
//! event adds to the drone's history (build counts, last result, recent failures) is applied once
//! per event, deduplicated by a window of the sequence numbers already seen.
//!
//! One drone's part of the picture, and the order its reports are applied in, is `drone.rs`; what
//! the events add to the history of builds (counts, last results, recent failures) is
//! `history.rs`.

mod drone;
mod history;

use std::collections::{BTreeMap, HashMap, VecDeque};

use schemas::{
    Arch, Atom, DroneName, DroneRecord, DroneState, Event, PackageKey, PackageRecord, PackageState,
};
use serde::{Deserialize, Serialize};

pub use drone::{ASSUMED_HEARTBEAT_MS, DroneView, MAX_PENDING_EVENTS, ReportId, SeenWindow};
use history::insert_failure;
pub use history::{BuildCounts, FAILURE_TAIL_CHARS, Failure, LastResult, ResultKind};

/// What the dashboard keeps of one package: enough to count states, follow the run and forecast
/// it from its build-dependency graph. Kept small, as there may be 100,000 of them: the record's
/// history, artifacts and size hints are dropped, its estimate kept as one number.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageView {
    pub state: PackageState,
    pub submitted_ms: u64,
    pub updated_ms: u64,
    /// KV revision of the record this view was made from.
    pub revision: u64,
    /// What the critical path and the list of waiting packages name it by.
    pub atom: Atom,
    /// Its build dependencies in the run; empty (no allocation) for a package without any.
    pub deps: Box<[PackageKey]>,
    /// Its best estimate of its build time, seconds on 8 cores
    /// ([`schemas::paths::estimate_secs`] of its record).
    pub estimate_secs: f64,
    /// Its arch, as an index into [`Swarm::archs`].
    pub arch: u32,
}

/// The event stream's state as last polled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: u64,
}

impl StreamPosition {
    /// Events stored in the stream after `folded` (the stream sequence of the last event folded).
    /// Events leave the stream only from its front (by age), so everything up to `last_seq` that
    /// is still stored is after the front.
    pub fn unfolded(&self, folded: u64) -> u64 {
        if self.messages == 0 || folded >= self.last_seq {
            0
        } else if folded < self.first_seq {
            self.messages
        } else {
            self.last_seq - folded
        }
    }
}

/// Where the dashboard's reading of the event stream stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsProgress {
    /// Events applied (including stale and duplicate ones, excluding rejected ones).
    pub folded: u64,
    /// Messages refused: undecodable, or claiming another drone than their subject.
    pub rejected: u64,
    /// Stream sequence of the last message read.
    pub stream_seq: u64,
    /// The last two polls of the stream, oldest first.
    polls: VecDeque<StreamPosition>,
}

impl EventsProgress {
    /// Events stored but not yet folded, by the latest poll.
    pub fn lag(&self) -> u64 {
        self.polls
            .back()
            .map_or(0, |poll| poll.unfolded(self.stream_seq))
    }

    /// Whether every event stored one poll interval ago has been folded: true once the start-up
    /// replay is over and the fold keeps pace. False before the first poll.
    pub fn caught_up(&self) -> bool {
        self.polls
            .front()
            .is_some_and(|poll| poll.unfolded(self.stream_seq) == 0)
    }
}

/// One of the dashboard's inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A message of the event stream that decoded as an event. `subject_drone` is the drone its
    /// subject names; `stored_ms` is the server's time of storing it.
    Event {
        subject_drone: String,
        stream_seq: u64,
        stored_ms: u64,
        event: Event,
    },
    /// A message of the event stream that could not be decoded.
    Undecodable { stream_seq: u64 },
    /// A value of the drones bucket; `written_ms` is the server's time of writing it.
    DroneRecord {
        key: String,
        written_ms: u64,
        record: DroneRecord,
    },
    /// A value of the packages bucket.
    Package {
        key: String,
        revision: u64,
        record: PackageRecord,
    },
    /// A package key deleted or purged from the packages bucket.
    PackageRemoved { key: String, revision: u64 },
    /// The event stream, as polled.
    EventsStream(StreamPosition),
    /// The event stream could not be polled: how far behind the fold is, is unknown.
    EventsStreamUnknown,
    /// The leading coordinator, as the leader bucket names it (polled); `None`: none leads.
    Leader(Option<String>),
    /// The initial contents of a source have all been applied.
    Loaded(Source),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Drones,
    Packages,
}

/// What one input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The picture changed.
    Changed,
    /// A report older than the drone's newest: its history was recorded, its state was not.
    Stale,
    /// Seen before (a redelivery), or too old to tell (an earlier drone process, or far behind
    /// the newest event): nothing changed.
    Duplicate,
    /// Refused; the reason names the input.
    Rejected(String),
}

/// The dashboard's whole picture.
#[derive(Debug, Clone)]
pub struct Swarm {
    pub drones: BTreeMap<DroneName, DroneView>,
    pub packages: HashMap<String, PackageView>,
    /// Every arch a package record named, in the order first seen: what [`PackageView::arch`]
    /// indexes, so a package keeps four bytes rather than a string.
    pub archs: Vec<Arch>,
    /// The most recent build failures, oldest first.
    pub failures: VecDeque<Failure>,
    failures_kept: usize,
    /// Builds counted from every event folded.
    pub builds: BuildCounts,
    pub events: EventsProgress,
    pub drones_loaded: bool,
    pub packages_loaded: bool,
    /// The leading coordinator's name.
    pub leader: Option<String>,
    /// Bumped by every input that changed the picture.
    pub version: u64,
    /// Bumped by every input that changed a package: what a forecast of the packages is
    /// remembered by.
    pub packages_version: u64,
}

impl Swarm {
    /// An empty picture that keeps the `failures_kept` most recent failures.
    pub fn new(failures_kept: usize) -> Swarm {
        Swarm {
            drones: BTreeMap::new(),
            packages: HashMap::new(),
            archs: Vec::new(),
            failures: VecDeque::new(),
            failures_kept,
            builds: BuildCounts::default(),
            events: EventsProgress::default(),
            drones_loaded: false,
            leader: None,
            packages_loaded: false,
            version: 0,
            packages_version: 0,
        }
    }

    /// Whether the initial contents of every source were read: the buckets loaded and the event
    /// stream replayed up to where it stood.
    pub fn ready(&self) -> bool {
        self.drones_loaded && self.packages_loaded && self.events.caught_up()
    }

    /// The fold: applies one input to the picture. It is the pure function (picture, input) →
    /// picture, updating in place rather than copying a picture of thousands of packages.
    pub fn apply(&mut self, input: Input) -> Applied {
        let package = matches!(input, Input::Package { .. } | Input::PackageRemoved { .. });
        let applied = match input {
            Input::Event {
                subject_drone,
                stream_seq,
                stored_ms,
                event,
            } => {
                self.events.stream_seq = self.events.stream_seq.max(stream_seq);
                if event.drone.as_str() != subject_drone {
                    self.events.rejected += 1;
                    Applied::Rejected(format!(
                        "event {stream_seq} on the subject of drone {subject_drone} claims to come from drone {}",
                        event.drone
                    ))
                } else {
                    self.events.folded += 1;
                    self.apply_event(stored_ms, event)
                }
            }
            Input::Undecodable { stream_seq } => {
                self.events.stream_seq = self.events.stream_seq.max(stream_seq);
                self.events.rejected += 1;
                Applied::Rejected(format!("event {stream_seq} does not decode"))
            }
            Input::DroneRecord {
                key,
                written_ms,
                record,
            } => self.apply_record(&key, written_ms, record),
            Input::Package {
                key,
                revision,
                record,
            } => self.apply_package(key, revision, record),
            Input::PackageRemoved { key, revision } => match self.packages.get(&key) {
                Some(view) if view.revision > revision => Applied::Stale,
                Some(_) => {
                    self.packages.remove(&key);
                    Applied::Changed
                }
                None => Applied::Duplicate,
            },
            Input::EventsStream(position) => {
                if self.events.polls.len() == 2 {
                    self.events.polls.pop_front();
                }
                self.events.polls.push_back(position);
                Applied::Changed
            }
            Input::EventsStreamUnknown => {
                self.events.polls.clear();
                Applied::Changed
            }
            Input::Leader(leader) if leader == self.leader => Applied::Duplicate,
            Input::Leader(leader) => {
                self.leader = leader;
                Applied::Changed
            }
            Input::Loaded(Source::Drones) => {
                self.drones_loaded = true;
                Applied::Changed
            }
            Input::Loaded(Source::Packages) => {
                self.packages_loaded = true;
                Applied::Changed
            }
        };
        if applied == Applied::Changed || applied == Applied::Stale {
            self.version += 1;
        }
        if package && applied == Applied::Changed {
            self.packages_version += 1;
        }
        applied
    }

    fn apply_event(&mut self, stored_ms: u64, event: Event) -> Applied {
        let id = ReportId {
            boot_ms: event.boot_ms,
            seq: event.seq,
        };
        let name = event.drone.clone();
        let view = drone_view(&mut self.drones, &name);
        if !view.seen.insert(id) {
            return Applied::Duplicate;
        }
        view.last_heard_ms = view.last_heard_ms.max(stored_ms);
        // History: counted once per event, whatever its order.
        view.builds.count(&event.kind);
        self.builds.count(&event.kind);
        if let Some(failure) = Failure::of(&name, &event) {
            insert_failure(&mut self.failures, failure, self.failures_kept);
        }
        if let Some(result) = LastResult::of(&event)
            && id > view.last_result_id
        {
            view.last_result_id = id;
            view.last_result = Some(result);
        }
        // State: on top of the newest record, in the drone's order.
        if view.add_event(id, event.at_ms, &event.kind) {
            Applied::Changed
        } else {
            Applied::Stale
        }
    }

    fn apply_record(&mut self, key: &str, written_ms: u64, record: DroneRecord) -> Applied {
        if record.name.as_str() != key {
            return Applied::Rejected(format!(
                "drone record under key {key} names drone {}",
                record.name
            ));
        }
        let id = ReportId {
            boot_ms: record.boot_ms,
            seq: record.seq,
        };
        let view = drone_view(&mut self.drones, &record.name);
        // The coordinator marks a silent drone lost by rewriting the drone's own last record
        // (same sequence number) with the state changed: a verdict about the drone, not a sign
        // of life, so it may apply at the same sequence but never refreshes `last_heard_ms`.
        let verdict = matches!(record.state, DroneState::Lost { .. });
        let base = view.base.id;
        if id < base {
            return Applied::Stale;
        }
        if id == base {
            if !verdict || matches!(view.base.record.state, DroneState::Lost { .. }) {
                return Applied::Duplicate;
            }
            let mut lost = view.base.record.clone();
            lost.state = record.state;
            view.set_base(lost, id);
            return Applied::Changed;
        }
        if !verdict {
            view.last_heard_ms = view.last_heard_ms.max(written_ms);
        }
        view.set_base(record, id);
        Applied::Changed
    }

    fn apply_package(&mut self, key: String, revision: u64, record: PackageRecord) -> Applied {
        if record.atom.key().as_str() != key {
            return Applied::Rejected(format!(
                "package record under key {key} is for atom {}",
                record.atom
            ));
        }
        if let Some(view) = self.packages.get(&key)
            && view.revision >= revision
        {
            return if view.revision == revision {
                Applied::Duplicate
            } else {
                Applied::Stale
            };
        }
        let estimate_secs = schemas::paths::estimate_secs(&record);
        let arch = self.arch_index(record.arch);
        self.packages.insert(
            key,
            PackageView {
                state: record.state,
                submitted_ms: record.submitted_ms,
                updated_ms: record.updated_ms,
                revision,
                atom: record.atom,
                deps: record.deps.into_boxed_slice(),
                estimate_secs,
                arch,
            },
        );
        Applied::Changed
    }

    /// The index of `arch` in [`Swarm::archs`], added there when new.
    fn arch_index(&mut self, arch: Arch) -> u32 {
        let at = match self.archs.iter().position(|a| *a == arch) {
            Some(at) => at,
            None => {
                self.archs.push(arch);
                self.archs.len() - 1
            }
        };
        u32::try_from(at).unwrap_or(u32::MAX)
    }

    /// The arch of `package`.
    pub fn arch_of(&self, package: &PackageView) -> Option<&Arch> {
        self.archs.get(package.arch as usize)
    }
}

#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;

/// A drone's view, made (as an unknown drone) at its first report.
fn drone_view<'a>(
    drones: &'a mut BTreeMap<DroneName, DroneView>,
    name: &DroneName,
) -> &'a mut DroneView {
    drones
        .entry(name.clone())
        .or_insert_with(|| DroneView::unknown(name.clone()))
}
