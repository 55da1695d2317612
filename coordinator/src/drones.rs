//! The drone registry: the drones bucket as the coordinator follows it. It applies the bucket
//! watch's entries (refusing a record filed under another drone's key), decides which drones
//! are newly lost (heartbeat older than three of its intervals) and sums the online capacity of
//! an arch for the big-job threshold. Time enters as `now_ms`; the records' ages are measured
//! against the server's timestamp of their last write.

use std::collections::HashMap;

use schemas::{Arch, DecodeError, DroneName, DroneRecord, DroneState, Fingerprint, decode};

use crate::schedule::Capacity;

/// A drone record and when and at which revision the server stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct DroneEntry {
    pub record: DroneRecord,
    pub revision: u64,
    /// Server time of the last write of the record (unix ms).
    pub written_ms: u64,
}

/// One entry of the drones bucket's watch, without the client's types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WatchEntry<'a> {
    Put {
        key: &'a str,
        value: &'a [u8],
        revision: u64,
        written_ms: u64,
    },
    /// Deleted or purged.
    Delete { key: &'a str },
}

/// Why a drone record was ignored.
#[derive(Debug, thiserror::Error)]
pub enum DroneRefusal {
    #[error(transparent)]
    Undecodable(#[from] DecodeError),
    /// A record naming drone `name` stored under another drone's key.
    #[error("drone record of {name} under another drone's key")]
    ForeignKey { name: DroneName },
}

impl DroneRefusal {
    /// The kind of refusal, for throttling its log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            DroneRefusal::Undecodable(_) => "undecodable drone record",
            DroneRefusal::ForeignKey { .. } => "drone record under another key",
        }
    }
}

/// A drone to mark lost: its record as it should be written, by compare-and-set on `revision`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lost {
    pub name: String,
    pub revision: u64,
    pub record: DroneRecord,
}

#[derive(Debug, Default)]
pub struct DroneRegistry {
    drones: HashMap<String, DroneEntry>,
}

impl DroneRegistry {
    pub fn get(&self, name: &str) -> Option<&DroneEntry> {
        self.drones.get(name)
    }

    /// Every drone known, by key.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &DroneEntry)> {
        self.drones.iter()
    }

    pub fn len(&self) -> usize {
        self.drones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.drones.is_empty()
    }

    /// Applies one watch entry. A refused record leaves what was known of the drone as it was.
    pub fn apply(&mut self, entry: WatchEntry<'_>) -> Result<(), DroneRefusal> {
        match entry {
            WatchEntry::Delete { key } => {
                self.drones.remove(key);
                Ok(())
            }
            WatchEntry::Put {
                key,
                value,
                revision,
                written_ms,
            } => {
                let record = decode::<DroneRecord>(value)?;
                if record.name.as_str() != key {
                    return Err(DroneRefusal::ForeignKey { name: record.name });
                }
                // A record read directly may be newer than what the watch delivers next.
                if self.drones.get(key).is_some_and(|e| e.revision > revision) {
                    return Ok(());
                }
                self.drones.insert(
                    key.to_owned(),
                    DroneEntry {
                        record,
                        revision,
                        written_ms,
                    },
                );
                Ok(())
            }
        }
    }

    /// The drones whose heartbeat stopped at `now_ms` and that are not marked lost yet, with
    /// their records marked. A drone that stopped cleanly (offline) is never lost.
    pub fn newly_lost(&self, now_ms: u64) -> Vec<Lost> {
        let mut lost = Vec::new();
        for (name, entry) in &self.drones {
            let state = effective_state(entry, now_ms);
            if matches!(state, DroneState::Lost { .. })
                && !matches!(entry.record.state, DroneState::Lost { .. })
            {
                let mut record = entry.record.clone();
                record.state = state;
                lost.push(Lost {
                    name: name.clone(),
                    revision: entry.revision,
                    record,
                });
            }
        }
        lost.sort_by(|a, b| a.name.cmp(&b.name));
        lost
    }

    /// The fingerprints of the drones of `arch` that are alive and healthy (idle, building, or
    /// excluded from the current run), by name.
    pub fn fingerprints(&self, arch: &Arch, now_ms: u64) -> Vec<(DroneName, Fingerprint)> {
        let mut found: Vec<(DroneName, Fingerprint)> = self
            .drones
            .values()
            .filter(|entry| entry.record.arch == *arch)
            .filter(|entry| {
                matches!(
                    effective_state(entry, now_ms),
                    DroneState::Idle | DroneState::Building | DroneState::Excluded { .. }
                )
            })
            .filter_map(|entry| {
                let fp = entry.record.fingerprint.clone()?;
                Some((entry.record.name.clone(), fp))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// The online (idle or building, heartbeat alive) drones of `arch`, as the scheduler sees
    /// them.
    pub fn capacity(&self, arch: &Arch, now_ms: u64) -> Capacity {
        let mut capacity = Capacity::default();
        for entry in self.drones.values() {
            let online = matches!(
                effective_state(entry, now_ms),
                DroneState::Idle | DroneState::Building
            );
            if entry.record.arch == *arch && online {
                let record = &entry.record;
                capacity.add(record.cores, record.slots, record.big_builds);
            }
        }
        capacity
    }
}

fn effective_state(entry: &DroneEntry, now_ms: u64) -> DroneState {
    schemas::summary::effective_state(&entry.record, now_ms.saturating_sub(entry.written_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{encode, fixtures};

    fn put<'a>(key: &'a str, value: &'a [u8], written_ms: u64) -> WatchEntry<'a> {
        WatchEntry::Put {
            key,
            value,
            revision: 4,
            written_ms,
        }
    }

    fn registry(drones: &[DroneRecord], written_ms: u64) -> DroneRegistry {
        let mut registry = DroneRegistry::default();
        for record in drones {
            let bytes = encode(record).expect("encode");
            registry
                .apply(put(record.name.as_str(), &bytes, written_ms))
                .expect("accepted");
        }
        registry
    }

    #[test]
    fn watch_entries_register_replace_and_remove_drones() {
        let mut registry = registry(&[fixtures::drone_record("d1", 8, DroneState::Idle)], 10);
        assert_eq!(
            registry.get("d1").map(|e| (e.revision, e.written_ms)),
            Some((4, 10))
        );
        let building =
            encode(&fixtures::drone_record("d1", 8, DroneState::Building)).expect("encode");
        registry.apply(put("d1", &building, 20)).expect("accepted");
        assert_eq!(
            registry.get("d1").map(|e| e.record.state.clone()),
            Some(DroneState::Building)
        );
        registry
            .apply(WatchEntry::Delete { key: "d1" })
            .expect("deleted");
        assert!(registry.is_empty());
        // Deleting what is not there is no error.
        registry
            .apply(WatchEntry::Delete { key: "d1" })
            .expect("deleted");
    }

    #[test]
    fn forged_and_junk_records_are_refused_and_change_nothing() {
        let mut registry = registry(&[fixtures::drone_record("d1", 8, DroneState::Idle)], 10);
        let other = encode(&fixtures::drone_record("d2", 64, DroneState::Idle)).expect("encode");
        let err = registry.apply(put("d1", &other, 20)).expect_err("foreign");
        assert!(matches!(err, DroneRefusal::ForeignKey { ref name } if name.as_str() == "d2"));
        assert_eq!(err.kind(), "drone record under another key");
        let err = registry.apply(put("d1", b"\xc1", 20)).expect_err("junk");
        assert_eq!(err.kind(), "undecodable drone record");
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.get("d1").map(|e| e.record.cores), Some(8));
    }

    /// Heartbeat interval 1 s: a drone is lost after 3 s without a write.
    #[test]
    fn a_drone_is_newly_lost_once_its_heartbeat_is_three_intervals_old() {
        let cases = [
            (DroneState::Idle, 3_000, false),
            (DroneState::Idle, 3_001, true),
            (DroneState::Building, 9_999, true),
            (
                DroneState::Grounded {
                    reason: "disk".into(),
                },
                9_999,
                true,
            ),
            (DroneState::Draining, 9_999, true),
            // Stopped cleanly: never lost.
            (DroneState::Offline, 9_999, false),
            // Already marked: not again.
            (DroneState::Lost { reason: "x".into() }, 9_999, false),
        ];
        for (state, age, lost) in cases {
            let registry = registry(&[fixtures::drone_record("d1", 8, state.clone())], 1_000);
            let got = registry.newly_lost(1_000 + age);
            assert_eq!(got.len(), usize::from(lost), "{state:?} after {age} ms");
            if let Some(lost) = got.first() {
                assert_eq!((lost.name.as_str(), lost.revision), ("d1", 4));
                assert!(matches!(lost.record.state, DroneState::Lost { .. }));
            }
        }
    }

    #[test]
    fn capacity_counts_the_online_drones_of_the_arch() {
        let arm = Arch::parse("arm64").expect("arch");
        let drones = [
            DroneRecord {
                slots: 4,
                big_builds: true,
                ..fixtures::drone_record("big", 16, DroneState::Building)
            },
            DroneRecord {
                slots: 2,
                ..fixtures::drone_record("small", 8, DroneState::Idle)
            },
            fixtures::drone_record(
                "grounded",
                32,
                DroneState::Grounded {
                    reason: "disk".into(),
                },
            ),
            fixtures::drone_record("draining", 32, DroneState::Draining),
            fixtures::drone_record("offline", 32, DroneState::Offline),
            DroneRecord {
                arch: arm.clone(),
                ..fixtures::drone_record("arm", 4, DroneState::Idle)
            },
        ];
        let registry = registry(&drones, 1_000);
        let capacity = registry.capacity(&Arch::default(), 1_500);
        assert_eq!(
            capacity,
            Capacity {
                cores: 24,
                max_slot_cores: 4,
                min_slot_cores: 4,
                max_big_cores: 16
            }
        );
        assert_eq!(registry.capacity(&arm, 1_500).cores, 4);
        // Once their heartbeats are old, nobody is online.
        assert_eq!(
            registry.capacity(&Arch::default(), 10_000),
            Capacity::default()
        );
    }
}
