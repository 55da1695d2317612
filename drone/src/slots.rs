//! The drone's slots, as pure bookkeeping: which builds hold how many slots, which slots are
//! free since when, and how many jobs the drone has asked the server for. The main loop asks
//! this what to pull and records here what happened; nothing here does I/O.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use schemas::{Atom, PackageKey, RunningBuild};
use tokio_util::sync::CancellationToken;

/// Where a job that holds slots is in its life on this drone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Claimed or building: its slots are taken.
    Building,
    /// The build's process has ended: its slots are free again while the task commits,
    /// reports and acknowledges, which uses the network, not the build's cores.
    Reporting,
}

/// One job on this drone.
#[derive(Debug)]
pub struct Slot {
    pub atom: Atom,
    pub attempt: u32,
    pub started_ms: u64,
    /// Cancelled to hand the build back (shutdown grace over, or a big job displacing it).
    pub handback: CancellationToken,
    /// Cancelled when an operator cancels the package: the build is killed and its job given
    /// up for good.
    pub cancel: CancellationToken,
    /// Slots the job holds while it builds.
    pub weight: usize,
    pub phase: Phase,
}

/// Every job on the drone, the free slots' ages and the outstanding pull requests.
#[derive(Debug)]
pub struct Slots {
    capacity: usize,
    jobs: HashMap<PackageKey, Slot>,
    /// When each free slot freed, oldest first: the next build started takes the oldest.
    freed: VecDeque<Instant>,
    /// Jobs asked for with pull requests and not yet delivered.
    requested: usize,
}

impl Slots {
    pub fn new(capacity: usize) -> Slots {
        Slots {
            capacity,
            jobs: HashMap::new(),
            freed: VecDeque::new(),
            requested: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots held by builds whose process runs.
    pub fn occupied(&self) -> usize {
        self.jobs
            .values()
            .filter(|slot| slot.phase == Phase::Building)
            .map(|slot| slot.weight)
            .sum()
    }

    /// No build process runs (jobs may still be reporting).
    pub fn idle(&self) -> bool {
        self.occupied() == 0
    }

    /// Every job has left the drone, reporting ones included.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// All slots are taken by running builds.
    pub fn full(&self) -> bool {
        self.occupied() >= self.capacity
    }

    pub fn holds(&self, key: &PackageKey) -> bool {
        self.jobs.contains_key(key)
    }

    pub fn requested(&self) -> usize {
        self.requested
    }

    /// Free slots not already asked for: what the next pull request asks for.
    pub fn to_ask(&self) -> usize {
        self.capacity
            .saturating_sub(self.occupied() + self.requested)
    }

    /// A pull request for `n` jobs was sent.
    pub fn asked(&mut self, n: usize) {
        self.requested += n;
    }

    /// One asked-for job arrived.
    pub fn delivered(&mut self) {
        self.requested = self.requested.saturating_sub(1);
    }

    /// A pull request ended with `unfilled` jobs not delivered; `None`: the server did not say,
    /// so every outstanding request is taken as over.
    pub fn pull_ended(&mut self, unfilled: Option<usize>) {
        match unfilled {
            Some(n) => self.requested = self.requested.saturating_sub(n),
            None => self.requested = 0,
        }
    }

    /// Outstanding requests are forgotten (the pull went silent or failed); the next pass asks
    /// again.
    pub fn forget_requests(&mut self) {
        self.requested = 0;
    }

    /// A job starts in `weight` slots. It takes the oldest free slot's age (returned: how long
    /// the slot had been free), and a job that takes several slots uses up as many ages.
    pub fn start(&mut self, key: PackageKey, slot: Slot) -> Option<Instant> {
        let freed_at = self.freed.pop_front();
        let others = slot.weight.saturating_sub(1).min(self.freed.len());
        self.freed.drain(..others);
        self.jobs.insert(key, slot);
        freed_at
    }

    /// The build's process ended at `at`: its slots are free from then. Returns the job if its
    /// process was still counted as running (the first report of its end).
    pub fn exited(&mut self, key: &PackageKey, at: Instant) -> Option<&Slot> {
        let slot = self.jobs.get_mut(key)?;
        if slot.phase != Phase::Building {
            return None;
        }
        slot.phase = Phase::Reporting;
        self.freed.extend(std::iter::repeat_n(at, slot.weight));
        Some(slot)
    }

    /// The job left the drone. When no build ran in its slots they are free again since
    /// `unused` (when they had freed before the job took them), or since now.
    pub fn done(&mut self, key: &PackageKey, unused: Option<Instant>) -> Option<Slot> {
        let slot = self.jobs.remove(key)?;
        if slot.phase == Phase::Building {
            let at = unused.unwrap_or_else(Instant::now);
            for _ in 0..slot.weight {
                self.freed.push_front(at);
            }
        }
        Some(slot)
    }

    /// The jobs whose process runs.
    pub fn building(&self) -> impl Iterator<Item = &Slot> {
        self.jobs
            .values()
            .filter(|slot| slot.phase == Phase::Building)
    }

    /// Hands back every job (their tasks kill their builds and give the jobs back).
    pub fn hand_back_all(&self) {
        for slot in self.jobs.values() {
            slot.handback.cancel();
        }
    }

    /// Hands back the jobs whose process runs.
    pub fn hand_back_building(&self) {
        for slot in self.building() {
            slot.handback.cancel();
        }
    }

    /// Cancels the build of `attempt` of `key` (its task kills the build and gives the job up);
    /// false when this drone holds no such build.
    pub fn cancel(&self, key: &PackageKey, attempt: u32) -> bool {
        match self.jobs.get(key) {
            Some(slot) if slot.attempt == attempt => {
                slot.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// What the drone record shows: every job on the drone, by atom.
    pub fn running_builds(&self) -> Vec<RunningBuild> {
        let mut builds: Vec<RunningBuild> = self
            .jobs
            .values()
            .map(|slot| RunningBuild {
                atom: slot.atom.clone(),
                attempt: slot.attempt,
                started_ms: slot.started_ms,
            })
            .collect();
        builds.sort_by(|a, b| a.atom.cmp(&b.atom));
        builds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u32) -> PackageKey {
        schemas::fixtures::atom(&format!("a-b/p{n}")).key()
    }

    fn slot(n: u32, weight: usize) -> Slot {
        Slot {
            atom: schemas::fixtures::atom(&format!("a-b/p{n}")),
            attempt: 1,
            started_ms: u64::from(n),
            handback: CancellationToken::new(),
            cancel: CancellationToken::new(),
            weight,
            phase: Phase::Building,
        }
    }

    /// One step of the pull table.
    enum Op {
        Nothing,
        Ask(usize),
        Delivered,
        Start(u32),
        PullEnded(Option<usize>),
        Exited(u32),
        Forget,
    }

    /// (operation, occupied, to_ask, requested) after each step of one drone with 4 slots.
    #[test]
    fn pulls_ask_for_exactly_the_free_slots() {
        let t0 = Instant::now();
        let mut slots = Slots::new(4);
        let steps = [
            ("start", Op::Nothing, 0, 4, 0),
            ("ask all", Op::Ask(4), 0, 0, 4),
            (
                "one arrives (its slot is not taken yet)",
                Op::Delivered,
                0,
                1,
                3,
            ),
            ("it starts", Op::Start(1), 1, 0, 3),
            ("pull ends, 3 unfilled", Op::PullEnded(Some(3)), 1, 3, 0),
            ("ask 2", Op::Ask(2), 1, 1, 2),
            ("pull ends, count unknown", Op::PullEnded(None), 1, 3, 0),
            ("process exits", Op::Exited(1), 0, 4, 0),
            ("ask 4", Op::Ask(4), 0, 0, 4),
            ("pull went silent", Op::Forget, 0, 4, 0),
            ("more delivered than asked", Op::Delivered, 0, 4, 0),
        ];
        for (what, op, occupied, to_ask, requested) in steps {
            match op {
                Op::Nothing => {}
                Op::Ask(n) => slots.asked(n),
                Op::Delivered => slots.delivered(),
                Op::Start(n) => {
                    slots.start(key(n), slot(n, 1));
                }
                Op::PullEnded(unfilled) => slots.pull_ended(unfilled),
                Op::Exited(n) => {
                    slots.exited(&key(n), t0);
                }
                Op::Forget => slots.forget_requests(),
            }
            assert_eq!(
                (slots.occupied(), slots.to_ask(), slots.requested()),
                (occupied, to_ask, requested),
                "after {what}"
            );
        }
    }

    #[test]
    fn a_slot_is_free_when_the_process_exits_and_the_job_leaves_later() {
        let t0 = Instant::now();
        let mut slots = Slots::new(2);
        assert_eq!(
            slots.start(key(1), slot(1, 1)),
            None,
            "no slot had freed yet"
        );
        assert!(!slots.idle());
        let exited = slots.exited(&key(1), t0).map(|s| s.atom.clone());
        assert_eq!(exited, Some(schemas::fixtures::atom("a-b/p1")));
        assert!(
            slots.exited(&key(1), t0).is_none(),
            "an end is reported once"
        );
        assert!(slots.idle(), "the process ended: its slot is free");
        assert!(!slots.is_empty(), "the job still reports");
        assert_eq!(
            slots.running_builds().len(),
            1,
            "a reporting job is still shown"
        );
        // The next build takes the age of the slot freed at t0.
        assert_eq!(slots.start(key(2), slot(2, 1)), Some(t0));
        let left = slots.done(&key(1), None).expect("the job was here");
        assert_eq!(left.phase, Phase::Reporting);
        assert_eq!(slots.occupied(), 1);
        assert!(slots.done(&key(1), None).is_none());
    }

    #[test]
    fn a_job_that_never_built_gives_its_slot_back_with_its_old_age() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut slots = Slots::new(1);
        slots.start(key(1), slot(1, 1));
        slots.exited(&key(1), t0);
        slots.done(&key(1), None);
        // A job that was not built (another drone held it) takes the slot and returns it.
        let freed_at = slots.start(key(2), slot(2, 1));
        assert_eq!(freed_at, Some(t0));
        slots.done(&key(2), freed_at);
        assert_eq!(
            slots.start(key(3), slot(3, 1)),
            Some(t0),
            "still free since t0"
        );
        slots.done(&key(3), None);
        let now = slots.start(key(4), slot(4, 1)).expect("an age");
        assert!(now >= t1 - Duration::from_secs(1));
    }

    #[test]
    fn a_big_job_takes_every_slot_and_every_free_age() {
        let t0 = Instant::now();
        let mut slots = Slots::new(3);
        for n in 1..=3 {
            slots.start(key(n), slot(n, 1));
        }
        for n in 1..=3 {
            slots.exited(&key(n), t0 + Duration::from_millis(u64::from(n)));
            slots.done(&key(n), None);
        }
        assert_eq!(
            slots.start(key(9), slot(9, 3)),
            Some(t0 + Duration::from_millis(1)),
            "the oldest free age"
        );
        assert!(slots.freed.is_empty(), "the other two ages are used up");
        assert!(slots.full());
        assert_eq!(slots.to_ask(), 0);
        slots.exited(&key(9), t0);
        assert_eq!(slots.to_ask(), 3);
    }

    #[test]
    fn hand_back_reaches_every_job_and_the_record_lists_them_by_atom() {
        let mut slots = Slots::new(3);
        for n in [3, 1, 2] {
            slots.start(key(n), slot(n, 1));
        }
        let tokens: Vec<_> = slots.building().map(|s| s.handback.clone()).collect();
        slots.hand_back_all();
        assert!(tokens.iter().all(CancellationToken::is_cancelled));
        let atoms: Vec<String> = slots
            .running_builds()
            .iter()
            .map(|b| b.atom.to_string())
            .collect();
        assert_eq!(atoms, ["a-b/p1", "a-b/p2", "a-b/p3"]);
    }

    #[test]
    fn a_cancel_reaches_only_the_named_attempt() {
        let mut slots = Slots::new(2);
        slots.start(key(1), slot(1, 1));
        slots.start(key(2), slot(2, 1));
        assert!(!slots.cancel(&key(1), 2), "another attempt");
        assert!(!slots.cancel(&key(3), 1), "not on this drone");
        assert!(slots.cancel(&key(1), 1));
        let cancelled: Vec<bool> = [1, 2]
            .iter()
            .map(|n| slots.jobs[&key(*n)].cancel.is_cancelled())
            .collect();
        assert_eq!(cancelled, [true, false]);
        assert!(!slots.jobs[&key(1)].handback.is_cancelled());
    }
}
