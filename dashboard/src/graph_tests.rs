//! Tests of the run's graph as the snapshot shows it (`graph.rs`): the critical path and the
//! earliest end with the drones online, what each waiting package waits for, the blocked ones,
//! and nothing at all for a run without build dependencies.

use schemas::fixtures::{self, atom, drone_name as name};
use schemas::{Arch, DroneRecord, DroneState, PackageRecord, PackageState};

use crate::fold::{Input, Swarm};
use crate::view::{Delta, Snapshot};

use super::*;
use std::time::Duration;

const NOW: u64 = 1_000_000;

fn drone(swarm: &mut Swarm, drone: &str, cores: u32, arch: &str, state: DroneState) {
    swarm.apply(Input::DroneRecord {
        key: drone.into(),
        written_ms: NOW - 500,
        record: DroneRecord {
            arch: Arch::parse(arch).expect("arch"),
            boot_ms: 1,
            seq: 1,
            ..fixtures::drone_record(drone, cores, state)
        },
    });
}

fn package(swarm: &mut Swarm, atom_text: &str, state: PackageState, deps: &[&str], secs: f64) {
    let record = PackageRecord {
        estimate_secs: Some(secs),
        deps: deps.iter().map(|d| atom(d).key()).collect(),
        submitted_ms: NOW - 60_000,
        updated_ms: NOW - 30_000,
        ..fixtures::package_record(atom_text, state)
    };
    swarm.apply(Input::Package {
        key: record.atom.key().to_string(),
        revision: 1,
        record,
    });
}

fn queued() -> PackageState {
    PackageState::Queued { attempt: 1 }
}

fn atoms(texts: &[&str]) -> Vec<Atom> {
    texts.iter().map(|t| atom(t)).collect()
}

/// A chain (gcc, then glibc, then top), a diamond (base, then left and right, then joined), a
/// failed package with a blocked dependent, and one that still waits on the failed one.
fn graph_swarm() -> Swarm {
    let mut swarm = Swarm::new(5);
    package(&mut swarm, "sys-devel/gcc", queued(), &[], 4_800.0);
    // A dependency outside the run (no record) is provided from outside: not waited for.
    package(
        &mut swarm,
        "sys-libs/glibc",
        PackageState::Waiting,
        &["sys-devel/gcc", "sys-kernel/linux-headers"],
        900.0,
    );
    package(
        &mut swarm,
        "app-misc/top",
        PackageState::Waiting,
        &["sys-libs/glibc"],
        60.0,
    );
    let done = PackageState::Succeeded {
        attempt: 1,
        drone: name("a"),
    };
    package(&mut swarm, "dev-libs/base", done, &[], 500.0);
    let building = PackageState::Building {
        attempt: 1,
        drone: name("a"),
        since_ms: NOW - 100_000,
    };
    package(
        &mut swarm,
        "dev-libs/left",
        building,
        &["dev-libs/base"],
        300.0,
    );
    package(
        &mut swarm,
        "dev-libs/right",
        queued(),
        &["dev-libs/base"],
        200.0,
    );
    package(
        &mut swarm,
        "dev-libs/joined",
        PackageState::Waiting,
        &["dev-libs/left", "dev-libs/right", "dev-libs/base"],
        100.0,
    );
    let failed = PackageState::Failed {
        attempt: 3,
        reason: "r".into(),
    };
    package(&mut swarm, "dev-libs/broken", failed, &[], 50.0);
    let blocked = PackageState::Blocked {
        dependency: atom("dev-libs/broken"),
    };
    package(
        &mut swarm,
        "dev-libs/victim",
        blocked,
        &["dev-libs/broken"],
        50.0,
    );
    package(
        &mut swarm,
        "dev-libs/late",
        PackageState::Waiting,
        &["dev-libs/base", "dev-libs/broken"],
        40.0,
    );
    swarm
}

#[test]
fn the_snapshot_shows_the_critical_path_and_what_each_package_waits_for() {
    let mut swarm = graph_swarm();
    drone(&mut swarm, "big", 24, "amd64", DroneState::Idle);
    drone(&mut swarm, "mid", 16, "amd64", DroneState::Building);
    // Not online, or online for another arch: their cores do not count.
    let grounded = DroneState::Grounded {
        reason: "3 failures".into(),
    };
    drone(&mut swarm, "small", 8, "amd64", grounded);
    drone(&mut swarm, "gone", 96, "amd64", DroneState::Offline);
    drone(&mut swarm, "arm", 64, "arm64", DroneState::Idle);
    let snap = Snapshot::of(&swarm, NOW, true);
    let p = &snap.progress;
    assert_eq!(
        p.critical_path,
        atoms(&["sys-devel/gcc", "sys-libs/glibc", "app-misc/top"])
    );
    assert_eq!(p.critical_path_secs, Some(5_760));
    // The path on the largest drone: 5,760 s × 8 / 24 = 1,920 s; the work (4,800 + 900 + 60,
    // the diamond's 200 left of left, 200 and 100, and late's 40: 6,300 s) over 40 cores is
    // only 1,260 s.
    assert_eq!(p.critical_eta_secs, Some(1_920));
    assert_eq!((p.waiting, p.blocked), (4, 1));
    assert!(p.eta_secs.is_some(), "the rate-based estimate stays");

    let d = &snap.dependencies;
    assert_eq!(d.waiting_total, 4);
    let waits: Vec<(&str, Vec<&str>)> = d
        .waiting
        .iter()
        .map(|w| {
            (
                w.atom.as_str(),
                w.waits_for.iter().map(Atom::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        waits,
        [
            ("app-misc/top", vec!["sys-libs/glibc"]),
            ("dev-libs/joined", vec!["dev-libs/left", "dev-libs/right"]),
            // A failed dependency is still not succeeded: it is what the package waits on.
            ("dev-libs/late", vec!["dev-libs/broken"]),
            ("sys-libs/glibc", vec!["sys-devel/gcc"]),
        ]
    );
    assert_eq!(d.blocked_total, 1);
    assert_eq!(
        d.blocked,
        [Blocked {
            atom: atom("dev-libs/victim"),
            blocked_by: atom("dev-libs/broken"),
        }]
    );

    // The JSON the page reads.
    let json = serde_json::to_value(&snap).expect("serializes");
    assert_eq!(json["progress"]["critical_path"][1], "sys-libs/glibc");
    assert_eq!(json["progress"]["critical_eta_secs"], 1_920);
    assert_eq!(json["dependencies"]["waiting"][0]["atom"], "app-misc/top");
    assert_eq!(
        json["dependencies"]["waiting"][0]["waits_for"][0],
        "sys-libs/glibc"
    );
    assert_eq!(
        json["dependencies"]["blocked"][0]["blocked_by"],
        "dev-libs/broken"
    );
    assert_eq!(json["dependencies"]["waiting_total"], 4);
}

#[test]
fn the_work_sets_the_end_when_the_path_is_short_and_no_drone_means_no_end() {
    let mut swarm = graph_swarm();
    let snap = Snapshot::of(&swarm, NOW, true);
    assert_eq!(
        snap.progress.critical_path.len(),
        3,
        "the path without drones"
    );
    assert_eq!(snap.progress.critical_path_secs, Some(5_760));
    assert_eq!(snap.progress.critical_eta_secs, None, "no drone online");
    // Only a drone of another arch online: still no end.
    drone(&mut swarm, "arm", 64, "arm64", DroneState::Idle);
    assert_eq!(
        Snapshot::of(&swarm, NOW, true).progress.critical_eta_secs,
        None
    );
    // Many small drones: the path on the largest (8 cores) is 5,760 s; the work, 6,300 s over
    // 8 cores, is longer still: 6,300 s.
    drone(&mut swarm, "one", 8, "amd64", DroneState::Idle);
    assert_eq!(
        Snapshot::of(&swarm, NOW, true).progress.critical_eta_secs,
        Some(6_300)
    );
}

#[test]
fn a_run_without_build_dependencies_has_no_graph() {
    let mut swarm = Swarm::new(5);
    // Yesterday's run had a graph; it ended long ago and does not count.
    let old = |swarm: &mut Swarm, text: &str, deps: &[&str]| {
        let record = PackageRecord {
            deps: deps.iter().map(|d| atom(d).key()).collect(),
            submitted_ms: 1_000,
            updated_ms: 2_000,
            ..fixtures::package_record(
                text,
                PackageState::Blocked {
                    dependency: atom("a-b/gone"),
                },
            )
        };
        swarm.apply(Input::Package {
            key: record.atom.key().to_string(),
            revision: 1,
            record,
        });
    };
    old(&mut swarm, "a-b/old", &["a-b/gone"]);
    package(&mut swarm, "x-y/a", queued(), &[], 100.0);
    package(&mut swarm, "x-y/b", PackageState::Waiting, &[], 100.0);
    drone(&mut swarm, "big", 24, "amd64", DroneState::Idle);
    let snap = Snapshot::of(&swarm, NOW, true);
    assert_eq!(snap.progress.total, 2);
    assert!(snap.progress.critical_path.is_empty());
    assert_eq!(snap.progress.critical_path_secs, None);
    assert_eq!(snap.progress.critical_eta_secs, None);
    assert_eq!(snap.dependencies, Dependencies::default());
    // A finished graph: no path, and nothing waits.
    let mut done = Swarm::new(5);
    let ok = PackageState::Succeeded {
        attempt: 1,
        drone: name("a"),
    };
    package(&mut done, "x-y/a", ok.clone(), &[], 100.0);
    package(&mut done, "x-y/b", ok, &["x-y/a"], 100.0);
    let snap = Snapshot::of(&done, NOW, true);
    assert!(snap.progress.critical_path.is_empty());
    assert_eq!(snap.progress.critical_path_secs, None);
    assert_eq!(snap.dependencies, Dependencies::default());
}

#[test]
fn long_lists_keep_the_first_by_atom_and_count_them_all() {
    let mut swarm = Swarm::new(5);
    package(&mut swarm, "a-a/root", queued(), &[], 100.0);
    for i in (0..120).rev() {
        package(
            &mut swarm,
            &format!("x-y/pkg{i:03}"),
            PackageState::Waiting,
            &["a-a/root"],
            10.0,
        );
    }
    let snap = Snapshot::of(&swarm, NOW, true);
    let d = &snap.dependencies;
    assert_eq!(d.waiting_total, 120);
    let listed: Vec<&str> = d.waiting.iter().map(|w| w.atom.as_str()).collect();
    let want: Vec<String> = (0..LISTED).map(|i| format!("x-y/pkg{i:03}")).collect();
    assert_eq!(listed, want);
    assert!(
        d.waiting
            .iter()
            .all(|w| w.waits_for == atoms(&["a-a/root"]))
    );
    // The path: the root, then one of its dependents (the first by key among equals).
    assert_eq!(
        snap.progress.critical_path,
        atoms(&["a-a/root", "x-y/pkg000"])
    );
}

#[test]
fn the_held_back_packages_travel_in_deltas() {
    let mut swarm = graph_swarm();
    let old = Snapshot::of(&swarm, NOW, true);
    // gcc succeeds: glibc no longer waits for it (the coordinator queues it).
    let done = PackageState::Succeeded {
        attempt: 1,
        drone: name("a"),
    };
    let record = PackageRecord {
        estimate_secs: Some(4_800.0),
        submitted_ms: NOW - 60_000,
        updated_ms: NOW - 1_000,
        ..fixtures::package_record("sys-devel/gcc", done)
    };
    swarm.apply(Input::Package {
        key: record.atom.key().to_string(),
        revision: 2,
        record,
    });
    let new = Snapshot::of(&swarm, NOW + 1_000, true);
    let delta = Delta::between(&old, &new).expect("changes");
    let deps = delta.dependencies.as_ref().expect("the lists changed");
    let glibc = deps
        .waiting
        .iter()
        .find(|w| w.atom.as_str() == "sys-libs/glibc")
        .expect("glibc listed");
    assert!(glibc.waits_for.is_empty(), "{glibc:?}");
    assert_eq!(
        new.progress.critical_path,
        atoms(&["sys-libs/glibc", "app-misc/top"])
    );
    let mut rebuilt = old.clone();
    delta.apply_to(&mut rebuilt);
    assert_eq!(rebuilt, new);
}

#[test]
fn a_forecast_is_reused_while_nothing_changed_or_within_its_budget() {
    let critical = |eta| CriticalPath {
        path: atoms(&["a-b/c"]),
        path_secs: 100,
        eta_secs: Some(eta),
    };
    let mut cache = ForecastCache::default();
    let made = std::cell::Cell::new(0);
    let get = |cache: &mut ForecastCache, version, cores, now_ms| {
        cache.get(version, cores, now_ms, || {
            made.set(made.get() + 1);
            Some(critical(600))
        })
    };
    // A quick forecast (well under a millisecond): reused only while nothing changes, for a
    // second, its end counted down meanwhile.
    assert_eq!(get(&mut cache, 1, (40, 24), NOW), Some(critical(600)));
    assert_eq!(get(&mut cache, 1, (40, 24), NOW + 999), Some(critical(600)));
    assert_eq!(made.get(), 1);
    assert_eq!(get(&mut cache, 2, (40, 24), NOW + 999), Some(critical(600)));
    assert_eq!(
        get(&mut cache, 2, (16, 16), NOW + 1_200),
        Some(critical(600))
    );
    assert_eq!(
        get(&mut cache, 2, (16, 16), NOW + 2_200),
        Some(critical(600))
    );
    assert_eq!(
        made.get(),
        4,
        "packages, cores and the clock each call for a new one"
    );
    // A slow one (two seconds, a very large graph) stands for twenty seconds whatever changes,
    // its end counting down.
    cache.remember(
        3,
        (40, 24),
        NOW,
        Duration::from_secs(2),
        Some(critical(600)),
    );
    assert_eq!(
        get(&mut cache, 9, (8, 8), NOW + 19_500),
        Some(critical(581))
    );
    assert_eq!(made.get(), 4);
    assert_eq!(
        get(&mut cache, 9, (8, 8), NOW + 20_000),
        Some(critical(600))
    );
    assert_eq!(made.get(), 5);
    // A clock that went back is not trusted.
    cache.remember(
        3,
        (40, 24),
        NOW,
        Duration::from_secs(2),
        Some(critical(600)),
    );
    get(&mut cache, 3, (40, 24), NOW - 1);
    assert_eq!(made.get(), 6);
}
