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

use std::collections::{BTreeMap, HashMap, VecDeque};

use schemas::{
    Arch, Atom, BuildOutcome, DroneName, DroneRecord, DroneState, Event, EventKind, ExitInfo,
    PackageRecord, PackageState, RunningBuild, SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};

/// Heartbeat interval assumed for a drone known only from its events (its record has not been
/// read, or expired from the bucket): the drone's default, so such a drone turns lost at the same
/// age as a default drone would.
pub const ASSUMED_HEARTBEAT_MS: u64 = 2_000;

/// Build output kept per failure: the end of the log tail a drone reported.
pub const FAILURE_TAIL_CHARS: usize = 4_096;

/// Where a report stands in its drone's own order: the drone process (its boot time), then the
/// process's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct ReportId {
    pub boot_ms: u64,
    pub seq: u64,
}

/// Which of a drone's events were already counted: the newest one seen and a bitmap of the
/// [`SeenWindow::WIDTH`] sequence numbers before it. Events arrive almost in order (a drone's
/// build tasks publish concurrently), so a small window tells a redelivery from a late first
/// delivery without remembering every event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeenWindow {
    top: ReportId,
    bits: u64,
}

impl SeenWindow {
    pub const WIDTH: u64 = 64;

    /// Marks `id` as seen. False when it was seen before, or is too old to tell (an earlier drone
    /// process, or more than `WIDTH` behind the newest): such an event is not counted again.
    pub fn insert(&mut self, id: ReportId) -> bool {
        if id.boot_ms > self.top.boot_ms {
            self.top = id;
            self.bits = 1;
            return true;
        }
        if id.boot_ms < self.top.boot_ms {
            return false;
        }
        if id.seq > self.top.seq {
            let shift = id.seq - self.top.seq;
            self.bits = if shift >= Self::WIDTH {
                0
            } else {
                self.bits << shift
            };
            self.bits |= 1;
            self.top = id;
            return true;
        }
        let back = self.top.seq - id.seq;
        if back >= Self::WIDTH {
            return false;
        }
        let mask = 1u64 << back;
        if self.bits & mask != 0 {
            return false;
        }
        self.bits |= mask;
        true
    }
}

/// Builds counted from events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildCounts {
    /// Build processes started (`started` events).
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Builds given back unbuilt (shutdown, or a builder that could not start).
    pub handed_back: u64,
    /// Builds killed because their lease was lost.
    pub lease_lost: u64,
}

impl BuildCounts {
    /// Counts what one event says about builds; events that start or end no build count nothing.
    fn count(&mut self, kind: &EventKind) {
        let counter = match kind {
            EventKind::Started { .. } => &mut self.started,
            EventKind::Finished { outcome, .. } => match outcome {
                BuildOutcome::Succeeded => &mut self.succeeded,
                BuildOutcome::Failed { .. } => &mut self.failed,
            },
            EventKind::HandedBack { .. } => &mut self.handed_back,
            EventKind::LeaseLost { .. } => &mut self.lease_lost,
            _ => return,
        };
        *counter += 1;
    }
}

/// How a drone's most recent build ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ResultKind {
    Succeeded,
    Failed { exit: ExitInfo },
    HandedBack { reason: String },
    LeaseLost { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    pub atom: Atom,
    pub attempt: u32,
    #[serde(flatten)]
    pub kind: ResultKind,
    /// When the drone reported it, by the drone's clock (unix ms).
    pub at_ms: u64,
    /// How long the build ran; only for builds that ran to their end.
    pub duration_ms: Option<u64>,
}

impl LastResult {
    /// The end of a build an event reports; `None` for events that end no build.
    fn of(event: &Event) -> Option<LastResult> {
        let (atom, attempt, kind, duration_ms) = match &event.kind {
            EventKind::Finished {
                atom,
                attempt,
                outcome,
                duration_ms,
                ..
            } => {
                let kind = match outcome {
                    BuildOutcome::Succeeded => ResultKind::Succeeded,
                    BuildOutcome::Failed { exit, .. } => ResultKind::Failed { exit: exit.clone() },
                };
                (atom, attempt, kind, Some(*duration_ms))
            }
            EventKind::HandedBack {
                atom,
                attempt,
                reason,
            } => {
                let reason = reason.clone();
                (atom, attempt, ResultKind::HandedBack { reason }, None)
            }
            EventKind::LeaseLost {
                atom,
                attempt,
                reason,
            } => {
                let reason = reason.clone();
                (atom, attempt, ResultKind::LeaseLost { reason }, None)
            }
            _ => return None,
        };
        Some(LastResult {
            atom: atom.clone(),
            attempt: *attempt,
            kind,
            at_ms: event.at_ms,
            duration_ms,
        })
    }
}

/// One failed build, for the list of recent failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub drone: DroneName,
    pub atom: Atom,
    pub attempt: u32,
    pub exit: ExitInfo,
    /// The end of the build output, at most [`FAILURE_TAIL_CHARS`] characters.
    pub log_tail: String,
    pub at_ms: u64,
    pub duration_ms: u64,
}

/// Events kept per drone on top of its newest record. A drone rewrites its record at every
/// heartbeat, so only the events of the last few seconds are kept; past this bound the oldest is
/// merged into the base record.
pub const MAX_PENDING_EVENTS: usize = 256;

/// What a drone shows: a record, the report it stands for, and whether its description (cores,
/// slots, arch, version) is known.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    record: DroneRecord,
    id: ReportId,
    described: bool,
}

impl Shown {
    /// The state a drone that speaks again is in, judged by what it is building.
    fn working_state(&self) -> DroneState {
        if self.record.building.is_empty() {
            DroneState::Idle
        } else {
            DroneState::Building
        }
    }

    /// Applies an event that is newer than `self.id`.
    fn apply(&mut self, id: ReportId, at_ms: u64, kind: &EventKind) {
        if id.boot_ms != self.id.boot_ms {
            // A new drone process: whatever the previous one was building died with it.
            self.record.building.clear();
            self.record.consecutive_failures = 0;
            self.record.state = DroneState::Idle;
        }
        self.id = id;
        self.record.boot_ms = id.boot_ms;
        self.record.seq = id.seq;
        if matches!(
            self.record.state,
            DroneState::Lost { .. } | DroneState::Offline
        ) {
            // The drone speaks, so it is neither lost nor gone.
            self.record.state = self.working_state();
        }
        let record = &mut self.record;
        match kind {
            EventKind::Online {
                cores,
                slots,
                arch,
                version,
            } => {
                record.cores = *cores;
                record.slots = *slots;
                record.arch = arch.clone();
                record.version = version.clone();
                self.described = true;
            }
            EventKind::Claimed { atom, attempt, .. } | EventKind::Started { atom, attempt, .. } => {
                match record.building.iter_mut().find(|b| b.atom == *atom) {
                    Some(build) => build.attempt = *attempt,
                    None => {
                        record.building.push(RunningBuild {
                            atom: atom.clone(),
                            attempt: *attempt,
                            started_ms: at_ms,
                        });
                        record.building.sort_by(|a, b| a.atom.cmp(&b.atom));
                    }
                }
            }
            EventKind::Finished { atom, outcome, .. } => {
                record.building.retain(|b| b.atom != *atom);
                match outcome {
                    BuildOutcome::Succeeded => record.consecutive_failures = 0,
                    BuildOutcome::Failed { .. } => record.consecutive_failures += 1,
                }
            }
            EventKind::HandedBack { atom, .. } | EventKind::LeaseLost { atom, .. } => {
                record.building.retain(|b| b.atom != *atom);
            }
            EventKind::Grounded { reason } => {
                record.state = DroneState::Grounded {
                    reason: reason.clone(),
                };
            }
            EventKind::Ungrounded => record.state = DroneState::Idle,
            EventKind::Draining => record.state = DroneState::Draining,
            EventKind::Offline => {
                record.building.clear();
                record.state = DroneState::Offline;
            }
        }
        // Idle and building follow from the builds; grounded, draining and offline are kept
        // until the drone says otherwise.
        if matches!(self.record.state, DroneState::Idle | DroneState::Building) {
            self.record.state = self.working_state();
        }
    }
}

/// An event newer than the drone's newest record, kept so that a record that arrives late (the
/// bucket and the stream are read separately) can be put underneath it.
#[derive(Debug, Clone, PartialEq)]
struct PendingEvent {
    id: ReportId,
    at_ms: u64,
    kind: EventKind,
}

/// Everything the dashboard knows about one drone.
///
/// What the drone is doing is its newest record (a full self-description) with every newer event
/// applied on top, in the drone's own order whatever order they arrived in. A report older than
/// the newest record changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct DroneView {
    /// The drone now: the newest record with the newer events applied. For a drone known only
    /// from events, fields no event carries keep neutral values until its `online` event or
    /// record arrives (`described` says which).
    pub record: DroneRecord,
    /// Whether cores, slots, arch and version are known (from a record or an `online` event).
    pub described: bool,
    /// The newest report applied to `record`.
    pub current: ReportId,
    /// Server time (unix ms) of the newest report the drone itself made; a coordinator's
    /// "lost" mark does not count. Readers age the drone by it.
    pub last_heard_ms: u64,
    base: Shown,
    pending: Vec<PendingEvent>,
    seen: SeenWindow,
    pub last_result: Option<LastResult>,
    last_result_id: ReportId,
    pub builds: BuildCounts,
}

impl DroneView {
    fn unknown(name: DroneName) -> DroneView {
        let base = Shown {
            record: DroneRecord {
                big_builds: false,
                v: SCHEMA_VERSION,
                name,
                cores: 0,
                slots: 0,
                arch: Arch::default(),
                version: String::new(),
                state: DroneState::Idle,
                building: Vec::new(),
                consecutive_failures: 0,
                heartbeat_ms: 0,
                heartbeat_interval_ms: ASSUMED_HEARTBEAT_MS,
                boot_ms: 0,
                seq: 0,
            },
            id: ReportId::default(),
            described: false,
        };
        DroneView {
            record: base.record.clone(),
            described: false,
            current: ReportId::default(),
            last_heard_ms: 0,
            base,
            pending: Vec::new(),
            seen: SeenWindow::default(),
            last_result: None,
            last_result_id: ReportId::default(),
            builds: BuildCounts::default(),
        }
    }

    fn show(&mut self, shown: Shown) {
        self.record = shown.record;
        self.current = shown.id;
        self.described = shown.described;
    }

    /// Rebuilds what the drone shows from its base record and the pending events.
    fn replay(&mut self) {
        let mut shown = self.base.clone();
        for event in &self.pending {
            shown.apply(event.id, event.at_ms, &event.kind);
        }
        self.show(shown);
    }

    /// Adds an event's effect on the drone's state. False when the event is older than the
    /// newest record, which already covers it.
    fn add_event(&mut self, id: ReportId, at_ms: u64, kind: &EventKind) -> bool {
        if id <= self.base.id {
            return false;
        }
        let at = self.pending.partition_point(|e| e.id < id);
        if self.pending.get(at).is_some_and(|e| e.id == id) {
            return false;
        }
        let event = PendingEvent {
            id,
            at_ms,
            kind: kind.clone(),
        };
        if at == self.pending.len() {
            // The usual case: the newest report so far, applied on top.
            let mut shown = Shown {
                record: std::mem::replace(&mut self.record, self.base.record.clone()),
                id: self.current,
                described: self.described,
            };
            shown.apply(id, at_ms, kind);
            self.show(shown);
            self.pending.push(event);
        } else {
            self.pending.insert(at, event);
            self.replay();
        }
        if self.pending.len() > MAX_PENDING_EVENTS {
            let oldest = self.pending.remove(0);
            self.base.apply(oldest.id, oldest.at_ms, &oldest.kind);
        }
        true
    }

    /// Puts a record underneath the pending events: it replaces the base, the events it covers
    /// are dropped and the newer ones are applied on top again.
    fn set_base(&mut self, record: DroneRecord, id: ReportId) {
        self.base = Shown {
            record,
            id,
            described: true,
        };
        self.pending.retain(|e| e.id > id);
        self.replay();
    }
}

/// What the dashboard keeps of one package: enough to count states and follow the run.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageView {
    pub state: PackageState,
    pub submitted_ms: u64,
    pub updated_ms: u64,
    /// KV revision of the record this view was made from.
    pub revision: u64,
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
    /// The most recent build failures, oldest first.
    pub failures: VecDeque<Failure>,
    failures_kept: usize,
    /// Builds counted from every event folded.
    pub builds: BuildCounts,
    pub events: EventsProgress,
    pub drones_loaded: bool,
    pub packages_loaded: bool,
    /// Bumped by every input that changed the picture.
    pub version: u64,
}

impl Swarm {
    /// An empty picture that keeps the `failures_kept` most recent failures.
    pub fn new(failures_kept: usize) -> Swarm {
        Swarm {
            drones: BTreeMap::new(),
            packages: HashMap::new(),
            failures: VecDeque::new(),
            failures_kept,
            builds: BuildCounts::default(),
            events: EventsProgress::default(),
            drones_loaded: false,
            packages_loaded: false,
            version: 0,
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
        applied
    }

    fn apply_event(&mut self, stored_ms: u64, event: Event) -> Applied {
        let id = ReportId {
            boot_ms: event.boot_ms,
            seq: event.seq,
        };
        let name = event.drone.clone();
        let view = self
            .drones
            .entry(name.clone())
            .or_insert_with(|| DroneView::unknown(name.clone()));
        if !view.seen.insert(id) {
            return Applied::Duplicate;
        }
        view.last_heard_ms = view.last_heard_ms.max(stored_ms);
        // History: counted once per event, whatever its order.
        view.builds.count(&event.kind);
        self.builds.count(&event.kind);
        if let EventKind::Finished {
            atom,
            attempt,
            outcome: BuildOutcome::Failed { exit, log_tail },
            duration_ms,
            ..
        } = &event.kind
        {
            let failure = Failure {
                drone: name.clone(),
                atom: atom.clone(),
                attempt: *attempt,
                exit: exit.clone(),
                log_tail: tail(log_tail, FAILURE_TAIL_CHARS),
                at_ms: event.at_ms,
                duration_ms: *duration_ms,
            };
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
        let name = record.name.clone();
        let view = self
            .drones
            .entry(name.clone())
            .or_insert_with(|| DroneView::unknown(name));
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
        self.packages.insert(
            key,
            PackageView {
                state: record.state,
                submitted_ms: record.submitted_ms,
                updated_ms: record.updated_ms,
                revision,
            },
        );
        Applied::Changed
    }
}

/// Keeps the `kept` most recent failures, ordered by the time the drones reported them.
fn insert_failure(failures: &mut VecDeque<Failure>, failure: Failure, kept: usize) {
    if kept == 0 {
        return;
    }
    let at = failures.partition_point(|f| f.at_ms <= failure.at_ms);
    if failures.len() == kept && at == 0 {
        // Older than every failure kept.
        return;
    }
    failures.insert(at, failure);
    while failures.len() > kept {
        failures.pop_front();
    }
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        text.to_owned()
    } else {
        text.chars().skip(count - max).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures::{self, atom, claimed, drone_name as name};

    fn event(drone: &str, boot: u64, seq: u64, kind: EventKind) -> Input {
        Input::Event {
            subject_drone: drone.to_owned(),
            stream_seq: seq,
            stored_ms: boot + seq,
            event: fixtures::event(drone, boot, seq, kind),
        }
    }

    fn online(cores: u32, slots: u32) -> EventKind {
        EventKind::Online {
            cores,
            slots,
            arch: Arch::default(),
            version: "1".into(),
        }
    }

    fn finished(a: &str, ok: bool) -> EventKind {
        EventKind::Finished {
            atom: atom(a),
            attempt: 1,
            lease_rev: 2,
            outcome: if ok {
                BuildOutcome::Succeeded
            } else {
                BuildOutcome::Failed {
                    exit: ExitInfo::code(1),
                    log_tail: format!("error building {a}"),
                }
            },
            duration_ms: 10,
            jobs: 4,
        }
    }

    fn record(drone: &str, boot: u64, seq: u64, state: DroneState, building: &[&str]) -> Input {
        Input::DroneRecord {
            key: drone.to_owned(),
            written_ms: boot + seq,
            record: DroneRecord {
                slots: 4,
                building: fixtures::running(building, boot),
                boot_ms: boot,
                seq,
                ..fixtures::drone_record(drone, 16, state)
            },
        }
    }

    fn state_of(swarm: &Swarm, drone: &str) -> String {
        swarm.drones[&name(drone)].record.state.label().to_owned()
    }

    fn building_of(swarm: &Swarm, drone: &str) -> Vec<String> {
        swarm.drones[&name(drone)]
            .record
            .building
            .iter()
            .map(|b| b.atom.to_string())
            .collect()
    }

    /// One row of the table: inputs in arrival order, then what each drone must show.
    struct Case {
        name: &'static str,
        inputs: Vec<Input>,
        expect: Vec<(&'static str, &'static str, Vec<&'static str>)>,
        expect_applied_last: Option<Applied>,
    }

    #[test]
    fn fold_table() {
        let cases = vec![
            Case {
                name: "online then claimed: building",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 2, claimed("x-y/z", 1)),
                ],
                expect: vec![("a", "building", vec!["x-y/z"])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "finished returns the drone to idle",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 2, claimed("x-y/z", 1)),
                    event("a", 100, 3, finished("x-y/z", true)),
                ],
                expect: vec![("a", "idle", vec![])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "out of order: a late claimed does not resurrect a finished build",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 3, finished("x-y/z", true)),
                    event("a", 100, 2, claimed("x-y/z", 1)),
                ],
                expect: vec![("a", "idle", vec![])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "out of order: a late claimed of another package still shows",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 3, claimed("x-y/b", 1)),
                    event("a", 100, 2, claimed("x-y/a", 1)),
                ],
                expect: vec![("a", "building", vec!["x-y/a", "x-y/b"])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "duplicate event changes nothing",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 2, claimed("x-y/z", 1)),
                    event("a", 100, 2, claimed("x-y/z", 1)),
                ],
                expect: vec![("a", "building", vec!["x-y/z"])],
                expect_applied_last: Some(Applied::Duplicate),
            },
            Case {
                name: "a late record goes underneath newer events",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event(
                        "a",
                        100,
                        5,
                        EventKind::Grounded {
                            reason: "3 failures".into(),
                        },
                    ),
                    record("a", 100, 4, DroneState::Building, &["x-y/z"]),
                ],
                expect: vec![("a", "grounded", vec!["x-y/z"])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "a late record keeps what newer events did not touch",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 3, finished("x-y/other", false)),
                    record("a", 100, 2, DroneState::Building, &["x-y/z"]),
                ],
                expect: vec![("a", "building", vec!["x-y/z"])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "a record older than the newest record changes nothing",
                inputs: vec![
                    record("a", 100, 5, DroneState::Idle, &[]),
                    record("a", 100, 4, DroneState::Building, &["x-y/z"]),
                ],
                expect: vec![("a", "idle", vec![])],
                expect_applied_last: Some(Applied::Stale),
            },
            Case {
                name: "an event older than the newest record changes nothing",
                inputs: vec![
                    record("a", 100, 5, DroneState::Idle, &[]),
                    event("a", 100, 4, claimed("x-y/z", 1)),
                ],
                expect: vec![("a", "idle", vec![])],
                expect_applied_last: Some(Applied::Stale),
            },
            Case {
                name: "a newer record replaces what events built",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 2, claimed("x-y/z", 1)),
                    record("a", 100, 3, DroneState::Building, &["p-q/r", "x-y/z"]),
                ],
                expect: vec![("a", "building", vec!["p-q/r", "x-y/z"])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "grounding keeps running builds and the reason",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 2, claimed("x-y/z", 1)),
                    event(
                        "a",
                        100,
                        3,
                        EventKind::Grounded {
                            reason: "3 failures".into(),
                        },
                    ),
                ],
                expect: vec![("a", "grounded", vec!["x-y/z"])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "ungrounded drone goes back to work",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 2, EventKind::Grounded { reason: "r".into() }),
                    event("a", 100, 3, EventKind::Ungrounded),
                ],
                expect: vec![("a", "idle", vec![])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "the coordinator's lost mark applies at the same sequence",
                inputs: vec![
                    record("a", 100, 7, DroneState::Building, &["x-y/z"]),
                    record(
                        "a",
                        100,
                        7,
                        DroneState::Lost {
                            reason: "no heartbeat".into(),
                        },
                        &["x-y/z"],
                    ),
                ],
                expect: vec![("a", "lost", vec!["x-y/z"])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "a lost drone that speaks again is back",
                inputs: vec![
                    record("a", 100, 7, DroneState::Building, &["x-y/z"]),
                    record(
                        "a",
                        100,
                        7,
                        DroneState::Lost {
                            reason: "no heartbeat".into(),
                        },
                        &["x-y/z"],
                    ),
                    event("a", 100, 8, finished("x-y/z", true)),
                ],
                expect: vec![("a", "idle", vec![])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "a lost mark older than the drone's newest event does not stick",
                inputs: vec![
                    record("a", 100, 7, DroneState::Building, &["x-y/z"]),
                    event("a", 100, 8, claimed("x-y/y", 1)),
                    record(
                        "a",
                        100,
                        7,
                        DroneState::Lost {
                            reason: "no heartbeat".into(),
                        },
                        &["x-y/z"],
                    ),
                ],
                expect: vec![("a", "building", vec!["x-y/y", "x-y/z"])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "a restarted drone forgets the old process's builds",
                inputs: vec![
                    record("a", 100, 7, DroneState::Building, &["x-y/z"]),
                    event("a", 200, 1, online(8, 2)),
                ],
                expect: vec![("a", "idle", vec![])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "an event of the previous process after a restart changes nothing",
                inputs: vec![
                    event("a", 200, 1, online(8, 2)),
                    event("a", 100, 9, claimed("x-y/z", 1)),
                ],
                expect: vec![("a", "idle", vec![])],
                expect_applied_last: Some(Applied::Duplicate),
            },
            Case {
                name: "draining then offline",
                inputs: vec![
                    event("a", 100, 1, online(8, 2)),
                    event("a", 100, 2, claimed("x-y/z", 1)),
                    event("a", 100, 3, EventKind::Draining),
                    event("a", 100, 4, finished("x-y/z", true)),
                    event("a", 100, 5, EventKind::Offline),
                ],
                expect: vec![("a", "offline", vec![])],
                expect_applied_last: Some(Applied::Changed),
            },
            Case {
                name: "an event claiming another drone is rejected",
                inputs: vec![Input::Event {
                    subject_drone: "b".into(),
                    stream_seq: 1,
                    stored_ms: 1,
                    event: fixtures::event("a", 1, 1, online(8, 2)),
                }],
                expect: vec![],
                expect_applied_last: Some(Applied::Rejected(
                    "event 1 on the subject of drone b claims to come from drone a".into(),
                )),
            },
            Case {
                name: "same-instant reports of many drones all appear",
                inputs: vec![
                    record("a", 100, 1, DroneState::Building, &["x-y/a"]),
                    record("b", 100, 1, DroneState::Idle, &[]),
                    record(
                        "c",
                        100,
                        1,
                        DroneState::Grounded { reason: "r".into() },
                        &[],
                    ),
                    event("d", 100, 1, online(8, 2)),
                    event("e", 100, 1, online(8, 2)),
                    event("e", 100, 2, claimed("x-y/e", 1)),
                ],
                expect: vec![
                    ("a", "building", vec!["x-y/a"]),
                    ("b", "idle", vec![]),
                    ("c", "grounded", vec![]),
                    ("d", "idle", vec![]),
                    ("e", "building", vec!["x-y/e"]),
                ],
                expect_applied_last: Some(Applied::Changed),
            },
        ];
        for case in cases {
            let mut swarm = Swarm::new(10);
            let mut last = None;
            for input in case.inputs {
                last = Some(swarm.apply(input));
            }
            for (drone, state, building) in &case.expect {
                assert_eq!(
                    state_of(&swarm, drone),
                    *state,
                    "{}: state of {drone}",
                    case.name
                );
                assert_eq!(
                    building_of(&swarm, drone),
                    building.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    "{}: builds of {drone}",
                    case.name
                );
            }
            assert_eq!(
                swarm.drones.len(),
                case.expect.len(),
                "{}: drones shown",
                case.name
            );
            if let Some(applied) = case.expect_applied_last {
                assert_eq!(last, Some(applied), "{}: last input", case.name);
            }
        }
    }

    #[test]
    fn history_counts_each_event_once_whatever_the_order() {
        let mut swarm = Swarm::new(10);
        let inputs = [
            event("a", 100, 1, online(8, 2)),
            event("a", 100, 3, finished("x-y/one", false)),
            event("a", 100, 2, finished("x-y/two", true)),
            event("a", 100, 3, finished("x-y/one", false)),
            event("a", 100, 4, finished("x-y/three", true)),
        ];
        for input in inputs {
            swarm.apply(input);
        }
        let view = &swarm.drones[&name("a")];
        assert_eq!(view.builds.succeeded, 2);
        assert_eq!(view.builds.failed, 1);
        assert_eq!(swarm.builds.failed, 1);
        assert_eq!(swarm.failures.len(), 1);
        // The last result is the newest by the drone's sequence, not by arrival.
        let last = view.last_result.as_ref().expect("a result");
        assert_eq!(last.atom.as_str(), "x-y/three");
        assert_eq!(last.kind, ResultKind::Succeeded);
    }

    #[test]
    fn pending_events_are_bounded_and_still_applied() {
        let mut swarm = Swarm::new(1);
        swarm.apply(event("a", 100, 1, online(8, 2)));
        let total = MAX_PENDING_EVENTS as u64 + 50;
        for seq in 2..=total {
            let kind = if seq % 2 == 0 {
                claimed(&format!("x-y/p{seq}"), 1)
            } else {
                finished(&format!("x-y/p{}", seq - 1), true)
            };
            swarm.apply(event("a", 100, seq, kind));
        }
        let view = &swarm.drones[&name("a")];
        assert_eq!(view.pending.len(), MAX_PENDING_EVENTS);
        assert_eq!(view.current.seq, total);
        // Every claimed build finished except the last one claimed.
        assert_eq!(building_of(&swarm, "a"), [format!("x-y/p{total}")]);
        // A record older than the events merged into the base is too old to go underneath.
        let applied = swarm.apply(record("a", 100, 10, DroneState::Idle, &[]));
        assert_eq!(applied, Applied::Stale);
    }

    #[test]
    fn lost_mark_never_counts_as_a_heartbeat() {
        let mut swarm = Swarm::new(10);
        swarm.apply(record("a", 100, 7, DroneState::Idle, &[]));
        let heard = swarm.drones[&name("a")].last_heard_ms;
        let Input::DroneRecord { mut record, .. } =
            record("a", 100, 7, DroneState::Lost { reason: "x".into() }, &[])
        else {
            unreachable!()
        };
        record.state = DroneState::Lost { reason: "x".into() };
        swarm.apply(Input::DroneRecord {
            key: "a".into(),
            written_ms: heard + 60_000,
            record,
        });
        assert_eq!(swarm.drones[&name("a")].last_heard_ms, heard);
        assert_eq!(state_of(&swarm, "a"), "lost");
    }

    #[test]
    fn failures_keep_the_most_recent_in_time_order() {
        let mut swarm = Swarm::new(3);
        for seq in [5, 1, 4, 2, 3, 6] {
            swarm.apply(event(
                "a",
                100,
                seq,
                finished(&format!("x-y/p{seq}"), false),
            ));
        }
        let atoms: Vec<&str> = swarm.failures.iter().map(|f| f.atom.as_str()).collect();
        assert_eq!(atoms, ["x-y/p4", "x-y/p5", "x-y/p6"]);
    }

    #[test]
    fn long_log_tails_are_cut_to_their_end() {
        let mut swarm = Swarm::new(3);
        let long = format!("{}END", "x".repeat(FAILURE_TAIL_CHARS * 2));
        swarm.apply(event(
            "a",
            1,
            1,
            EventKind::Finished {
                atom: atom("x-y/z"),
                attempt: 1,
                lease_rev: 1,
                outcome: BuildOutcome::Failed {
                    exit: ExitInfo::code(2),
                    log_tail: long,
                },
                duration_ms: 1,
                jobs: 4,
            },
        ));
        let tail = &swarm.failures[0].log_tail;
        assert_eq!(tail.chars().count(), FAILURE_TAIL_CHARS);
        assert!(tail.ends_with("END"));
    }

    #[test]
    fn seen_window_tells_redeliveries_from_late_first_deliveries() {
        let mut window = SeenWindow::default();
        let id = |boot, seq| ReportId { boot_ms: boot, seq };
        assert!(window.insert(id(1, 10)));
        assert!(window.insert(id(1, 8)), "late, first time");
        assert!(!window.insert(id(1, 8)), "redelivered");
        assert!(!window.insert(id(1, 10)), "redelivered");
        assert!(window.insert(id(1, 100)));
        assert!(!window.insert(id(1, 10)), "too old to tell");
        assert!(window.insert(id(1, 99)));
        assert!(window.insert(id(2, 1)), "new process");
        assert!(!window.insert(id(1, 101)), "previous process");
    }

    #[test]
    fn packages_follow_revisions() {
        let mut swarm = Swarm::new(3);
        let pkg = |state: PackageState| fixtures::package_record("x-y/z", state);
        let key = atom("x-y/z").key().to_string();
        let queued = Input::Package {
            key: key.clone(),
            revision: 5,
            record: pkg(PackageState::Queued { attempt: 1 }),
        };
        let done = Input::Package {
            key: key.clone(),
            revision: 9,
            record: pkg(PackageState::Succeeded {
                attempt: 1,
                drone: name("a"),
            }),
        };
        assert_eq!(swarm.apply(done), Applied::Changed);
        assert_eq!(swarm.apply(queued), Applied::Stale);
        assert_eq!(swarm.packages[&key].state.label(), "succeeded");
        let wrong = Input::Package {
            key: "other".into(),
            revision: 10,
            record: pkg(PackageState::Queued { attempt: 1 }),
        };
        assert!(matches!(swarm.apply(wrong), Applied::Rejected(_)));
        assert_eq!(
            swarm.apply(Input::PackageRemoved {
                key: key.clone(),
                revision: 11
            }),
            Applied::Changed
        );
        assert!(swarm.packages.is_empty());
    }

    #[test]
    fn caught_up_means_everything_stored_a_poll_ago_is_folded() {
        let mut swarm = Swarm::new(3);
        assert!(!swarm.events.caught_up(), "no poll yet");
        let poll = |first, last, messages| {
            Input::EventsStream(StreamPosition {
                first_seq: first,
                last_seq: last,
                messages,
            })
        };
        swarm.apply(poll(0, 0, 0));
        assert!(swarm.events.caught_up(), "empty stream");
        swarm.apply(poll(1, 2, 2));
        assert!(swarm.events.caught_up(), "the older poll saw nothing");
        assert_eq!(swarm.events.lag(), 2);
        swarm.apply(poll(1, 3, 3));
        assert!(!swarm.events.caught_up());
        swarm.apply(event("a", 1, 1, online(8, 2)));
        swarm.apply(event("a", 1, 2, EventKind::Draining));
        assert!(swarm.events.caught_up());
        assert_eq!(swarm.events.lag(), 1);
        // A failed poll leaves the position unknown: not caught up until polls succeed again.
        swarm.apply(Input::EventsStreamUnknown);
        assert!(!swarm.events.caught_up());
        // Every event expired from the stream: nothing left to fold.
        let mut fresh = Swarm::new(3);
        fresh.apply(poll(501, 500, 0));
        assert!(fresh.events.caught_up());
        assert_eq!(fresh.events.lag(), 0);
    }
}
