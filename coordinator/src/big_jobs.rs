//! The big-job threshold of one batch of publications (a tick's retries, a reconcile pass's
//! requeues, a submission): per arch, the estimate above which a job goes to the big queue
//! (`schedule::big_above` of the online capacity and the work left). Computing it reads every
//! package record, so it is computed at most once per arch and batch, when first needed.

use std::collections::HashMap;

use schemas::{Arch, PackageRecord};

use crate::config::Schedule;
use crate::drones::DroneRegistry;
use crate::schedule;
use crate::table::PackageTable;

#[derive(Debug)]
pub struct BigJobs {
    schedule: Schedule,
    now_ms: u64,
    above: HashMap<Arch, Option<f64>>,
}

impl BigJobs {
    /// A batch starting at `now_ms` (drones are judged online at that time).
    pub fn new(schedule: Schedule, now_ms: u64) -> BigJobs {
        BigJobs {
            schedule,
            now_ms,
            above: HashMap::new(),
        }
    }

    /// The estimate above which a job of `arch` is big in this batch; `None` under the FIFO
    /// schedule or when no drone online takes big builds.
    pub fn above(
        &mut self,
        arch: &Arch,
        drones: &DroneRegistry,
        table: &PackageTable,
    ) -> Option<f64> {
        if self.schedule != Schedule::LongestFirst {
            return None;
        }
        let now_ms = self.now_ms;
        *self.above.entry(arch.clone()).or_insert_with(|| {
            schedule::big_above(&drones.capacity(arch, now_ms), table.work_secs(arch))
        })
    }

    /// Whether the package's job goes to the big queue.
    pub fn is_big(
        &mut self,
        record: &PackageRecord,
        drones: &DroneRegistry,
        table: &PackageTable,
    ) -> bool {
        let above = self.above(&record.arch, drones, table);
        schedule::is_big(record, above)
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
        assert!(batch.is_big(huge, &drones(), &table));
        assert!(!batch.is_big(small, &drones(), &table));
        // No drone online that takes big builds (their heartbeats are old): nothing is big.
        let mut later = BigJobs::new(Schedule::LongestFirst, 1_000_000);
        assert_eq!(later.above(&Arch::default(), &drones(), &table), None);
        assert!(!later.is_big(huge, &drones(), &table));
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
        assert!(!batch.is_big(&giant, &drones(), &table));
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
