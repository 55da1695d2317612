//! The reconciler's plan: which packages lost their job. Every package that is queued or
//! building must have a job in the work stream or a live lease. One seen with neither becomes a
//! candidate, with the record's revision and the event stream's last sequence at that
//! observation; it is re-published only on a later pass that still finds neither, with the
//! record unchanged, once every event up to that sequence has been applied. So a result still in
//! flight (whose event is at or below that sequence, because a drone stores its result before
//! it acknowledges the job and drops the lease) is never mistaken for a lost job.

use std::collections::{HashMap, HashSet};

use schemas::PackageKey;

use crate::table::PackageTable;
use crate::watermark::Watermark;

/// What one pass read, in this order: the subjects of the work stream, the keys of the leases
/// bucket, then the event stream's last sequence.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    /// Package keys with a job in the work stream.
    pub jobs: HashSet<String>,
    /// Package keys with a lease.
    pub leases: HashSet<String>,
    /// The event stream's last sequence, read after the jobs and the leases.
    pub events_seq: u64,
}

/// A package seen with neither a job nor a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The record's revision when it was first seen so.
    pub revision: u64,
    /// The event stream's last sequence at that observation.
    pub events_seq: u64,
}

/// What the reconciler asks the service to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Move the package back to `queued` (same attempt) and publish its job again.
    Requeue { key: PackageKey, attempt: u32 },
}

#[derive(Debug, Default)]
pub struct Reconciler {
    candidates: HashMap<PackageKey, Candidate>,
}

impl Reconciler {
    /// Nothing is queued or building: no candidate survives (the service then skips the reads).
    pub fn forget(&mut self) {
        self.candidates.clear();
    }

    pub fn candidate(&self, key: &PackageKey) -> Option<Candidate> {
        self.candidates.get(key).copied()
    }

    /// One pass: the packages to requeue, by key. A package found with a job or a lease, or no
    /// longer queued or building, stops being a candidate; a requeued one too (its next
    /// observation starts afresh).
    pub fn plan(
        &mut self,
        table: &PackageTable,
        evidence: &Evidence,
        watermark: &Watermark,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut next = HashMap::new();
        for (key, entry) in table.live() {
            if evidence.jobs.contains(key.as_str()) || evidence.leases.contains(key.as_str()) {
                continue;
            }
            match self.candidates.get(key) {
                Some(seen)
                    if seen.revision == entry.revision && watermark.covers(seen.events_seq) =>
                {
                    actions.push(Action::Requeue {
                        key: key.clone(),
                        attempt: entry.record.state.attempt(),
                    });
                }
                // Still missing, but events from before the first observation are not all
                // applied yet: wait, keeping the first observation.
                Some(seen) if seen.revision == entry.revision => {
                    next.insert(key.clone(), *seen);
                }
                // First seen missing, or the record moved since: observe afresh.
                _ => {
                    next.insert(
                        key.clone(),
                        Candidate {
                            revision: entry.revision,
                            events_seq: evidence.events_seq,
                        },
                    );
                }
            }
        }
        self.candidates = next;
        actions.sort_by(|a, b| match (a, b) {
            (Action::Requeue { key: a, .. }, Action::Requeue { key: b, .. }) => a.cmp(b),
        });
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{PackageState, fixtures};

    use crate::table::Entry;

    const ATOM: &str = "dev-libs/p";

    fn key() -> PackageKey {
        fixtures::atom(ATOM).key()
    }

    fn table(state: PackageState, revision: u64) -> PackageTable {
        let mut table = PackageTable::default();
        let record = fixtures::package_record(ATOM, state);
        table.store(&key(), Some(Entry { record, revision }));
        table
    }

    fn states() -> Vec<PackageState> {
        let d = fixtures::drone_name("d");
        vec![
            PackageState::Queued { attempt: 2 },
            PackageState::Building {
                attempt: 2,
                drone: d.clone(),
                since_ms: 0,
            },
            PackageState::RetryWait {
                attempt: 2,
                not_before_ms: 0,
            },
            PackageState::Succeeded {
                attempt: 2,
                drone: d,
            },
            PackageState::Failed {
                attempt: 2,
                reason: "x".into(),
            },
        ]
    }

    fn evidence(job: bool, lease: bool, events_seq: u64) -> Evidence {
        let set = |present: bool| {
            if present {
                HashSet::from([key().as_str().to_owned()])
            } else {
                HashSet::new()
            }
        };
        Evidence {
            jobs: set(job),
            leases: set(lease),
            events_seq,
        }
    }

    /// A reconciler that saw the package missing at revision `revision` and sequence 50.
    fn seen_at(revision: u64) -> Reconciler {
        let mut reconciler = Reconciler::default();
        reconciler.plan(
            &table(PackageState::Queued { attempt: 2 }, revision),
            &evidence(false, false, 50),
            &Watermark::new(0),
        );
        assert_eq!(
            reconciler.candidate(&key()),
            Some(Candidate {
                revision,
                events_seq: 50
            })
        );
        reconciler
    }

    /// Every record state × job present × lease present × earlier candidate (none, same
    /// revision, older revision) × watermark (behind or past the candidate's sequence).
    #[test]
    fn the_plan_for_every_combination() {
        let requeue = vec![Action::Requeue {
            key: key(),
            attempt: 2,
        }];
        for state in states() {
            let live = matches!(
                state,
                PackageState::Queued { .. } | PackageState::Building { .. }
            );
            for (job, lease) in [(false, false), (true, false), (false, true), (true, true)] {
                let missing = live && !job && !lease;
                for earlier in [None, Some(7), Some(6)] {
                    for watermark in [49, 50] {
                        let mut reconciler = earlier.map_or_else(Reconciler::default, seen_at);
                        let what = format!(
                            "{state:?} job {job} lease {lease} seen {earlier:?} watermark {watermark}"
                        );
                        let actions = reconciler.plan(
                            &table(state.clone(), 7),
                            &evidence(job, lease, 60),
                            &Watermark::new(watermark),
                        );
                        let candidate = reconciler.candidate(&key());
                        let (want_actions, want_candidate) = match earlier {
                            _ if !missing => (vec![], None),
                            // Seen at this revision, every event up to sequence 50 applied.
                            Some(7) if watermark >= 50 => (requeue.clone(), None),
                            // Seen at this revision, a result may still be in flight.
                            Some(7) => (
                                vec![],
                                Some(Candidate {
                                    revision: 7,
                                    events_seq: 50,
                                }),
                            ),
                            // Never seen, or the record moved since: observed now.
                            _ => (
                                vec![],
                                Some(Candidate {
                                    revision: 7,
                                    events_seq: 60,
                                }),
                            ),
                        };
                        assert_eq!(actions, want_actions, "{what}");
                        assert_eq!(candidate, want_candidate, "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_package_must_stay_missing_over_two_passes() {
        let mut reconciler = Reconciler::default();
        let queued = table(PackageState::Queued { attempt: 1 }, 3);
        let watermark = Watermark::new(100);
        assert_eq!(
            reconciler.plan(&queued, &evidence(false, false, 10), &watermark),
            []
        );
        let actions = reconciler.plan(&queued, &evidence(false, false, 20), &watermark);
        assert_eq!(
            actions,
            [Action::Requeue {
                key: key(),
                attempt: 1
            }]
        );
        // Requeued: the next pass observes it afresh rather than requeueing it again.
        assert_eq!(
            reconciler.plan(&queued, &evidence(false, false, 30), &watermark),
            []
        );
        assert_eq!(
            reconciler.candidate(&key()),
            Some(Candidate {
                revision: 3,
                events_seq: 30
            })
        );
        reconciler.forget();
        assert_eq!(reconciler.candidate(&key()), None);
    }

    #[test]
    fn requeues_come_in_key_order() {
        let mut table = PackageTable::default();
        for atom in ["c/c", "a/a", "b/b"] {
            let record = fixtures::package_record(atom, PackageState::Queued { attempt: 1 });
            table.store(
                &record.atom.key(),
                Some(Entry {
                    record,
                    revision: 1,
                }),
            );
        }
        let mut reconciler = Reconciler::default();
        let none = Evidence::default();
        reconciler.plan(&table, &none, &Watermark::new(0));
        let keys: Vec<String> = reconciler
            .plan(&table, &none, &Watermark::new(0))
            .into_iter()
            .map(|Action::Requeue { key, .. }| key.to_string())
            .collect();
        assert_eq!(keys, ["a_2Fa", "b_2Fb", "c_2Fc"]);
    }
}
