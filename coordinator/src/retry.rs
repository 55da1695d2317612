//! The retry schedule: which packages wait out a retry backoff, ordered by the time their retry
//! is due, so that a tick looks only at the retries that are due rather than at every package.
//! The package table keeps it in step with its records; nothing else changes it.

use std::collections::BTreeSet;

use schemas::{PackageKey, PackageState};

/// When a package's retry may be published, if it is waiting for one.
pub fn due_at(state: &PackageState) -> Option<u64> {
    match state {
        PackageState::RetryWait { not_before_ms, .. } => Some(*not_before_ms),
        _ => None,
    }
}

/// Waiting retries by due time (unix ms), then key.
#[derive(Debug, Default)]
pub struct RetrySchedule {
    due: BTreeSet<(u64, PackageKey)>,
}

impl RetrySchedule {
    /// Follows one package's change of state: `old` is the state it had (`None`: no record),
    /// `new` the state it has now (`None`: its record is gone).
    pub fn update(
        &mut self,
        key: &PackageKey,
        old: Option<&PackageState>,
        new: Option<&PackageState>,
    ) {
        let was = old.and_then(due_at);
        let is = new.and_then(due_at);
        if let Some(at) = was
            && was != is
        {
            self.due.remove(&(at, key.clone()));
        }
        if let Some(at) = is {
            self.due.insert((at, key.clone()));
        }
    }

    /// The packages whose retry is due at `now_ms`, earliest first.
    pub fn due(&self, now_ms: u64) -> impl Iterator<Item = &PackageKey> {
        self.due
            .iter()
            .take_while(move |(at, _)| *at <= now_ms)
            .map(|(_, key)| key)
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures;

    fn key(atom: &str) -> PackageKey {
        fixtures::atom(atom).key()
    }

    fn waiting(not_before_ms: u64) -> PackageState {
        PackageState::RetryWait {
            attempt: 2,
            not_before_ms,
        }
    }

    #[test]
    fn only_waiting_packages_are_scheduled() {
        let mut schedule = RetrySchedule::default();
        for state in [
            PackageState::Queued { attempt: 1 },
            PackageState::Failed {
                attempt: 3,
                reason: "x".into(),
            },
        ] {
            assert_eq!(due_at(&state), None);
            schedule.update(&key("a/queued"), None, Some(&state));
        }
        assert!(schedule.is_empty());
        assert_eq!(due_at(&waiting(7)), Some(7));
    }

    #[test]
    fn due_lists_what_is_due_earliest_first() {
        let mut schedule = RetrySchedule::default();
        schedule.update(&key("a/late"), None, Some(&waiting(300)));
        schedule.update(&key("a/early"), None, Some(&waiting(100)));
        schedule.update(&key("a/middle"), None, Some(&waiting(200)));
        let at = |now| schedule.due(now).cloned().collect::<Vec<_>>();
        assert_eq!(at(99), Vec::<PackageKey>::new());
        assert_eq!(at(100), [key("a/early")]);
        assert_eq!(at(250), [key("a/early"), key("a/middle")]);
        assert_eq!(at(u64::MAX).len(), 3);
    }

    /// Every kind of change of one package: into a wait, a new due time, the same due time
    /// again, out of the wait, and the record removed.
    #[test]
    fn updates_keep_one_entry_per_waiting_package() {
        let mut schedule = RetrySchedule::default();
        let k = key("a/pkg");
        let queued = PackageState::Queued { attempt: 2 };
        schedule.update(&k, Some(&queued), Some(&waiting(100)));
        assert_eq!(schedule.due(100).count(), 1);
        // Rescheduled: the old due time goes.
        schedule.update(&k, Some(&waiting(100)), Some(&waiting(500)));
        assert_eq!(schedule.len(), 1);
        assert_eq!(schedule.due(100).count(), 0);
        // Written again with the same due time: still one entry.
        schedule.update(&k, Some(&waiting(500)), Some(&waiting(500)));
        assert_eq!(schedule.len(), 1);
        // Published: out of the schedule.
        schedule.update(&k, Some(&waiting(500)), Some(&queued));
        assert!(schedule.is_empty());
        // Removed while waiting.
        schedule.update(&k, None, Some(&waiting(9)));
        schedule.update(&k, Some(&waiting(9)), None);
        assert!(schedule.is_empty());
    }
}
