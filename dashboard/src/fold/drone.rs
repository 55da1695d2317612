//! One drone as the dashboard knows it: its newest record with every newer event applied on top
//! in the drone's own `(boot_ms, seq)` order, whatever order the reports arrived in, and the
//! window that tells a redelivered event from a late first delivery.

use schemas::{
    Arch, BuildOutcome, DroneName, DroneRecord, DroneState, EventKind, RunningBuild, SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};

use super::history::{BuildCounts, LastResult};

/// Heartbeat interval assumed for a drone known only from its events (its record has not been
/// read, or expired from the bucket): the drone's default, so such a drone turns lost at the same
/// age as a default drone would.
pub const ASSUMED_HEARTBEAT_MS: u64 = 2_000;

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

/// Events kept per drone on top of its newest record. A drone rewrites its record at every
/// heartbeat, so only the events of the last few seconds are kept; past this bound the oldest is
/// merged into the base record.
pub const MAX_PENDING_EVENTS: usize = 256;

/// What a drone shows: a record, the report it stands for, and whether its description (cores,
/// slots, arch, version) is known.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shown {
    pub(super) record: DroneRecord,
    pub(super) id: ReportId,
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
            EventKind::HandedBack { atom, .. }
            | EventKind::LeaseLost { atom, .. }
            | EventKind::Cancelled { atom, .. } => {
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
pub(super) struct PendingEvent {
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
    pub(super) base: Shown,
    pub(super) pending: Vec<PendingEvent>,
    pub(super) seen: SeenWindow,
    pub last_result: Option<LastResult>,
    pub(super) last_result_id: ReportId,
    pub builds: BuildCounts,
}

impl DroneView {
    pub(super) fn unknown(name: DroneName) -> DroneView {
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
                supervise_deadline_ms: None,
                boot_ms: 0,
                seq: 0,
                fingerprint: None,
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
    pub(super) fn add_event(&mut self, id: ReportId, at_ms: u64, kind: &EventKind) -> bool {
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
    pub(super) fn set_base(&mut self, record: DroneRecord, id: ReportId) {
        self.base = Shown {
            record,
            id,
            described: true,
        };
        self.pending.retain(|e| e.id > id);
        self.replay();
    }
}
