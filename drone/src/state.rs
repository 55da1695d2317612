//! The drone's state and the decisions taken on it, without I/O: its health lifecycle (working,
//! grounded, draining), its slots, its reservation for big builds, its pull gate and when its
//! record is due. The main loop (`service.rs`) feeds it what happened and carries out what it
//! decides; every decision here is a table test.

use std::time::{Duration, Instant};

use schemas::{Atom, DroneState};

use crate::health::{HealthEvent, Lifecycle, LifecycleError, transition};
use crate::slots::Slots;

/// The drone record is rewritten at most this often for changes of its builds (a queue of
/// short builds changes them hundreds of times a second); changes of the drone's own state
/// (grounded, draining) are written at once.
pub const RECORD_MIN_INTERVAL: Duration = Duration::from_millis(1_000);
/// How long pulls pause after the consumer answered with an error status (a cluster electing a
/// new leader answers 503 at once; asking again at once would spin).
pub const PULL_PAUSE: Duration = Duration::from_millis(250);
/// A big job that reaches a drone whose builds all started at most this long ago makes the drone
/// hand them back and take the big job.
pub const BIG_HANDBACK_WINDOW: Duration = Duration::from_secs(2);

/// Where a drone that takes big builds stands with the big queue. `M` is the job message (a
/// type parameter so the decisions are testable without a server).
#[derive(Debug, PartialEq)]
pub enum Reservation<M> {
    /// No big job is known to wait: normal work as usual.
    Clear,
    /// A big job waits on the big queue: no normal work until this drone is idle and pulls it.
    Reserved,
    /// A big job was received while builds that had just started were being handed back; it
    /// starts once they have stopped.
    Holding(M),
    /// A build of the run's critical path has just ended here and the path goes on: no normal
    /// work until `until`, so that the path's next package, published in a moment, starts here
    /// at once instead of waiting for normal builds taken in between.
    Lingering { until: Instant },
}

/// A request to the server that at most one of is out at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    None,
    Out,
}

/// Which queue a look at the pending count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Idle: is there normal work? (An idle big drone waits on the big queue and asks for
    /// normal work only once it has seen some queued.)
    Normal,
    /// Building: does a big job wait?
    Big,
}

/// The big-builds part of a drone that takes them.
#[derive(Debug)]
pub struct BigQueue<M> {
    pub reservation: Reservation<M>,
    /// What the last look at the normal queue, taken while idle, found.
    normal_waiting: bool,
    /// A pull of one big job.
    pull: Request,
    /// A look at a queue's pending count.
    look: Request,
    /// The big build running says the critical path goes on after it: linger once it ends.
    linger_after: bool,
}

/// What the pulls may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullGate {
    Open,
    /// After an error status, until this instant.
    Paused {
        until: Instant,
    },
}

/// What a pull's reply without a job says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// The server is still holding the request open.
    Heartbeat,
    /// The request is over (expired, terminated, nothing to deliver) with this many jobs not
    /// delivered, when the server says.
    Ended { unfilled: Option<usize> },
    /// The consumer cannot serve now (a cluster without a leader).
    Error,
}

/// What to do with a normal job that has just arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Start it in one slot.
    Start,
    /// The machine cannot build: give the job back (no attempt used) and ground the drone.
    Unfit { reason: String },
    /// A big job waits for this drone to be free: give the job back.
    Reserved,
    /// Delivered by a pull the drone had given up on, or while it does not pull: give it back.
    Unwanted,
}

/// What to do with a big job that has just arrived.
#[derive(Debug, PartialEq)]
pub enum BigJob<M> {
    /// Give it back: the drone does not pull, or its builds are too far along to hand back.
    GiveBack(M),
    /// Held until the handed-back builds (if any) have stopped; `hand_back` of them.
    Hold { hand_back: usize },
}

/// What to do with a held big job now.
#[derive(Debug, PartialEq)]
pub enum Held<M> {
    Start(M),
    GiveBack(M),
}

/// Everything the main loop knows, and nothing it must ask the network for.
#[derive(Debug)]
pub struct Drone<M> {
    pub lifecycle: Lifecycle,
    pub slots: Slots,
    /// `None` for a drone that takes no big builds.
    pub big: Option<BigQueue<M>>,
    pub gate: PullGate,
    /// When a job or a pull status last arrived (or a pull was sent with none outstanding):
    /// a pull that stays silent past its heartbeats is forgotten.
    pub last_pull_activity: Instant,
    /// Set while draining, until the grace period ends and running builds are handed back.
    pub drain_deadline: Option<Instant>,
    /// Why the drone takes no work of its arch's run (fingerprint or tree), while it does not
    /// fit it: it pulls nothing, and builds already running finish.
    excluded: Option<String>,
    threshold: u32,
    record: RecordClock,
}

/// When the drone record is due.
#[derive(Debug)]
struct RecordClock {
    last_written: Instant,
    /// Something changed since the last write.
    stale: bool,
}

impl<M> Drone<M> {
    /// A working drone with `slots` slots, grounded after `threshold` different packages fail
    /// in a row; `takes_big`: it has a big consumer.
    pub fn new(slots: usize, threshold: u32, takes_big: bool, now: Instant) -> Drone<M> {
        Drone {
            lifecycle: Lifecycle::start(),
            slots: Slots::new(slots),
            big: takes_big.then(|| BigQueue {
                reservation: Reservation::Clear,
                normal_waiting: false,
                pull: Request::None,
                look: Request::None,
                linger_after: false,
            }),
            gate: PullGate::Open,
            last_pull_activity: now,
            drain_deadline: None,
            excluded: None,
            threshold,
            // The first record is written at once.
            record: RecordClock {
                last_written: now.checked_sub(RECORD_MIN_INTERVAL).unwrap_or(now),
                stale: true,
            },
        }
    }

    /// Whether the drone asks for work: healthy, not draining, and fitting its arch's run.
    pub fn pulls(&self) -> bool {
        self.lifecycle.pulls() && self.excluded.is_none()
    }

    /// The drone fits its arch's run again (`None`) or no longer (why); `true` when that
    /// changed, so the record is due at once.
    pub fn set_excluded(&mut self, excluded: Option<String>) -> bool {
        if self.excluded == excluded {
            return false;
        }
        self.excluded = excluded;
        self.record.stale = true;
        true
    }

    /// A job that came for another fingerprint: counted as delivered, and not taken.
    pub fn refuse(&mut self, now: Instant) {
        self.last_pull_activity = now;
        self.slots.delivered();
    }

    /// Whether normal work may be asked for, as far as big builds go.
    fn normal_allowed(&self) -> bool {
        match &self.big {
            None => true,
            Some(big) => match (&big.reservation, self.slots.idle()) {
                (Reservation::Holding(_) | Reservation::Lingering { .. }, _) => false,
                (_, true) => big.normal_waiting || self.slots.requested() > 0,
                (reservation, false) => !matches!(reservation, Reservation::Reserved),
            },
        }
    }

    /// How many normal jobs to ask for now, if any: exactly the free slots not already asked
    /// for. Asking for normal work while idle means a big job seen before went elsewhere (this
    /// drone's big pull would have had it).
    pub fn normal_pull(&mut self, now: Instant) -> Option<usize> {
        if let Some(big) = self.big.as_mut()
            && matches!(big.reservation, Reservation::Lingering { until } if now >= until)
        {
            big.reservation = Reservation::Clear;
        }
        if !self.pulls() || !self.normal_allowed() {
            return None;
        }
        if let PullGate::Paused { until } = self.gate {
            if now < until {
                return None;
            }
            self.gate = PullGate::Open;
        }
        let free = self.slots.to_ask();
        if free == 0 {
            return None;
        }
        let idle = self.slots.idle();
        if let Some(big) = self.big.as_mut() {
            big.normal_waiting = false;
            if idle && matches!(big.reservation, Reservation::Reserved) {
                big.reservation = Reservation::Clear;
            }
        }
        Some(free)
    }

    /// A pull request for `n` jobs went out.
    pub fn asked(&mut self, n: usize, now: Instant) {
        if self.slots.requested() == 0 {
            self.last_pull_activity = now;
        }
        self.slots.asked(n);
    }

    /// A status arrived on the pull inbox.
    pub fn pull_status(&mut self, status: PullStatus, now: Instant) {
        self.last_pull_activity = now;
        match status {
            PullStatus::Heartbeat => {}
            PullStatus::Ended { unfilled } => self.slots.pull_ended(unfilled),
            PullStatus::Error => {
                self.slots.forget_requests();
                self.gate = PullGate::Paused {
                    until: now + PULL_PAUSE,
                };
            }
        }
    }

    /// A normal job arrived. `unfit` is the build directory's fault, when the drone pulls and
    /// has one to check.
    pub fn admit(&mut self, unfit: Option<String>, now: Instant) -> Admit {
        self.last_pull_activity = now;
        self.slots.delivered();
        if let Some(reason) = unfit {
            return Admit::Unfit { reason };
        }
        let reserved = self
            .big
            .as_ref()
            .is_some_and(|big| !matches!(big.reservation, Reservation::Clear));
        if reserved {
            Admit::Reserved
        } else if !self.pulls() || self.slots.full() {
            Admit::Unwanted
        } else {
            Admit::Start
        }
    }

    /// When a silent pull is forgotten, if one is outstanding (`silence`: a few of its
    /// heartbeats).
    pub fn pull_watchdog(&self, silence: Duration) -> Option<Instant> {
        (self.slots.requested() > 0).then(|| self.last_pull_activity + silence)
    }

    /// Applies a health event; returns the grounding reason when the drone has just grounded
    /// itself (the caller says so in the log and the event stream).
    pub fn health(&mut self, event: &HealthEvent) -> Option<String> {
        let next = transition(&self.lifecycle, event, self.threshold).ok()?;
        let grounded = match (&self.lifecycle, &next) {
            (Lifecycle::Working { .. }, Lifecycle::Grounded { reason }) => Some(reason.clone()),
            _ => None,
        };
        self.lifecycle = next;
        grounded
    }

    /// The operator's `unground`, `ground` or `drain` (`event`).
    pub fn operator(&mut self, event: &HealthEvent) -> Result<(), LifecycleError> {
        self.lifecycle = transition(&self.lifecycle, event, self.threshold)?;
        self.record.stale = true;
        Ok(())
    }

    /// Shutdown asked: no more pulls; running builds get until `deadline`.
    pub fn drain(&mut self, deadline: Instant) {
        if let Ok(next) = transition(&self.lifecycle, &HealthEvent::Shutdown, self.threshold) {
            self.lifecycle = next;
        }
        self.drain_deadline = Some(deadline);
    }

    pub fn draining(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Draining)
    }

    /// Draining and every job has left: the drone can go offline.
    pub fn drained(&self) -> bool {
        self.draining() && self.slots.is_empty()
    }

    /// The state the drone record shows.
    pub fn record_state(&self) -> DroneState {
        match &self.lifecycle {
            Lifecycle::Working { .. } if self.slots.is_empty() => match &self.excluded {
                Some(reason) => DroneState::Excluded {
                    reason: reason.clone(),
                },
                None => DroneState::Idle,
            },
            Lifecycle::Working { .. } => DroneState::Building,
            Lifecycle::Grounded { reason } => DroneState::Grounded {
                reason: reason.clone(),
            },
            Lifecycle::Draining | Lifecycle::Drained => DroneState::Draining,
        }
    }

    /// Packages that failed in a row, as the record shows.
    pub fn failed_streak(&self) -> u32 {
        match &self.lifecycle {
            Lifecycle::Working { failed_streak } => failed_streak.len() as u32,
            _ => 0,
        }
    }

    /// Something the record shows changed.
    pub fn touch(&mut self) {
        self.record.stale = true;
    }

    /// When a stale record may next be written, if it is stale.
    pub fn record_due_at(&self) -> Option<Instant> {
        self.record
            .stale
            .then(|| self.record.last_written + RECORD_MIN_INTERVAL)
    }

    /// Whether to write the record now: at once for a change of the drone's own state
    /// (`urgent`), else at most every `RECORD_MIN_INTERVAL` while something changed. Saying yes
    /// counts it as written.
    pub fn record_due(&mut self, urgent: bool, now: Instant) -> bool {
        let due = urgent
            || (self.record.stale
                && now.duration_since(self.record.last_written) >= RECORD_MIN_INTERVAL);
        if due {
            self.record.stale = false;
            self.record.last_written = now;
        }
        due
    }
}

/// The health verdict on a build whose process ended with `outcome`; `None` for a build that
/// did not run to its end (it was killed because its lease was lost), and for a failure that
/// is not the machine's: a package's own error counts against the package, a download that
/// failed against no one. Only the machine's failures (no space, no memory, no builder, a
/// Portage crash) count towards grounding the drone; any success resets the count.
pub fn verdict(atom: &Atom, outcome: Option<&schemas::BuildOutcome>) -> Option<HealthEvent> {
    match outcome? {
        schemas::BuildOutcome::Succeeded => Some(HealthEvent::BuildSucceeded),
        schemas::BuildOutcome::Failed {
            exit,
            class: schemas::FailureClass::Infrastructure,
            signature,
            ..
        } => Some(HealthEvent::BuildFailed {
            atom: atom.clone(),
            why: signature.clone().unwrap_or_else(|| exit.to_string()),
        }),
        schemas::BuildOutcome::Failed { .. } => None,
    }
}

#[path = "state_big.rs"]
mod big;

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
