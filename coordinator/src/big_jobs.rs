//! Where the jobs of one batch of publications go (a tick's retries, a reconcile pass's
//! requeues, a submission): per arch, the estimate above which a job goes to the big queue
//! (`schedule::big_above` of the online capacity and the work left) and, when the table holds
//! a build-dependency graph, every unfinished package's place on it (`graph::head_path`,
//! `graph::remaining_path`) for `schedule::place`. Both read every package record, so they are
//! computed at most once per batch, when first needed.

use std::collections::HashMap;

use schemas::{Arch, PackageKey, PackageRecord, PackageState};

use crate::config::Schedule;
use crate::drones::DroneRegistry;
use crate::graph;
use crate::schedule::{self, Capacity, PathTimes, Placement};
use crate::table::PackageTable;

#[derive(Debug)]
pub struct BigJobs {
    schedule: Schedule,
    now_ms: u64,
    above: HashMap<Arch, (Capacity, Option<f64>)>,
    paths: Option<Paths>,
}

/// The graph's times of every unfinished package, the longest path of each arch and the work
/// queued (published, not started) of each arch.
#[derive(Debug, Default)]
struct Paths {
    head: HashMap<PackageKey, f64>,
    rest: HashMap<PackageKey, f64>,
    longest: HashMap<Arch, f64>,
    queued: HashMap<Arch, f64>,
}

impl Paths {
    fn of(table: &PackageTable) -> Paths {
        let head = graph::head_path(table, schedule::estimate_secs);
        let remaining = graph::remaining_path(table, schedule::estimate_secs);
        let mut longest: HashMap<Arch, f64> = HashMap::new();
        let mut queued: HashMap<Arch, f64> = HashMap::new();
        let mut rest = HashMap::with_capacity(remaining.len());
        for (key, path) in remaining {
            let Some(entry) = table.get(&key) else {
                continue;
            };
            let total = head.get(&key).copied().unwrap_or(0.0) + path;
            let arch = longest.entry(entry.record.arch.clone()).or_insert(0.0);
            *arch = arch.max(total);
            if matches!(
                entry.record.state,
                PackageState::Queued { .. } | PackageState::RetryWait { .. }
            ) {
                *queued.entry(entry.record.arch.clone()).or_insert(0.0) +=
                    schedule::estimate_secs(&entry.record);
            }
            rest.insert(key, path - schedule::estimate_secs(&entry.record));
        }
        Paths {
            head,
            rest,
            longest,
            queued,
        }
    }

    fn times(
        &self,
        key: &PackageKey,
        record: &PackageRecord,
        capacity: &Capacity,
    ) -> Option<PathTimes> {
        let queued = self.queued.get(&record.arch).copied().unwrap_or(0.0);
        Some(PathTimes {
            own: schedule::estimate_secs(record),
            head: self.head.get(key).copied().unwrap_or(0.0),
            rest: *self.rest.get(key)?,
            longest: *self.longest.get(&record.arch)?,
            wait: queued * 8.0 / f64::from(capacity.cores.max(1)),
        })
    }
}

impl BigJobs {
    /// A batch starting at `now_ms` (drones are judged online at that time).
    pub fn new(schedule: Schedule, now_ms: u64) -> BigJobs {
        BigJobs {
            schedule,
            now_ms,
            above: HashMap::new(),
            paths: None,
        }
    }

    fn capacity(
        &mut self,
        arch: &Arch,
        drones: &DroneRegistry,
        table: &PackageTable,
    ) -> (Capacity, Option<f64>) {
        let now_ms = self.now_ms;
        *self.above.entry(arch.clone()).or_insert_with(|| {
            let capacity = drones.capacity(arch, now_ms);
            (
                capacity,
                schedule::big_above(&capacity, table.work_secs(arch)),
            )
        })
    }

    /// The estimate above which a job of `arch` is big in this batch; `None` under the FIFO
    /// schedule or when no drone online takes big builds.
    pub fn above(
        &mut self,
        arch: &Arch,
        drones: &DroneRegistry,
        table: &PackageTable,
    ) -> Option<f64> {
        if self.schedule == Schedule::Fifo {
            return None;
        }
        self.capacity(arch, drones, table).1
    }

    /// Where the package's job goes.
    pub fn placement(
        &mut self,
        key: &PackageKey,
        record: &PackageRecord,
        drones: &DroneRegistry,
        table: &PackageTable,
    ) -> Placement {
        let Some(above) = self.above(&record.arch, drones, table) else {
            return Placement::Normal;
        };
        let (capacity, _) = self.capacity(&record.arch, drones, table);
        let times = if self.schedule == Schedule::CriticalPath && table.has_graph() {
            self.paths
                .get_or_insert_with(|| Paths::of(table))
                .times(key, record, &capacity)
        } else {
            None
        };
        schedule::place(&capacity, record, Some(above), times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{DroneRecord, DroneState, PackageState, SizeClass, encode, fixtures};

    use crate::drones::WatchEntry;
    use crate::table::Entry;

    /// One drone of 16 cores in 4 slots that takes big builds, one of 8 cores in 2 that does
    /// not: 24 cores, the largest normal slot 4 cores.
    fn drones() -> DroneRegistry {
        let mut registry = DroneRegistry::default();
        for record in [
            DroneRecord {
                slots: 4,
                big_builds: true,
                ..fixtures::drone_record("big", 16, DroneState::Idle)
            },
            DroneRecord {
                slots: 2,
                ..fixtures::drone_record("small", 8, DroneState::Idle)
            },
        ] {
            let value = encode(&record).expect("encode");
            let key = record.name.as_str();
            registry
                .apply(WatchEntry::Put {
                    key,
                    value: &value,
                    revision: 1,
                    written_ms: 0,
                })
                .expect("put");
        }
        registry
    }

    fn table(estimates: &[(&str, f64)]) -> PackageTable {
        let mut table = PackageTable::default();
        for (atom, secs) in estimates {
            let record = PackageRecord {
                estimate_secs: Some(*secs),
                ..fixtures::package_record(atom, PackageState::Queued { attempt: 1 })
            };
            table.store(
                &record.atom.key(),
                Some(Entry {
                    record,
                    revision: 1,
                }),
            );
        }
        table
    }

    #[test]
    fn the_threshold_follows_the_work_left_and_the_capacity() {
        // 24,000 s of work on 24 cores: a horizon of 8,000 s; a 4-core slot finishes 4,000 s
        // of 8-core work in it.
        let table = table(&[("a/huge", 20_000.0), ("a/small", 4_000.0)]);
        let mut batch = BigJobs::new(Schedule::LongestFirst, 0);
        assert_eq!(
            batch.above(&Arch::default(), &drones(), &table),
            Some(4_000.0)
        );
        let huge = &table
            .get(&fixtures::atom("a/huge").key())
            .expect("huge")
            .record;
        let small = &table
            .get(&fixtures::atom("a/small").key())
            .expect("small")
            .record;
        assert!(
            batch
                .placement(&huge.atom.key(), huge, &drones(), &table)
                .is_big()
        );
        assert!(
            !batch
                .placement(&small.atom.key(), small, &drones(), &table)
                .is_big()
        );
        // No drone online that takes big builds (their heartbeats are old): nothing is big.
        let mut later = BigJobs::new(Schedule::LongestFirst, 1_000_000);
        assert_eq!(later.above(&Arch::default(), &drones(), &table), None);
        assert!(
            !later
                .placement(&huge.atom.key(), huge, &drones(), &table)
                .is_big()
        );
    }

    #[test]
    fn fifo_queues_nothing_apart() {
        let table = table(&[("a/huge", 20_000.0)]);
        let giant = PackageRecord {
            class: Some(SizeClass::Giant),
            ..fixtures::package_record("a/giant", PackageState::Queued { attempt: 1 })
        };
        let mut batch = BigJobs::new(Schedule::Fifo, 0);
        assert_eq!(batch.above(&Arch::default(), &drones(), &table), None);
        assert!(
            !batch
                .placement(&giant.atom.key(), &giant, &drones(), &table)
                .is_big()
        );
    }

    /// The threshold is computed once per arch and batch: records written during the batch do
    /// not move it, a new batch sees them.
    #[test]
    fn the_threshold_is_kept_for_the_batch() {
        let mut table = table(&[("a/one", 24_000.0)]);
        let mut batch = BigJobs::new(Schedule::LongestFirst, 0);
        let first = batch.above(&Arch::default(), &drones(), &table);
        let record = fixtures::package_record("a/two", PackageState::Queued { attempt: 1 });
        table.store(
            &record.atom.key(),
            Some(Entry {
                record,
                revision: 1,
            }),
        );
        assert_eq!(batch.above(&Arch::default(), &drones(), &table), first);
        let mut next = BigJobs::new(Schedule::LongestFirst, 0);
        assert!(next.above(&Arch::default(), &drones(), &table) > first);
    }
}
