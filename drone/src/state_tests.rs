//! Table tests of the drone's decisions (`state.rs`, `state_big.rs`). A job message is a
//! `&'static str` here. This file is over 500 lines: one table per decision, all built from
//! the same `Setup` rows; split, each file would repeat them.

use std::time::{Duration, Instant};

use schemas::{BuildOutcome, DroneState, ExitInfo, PackageKey};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::slots::{Phase, Slot};

type D = Drone<&'static str>;

fn key(n: u32) -> PackageKey {
    schemas::fixtures::atom(&format!("a-b/p{n}")).key()
}

/// Starts a job of one slot, started at `started_ms`.
fn start(drone: &mut D, n: u32, started_ms: u64) {
    drone.slots.start(
        key(n),
        Slot {
            atom: schemas::fixtures::atom(&format!("a-b/p{n}")),
            attempt: 1,
            started_ms,
            handback: CancellationToken::new(),
            cancel: CancellationToken::new(),
            weight: 1,
            phase: Phase::Building,
        },
    );
}

fn fail(n: u32) -> HealthEvent {
    HealthEvent::BuildFailed {
        atom: schemas::fixtures::atom(&format!("a-b/p{n}")),
        why: "exit status 1".into(),
    }
}

/// The drone each case starts from.
#[derive(Debug, Clone, Copy)]
struct Setup {
    big: bool,
    reservation: Option<&'static str>,
    normal_waiting: bool,
    building: u32,
    requested: usize,
    grounded: bool,
}

const BASE: Setup = Setup {
    big: false,
    reservation: None,
    normal_waiting: false,
    building: 0,
    requested: 0,
    grounded: false,
};

/// A big drone holding a big job while one handed-back build still runs.
const HOLDING: Setup = Setup {
    big: true,
    building: 1,
    reservation: Some("big"),
    ..BASE
};

fn drone(setup: Setup, now: Instant) -> D {
    let mut drone = D::new(4, 3, setup.big, now);
    for n in 0..setup.building {
        start(&mut drone, n, 1_000);
    }
    drone.slots.asked(setup.requested);
    if let Some(big) = drone.big.as_mut() {
        big.normal_waiting = setup.normal_waiting;
        big.reservation = match setup.reservation {
            None => Reservation::Clear,
            Some("reserved") => Reservation::Reserved,
            Some(message) => Reservation::Holding(message),
        };
    }
    if setup.grounded {
        drone.lifecycle = Lifecycle::Grounded { reason: "x".into() };
    }
    drone
}

#[test]
fn normal_pulls_ask_for_the_free_slots_unless_a_big_job_has_them() {
    let now = Instant::now();
    #[rustfmt::skip]
    let cases: Vec<(&str, Setup, Option<usize>)> = vec![
        ("a small drone asks for every free slot", BASE, Some(4)),
        ("… minus what runs and what it asked for", Setup { building: 1, requested: 2, ..BASE }, Some(1)),
        ("… and nothing when all is asked for", Setup { building: 2, requested: 2, ..BASE }, None),
        ("a grounded drone asks for nothing", Setup { grounded: true, ..BASE }, None),
        ("an idle big drone waits on the big queue", Setup { big: true, ..BASE }, None),
        ("… until it saw normal work queued", Setup { big: true, normal_waiting: true, ..BASE }, Some(4)),
        ("… or while a normal pull is out", Setup { big: true, requested: 1, ..BASE }, Some(3)),
        ("a busy big drone pulls normal work", Setup { big: true, building: 1, ..BASE }, Some(3)),
        ("… not while a big job waits", Setup { big: true, building: 1, reservation: Some("reserved"), ..BASE }, None),
        ("… nor while it holds one", Setup { big: true, building: 1, reservation: Some("job"), ..BASE }, None),
        ("an idle big drone that saw work, with a big job reserved", Setup { big: true, normal_waiting: true, reservation: Some("reserved"), ..BASE }, Some(4)),
    ];
    for (what, setup, expected) in cases {
        let mut drone = drone(setup, now);
        assert_eq!(drone.normal_pull(now), expected, "{what}");
        if expected.is_some()
            && let Some(big) = &drone.big
        {
            assert!(!big.normal_waiting, "{what}: the sighting is used up");
            if setup.building == 0 {
                assert_eq!(
                    big.reservation,
                    Reservation::Clear,
                    "{what}: the big job went elsewhere"
                );
            }
        }
    }
}

#[test]
fn an_error_status_pauses_pulls_and_forgets_requests() {
    let t0 = Instant::now();
    let mut drone = drone(BASE, t0);
    drone.asked(4, t0);
    drone.pull_status(PullStatus::Error, t0);
    assert_eq!(drone.slots.requested(), 0);
    assert_eq!(drone.normal_pull(t0 + PULL_PAUSE / 2), None, "paused");
    assert_eq!(drone.normal_pull(t0 + PULL_PAUSE), Some(4), "open again");
    assert_eq!(drone.gate, PullGate::Open);

    drone.asked(4, t0);
    drone.pull_status(PullStatus::Heartbeat, t0);
    assert_eq!(drone.slots.requested(), 4);
    drone.pull_status(PullStatus::Ended { unfilled: Some(3) }, t0);
    assert_eq!(drone.slots.requested(), 1);
    drone.pull_status(PullStatus::Ended { unfilled: None }, t0);
    assert_eq!(drone.slots.requested(), 0);
}

#[test]
fn a_silent_pull_is_watched_only_while_one_is_out() {
    let t0 = Instant::now();
    let silence = Duration::from_secs(2);
    let mut drone = drone(BASE, t0);
    assert_eq!(drone.pull_watchdog(silence), None);
    let t1 = t0 + Duration::from_secs(5);
    drone.asked(2, t1);
    assert_eq!(drone.pull_watchdog(silence), Some(t1 + silence));
    // A second pull while one is out does not move the watch.
    drone.asked(1, t1 + Duration::from_secs(1));
    assert_eq!(drone.pull_watchdog(silence), Some(t1 + silence));
}

#[test]
fn arriving_jobs_are_admitted_by_mode_and_room() {
    let now = Instant::now();
    #[rustfmt::skip]
    let cases: Vec<(&str, Setup, Option<&str>, Admit)> = vec![
        ("room and working", BASE, None, Admit::Start),
        ("the machine cannot build", BASE, Some("disk full"), Admit::Unfit { reason: "disk full".into() }),
        ("grounded", Setup { grounded: true, ..BASE }, None, Admit::Unwanted),
        ("full", Setup { building: 4, ..BASE }, None, Admit::Unwanted),
        ("a big job waits", Setup { big: true, building: 1, reservation: Some("reserved"), ..BASE }, None, Admit::Reserved),
        ("a big job is held", Setup { big: true, building: 1, reservation: Some("job"), ..BASE }, None, Admit::Reserved),
        ("a big drone with room", Setup { big: true, building: 1, ..BASE }, None, Admit::Start),
    ];
    for (what, setup, unfit, expected) in cases {
        let mut drone = drone(
            Setup {
                requested: 1,
                ..setup
            },
            now,
        );
        assert_eq!(
            drone.admit(unfit.map(str::to_owned), now),
            expected,
            "{what}"
        );
        assert_eq!(
            drone.slots.requested(),
            0,
            "{what}: the delivery is counted"
        );
    }
}

#[test]
fn a_big_job_is_held_only_by_a_working_drone_whose_builds_just_started() {
    let now_ms = 10_000;
    let window = BIG_HANDBACK_WINDOW.as_millis() as u64;
    #[rustfmt::skip]
    let cases: Vec<(&str, Setup, u64, BigJob<&str>)> = vec![
        ("idle", Setup { big: true, ..BASE }, 0, BigJob::Hold { hand_back: 0 }),
        ("builds started just now", Setup { big: true, building: 2, ..BASE }, now_ms - window, BigJob::Hold { hand_back: 2 }),
        ("builds well under way", Setup { big: true, building: 2, ..BASE }, now_ms - window - 1, BigJob::GiveBack("big")),
        ("grounded", Setup { big: true, grounded: true, ..BASE }, 0, BigJob::GiveBack("big")),
        ("already holding one", Setup { big: true, reservation: Some("held"), ..BASE }, 0, BigJob::GiveBack("big")),
        ("a drone without big builds", BASE, 0, BigJob::GiveBack("big")),
    ];
    for (what, setup, started_ms, expected) in cases {
        let mut drone = drone(
            Setup {
                building: 0,
                ..setup
            },
            Instant::now(),
        );
        for n in 0..setup.building {
            start(&mut drone, n, started_ms);
        }
        let took = drone.big_job("big", now_ms);
        let held = matches!(took, BigJob::Hold { .. });
        assert_eq!(took, expected, "{what}");
        if held {
            assert_eq!(
                drone.big.as_ref().map(|b| &b.reservation),
                Some(&Reservation::Holding("big")),
                "{what}"
            );
            assert_eq!(
                drone.normal_pull(Instant::now()),
                None,
                "{what}: no normal work while holding"
            );
        }
    }
}

#[test]
fn a_held_big_job_starts_once_the_drone_is_idle_or_goes_back_if_it_stopped_pulling() {
    let now = Instant::now();
    let mut busy = drone(HOLDING, now);
    assert_eq!(busy.take_held(), None, "a handed-back build still runs");
    busy.slots.exited(&key(0), now);
    assert_eq!(busy.take_held(), Some(Held::Start("big")));
    assert_eq!(busy.take_held(), None, "taken once");

    let mut grounded = drone(
        Setup {
            big: true,
            building: 1,
            reservation: Some("big"),
            grounded: true,
            ..BASE
        },
        now,
    );
    assert_eq!(grounded.take_held(), Some(Held::GiveBack("big")));
    assert_eq!(drone(Setup { big: true, ..BASE }, now).take_held(), None);
}

#[test]
fn looks_and_big_pulls_go_out_one_at_a_time() {
    let now = Instant::now();
    let mut idle = drone(Setup { big: true, ..BASE }, now);
    assert!(idle.begin_big_pull());
    assert!(!idle.begin_big_pull(), "one big pull at a time");
    idle.big_pull_empty();
    assert!(idle.begin_big_pull());

    assert_eq!(idle.begin_look(), Some(Look::Normal));
    assert!(!idle.may_look());
    assert_eq!(idle.begin_look(), None, "one look at a time");
    idle.looked(Look::Normal, true);
    assert_eq!(idle.normal_pull(now), Some(4), "normal work seen: pulled");

    let mut busy = drone(
        Setup {
            big: true,
            building: 1,
            ..BASE
        },
        now,
    );
    assert!(
        !busy.begin_big_pull(),
        "a busy drone does not pull big jobs"
    );
    assert_eq!(busy.begin_look(), Some(Look::Big));
    busy.looked(Look::Big, true);
    assert_eq!(
        busy.big.as_ref().map(|b| &b.reservation),
        Some(&Reservation::Reserved)
    );
    assert_eq!(busy.normal_pull(now), None);
    busy.begin_look();
    busy.looked(Look::Big, false);
    assert_eq!(busy.normal_pull(now), Some(3));

    let mut holding = drone(HOLDING, now);
    holding.begin_look();
    holding.looked(Look::Big, false);
    assert_eq!(
        holding.big.as_ref().map(|b| &b.reservation),
        Some(&Reservation::Holding("big"))
    );

    assert!(
        !drone(BASE, now).may_look(),
        "no big consumer, nothing to look at"
    );
    assert!(
        !drone(
            Setup {
                big: true,
                grounded: true,
                ..BASE
            },
            now
        )
        .may_look()
    );
}

#[test]
fn health_grounds_once_and_the_record_shows_the_mode() {
    let now = Instant::now();
    let mut drone = drone(BASE, now);
    assert_eq!(drone.record_state(), DroneState::Idle);
    start(&mut drone, 9, 0);
    assert_eq!(drone.record_state(), DroneState::Building);
    assert_eq!(drone.health(&fail(1)), None);
    assert_eq!(drone.health(&fail(2)), None);
    assert_eq!(drone.failed_streak(), 2);
    let reason = drone.health(&fail(3)).expect("grounded by the third");
    assert!(
        reason.contains("3 builds of different packages failed in a row"),
        "{reason}"
    );
    assert_eq!(drone.health(&fail(4)), None, "grounded once");
    assert!(matches!(drone.record_state(), DroneState::Grounded { .. }));
    assert_eq!(drone.failed_streak(), 0);
    assert!(!drone.pulls());
    drone
        .operator(&HealthEvent::Unground)
        .expect("grounded drones can be ungrounded");
    assert!(
        drone.operator(&HealthEvent::Unground).is_err(),
        "a working drone cannot"
    );
    assert!(drone.pulls());
    drone.drain(now);
    assert_eq!(drone.record_state(), DroneState::Draining);
    assert!(!drone.drained(), "a job is still on the drone");
    drone.slots.done(&key(9), None);
    assert!(drone.drained());
    assert_eq!(
        drone.health(&HealthEvent::Unhealthy {
            reason: "disk".into()
        }),
        None
    );
}

#[test]
fn the_record_is_written_at_once_for_state_changes_and_at_most_once_a_second_otherwise() {
    let t0 = Instant::now();
    let mut drone = drone(BASE, t0);
    assert_eq!(
        drone.record_due_at(),
        Some(t0),
        "the first record is due at once"
    );
    assert!(drone.record_due(false, t0));
    assert_eq!(drone.record_due_at(), None, "nothing changed");
    drone.touch();
    assert_eq!(drone.record_due_at(), Some(t0 + RECORD_MIN_INTERVAL));
    assert!(!drone.record_due(false, t0 + RECORD_MIN_INTERVAL / 2));
    assert!(
        drone.record_due(true, t0 + RECORD_MIN_INTERVAL / 2),
        "urgent"
    );
    drone.touch();
    let t1 = t0 + RECORD_MIN_INTERVAL / 2;
    assert!(!drone.record_due(false, t1 + RECORD_MIN_INTERVAL / 2));
    assert!(drone.record_due(false, t1 + RECORD_MIN_INTERVAL));
}

#[test]
fn only_a_build_that_ran_to_its_end_and_failed_for_the_machine_counts_against_it() {
    use schemas::FailureClass::*;
    let atom = schemas::fixtures::atom("a-b/c");
    assert_eq!(verdict(&atom, None), None, "killed for a lost lease");
    assert_eq!(
        verdict(&atom, Some(&BuildOutcome::Succeeded)),
        Some(HealthEvent::BuildSucceeded)
    );
    let failed = |class, signature: Option<&str>| BuildOutcome::Failed {
        exit: ExitInfo::code(2),
        log_tail: String::new(),
        class,
        signature: signature.map(str::to_owned),
    };
    assert_eq!(
        verdict(&atom, Some(&failed(Package, Some("ERROR: compile")))),
        None
    );
    assert_eq!(
        verdict(&atom, Some(&failed(Fetch, Some("Couldn't download")))),
        None
    );
    assert_eq!(
        verdict(
            &atom,
            Some(&failed(Infrastructure, Some("No space left on device")))
        ),
        Some(HealthEvent::BuildFailed {
            atom: atom.clone(),
            why: "No space left on device".into()
        })
    );
    assert_eq!(
        verdict(&atom, Some(&failed(Infrastructure, None))),
        Some(HealthEvent::BuildFailed {
            atom,
            why: "exit status 2".into()
        })
    );
}

#[test]
fn a_drone_that_does_not_fit_the_run_takes_nothing_and_says_why() {
    let now = Instant::now();
    let why = "its ebuild tree is older than the run's: sync it".to_owned();
    // Idle: it asks for nothing, an arriving job goes back, the record says why.
    let mut idle = drone(BASE, now);
    assert_eq!(idle.normal_pull(now), Some(4));
    assert!(idle.set_excluded(Some(why.clone())), "a change");
    assert!(!idle.set_excluded(Some(why.clone())), "no change");
    assert!(idle.record_due(false, now), "written at once");
    assert!(!idle.pulls());
    assert_eq!(idle.normal_pull(now), None);
    assert_eq!(idle.admit(None, now), Admit::Unwanted);
    assert_eq!(
        idle.record_state(),
        DroneState::Excluded {
            reason: why.clone()
        }
    );
    // It fits again: it works again.
    assert!(idle.set_excluded(None));
    assert!(idle.pulls());
    assert_eq!(idle.record_state(), DroneState::Idle);

    // Building: its builds finish, it shows them, and then it shows why it waits.
    let mut busy = drone(
        Setup {
            building: 1,
            ..BASE
        },
        now,
    );
    busy.set_excluded(Some(why.clone()));
    assert_eq!(busy.normal_pull(now), None);
    assert_eq!(busy.record_state(), DroneState::Building);
    busy.slots.done(&key(0), None);
    assert_eq!(
        busy.record_state(),
        DroneState::Excluded {
            reason: why.clone()
        }
    );

    // A held big job goes back; no big pull goes out.
    let mut holding = drone(HOLDING, now);
    holding.set_excluded(Some(why.clone()));
    assert_eq!(holding.take_held(), Some(Held::GiveBack("big")));
    let mut big_idle = drone(Setup { big: true, ..BASE }, now);
    big_idle.set_excluded(Some(why));
    assert!(!big_idle.begin_big_pull());

    // A job of another fingerprint is counted as delivered, not taken.
    let mut asked = drone(
        Setup {
            requested: 2,
            ..BASE
        },
        now,
    );
    asked.refuse(now);
    assert_eq!(asked.slots.requested(), 1);
}

#[test]
fn after_a_build_the_critical_path_goes_on_from_a_big_drone_lingers_for_the_next() {
    let now = Instant::now();
    let linger = Duration::from_secs(5);
    // A big build whose job says the path goes on, then its process ends.
    let building = |linger_after: bool| {
        let mut drone = drone(
            Setup {
                big: true,
                building: 1,
                ..BASE
            },
            now,
        );
        drone.big_started(linger_after);
        drone.slots.exited(&key(0), now);
        drone.build_exited(now, linger);
        drone
    };
    let mut lingering = building(true);
    assert_eq!(
        lingering.big.as_ref().map(|b| &b.reservation),
        Some(&Reservation::Lingering {
            until: now + linger
        })
    );
    // No normal work while it lingers, even once normal work was seen queued; a normal job
    // that arrives anyway goes back.
    if let Some(big) = lingering.big.as_mut() {
        big.normal_waiting = true;
    }
    assert_eq!(lingering.normal_pull(now + Duration::from_secs(1)), None);
    assert!(lingering.lingering(), "it takes only the path's jobs");
    assert_eq!(lingering.admit(None, now), Admit::Reserved);
    // It keeps waiting on the big queue: the next package of the path is taken at once.
    assert!(lingering.begin_big_pull());
    assert!(matches!(
        lingering.big_job("next", runtime_ms()),
        BigJob::Hold { hand_back: 0 }
    ));
    assert_eq!(lingering.take_held(), Some(Held::Start("next")));
    assert!(
        !lingering.lingering(),
        "the path's next package ends the lingering"
    );

    // Nothing came in time: normal work again.
    let mut expired = building(true);
    if let Some(big) = expired.big.as_mut() {
        big.normal_waiting = true;
    }
    assert_eq!(expired.normal_pull(now + linger), Some(4));

    // The last package of the path, a build that did not succeed, or lingering turned off:
    // normal work at once.
    let mut last = building(false);
    assert_eq!(
        last.big.as_ref().map(|b| &b.reservation),
        Some(&Reservation::Clear)
    );
    let mut failed = building(true);
    failed.build_done(false);
    assert_eq!(
        failed.big.as_ref().map(|b| &b.reservation),
        Some(&Reservation::Clear)
    );
    let mut off = drone(
        Setup {
            big: true,
            building: 1,
            ..BASE
        },
        now,
    );
    off.big_started(true);
    off.slots.exited(&key(0), now);
    off.build_exited(now, Duration::ZERO);
    assert_eq!(
        off.big.as_ref().map(|b| &b.reservation),
        Some(&Reservation::Clear)
    );
    for drone in [&mut last, &mut failed, &mut off] {
        if let Some(big) = drone.big.as_mut() {
            big.normal_waiting = true;
        }
        assert_eq!(drone.normal_pull(now), Some(4));
    }
}

/// A clock reading for `big_job`, whose hand-back window no build here is in.
fn runtime_ms() -> u64 {
    1_000_000
}
