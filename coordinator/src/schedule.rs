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

pub use schemas::paths::{UNKNOWN_SECS, class_secs, estimate_secs};

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
    /// The fewest cores one normal build gets on an online drone (0: none online).
    pub min_slot_cores: u32,
    /// The most cores of an online drone that takes big builds (0: none).
    pub max_big_cores: u32,
}

impl Capacity {
    pub fn add(&mut self, cores: u32, slots: u32, big_builds: bool) {
        self.cores += cores;
        let slot = (cores / slots.max(1)).max(1);
        self.max_slot_cores = self.max_slot_cores.max(slot);
        self.min_slot_cores = match self.min_slot_cores {
            0 => slot,
            least => least.min(slot),
        };
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

/// Where a job goes: the normal queue, or the big queue (all of one big drone), there for a
/// drone of at least `min_cores` when one is online, which `linger`s afterwards when the run's
/// critical path goes on after the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Normal,
    Big {
        min_cores: Option<u32>,
        linger: bool,
    },
}

impl Placement {
    pub fn is_big(self) -> bool {
        matches!(self, Placement::Big { .. })
    }
}

/// A package's place in its run's build-dependency graph, in seconds on 8 cores: its own
/// estimate, the longest chain of unfinished work it waits for (`head`) and that waits for it
/// (`rest`), and the longest such path of its arch's run; and `wait`, the wall seconds a job
/// published now waits for a normal slot (the queued work ahead of it over the online cores:
/// the stream hands out jobs in the order they were published).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathTimes {
    pub own: f64,
    pub head: f64,
    pub rest: f64,
    pub longest: f64,
    pub wait: f64,
}

impl PathTimes {
    /// How much later than it can, the package may end without making the longest path longer.
    pub fn slack(&self) -> f64 {
        (self.longest - self.head - self.own - self.rest).max(0.0)
    }
}

/// Slack below this share of the longest path counts as none: the package is on the critical
/// path (estimates are sums of floats).
const ON_PATH: f64 = 1e-6;

/// Where a job goes. Without a graph (`path` is `None`), by its own estimate (`is_big`). With
/// one, the critical path belongs to the largest drone that takes big builds: its run cannot
/// end before that path is built, and it is built fastest with all of the largest drone's cores
/// and without waiting for a slot. So a package on it goes to the big queue for that drone
/// (`min_cores`: its cores), which lingers after it while the path goes on. A package off the
/// path goes there too when waiting for a normal slot and building on the smallest one would
/// take longer than its slack allows (with the path built on the largest drone), for a drone
/// with the cores that make it fit, lingering after it when the rest of its path needs a big
/// drone too; any other package is judged by its own estimate, as without a graph.
pub fn place(
    capacity: &Capacity,
    record: &PackageRecord,
    big_above: Option<f64>,
    path: Option<PathTimes>,
) -> Placement {
    let plain = if is_big(record, big_above) {
        Placement::Big {
            min_cores: None,
            linger: false,
        }
    } else {
        Placement::Normal
    };
    let (Some(path), Some(_)) = (path, big_above) else {
        return plain;
    };
    let top = f64::from(capacity.max_big_cores);
    let slot = f64::from(capacity.min_slot_cores.max(1));
    let slack = path.slack();
    if slack <= path.longest * ON_PATH {
        return Placement::Big {
            min_cores: Some(capacity.max_big_cores),
            linger: path.rest > 0.0,
        };
    }
    // Wall seconds it may take: its own time on the largest drone and its slack, the path
    // running on that drone too.
    let allowed = (path.own + slack) * 8.0 / top;
    if path.wait + path.own * 8.0 / slot > allowed {
        // The drone lingers after it when what waits on it needs a big drone too: the rest of
        // its path on a normal slot would overrun the rest's own allowance.
        let linger = path.rest > 0.0 && path.rest * 8.0 / slot > (path.rest + slack) * 8.0 / top;
        let cores = (path.own * 8.0 / allowed).ceil();
        let cores = if cores.is_finite() {
            (cores as u32).clamp(capacity.max_slot_cores + 1, capacity.max_big_cores)
        } else {
            capacity.max_big_cores
        };
        return Placement::Big {
            min_cores: Some(cores),
            linger,
        };
    }
    plain
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
            priority: schemas::Priority::Normal,
        }
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

    /// The seed swarm's capacity: the largest big drone 24 cores, normal slots of 4 and 5.
    fn seed() -> Capacity {
        let mut capacity = Capacity::default();
        for (cores, slots, big) in [(16, 4, true), (10, 2, false), (24, 6, true), (8, 2, false)] {
            capacity.add(cores, slots, big);
        }
        capacity
    }

    #[test]
    fn the_critical_path_goes_to_the_largest_drone_and_slack_decides_the_rest() {
        let record = queued("a/a", Some(SizeClass::Small));
        let above = Some(8_000.0);
        let times = |own, head, rest| PathTimes {
            own,
            head,
            rest,
            longest: 40_000.0,
            wait: 0.0,
        };
        let big = |min_cores, linger| Placement::Big { min_cores, linger };
        #[rustfmt::skip]
        let cases = [
            // On the path, the path goes on after it: the largest drone, lingering.
            ("head of the path", times(45.0, 0.0, 39_955.0), big(Some(24), true)),
            ("middle of the path", times(4_800.0, 100.0, 35_100.0), big(Some(24), true)),
            // On the path and its last package: no linger.
            ("end of the path", times(21_600.0, 18_400.0, 0.0), big(Some(24), false)),
            // Slack 9,000 s: a 600 s package takes 1,200 s on a 4-core slot, within its
            // (600 + 9,000) x 8 / 24 = 3,200 s.
            ("short with slack", times(600.0, 0.0, 30_400.0), Placement::Normal),
            // ... unless it would first wait 2,500 s for a slot: then any big drone.
            ("short behind a queue", PathTimes { wait: 2_500.0, ..times(600.0, 0.0, 30_400.0) }, big(Some(6), true)),
            // Slack 1,500 s: 4,000 s on 8 cores take 8,000 s on a 4-core slot, and may take
            // (4,000 + 1,500) x 8 / 24 = 1,833 s: it needs 4,000 x 8 / 1,833 = 17.5 cores.
            ("long with little slack", times(4_000.0, 0.0, 34_500.0), big(Some(18), true)),
            // Slack 12,000 s: 6,000 s on 8 cores may take (6,000 + 12,000) x 8 / 24 = 6,000 s:
            // 8 cores do, a 4-core slot does not.
            ("long with more slack", times(6_000.0, 0.0, 22_000.0), big(Some(8), true)),
            // The drone lingers after those above: what waits on them needs a big drone too.
            // Not after one whose rest is short enough for a slot (600 s of 8-core work, with
            // 33,400 s of slack).
            ("long, short rest", PathTimes { wait: 2_000.0, ..times(6_000.0, 0.0, 600.0) }, big(Some(6), false)),
        ];
        for (what, path, expected) in cases {
            assert_eq!(
                place(&seed(), &record, above, Some(path)),
                expected,
                "{what}"
            );
        }
        // Without a graph, or without big drones (or under FIFO: no threshold), as before.
        let giant = queued("a/giant", Some(SizeClass::Giant));
        assert_eq!(place(&seed(), &giant, above, None), big(None, false));
        assert_eq!(place(&seed(), &record, above, None), Placement::Normal);
        let path = times(45.0, 0.0, 39_955.0);
        assert_eq!(place(&seed(), &record, None, Some(path)), Placement::Normal);
    }

    #[test]
    fn longest_first_is_stable() {
        let mut jobs = vec![("a", 1.0), ("b", 5.0), ("c", 1.0), ("d", 9.0)];
        longest_first(&mut jobs);
        let order: Vec<_> = jobs.iter().map(|j| j.0).collect();
        assert_eq!(order, ["d", "b", "a", "c"]);
    }
}
