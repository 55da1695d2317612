//! Drone events as the coordinator reads them: decoding one and checking that it was published
//! under its own drone's subject, what becomes of one it cannot read (`unreadable`), what it
//! asks of its package (`package_change`), and grouping a batch by package so that each package
//! is written once per batch.

use std::collections::HashMap;
use std::time::Duration;

use schemas::{
    AttemptRecord, BuildOutcome, DecodeError, DroneName, Event, EventKind, PackageKey, decode,
    names,
};

use crate::lifecycle::PackageEvent;
use crate::schedule;
use crate::table::Change;

/// Why an event on the stream was discarded.
#[derive(Debug, thiserror::Error)]
pub enum EventRefusal {
    #[error(transparent)]
    Undecodable(#[from] DecodeError),
    /// The event names a drone other than the one its subject belongs to: forged, or sent by a
    /// misconfigured drone.
    #[error("event from drone {drone} published on another drone's subject")]
    ForeignDrone { drone: DroneName },
}

impl EventRefusal {
    /// The kind of refusal, for throttling its log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            EventRefusal::Undecodable(_) => "undecodable event",
            EventRefusal::ForeignDrone { .. } => "event from another drone",
        }
    }
}

/// Decodes an event of the stream published on `subject`.
pub fn decode_event(subject: &str, payload: &[u8]) -> Result<Event, EventRefusal> {
    let event = decode::<Event>(payload)?;
    if names::drone_of_event_subject(subject) == Some(event.drone.as_str()) {
        Ok(event)
    } else {
        Err(EventRefusal::ForeignDrone { drone: event.drone })
    }
}

/// What the coordinator does with an event it cannot read (a newer release's, or junk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Left unacknowledged and delivered again after `delay`: a coordinator of a newer release,
    /// once it runs, reads and applies it.
    Leave { delay: Duration },
    /// Delivered for so long that no upgrade is under way: acknowledged, so that it stops
    /// holding the consumer's ack floor, and reported. It stays in the event stream (kept for
    /// `events_max_age_secs` whatever the consumer does) for the operator to read.
    GiveUp,
}

/// How long an event the coordinator cannot read waits before it is delivered again.
pub const UNREADABLE_EVENT_DELAY: Duration = Duration::from_secs(30);
/// After this many deliveries (an hour, at [`UNREADABLE_EVENT_DELAY`]) an unreadable event is
/// given up on.
pub const UNREADABLE_EVENT_DELIVERIES: u64 = 120;

/// What becomes of an event that cannot be read, on its `delivered`th delivery.
pub fn unreadable(delivered: u64) -> Unreadable {
    if delivered >= UNREADABLE_EVENT_DELIVERIES {
        Unreadable::GiveUp
    } else {
        Unreadable::Leave {
            delay: UNREADABLE_EVENT_DELAY,
        }
    }
}

/// The package change an event asks for; `None` for events only observers read.
pub fn package_change(event: Event) -> Option<Change> {
    let drone = event.drone;
    match event.kind {
        // Drones since 0.1 send `started` for claim and start together.
        EventKind::Claimed { atom, attempt, .. } | EventKind::Started { atom, attempt, .. } => {
            Some(Change::new(
                atom.key(),
                PackageEvent::Claimed { drone, attempt },
            ))
        }
        EventKind::Finished {
            atom,
            attempt,
            outcome,
            duration_ms,
            jobs,
            artifacts,
            ..
        } => {
            let succeeded = outcome == BuildOutcome::Succeeded;
            let learned = match outcome {
                BuildOutcome::Succeeded => schedule::observed_secs(duration_ms, jobs),
                BuildOutcome::Failed { .. } => None,
            };
            let history = AttemptRecord {
                attempt,
                drone: drone.clone(),
                outcome: outcome.clone(),
                duration_ms,
                ended_ms: event.at_ms,
            };
            let package_event = match outcome {
                BuildOutcome::Succeeded => PackageEvent::Succeeded { drone, attempt },
                BuildOutcome::Failed { exit, .. } => PackageEvent::Failed {
                    drone,
                    attempt,
                    exit,
                },
            };
            Some(Change {
                key: atom.key(),
                event: package_event,
                attempt: Some(history),
                result_of: Some(atom),
                learned,
                artifacts: succeeded.then_some(artifacts),
            })
        }
        // Given back unbuilt, or after a build that failed for a reason not the package's own
        // (a download, the machine): the attempt is not spent, and a failed build is recorded.
        EventKind::HandedBack {
            atom,
            attempt,
            outcome,
            duration_ms,
            ..
        } => {
            let mut change = Change::new(atom.key(), PackageEvent::HandedBack { attempt });
            change.attempt = outcome.map(|outcome| AttemptRecord {
                attempt,
                drone,
                outcome,
                duration_ms,
                ended_ms: event.at_ms,
            });
            Some(change)
        }
        _ => None,
    }
}

/// Groups items by package, packages in order of first appearance and each package's items in
/// their order.
pub fn group_by_package<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &PackageKey,
) -> Vec<(PackageKey, Vec<T>)> {
    let mut groups: Vec<(PackageKey, Vec<T>)> = Vec::new();
    let mut index: HashMap<PackageKey, usize> = HashMap::new();
    for item in items {
        let at = *index.entry(key(&item).clone()).or_insert_with(|| {
            groups.push((key(&item).clone(), Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(item);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{ExitInfo, SCHEMA_VERSION, encode, fixtures};

    fn event(drone: &str, kind: EventKind) -> Event {
        Event {
            v: SCHEMA_VERSION,
            drone: fixtures::drone_name(drone),
            boot_ms: 1,
            seq: 1,
            at_ms: 5_000,
            kind,
        }
    }

    fn finished(outcome: BuildOutcome) -> EventKind {
        EventKind::Finished {
            atom: fixtures::atom("dev-libs/a"),
            attempt: 2,
            outcome,
            duration_ms: 10_000,
            jobs: 16,
            lease_rev: 3,
            artifacts: Vec::new(),
        }
    }

    #[test]
    fn an_event_must_come_from_its_subjects_drone() {
        let bytes = encode(&event("d1", EventKind::Offline)).expect("encode");
        assert!(decode_event("swarm.event.d1", &bytes).is_ok());
        let forged = decode_event("swarm.event.d2", &bytes).expect_err("forged");
        assert!(
            matches!(forged, EventRefusal::ForeignDrone { ref drone } if drone.as_str() == "d1")
        );
        assert_eq!(forged.kind(), "event from another drone");
        // A subject that is no event subject names no drone.
        assert!(decode_event("elsewhere", &bytes).is_err());
        let junk = decode_event("swarm.event.d1", b"\xc1 junk").expect_err("junk");
        assert!(matches!(junk, EventRefusal::Undecodable(_)));
        assert_eq!(junk.kind(), "undecodable event");
    }

    #[test]
    fn an_unreadable_event_is_left_for_an_hour_of_deliveries_then_given_up() {
        let leave = Unreadable::Leave {
            delay: UNREADABLE_EVENT_DELAY,
        };
        for (delivered, expected) in [
            (0, leave),
            (1, leave),
            (2, leave),
            (UNREADABLE_EVENT_DELIVERIES - 1, leave),
            (UNREADABLE_EVENT_DELIVERIES, Unreadable::GiveUp),
            (u64::MAX, Unreadable::GiveUp),
        ] {
            assert_eq!(unreadable(delivered), expected, "delivery {delivered}");
        }
        let patience = UNREADABLE_EVENT_DELAY * UNREADABLE_EVENT_DELIVERIES as u32;
        assert_eq!(patience, Duration::from_secs(3_600));
    }

    #[test]
    fn what_each_event_asks_of_its_package() {
        let a = fixtures::atom("dev-libs/a");
        let started = EventKind::Started {
            atom: a.clone(),
            attempt: 2,
            argv: Vec::new(),
            jobs: 4,
            delivery: 1,
            lease_rev: 3,
        };
        let change = package_change(event("d1", started)).expect("claim");
        assert_eq!(change.key, a.key());
        assert_eq!(
            change.event,
            PackageEvent::Claimed {
                drone: fixtures::drone_name("d1"),
                attempt: 2
            }
        );
        assert!(change.attempt.is_none() && change.result_of.is_none());

        let ok = package_change(event("d1", finished(BuildOutcome::Succeeded))).expect("ok");
        assert!(matches!(
            ok.event,
            PackageEvent::Succeeded { attempt: 2, .. }
        ));
        assert_eq!(ok.result_of, Some(a.clone()));
        // 10 s on 16 cores is 20 s on 8.
        assert_eq!(ok.learned, Some(20.0));
        let history = ok.attempt.expect("history");
        assert_eq!(
            (history.attempt, history.duration_ms, history.ended_ms),
            (2, 10_000, 5_000)
        );

        let failed = BuildOutcome::Failed {
            exit: ExitInfo::code(1),
            log_tail: String::new(),
            class: schemas::FailureClass::Package,
            signature: None,
        };
        let bad = package_change(event("d1", finished(failed))).expect("failed");
        assert!(matches!(bad.event, PackageEvent::Failed { attempt: 2, .. }));
        assert_eq!(
            bad.learned, None,
            "a failure teaches nothing about build time"
        );
        assert!(bad.attempt.is_some());

        let back = EventKind::HandedBack {
            atom: a.clone(),
            attempt: 2,
            reason: "shutdown".into(),
            outcome: None,
            duration_ms: 0,
        };
        let back = package_change(event("d1", back)).expect("hand-back");
        assert_eq!(back.event, PackageEvent::HandedBack { attempt: 2 });
        assert!(back.attempt.is_none(), "nothing was built");

        // A build that failed for the machine's fault is given back and recorded.
        let full_disk = BuildOutcome::Failed {
            exit: schemas::ExitInfo::code(1),
            log_tail: "No space left on device".into(),
            class: schemas::FailureClass::Infrastructure,
            signature: Some("No space left on device".into()),
        };
        let back = EventKind::HandedBack {
            atom: a.clone(),
            attempt: 2,
            reason: "infrastructure failure".into(),
            outcome: Some(full_disk.clone()),
            duration_ms: 1_500,
        };
        let back = package_change(event("d1", back)).expect("hand-back");
        assert_eq!(back.event, PackageEvent::HandedBack { attempt: 2 });
        let recorded = back.attempt.expect("the failed build is recorded");
        assert_eq!((recorded.attempt, recorded.duration_ms), (2, 1_500));
        assert_eq!(recorded.outcome, full_disk);
        assert_eq!(recorded.drone.as_str(), "d1");

        assert!(package_change(event("d1", EventKind::Offline)).is_none());
    }

    #[test]
    fn groups_keep_first_appearance_and_item_order() {
        let (a, b) = (fixtures::atom("a/a").key(), fixtures::atom("b/b").key());
        let items = vec![
            (b.clone(), 1),
            (a.clone(), 2),
            (b.clone(), 3),
            (a.clone(), 4),
        ];
        let groups = group_by_package(items, |(key, _)| key);
        let got: Vec<(PackageKey, Vec<i32>)> = groups
            .into_iter()
            .map(|(k, items)| (k, items.into_iter().map(|(_, n)| n).collect()))
            .collect();
        assert_eq!(got, [(b, vec![1, 3]), (a, vec![2, 4])]);
    }
}
