//! Tests of the fold (`mod.rs`) beyond its table of cases: history counted once per event,
//! bounds on what is kept, the lost mark, failures, packages and the event stream's position. The
//! helpers that make inputs are shared with `table_tests.rs`.

use schemas::fixtures::{self, atom, claimed, drone_name as name};
use schemas::{Arch, BuildOutcome, DroneRecord, DroneState, EventKind, ExitInfo, PackageState};

use super::*;

pub(super) fn event(drone: &str, boot: u64, seq: u64, kind: EventKind) -> Input {
    Input::Event {
        subject_drone: drone.to_owned(),
        stream_seq: seq,
        stored_ms: boot + seq,
        event: fixtures::event(drone, boot, seq, kind),
    }
}

pub(super) fn online(cores: u32, slots: u32) -> EventKind {
    EventKind::Online {
        cores,
        slots,
        arch: Arch::default(),
        version: "1".into(),
    }
}

pub(super) fn finished(a: &str, ok: bool) -> EventKind {
    EventKind::Finished {
        atom: atom(a),
        attempt: 1,
        lease_rev: 2,
        outcome: if ok {
            BuildOutcome::Succeeded
        } else {
            BuildOutcome::Failed {
                exit: ExitInfo::code(1),
                log_tail: format!("error building {a}"),
                class: schemas::FailureClass::Package,
                signature: None,
            }
        },
        duration_ms: 10,
        jobs: 4,
        artifacts: Vec::new(),
    }
}

pub(super) fn record(
    drone: &str,
    boot: u64,
    seq: u64,
    state: DroneState,
    building: &[&str],
) -> Input {
    Input::DroneRecord {
        key: drone.to_owned(),
        written_ms: boot + seq,
        record: DroneRecord {
            slots: 4,
            building: fixtures::running(building, boot),
            boot_ms: boot,
            seq,
            ..fixtures::drone_record(drone, 16, state)
        },
    }
}

pub(super) fn state_of(swarm: &Swarm, drone: &str) -> String {
    swarm.drones[&name(drone)].record.state.label().to_owned()
}

pub(super) fn building_of(swarm: &Swarm, drone: &str) -> Vec<String> {
    swarm.drones[&name(drone)]
        .record
        .building
        .iter()
        .map(|b| b.atom.to_string())
        .collect()
}

#[test]
fn history_counts_each_event_once_whatever_the_order() {
    let mut swarm = Swarm::new(10);
    let inputs = [
        event("a", 100, 1, online(8, 2)),
        event("a", 100, 3, finished("x-y/one", false)),
        event("a", 100, 2, finished("x-y/two", true)),
        event("a", 100, 3, finished("x-y/one", false)),
        event("a", 100, 4, finished("x-y/three", true)),
    ];
    for input in inputs {
        swarm.apply(input);
    }
    let view = &swarm.drones[&name("a")];
    assert_eq!(view.builds.succeeded, 2);
    assert_eq!(view.builds.failed, 1);
    assert_eq!(swarm.builds.failed, 1);
    assert_eq!(swarm.failures.len(), 1);
    // The last result is the newest by the drone's sequence, not by arrival.
    let last = view.last_result.as_ref().expect("a result");
    assert_eq!(last.atom.as_str(), "x-y/three");
    assert_eq!(last.kind, ResultKind::Succeeded);
}

#[test]
fn pending_events_are_bounded_and_still_applied() {
    let mut swarm = Swarm::new(1);
    swarm.apply(event("a", 100, 1, online(8, 2)));
    let total = MAX_PENDING_EVENTS as u64 + 50;
    for seq in 2..=total {
        let kind = if seq % 2 == 0 {
            claimed(&format!("x-y/p{seq}"), 1)
        } else {
            finished(&format!("x-y/p{}", seq - 1), true)
        };
        swarm.apply(event("a", 100, seq, kind));
    }
    let view = &swarm.drones[&name("a")];
    assert_eq!(view.pending.len(), MAX_PENDING_EVENTS);
    assert_eq!(view.current.seq, total);
    // Every claimed build finished except the last one claimed.
    assert_eq!(building_of(&swarm, "a"), [format!("x-y/p{total}")]);
    // A record older than the events merged into the base is too old to go underneath.
    let applied = swarm.apply(record("a", 100, 10, DroneState::Idle, &[]));
    assert_eq!(applied, Applied::Stale);
}

#[test]
fn lost_mark_never_counts_as_a_heartbeat() {
    let mut swarm = Swarm::new(10);
    swarm.apply(record("a", 100, 7, DroneState::Idle, &[]));
    let heard = swarm.drones[&name("a")].last_heard_ms;
    let Input::DroneRecord { mut record, .. } =
        record("a", 100, 7, DroneState::Lost { reason: "x".into() }, &[])
    else {
        unreachable!()
    };
    record.state = DroneState::Lost { reason: "x".into() };
    swarm.apply(Input::DroneRecord {
        key: "a".into(),
        written_ms: heard + 60_000,
        record,
    });
    assert_eq!(swarm.drones[&name("a")].last_heard_ms, heard);
    assert_eq!(state_of(&swarm, "a"), "lost");
}

#[test]
fn failures_keep_the_most_recent_in_time_order() {
    let mut swarm = Swarm::new(3);
    for seq in [5, 1, 4, 2, 3, 6] {
        swarm.apply(event(
            "a",
            100,
            seq,
            finished(&format!("x-y/p{seq}"), false),
        ));
    }
    let atoms: Vec<&str> = swarm.failures.iter().map(|f| f.atom.as_str()).collect();
    assert_eq!(atoms, ["x-y/p4", "x-y/p5", "x-y/p6"]);
}

#[test]
fn failures_given_back_are_listed_with_their_class_and_line() {
    let mut swarm = Swarm::new(5);
    let outcome = BuildOutcome::Failed {
        exit: ExitInfo::code(1),
        log_tail: "cc1: No space left on device".into(),
        class: schemas::FailureClass::Infrastructure,
        signature: Some("cc1: No space left on device".into()),
    };
    let given_back = |outcome| EventKind::HandedBack {
        atom: atom("x-y/z"),
        attempt: 2,
        reason: "infrastructure failure".into(),
        outcome,
        duration_ms: 7,
    };
    // A hand-back at shutdown built nothing and is no failure.
    swarm.apply(event("a", 1, 1, given_back(None)));
    assert!(swarm.failures.is_empty());
    swarm.apply(event("a", 1, 2, given_back(Some(outcome))));
    let failure = &swarm.failures[0];
    assert_eq!(failure.class, schemas::FailureClass::Infrastructure);
    assert_eq!(
        failure.signature.as_deref(),
        Some("cc1: No space left on device")
    );
    assert_eq!((failure.attempt, failure.duration_ms), (2, 7));
    // A package's own failure keeps its class too.
    swarm.apply(event("a", 1, 3, finished("x-y/w", false)));
    assert_eq!(swarm.failures[1].class, schemas::FailureClass::Package);
}

#[test]
fn long_log_tails_are_cut_to_their_end() {
    let mut swarm = Swarm::new(3);
    let long = format!("{}END", "x".repeat(FAILURE_TAIL_CHARS * 2));
    swarm.apply(event(
        "a",
        1,
        1,
        EventKind::Finished {
            atom: atom("x-y/z"),
            attempt: 1,
            lease_rev: 1,
            outcome: BuildOutcome::Failed {
                exit: ExitInfo::code(2),
                log_tail: long,
                class: schemas::FailureClass::Package,
                signature: None,
            },
            duration_ms: 1,
            jobs: 4,
            artifacts: Vec::new(),
        },
    ));
    let tail = &swarm.failures[0].log_tail;
    assert_eq!(tail.chars().count(), FAILURE_TAIL_CHARS);
    assert!(tail.ends_with("END"));
}

#[test]
fn seen_window_tells_redeliveries_from_late_first_deliveries() {
    let mut window = SeenWindow::default();
    let id = |boot, seq| ReportId { boot_ms: boot, seq };
    assert!(window.insert(id(1, 10)));
    assert!(window.insert(id(1, 8)), "late, first time");
    assert!(!window.insert(id(1, 8)), "redelivered");
    assert!(!window.insert(id(1, 10)), "redelivered");
    assert!(window.insert(id(1, 100)));
    assert!(!window.insert(id(1, 10)), "too old to tell");
    assert!(window.insert(id(1, 99)));
    assert!(window.insert(id(2, 1)), "new process");
    assert!(!window.insert(id(1, 101)), "previous process");
}

#[test]
fn packages_follow_revisions() {
    let mut swarm = Swarm::new(3);
    let pkg = |state: PackageState| fixtures::package_record("x-y/z", state);
    let key = atom("x-y/z").key().to_string();
    let queued = Input::Package {
        key: key.clone(),
        revision: 5,
        record: pkg(PackageState::Queued { attempt: 1 }),
    };
    let done = Input::Package {
        key: key.clone(),
        revision: 9,
        record: pkg(PackageState::Succeeded {
            attempt: 1,
            drone: name("a"),
        }),
    };
    assert_eq!(swarm.apply(done), Applied::Changed);
    assert_eq!(swarm.apply(queued), Applied::Stale);
    assert_eq!(swarm.packages[&key].state.label(), "succeeded");
    let wrong = Input::Package {
        key: "other".into(),
        revision: 10,
        record: pkg(PackageState::Queued { attempt: 1 }),
    };
    assert!(matches!(swarm.apply(wrong), Applied::Rejected(_)));
    assert_eq!(
        swarm.apply(Input::PackageRemoved {
            key: key.clone(),
            revision: 11
        }),
        Applied::Changed
    );
    assert!(swarm.packages.is_empty());
}

#[test]
fn a_package_keeps_its_atom_deps_estimate_and_arch_and_little_else() {
    let mut swarm = Swarm::new(3);
    let put = |swarm: &mut Swarm, record: schemas::PackageRecord| {
        let key = record.atom.key().to_string();
        swarm.apply(Input::Package {
            key: key.clone(),
            revision: 1,
            record,
        });
        key
    };
    let waiting = |atom_text: &str| fixtures::package_record(atom_text, PackageState::Waiting);
    // The estimate: learned, else the submitter's, else the size class, else medium.
    let learned = put(
        &mut swarm,
        schemas::PackageRecord {
            learned_secs: Some(90.0),
            estimate_secs: Some(300.0),
            deps: vec![atom("a-b/c").key(), atom("a-b/d").key()],
            ..waiting("x-y/learned")
        },
    );
    let estimated = put(
        &mut swarm,
        schemas::PackageRecord {
            estimate_secs: Some(300.0),
            class: Some(schemas::SizeClass::Giant),
            arch: Arch::parse("arm64").expect("arch"),
            ..waiting("x-y/estimated")
        },
    );
    let classed = put(
        &mut swarm,
        schemas::PackageRecord {
            class: Some(schemas::SizeClass::Heavy),
            ..waiting("x-y/classed")
        },
    );
    let unknown = put(&mut swarm, waiting("x-y/unknown"));
    let view = &swarm.packages[&learned];
    assert_eq!(view.atom, atom("x-y/learned"));
    assert_eq!(*view.deps, [atom("a-b/c").key(), atom("a-b/d").key()]);
    assert_eq!(view.estimate_secs, 90.0);
    assert_eq!(swarm.packages[&estimated].estimate_secs, 300.0);
    assert_eq!(swarm.packages[&classed].estimate_secs, 1_800.0);
    assert_eq!(swarm.packages[&unknown].estimate_secs, 600.0);
    assert!(swarm.packages[&unknown].deps.is_empty());
    // Archs are kept once each; a package names its own by index.
    assert_eq!(
        swarm.archs,
        [Arch::default(), Arch::parse("arm64").expect("arch")]
    );
    assert_eq!(
        swarm.arch_of(&swarm.packages[&estimated]).map(Arch::as_str),
        Some("arm64")
    );
    assert_eq!(
        swarm.arch_of(&swarm.packages[&unknown]).map(Arch::as_str),
        Some("amd64")
    );
    // What a package costs the picture, besides its strings: a hundred thousand of them stay
    // within a few tens of megabytes.
    assert!(
        std::mem::size_of::<PackageView>() <= 120,
        "{}",
        std::mem::size_of::<PackageView>()
    );
}

#[test]
fn caught_up_means_everything_stored_a_poll_ago_is_folded() {
    let mut swarm = Swarm::new(3);
    assert!(!swarm.events.caught_up(), "no poll yet");
    let poll = |first, last, messages| {
        Input::EventsStream(StreamPosition {
            first_seq: first,
            last_seq: last,
            messages,
        })
    };
    swarm.apply(poll(0, 0, 0));
    assert!(swarm.events.caught_up(), "empty stream");
    swarm.apply(poll(1, 2, 2));
    assert!(swarm.events.caught_up(), "the older poll saw nothing");
    assert_eq!(swarm.events.lag(), 2);
    swarm.apply(poll(1, 3, 3));
    assert!(!swarm.events.caught_up());
    swarm.apply(event("a", 1, 1, online(8, 2)));
    swarm.apply(event("a", 1, 2, EventKind::Draining));
    assert!(swarm.events.caught_up());
    assert_eq!(swarm.events.lag(), 1);
    // A failed poll leaves the position unknown: not caught up until polls succeed again.
    swarm.apply(Input::EventsStreamUnknown);
    assert!(!swarm.events.caught_up());
    // Every event expired from the stream: nothing left to fold.
    let mut fresh = Swarm::new(3);
    fresh.apply(poll(501, 500, 0));
    assert!(fresh.events.caught_up());
    assert_eq!(fresh.events.lag(), 0);
}
