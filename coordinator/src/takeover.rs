//! When a silent drone's builds may be given to the other drones. A drone's builds die
//! `supervise_deadline_ms` after its last acknowledged heartbeat (their supervisors kill them,
//! `schemas::summary::takeover_after_ms`); once that long has passed since the coordinator last
//! heard the drone, its packages are released at once instead of waiting for the server's ack
//! wait. Silence counts only while the coordinator itself could hear: a coordinator that was cut
//! off, or whose watch of the drones bucket broke, starts counting again from the moment it hears
//! again, so its own outage never looks like every drone's.
//!
//! Pure: time enters as an `Instant`, the drones as the registry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use schemas::summary::takeover_after_ms;
use schemas::{DroneName, DroneState};

use crate::drones::DroneRegistry;

/// The last word of one drone: its own write (`boot_ms`, `seq`) and when it arrived here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heard {
    boot_ms: u64,
    seq: u64,
    at: Instant,
    /// Its builds were released for this word already.
    released: bool,
}

#[derive(Debug, Default)]
pub struct Takeover {
    heard: HashMap<String, Heard>,
    /// Since when the coordinator has been able to hear the drones without a break.
    listening_since: Option<Instant>,
    /// When any drone's word last arrived: a watch that delivers nothing from anyone for longer
    /// than two heartbeats is stalled (a leader change of the bucket's stream), not proof that
    /// every drone went silent.
    last_word: Option<Instant>,
}

impl Takeover {
    /// The drone wrote its record (`boot_ms`, `seq`), seen `now`. A write that is not the drone's
    /// own (the coordinator's lost mark keeps the drone's `seq`) or one seen before is no news.
    pub fn heard(&mut self, name: &str, boot_ms: u64, seq: u64, now: Instant) {
        match self.heard.get(name) {
            Some(last) if (last.boot_ms, last.seq) >= (boot_ms, seq) => {}
            _ => {
                self.last_word = Some(now);
                self.heard.insert(
                    name.to_owned(),
                    Heard {
                        boot_ms,
                        seq,
                        at: now,
                        released: false,
                    },
                );
            }
        }
    }

    /// Whether the coordinator can hear the drones now (connected, its watch open, and the watch
    /// delivering: some drone heard within two of the shortest heartbeat periods of the drones
    /// online). A break starts the silence of every drone over.
    pub fn listening(&mut self, can_hear: bool, registry: &DroneRegistry, now: Instant) {
        let shortest = registry
            .entries()
            .filter(|(_, e)| !matches!(e.record.state, DroneState::Offline))
            .map(|(_, e)| e.record.heartbeat_interval_ms.max(1))
            .min();
        let delivering = match (shortest, self.last_word) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(period), Some(last)) => {
                now.saturating_duration_since(last) <= Duration::from_millis(2 * period + 500)
            }
        };
        let can_hear = can_hear && delivering;
        match (can_hear, self.listening_since) {
            (false, _) => self.listening_since = None,
            (true, None) => self.listening_since = Some(now),
            (true, Some(_)) => {}
        }
    }

    /// The drones whose builds are surely dead by `now` and not released yet, by name; each is
    /// returned once per word of the drone ([`Takeover::released`] marks them).
    pub fn due(&mut self, registry: &DroneRegistry, now: Instant) -> Vec<DroneName> {
        let due = self.pending(registry, now);
        self.released(&due);
        due
    }

    /// Their builds were released.
    pub fn released(&mut self, drones: &[DroneName]) {
        for name in drones {
            if let Some(heard) = self.heard.get_mut(name.as_str()) {
                heard.released = true;
            }
        }
    }

    /// [`Takeover::due`] without marking anything.
    pub fn pending(&self, registry: &DroneRegistry, now: Instant) -> Vec<DroneName> {
        let Some(since) = self.listening_since else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for (name, entry) in registry.entries() {
            if matches!(entry.record.state, DroneState::Offline) {
                continue;
            }
            let Some(after) = takeover_after_ms(&entry.record) else {
                continue;
            };
            let Some(heard) = self.heard.get(name.as_str()) else {
                continue;
            };
            let silent_from = heard.at.max(since);
            if !heard.released
                && now.saturating_duration_since(silent_from) >= Duration::from_millis(after)
            {
                due.push(entry.record.name.clone());
            }
        }
        due.sort();
        due
    }

    /// A drone that left the bucket is forgotten.
    pub fn forget(&mut self, name: &str) {
        self.heard.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drones::WatchEntry;
    use schemas::{encode, fixtures};

    fn registry(records: &[(&str, DroneState, Option<u64>)]) -> DroneRegistry {
        let mut registry = DroneRegistry::default();
        for (name, state, deadline) in records {
            let mut record = fixtures::drone_record(name, 8, state.clone());
            record.heartbeat_interval_ms = 1_000;
            record.supervise_deadline_ms = *deadline;
            let bytes = encode(&record).expect("encode");
            registry
                .apply(WatchEntry::Put {
                    key: name,
                    value: &bytes,
                    revision: 1,
                    written_ms: 0,
                })
                .expect("accepted");
        }
        registry
    }

    /// Heartbeat every 1 s, builds die 4 s after the last word: released 5 s after it.
    #[test]
    fn a_drone_is_due_once_its_builds_are_surely_dead() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases: [(&str, DroneState, Option<u64>, Duration, bool); 7] = [
            (
                "silent 4.9 s",
                DroneState::Building,
                Some(4_000),
                ms(4_900),
                false,
            ),
            ("silent 5 s", DroneState::Building, Some(4_000), s(5), true),
            ("idle too", DroneState::Idle, Some(4_000), s(5), true),
            (
                "marked lost",
                DroneState::Lost { reason: "x".into() },
                Some(4_000),
                s(6),
                true,
            ),
            (
                "stopped cleanly",
                DroneState::Offline,
                Some(4_000),
                s(60),
                false,
            ),
            ("an older release", DroneState::Building, None, s(60), false),
            // Never less than the lost judgement (three periods).
            (
                "short deadline",
                DroneState::Building,
                Some(1_000),
                ms(2_500),
                false,
            ),
        ];
        for (what, state, deadline, silent, expected) in cases {
            let registry = registry(&[("d1", state, deadline)]);
            let mut takeover = Takeover::default();
            takeover.heard("d1", 1, 7, t0);
            takeover.listening(true, &registry, t0);
            let due = takeover.due(&registry, t0 + silent);
            assert_eq!(!due.is_empty(), expected, "{what}");
            if expected {
                // Once per word.
                let again = takeover.due(&registry, t0 + silent + s(1));
                assert!(again.is_empty(), "{what}");
            }
        }
    }

    #[test]
    fn a_new_word_starts_the_silence_over_and_the_lost_mark_is_no_word() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let registry = registry(&[("d1", DroneState::Building, Some(4_000))]);
        let mut takeover = Takeover::default();
        takeover.heard("d1", 1, 7, t0);
        takeover.listening(true, &registry, t0);
        // The lost mark written at 3 s carries the same seq: no news.
        takeover.heard("d1", 1, 7, t0 + s(3));
        assert_eq!(takeover.due(&registry, t0 + s(5)).len(), 1);
        // The drone comes back (a new seq) and falls silent again.
        takeover.heard("d1", 1, 8, t0 + s(10));
        assert!(takeover.due(&registry, t0 + s(14)).is_empty());
        assert_eq!(takeover.due(&registry, t0 + s(15)).len(), 1);
        // A restarted drone (new boot) counts as news even with a lower seq.
        takeover.heard("d1", 2, 1, t0 + s(20));
        assert!(takeover.due(&registry, t0 + s(24)).is_empty());
    }

    /// `d2` heartbeats every second from `from` to `to` (seconds after `t0`).
    fn beat(takeover: &mut Takeover, t0: Instant, from: u64, to: u64) {
        for second in from..=to {
            takeover.heard("d2", 1, second, t0 + Duration::from_secs(second));
        }
    }

    fn two_drones() -> DroneRegistry {
        registry(&[
            ("d1", DroneState::Building, Some(4_000)),
            ("d2", DroneState::Idle, Some(4_000)),
        ])
    }

    #[test]
    fn the_coordinators_own_outage_is_not_the_drones_silence() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let registry = two_drones();
        let mut takeover = Takeover::default();
        // Not listening yet: nothing is due however long the silence.
        takeover.heard("d1", 1, 7, t0);
        beat(&mut takeover, t0, 0, 30);
        assert!(takeover.due(&registry, t0 + s(30)).is_empty());
        takeover.listening(true, &registry, t0 + s(30));
        beat(&mut takeover, t0, 31, 34);
        assert!(takeover.due(&registry, t0 + s(34)).is_empty());
        // Cut off at 34 s, back at 40 s: the count starts again at 40 s.
        takeover.listening(false, &registry, t0 + s(34));
        beat(&mut takeover, t0, 40, 45);
        takeover.listening(true, &registry, t0 + s(40));
        assert!(takeover.due(&registry, t0 + s(44)).is_empty());
        assert_eq!(
            takeover.due(&registry, t0 + s(45)),
            vec![fixtures::drone_name("d1")]
        );
    }

    /// A watch that delivers nothing from any drone (its stream changing leader) is not every
    /// drone falling silent: the count starts when words arrive again.
    #[test]
    fn a_stalled_watch_is_not_the_drones_silence() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let registry = two_drones();
        let mut takeover = Takeover::default();
        takeover.heard("d1", 1, 7, t0);
        beat(&mut takeover, t0, 0, 2);
        takeover.listening(true, &registry, t0 + s(2));
        // Nothing from anyone from 2 s to 20 s: each tick finds the watch stalled.
        for second in 3..20 {
            takeover.listening(true, &registry, t0 + s(second));
        }
        assert!(takeover.due(&registry, t0 + s(19)).is_empty());
        // Words again from 20 s (d1 still silent): d1 is due 5 s later, not at once.
        beat(&mut takeover, t0, 20, 25);
        for second in 20..=25 {
            takeover.listening(true, &registry, t0 + s(second));
        }
        assert!(takeover.due(&registry, t0 + s(24)).is_empty());
        assert_eq!(
            takeover.due(&registry, t0 + s(25)),
            vec![fixtures::drone_name("d1")]
        );
    }
}
