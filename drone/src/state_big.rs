//! The drone's decisions about big builds (`Drone`'s methods for them, split from `state.rs`):
//! the big pull and the looks at the queues, a big job arriving (`BigJob`), a held one starting
//! (`Held`), and lingering after a build of the run's critical path
//! (`Reservation::Lingering`). Pure; tested in `state_tests.rs`.

use std::time::{Duration, Instant};

use super::{BIG_HANDBACK_WINDOW, BigJob, Drone, Held, Look, Request, Reservation};

impl<M> Drone<M> {
    /// A held big job whose displaced builds have stopped starts now; one held by a drone that
    /// no longer pulls goes back.
    pub fn take_held(&mut self) -> Option<Held<M>> {
        let pulls = self.pulls();
        let big = self.big.as_mut()?;
        if !matches!(big.reservation, Reservation::Holding(_)) {
            return None;
        }
        if pulls && !self.slots.idle() {
            return None;
        }
        let Reservation::Holding(message) =
            std::mem::replace(&mut big.reservation, Reservation::Clear)
        else {
            return None;
        };
        Some(if pulls {
            Held::Start(message)
        } else {
            Held::GiveBack(message)
        })
    }

    /// Whether to send a pull for one big job now (an idle big drone waits on the big queue);
    /// when it says yes, the pull counts as out.
    pub fn begin_big_pull(&mut self) -> bool {
        let ready = self.pulls() && self.slots.idle();
        match self.big.as_mut() {
            Some(big) if ready && big.pull == Request::None => {
                big.pull = Request::Out;
                true
            }
            _ => false,
        }
    }

    /// Whether a look at a queue's pending count may go out (a drone that takes big builds and
    /// pulls, with no look out).
    pub fn may_look(&self) -> bool {
        self.pulls()
            && self
                .big
                .as_ref()
                .is_some_and(|big| big.look == Request::None)
    }

    /// Which queue to look at on the big-check tick, if a look may go out; the look then
    /// counts as out.
    pub fn begin_look(&mut self) -> Option<Look> {
        if !self.may_look() {
            return None;
        }
        let idle = self.slots.idle();
        let big = self.big.as_mut()?;
        big.look = Request::Out;
        Some(if idle { Look::Normal } else { Look::Big })
    }

    /// What a look found.
    pub fn looked(&mut self, look: Look, pending: bool) {
        if let Some(big) = self.big.as_mut() {
            big.look = Request::None;
            match look {
                Look::Normal => big.normal_waiting = pending,
                // A job held already waits for its builds; another one waiting changes nothing.
                Look::Big => match (&big.reservation, pending) {
                    (Reservation::Holding(_), _) => {}
                    (_, true) => big.reservation = Reservation::Reserved,
                    (_, false) => big.reservation = Reservation::Clear,
                },
            }
        }
    }

    /// The big pull ended with nothing: no big job waits.
    pub fn big_pull_empty(&mut self) {
        if let Some(big) = self.big.as_mut() {
            big.pull = Request::None;
            if matches!(big.reservation, Reservation::Reserved) {
                big.reservation = Reservation::Clear;
            }
        }
    }

    /// A big job arrived (`now_ms`: the drone's clock, as the builds' start times). Builds that
    /// started a moment ago (normal jobs taken as the big one was published) are handed back,
    /// costing seconds: the big job, which sets the run's length, waits only for them to stop.
    pub fn big_job(&mut self, message: M, now_ms: u64) -> BigJob<M> {
        let pulls = self.pulls();
        let window = BIG_HANDBACK_WINDOW.as_millis() as u64;
        let building: Vec<u64> = self.slots.building().map(|s| s.started_ms).collect();
        let just_started = building
            .iter()
            .all(|started| now_ms.saturating_sub(*started) <= window);
        let Some(big) = self.big.as_mut() else {
            return BigJob::GiveBack(message);
        };
        big.pull = Request::None;
        if matches!(
            big.reservation,
            Reservation::Reserved | Reservation::Lingering { .. }
        ) {
            big.reservation = Reservation::Clear;
        }
        if !pulls || !just_started || matches!(big.reservation, Reservation::Holding(_)) {
            return BigJob::GiveBack(message);
        }
        big.reservation = Reservation::Holding(message);
        BigJob::Hold {
            hand_back: building.len(),
        }
    }

    /// A big job starts in all slots; `linger`: its job says the critical path goes on after it.
    pub fn big_started(&mut self, linger: bool) {
        if let Some(big) = self.big.as_mut() {
            big.linger_after = linger;
        }
    }

    /// A build's process ended (its slots are free at once, before its result is reported):
    /// after a big build the critical path goes on from, the drone lingers for `linger`.
    pub fn build_exited(&mut self, now: Instant, linger: Duration) {
        let idle = self.slots.idle();
        if let Some(big) = self.big.as_mut()
            && std::mem::take(&mut big.linger_after)
            && idle
            && !linger.is_zero()
            && matches!(big.reservation, Reservation::Clear)
        {
            big.reservation = Reservation::Lingering {
                until: now + linger,
            };
        }
    }

    /// A build's report: the path does not go on from a build that did not succeed here.
    pub fn build_done(&mut self, succeeded: bool) {
        if let Some(big) = self.big.as_mut()
            && !succeeded
        {
            big.linger_after = false;
            if matches!(big.reservation, Reservation::Lingering { .. }) {
                big.reservation = Reservation::Clear;
            }
        }
    }

    /// Whether the drone keeps itself free for the run's critical path now: it takes only the
    /// jobs the coordinator placed by the graph (`Job::min_cores`), and gives back others.
    pub fn lingering(&self) -> bool {
        self.big
            .as_ref()
            .is_some_and(|big| matches!(big.reservation, Reservation::Lingering { .. }))
    }
}
