//! Table tests of the graph's paths and the forecast (`paths.rs`) on small hand-made graphs.

use super::*;
use crate::fixtures;

/// `(atom, state, deps, estimate seconds)` rows as records.
fn records(rows: &[(&str, PackageState, &[&str], f64)]) -> Vec<PackageRecord> {
    rows.iter()
        .map(|(atom, state, deps, secs)| PackageRecord {
            deps: deps.iter().map(|d| fixtures::atom(d).key()).collect(),
            estimate_secs: Some(*secs),
            ..fixtures::package_record(atom, state.clone())
        })
        .collect()
}

fn queued() -> PackageState {
    PackageState::Queued { attempt: 1 }
}

fn succeeded() -> PackageState {
    PackageState::Succeeded {
        attempt: 1,
        drone: fixtures::drone_name("d"),
    }
}

fn key(atom: &str) -> PackageKey {
    fixtures::atom(atom).key()
}

/// A chain a <- b <- c, a diamond d <- (e1, e2) <- g, and a finished dependency.
fn world() -> Vec<PackageRecord> {
    records(&[
        ("a/a", queued(), &[], 10.0),
        ("a/b", PackageState::Waiting, &["a/a"], 20.0),
        ("a/c", PackageState::Waiting, &["a/b"], 30.0),
        ("d/d", queued(), &[], 2.0),
        ("d/e1", PackageState::Waiting, &["d/d"], 3.0),
        ("d/e2", PackageState::Waiting, &["d/d"], 7.0),
        ("d/g", PackageState::Waiting, &["d/e1", "d/e2"], 1.0),
        ("z/done", succeeded(), &[], 500.0),
        ("z/after", queued(), &["z/done"], 4.0),
    ])
}

#[test]
fn paths_before_and_after_each_unfinished_package() {
    let records = world();
    let by_key: HashMap<PackageKey, &PackageRecord> =
        records.iter().map(|r| (r.atom.key(), r)).collect();
    let get = |k: &PackageKey| by_key.get(k).copied();
    let rest = remaining_path(by_key.keys(), get, estimate_secs);
    let head = head_path(by_key.keys(), get, estimate_secs);
    #[rustfmt::skip]
    let expected = [
        ("a/a", 0.0, 60.0), ("a/b", 10.0, 50.0), ("a/c", 30.0, 30.0),
        ("d/d", 0.0, 10.0), ("d/e1", 2.0, 4.0), ("d/e2", 2.0, 8.0), ("d/g", 9.0, 1.0),
        ("z/after", 0.0, 4.0),
    ];
    for (atom, before, after) in expected {
        assert_eq!(head.get(&key(atom)), Some(&before), "{atom} head");
        assert_eq!(rest.get(&key(atom)), Some(&after), "{atom} rest");
    }
    assert_eq!(rest.get(&key("z/done")), None, "finished: no path");
    assert_eq!(head.get(&key("z/done")), None);
}

#[test]
fn the_forecast_names_the_critical_path_and_the_earliest_end() {
    let all = world();
    let f = forecast(&all, 12, 6, 0);
    let atoms: Vec<String> = f.path.iter().map(|s| s.atom.to_string()).collect();
    assert_eq!(atoms, ["a/a", "a/b", "a/c"]);
    assert_eq!(f.path_secs, 60.0);
    assert_eq!(f.work_secs, 77.0);
    assert_eq!(f.unfinished, 8);
    // The path on 6 cores (80 s) is longer than the work on 12 (about 51 s).
    assert_eq!(f.eta_secs, Some(80.0));
    // Spread thin, the work decides: 77 s of 8-core work on 2 cores.
    assert_eq!(forecast(&all, 2, 2, 0).eta_secs, Some(308.0));
    // No drone online, or nothing left: no end to predict.
    assert_eq!(forecast(&all, 0, 0, 0).eta_secs, None);
    let done = records(&[("z/done", succeeded(), &[], 5.0)]);
    let nothing = forecast(&done, 8, 8, 0);
    assert_eq!((nothing.eta_secs, nothing.path.len()), (None, 0));
}

#[test]
fn a_building_package_counts_what_is_left_of_it() {
    let mut records = world();
    records[0].state = PackageState::Building {
        attempt: 1,
        drone: fixtures::drone_name("d"),
        since_ms: 1_000,
    };
    let f = forecast(&records, 8, 8, 5_000);
    assert_eq!(f.path[0].state, "building");
    assert_eq!(f.path[0].secs, 6.0);
    assert_eq!(f.path_secs, 56.0);
}

#[test]
fn a_waiting_package_waits_for_its_unfinished_dependencies() {
    let records = world();
    let by_key: HashMap<PackageKey, &PackageRecord> =
        records.iter().map(|r| (r.atom.key(), r)).collect();
    let get = |k: &PackageKey| by_key.get(k).copied();
    let g = by_key[&key("d/g")];
    assert_eq!(
        waits_for(g, get),
        [fixtures::atom("d/e1"), fixtures::atom("d/e2")]
    );
    assert!(waits_for(by_key[&key("z/after")], get).is_empty());
}

#[test]
fn estimates_fall_back_from_learned_to_submitted_to_class() {
    let mut record = fixtures::package_record("www-client/chromium", queued());
    assert_eq!(estimate_secs(&record), UNKNOWN_SECS);
    record.class = Some(SizeClass::Giant);
    assert_eq!(estimate_secs(&record), 7_200.0);
    record.estimate_secs = Some(21_600.0);
    assert_eq!(estimate_secs(&record), 21_600.0);
    record.learned_secs = Some(20_000.0);
    assert_eq!(estimate_secs(&record), 20_000.0);
}
