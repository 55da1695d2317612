//! The package table: every package record the coordinator knows, with the KV revision it was
//! read or written at, and the pure decisions made on it: folding an event into a record, which
//! packages should have a job, the work still to do per arch and the retries due (the plan of a
//! submission is in `submission`). Every state change goes through `lifecycle::transition`;
//! every change of the table goes through `store`, which keeps the retry schedule in step.

use std::collections::HashMap;

use schemas::{Arch, Artifact, Atom, AttemptRecord, PackageKey, PackageRecord, PackageState};

use crate::lifecycle::{PackageEvent, Policy, TransitionError, transition};
use crate::retry::RetrySchedule;
use crate::schedule;

/// A package record and the KV revision it was last read or written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub record: PackageRecord,
    pub revision: u64,
}

/// What one event does to one package's record: the lifecycle event, and what a result adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: PackageKey,
    pub event: PackageEvent,
    /// The attempt's record, for a result.
    pub attempt: Option<AttemptRecord>,
    /// The atom, for a result (logged when it is recorded).
    pub result_of: Option<Atom>,
    /// What a successful build says about the package's build time (seconds on 8 cores).
    pub learned: Option<f64>,
    /// The binary packages a successful build wrote.
    pub artifacts: Option<Vec<Artifact>>,
}

impl Change {
    /// A lifecycle event and nothing else.
    pub fn new(key: PackageKey, event: PackageEvent) -> Change {
        Change {
            key,
            event,
            attempt: None,
            result_of: None,
            learned: None,
            artifacts: None,
        }
    }
}

/// Applies one change to `record` in memory, or says why it does not move the package (a late
/// or repeated event, safe to drop).
pub fn fold(
    record: &mut PackageRecord,
    change: &Change,
    policy: &Policy,
    now_ms: u64,
) -> Result<(), TransitionError> {
    record.state = transition(&record.state, &change.event, policy, now_ms)?;
    record.updated_ms = now_ms;
    if let Some(attempt) = &change.attempt {
        record.history.push(attempt.clone());
    }
    if let Some(observed) = change.learned {
        record.learned_secs = Some(schedule::learn(record.learned_secs, observed));
    }
    if let Some(artifacts) = &change.artifacts {
        record.artifacts = artifacts.clone();
    }
    Ok(())
}

#[derive(Debug, Default)]
pub struct PackageTable {
    entries: HashMap<PackageKey, Entry>,
    retries: RetrySchedule,
    /// How many records wait for build dependencies or are blocked by one: with none, the
    /// graph has nothing to do (a run without dependencies never looks).
    on_graph: usize,
}

impl PackageTable {
    pub fn with_capacity(capacity: usize) -> PackageTable {
        PackageTable {
            entries: HashMap::with_capacity(capacity),
            retries: RetrySchedule::default(),
            on_graph: 0,
        }
    }

    pub fn get(&self, key: &PackageKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn contains(&self, key: &PackageKey) -> bool {
        self.entries.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The one place records change (`None` removes one), so the retry schedule always matches
    /// them. Callers store what the bucket holds: a record they wrote or read.
    pub fn store(&mut self, key: &PackageKey, entry: Option<Entry>) {
        let new_state = entry.as_ref().map(|e| e.record.state.clone());
        let old = match entry {
            Some(entry) => self.entries.insert(key.clone(), entry),
            None => self.entries.remove(key),
        };
        let on_graph = |state: Option<&PackageState>| {
            matches!(
                state,
                Some(PackageState::Waiting | PackageState::Blocked { .. })
            )
        };
        self.on_graph += usize::from(on_graph(new_state.as_ref()));
        self.on_graph -= usize::from(on_graph(old.as_ref().map(|e| &e.record.state)));
        self.retries.update(
            key,
            old.as_ref().map(|e| &e.record.state),
            new_state.as_ref(),
        );
    }

    /// Every record.
    pub fn records(&self) -> impl Iterator<Item = &PackageRecord> {
        self.entries.values().map(|entry| &entry.record)
    }

    /// Whether some record waits for its build dependencies or is blocked by one.
    pub fn has_graph(&self) -> bool {
        self.on_graph > 0
    }

    /// Every record by its key.
    pub fn entries(&self) -> impl Iterator<Item = (&PackageKey, &Entry)> {
        self.entries.iter()
    }

    /// The packages that should have a job in the stream or a drone's lease: those queued or
    /// building.
    pub fn live(&self) -> impl Iterator<Item = (&PackageKey, &Entry)> {
        self.entries.iter().filter(|(_, e)| {
            matches!(
                e.record.state,
                PackageState::Queued { .. } | PackageState::Building { .. }
            )
        })
    }

    /// The estimated work (seconds on 8 cores) of the unfinished packages of `arch`.
    pub fn work_secs(&self, arch: &Arch) -> f64 {
        self.entries
            .values()
            .filter(|e| e.record.arch == *arch && !e.record.state.is_final())
            .map(|e| schedule::estimate_secs(&e.record))
            .sum()
    }

    /// The packages whose retry is due at `now_ms`, earliest first, with the attempt to publish.
    pub fn due_retries(&self, now_ms: u64) -> Vec<(PackageKey, u32)> {
        self.retries
            .due(now_ms)
            .filter_map(|key| {
                let attempt = self.entries.get(key)?.record.state.attempt();
                Some((key.clone(), attempt))
            })
            .collect()
    }
}

/// Tables and entries for the tests of the parts that read the table.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub const POLICY: Policy = Policy {
        max_attempts: 3,
        backoff_ms: 100,
        backoff_max_ms: 1_000,
    };

    pub fn entry(atom: &str, state: PackageState, revision: u64) -> (PackageKey, Entry) {
        let record = schemas::fixtures::package_record(atom, state);
        (record.atom.key(), Entry { record, revision })
    }

    /// Attempt 1 building on `drone` since time 0.
    pub fn building(drone: &str) -> PackageState {
        PackageState::Building {
            attempt: 1,
            drone: schemas::fixtures::drone_name(drone),
            since_ms: 0,
        }
    }

    pub fn table(entries: Vec<(PackageKey, Entry)>) -> PackageTable {
        let mut table = PackageTable::default();
        for (key, entry) in entries {
            table.store(&key, Some(entry));
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{POLICY, building, entry, table};
    use super::*;
    use schemas::{BuildOutcome, fixtures};

    fn waiting(attempt: u32, not_before_ms: u64) -> PackageState {
        PackageState::RetryWait {
            attempt,
            not_before_ms,
        }
    }

    #[test]
    fn store_keeps_the_retry_schedule_in_step() {
        let (key, waits) = entry("a/p", waiting(2, 100), 1);
        let mut table = table(vec![(key.clone(), waits)]);
        assert_eq!(table.due_retries(99), []);
        assert_eq!(table.due_retries(100), [(key.clone(), 2)]);
        let (_, queued) = entry("a/p", PackageState::Queued { attempt: 2 }, 2);
        table.store(&key, Some(queued));
        assert_eq!(table.due_retries(u64::MAX), []);
        let (_, waits_again) = entry("a/p", waiting(3, 500), 3);
        table.store(&key, Some(waits_again));
        assert_eq!(table.due_retries(u64::MAX), [(key.clone(), 3)]);
        table.store(&key, None);
        assert_eq!(table.due_retries(u64::MAX), []);
        assert!(table.is_empty());
    }

    #[test]
    fn fold_moves_the_record_and_records_a_result() {
        let mut record = fixtures::package_record("a/p", PackageState::Queued { attempt: 1 });
        let drone = fixtures::drone_name("d1");
        let result = Change {
            attempt: Some(AttemptRecord {
                attempt: 1,
                drone: drone.clone(),
                outcome: BuildOutcome::Succeeded,
                duration_ms: 1_000,
                ended_ms: 900,
            }),
            result_of: Some(record.atom.clone()),
            learned: Some(40.0),
            ..Change::new(
                record.atom.key(),
                PackageEvent::Succeeded {
                    drone: drone.clone(),
                    attempt: 1,
                },
            )
        };
        record.learned_secs = Some(20.0);
        fold(&mut record, &result, &POLICY, 1_000).expect("moves");
        assert_eq!(
            record.state,
            PackageState::Succeeded {
                attempt: 1,
                drone: drone.clone()
            }
        );
        assert_eq!(record.updated_ms, 1_000);
        assert_eq!(record.history.len(), 1);
        assert_eq!(record.learned_secs, Some(30.0));
        // The same result again is refused and changes nothing.
        let before = record.clone();
        let err = fold(&mut record, &result, &POLICY, 2_000).expect_err("finished");
        assert!(matches!(err, TransitionError::Finished { .. }));
        assert_eq!(record, before);
        // A claim moves the state only.
        let mut queued = fixtures::package_record("a/p", PackageState::Queued { attempt: 1 });
        let claim = Change::new(
            queued.atom.key(),
            PackageEvent::Claimed { drone, attempt: 1 },
        );
        fold(&mut queued, &claim, &POLICY, 7).expect("claimed");
        assert!(queued.history.is_empty() && queued.learned_secs.is_none());
        assert_eq!(queued.updated_ms, 7);
    }

    #[test]
    fn live_packages_and_the_work_left_per_arch() {
        let other = Arch::parse("arm64").expect("arch");
        let mut elsewhere = entry("a/elsewhere", PackageState::Queued { attempt: 1 }, 1);
        elsewhere.1.record.arch = other.clone();
        let table = table(vec![
            entry("a/queued", PackageState::Queued { attempt: 1 }, 1),
            entry("a/building", building("d"), 1),
            entry("a/waiting", waiting(2, 5), 1),
            entry(
                "a/done",
                PackageState::Succeeded {
                    attempt: 1,
                    drone: fixtures::drone_name("d"),
                },
                1,
            ),
            entry(
                "a/failed",
                PackageState::Failed {
                    attempt: 3,
                    reason: "x".into(),
                },
                1,
            ),
            elsewhere,
        ]);
        let mut live: Vec<String> = table
            .live()
            .map(|(_, e)| e.record.atom.to_string())
            .collect();
        live.sort();
        assert_eq!(live, ["a/building", "a/elsewhere", "a/queued"]);
        // Queued, building and waiting count, at the unknown estimate each; finished ones not.
        assert_eq!(
            table.work_secs(&Arch::default()),
            3.0 * schedule::UNKNOWN_SECS
        );
        assert_eq!(table.work_secs(&other), schedule::UNKNOWN_SECS);
    }
}
