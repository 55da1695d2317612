//! The scheduler's arithmetic, kept pure: estimates, the longest-first order, and which jobs are
//! big (queued apart for the drones that give a build every core).
//!
//! The swarm is pull-based: a drone asks for work when a slot frees, and JetStream hands out a
//! consumer's messages in stream order. So the order of publication *is* the schedule. Longest
//! first is the classic list-scheduling rule (LPT): the long builds start at once, and the short
//! ones that come last fill the gaps, so every slot runs out of work at about the same time. What
//! a list schedule cannot fix is one build longer than the whole run's fair share: on a slot of a
//! small drone it alone sets the makespan. Those jobs are published on a subject of their own that
//! only the big drones pull, and a big drone gives such a build all its cores.

use schemas::{PackageRecord, SizeClass};

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

/// What a successful build says about the package, in seconds on 8 cores: its duration scaled
/// by the cores it had (build time is taken as inversely proportional to cores).
pub fn observed_secs(duration_ms: u64, jobs: u32) -> Option<f64> {
    (jobs > 0).then(|| duration_ms as f64 / 1000.0 * f64::from(jobs) / 8.0)
}

/// The learned estimate after one more observation: an even running average, so one unusual
/// build moves the estimate halfway and a changed package is tracked within a few builds.
pub fn learn(previous: Option<f64>, observed: f64) -> f64 {
    match previous {
        Some(previous) => (previous + observed) / 2.0,
        None => observed,
    }
}

/// The online drones of one arch, as the scheduler sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capacity {
    /// Cores of every online drone.
    pub cores: u32,
    /// The most cores one normal build gets on any online drone.
    pub max_slot_cores: u32,
    /// The most cores of an online drone that takes big builds (0: none).
    pub max_big_cores: u32,
}

impl Capacity {
    pub fn add(&mut self, cores: u32, slots: u32, big_builds: bool) {
        self.cores += cores;
        self.max_slot_cores = self.max_slot_cores.max((cores / slots.max(1)).max(1));
        if big_builds {
            self.max_big_cores = self.max_big_cores.max(cores);
        }
    }
}

/// The estimate (seconds on 8 cores) above which a job is big, given the estimated work still to
/// do (`work_secs`, seconds on 8 cores, summed over unfinished packages). The run cannot end
/// before `work × 8 / cores` (the horizon); a job is big when even the largest normal slot cannot
/// finish it within the horizon, and a big drone can do better. `None`: nothing is big.
pub fn big_above(capacity: &Capacity, work_secs: f64) -> Option<f64> {
    if capacity.cores == 0 || capacity.max_big_cores <= capacity.max_slot_cores {
        return None;
    }
    let horizon = work_secs * 8.0 / f64::from(capacity.cores);
    Some(horizon * f64::from(capacity.max_slot_cores) / 8.0)
}

/// Whether a job is big, given `big_above`: its estimate is above it, or all that is known is
/// that it is a giant. A class stands for its typical member, and a giant's build time has no
/// upper end (a chromium is three times a typical giant): a giant not yet measured goes to a big
/// drone, where it cannot end up alone on a small slot. Once built, its learned time decides.
pub fn is_big(record: &PackageRecord, big_above: Option<f64>) -> bool {
    let Some(above) = big_above else {
        return false;
    };
    let unmeasured_giant = record.learned_secs.is_none()
        && record.estimate_secs.is_none()
        && record.class == Some(SizeClass::Giant);
    unmeasured_giant || estimate_secs(record) > above
}

/// Sorts jobs longest first; equal estimates keep their submission order.
pub fn longest_first<T>(jobs: &mut [(T, f64)]) {
    jobs.sort_by(|a, b| b.1.total_cmp(&a.1));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued package of `class` with nothing else known.
    fn queued(atom: &str, class: Option<SizeClass>) -> PackageRecord {
        PackageRecord {
            v: schemas::SCHEMA_VERSION,
            atom: schemas::Atom::parse(atom).expect("valid"),
            arch: schemas::Arch::default(),
            submission: 1,
            state: schemas::PackageState::Queued { attempt: 1 },
            history: Vec::new(),
            estimate_secs: None,
            class,
            learned_secs: None,
            submitted_ms: 0,
            updated_ms: 0,
            artifacts: Vec::new(),
            fingerprint: None,
            run: None,
            deps: Vec::new(),
        }
    }

    #[test]
    fn estimates_fall_back_from_learned_to_submitted_to_class() {
        let mut record = queued("www-client/chromium", None);
        assert_eq!(estimate_secs(&record), UNKNOWN_SECS);
        record.class = Some(SizeClass::Giant);
        assert_eq!(estimate_secs(&record), 7_200.0);
        record.estimate_secs = Some(21_600.0);
        assert_eq!(estimate_secs(&record), 21_600.0);
        record.learned_secs = Some(20_000.0);
        assert_eq!(estimate_secs(&record), 20_000.0);
    }

    #[test]
    fn an_unmeasured_giant_is_big_and_a_measured_one_by_its_time() {
        let mut record = queued("dev-lang/rust", Some(SizeClass::Giant));
        assert!(!is_big(&record, None), "no big drone online");
        assert!(is_big(&record, Some(10_000.0)));
        record.learned_secs = Some(3_900.0);
        assert!(!is_big(&record, Some(10_000.0)));
        record.learned_secs = Some(21_600.0);
        assert!(is_big(&record, Some(10_000.0)));
        record.class = Some(SizeClass::Heavy);
        record.learned_secs = None;
        assert!(!is_big(&record, Some(10_000.0)));
    }

    #[test]
    fn learning_scales_by_cores_and_averages() {
        assert_eq!(observed_secs(10_000, 16), Some(20.0));
        assert_eq!(observed_secs(10_000, 0), None);
        assert_eq!(learn(None, 20.0), 20.0);
        assert_eq!(learn(Some(20.0), 40.0), 30.0);
    }

    /// The seed swarm (16, 10, 24 and 8 cores, one slot per 4 cores) on the world-152 model:
    /// chromium and qtwebengine cannot finish on any 4- or 5-core slot within the horizon,
    /// libreoffice can.
    #[test]
    fn the_seed_swarm_queues_the_two_largest_world_packages_apart() {
        let mut capacity = Capacity::default();
        for (cores, slots, big) in [(16, 4, true), (10, 2, false), (24, 6, true), (8, 2, false)] {
            capacity.add(cores, slots, big);
        }
        assert_eq!(capacity.cores, 58);
        assert_eq!(capacity.max_slot_cores, 5);
        let above = big_above(&capacity, 111_935.0).expect("big drones online");
        assert!(
            10_800.0 > above,
            "qtwebengine (and chromium) are big: {above}"
        );
        assert!(7_200.0 < above, "{above}");
        // Without a drone that takes big builds, or when every build already gets all of a
        // drone, nothing is queued apart.
        let mut small = Capacity::default();
        small.add(8, 1, false);
        assert_eq!(big_above(&small, 111_935.0), None);
        let mut whole = Capacity::default();
        whole.add(24, 1, true);
        assert_eq!(big_above(&whole, 111_935.0), None);
    }

    #[test]
    fn longest_first_is_stable() {
        let mut jobs = vec![("a", 1.0), ("b", 5.0), ("c", 1.0), ("d", 9.0)];
        longest_first(&mut jobs);
        let order: Vec<_> = jobs.iter().map(|j| j.0).collect();
        assert_eq!(order, ["d", "b", "a", "c"]);
    }
}
