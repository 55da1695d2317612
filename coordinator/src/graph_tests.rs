//! Table tests of the build-dependency graph (`graph.rs`) on small hand-made graphs: a chain, a
//! diamond, a wide fan-out and two components.

use std::collections::BTreeMap;

use schemas::{Artifact, PackageKey, PackageState, fixtures};

use super::*;
use crate::table::testing::{entry, table};
use crate::table::{Entry, PackageTable};

fn key(atom: &str) -> PackageKey {
    fixtures::atom(atom).key()
}

fn succeeded() -> PackageState {
    PackageState::Succeeded {
        attempt: 1,
        drone: fixtures::drone_name("d"),
    }
}

fn failed() -> PackageState {
    PackageState::Failed {
        attempt: 3,
        reason: "x".into(),
    }
}

/// `(atom, state, deps, estimate seconds)` rows as a table.
fn graph(rows: &[(&str, PackageState, &[&str], f64)]) -> PackageTable {
    table(
        rows.iter()
            .map(|(atom, state, deps, secs)| {
                let (k, mut e): (PackageKey, Entry) = entry(atom, state.clone(), 1);
                e.record.deps = deps.iter().map(|d| key(d)).collect();
                e.record.estimate_secs = Some(*secs);
                (k, e)
            })
            .collect(),
    )
}

fn edges(rows: &[(&str, &[&str])]) -> BTreeMap<PackageKey, Vec<PackageKey>> {
    rows.iter()
        .map(|(a, deps)| (key(a), deps.iter().map(|d| key(d)).collect()))
        .collect()
}

#[test]
fn cycles_are_found_and_named_in_order() {
    // (each package's dependencies, the cycle expected)
    type Case<'a> = (&'a [(&'a str, &'a [&'a str])], Option<&'a [&'a str]>);
    #[rustfmt::skip]
    let cases: [Case; 6] = [
        (&[("a/a", &["a/b"]), ("a/b", &["a/c"]), ("a/c", &[])], None),
        (&[("a/d", &["a/b", "a/c"]), ("a/b", &["a/a"]), ("a/c", &["a/a"]), ("a/a", &[])], None),
        (&[("a/a", &["a/a"])], Some(&["a/a", "a/a"])),
        (&[("a/a", &["a/b"]), ("a/b", &["a/a"])], Some(&["a/a", "a/b", "a/a"])),
        (&[("a/a", &["a/b"]), ("a/b", &["a/c"]), ("a/c", &["a/b"])], Some(&["a/b", "a/c", "a/b"])),
        // An edge to a package outside the graph is no cycle.
        (&[("a/a", &["z/outside"])], None),
    ];
    for (rows, expected) in cases {
        let want = expected.map(|e| e.iter().map(|a| key(a)).collect::<Vec<_>>());
        assert_eq!(find_cycle(&edges(rows)), want, "{rows:?}");
    }
}

#[test]
fn waiting_packages_are_released_blocked_and_unblocked() {
    let later = 6_000;
    let mut with_files = entry("a/files", succeeded(), 1);
    with_files.1.record.artifacts = vec![Artifact {
        object: "sha256-x".into(),
        path: "a/files/files-1-1.gpkg.tar".into(),
        size: 1,
        md5: String::new(),
        sha1: String::new(),
        metadata: BTreeMap::new(),
    }];
    with_files.1.record.updated_ms = 4_200;
    let t = graph(&[
        ("a/done", succeeded(), &[], 1.0),
        ("a/fail", failed(), &[], 1.0),
        ("a/queued", PackageState::Queued { attempt: 1 }, &[], 1.0),
        // Chain: ready once its one dependency succeeded.
        ("b/chain", PackageState::Waiting, &["a/done"], 1.0),
        // Diamond: one dependency still queued, so it waits.
        (
            "b/diamond",
            PackageState::Waiting,
            &["a/done", "a/queued"],
            1.0,
        ),
        // A failed dependency blocks it, whatever else.
        (
            "b/blocked",
            PackageState::Waiting,
            &["a/done", "a/fail"],
            1.0,
        ),
        // A dependency blocked in turn blocks it too.
        (
            "c/transitive",
            PackageState::Waiting,
            &["d/blocked-dep"],
            1.0,
        ),
        (
            "d/blocked-dep",
            PackageState::Blocked {
                dependency: fixtures::atom("a/fail"),
            },
            &["a/fail"],
            1.0,
        ),
        // Blocked by a package that is being built again: waits again.
        (
            "e/unblock",
            PackageState::Blocked {
                dependency: fixtures::atom("a/queued"),
            },
            &["a/queued"],
            1.0,
        ),
        // A dependency without a record is provided from outside.
        ("f/outside", PackageState::Waiting, &["z/gone"], 1.0),
    ]);
    let mut t = t;
    t.store(&with_files.0, Some(with_files.1));
    let (k, mut e) = entry("g/on-files", PackageState::Waiting, 1);
    e.record.deps = vec![key("a/files")];
    t.store(&k, Some(e));
    let block = |atom: &str, dep: &str| Step::Block {
        key: key(atom),
        dependency: fixtures::atom(dep),
    };
    let mut expected = vec![
        Step::Release(key("b/chain")),
        block("b/blocked", "a/fail"),
        block("c/transitive", "d/blocked-dep"),
        Step::Unblock(key("e/unblock")),
        Step::Release(key("f/outside")),
        Step::Release(key("g/on-files")),
    ];
    expected.sort_by(|a, b| step_key(a).cmp(step_key(b)));
    assert_eq!(steps(&t, later), expected);
    // In the second its files were stored, the staging index does not list them yet; in the
    // next it does, but the binhost's clock may lag by up to STAGING_MARGIN_SECS.
    for early in [4_900, 5_999] {
        let steps = steps(&t, early);
        assert!(
            !steps.contains(&Step::Release(key("g/on-files"))),
            "{early}"
        );
    }
}

#[test]
fn priority_is_the_longest_chain_of_work_that_waits() {
    // Two components: a chain a <- b <- c (c needs b needs a) and a fan-out f <- x1..x4 with a
    // long x4; a diamond d <- (e1, e2) <- g; finished packages count for nothing.
    let t = graph(&[
        ("a/a", PackageState::Queued { attempt: 1 }, &[], 10.0),
        ("a/b", PackageState::Waiting, &["a/a"], 20.0),
        ("a/c", PackageState::Waiting, &["a/b"], 30.0),
        ("f/f", PackageState::Queued { attempt: 1 }, &[], 1.0),
        ("f/x1", PackageState::Waiting, &["f/f"], 5.0),
        ("f/x2", PackageState::Waiting, &["f/f"], 5.0),
        ("f/x3", PackageState::Waiting, &["f/f"], 5.0),
        ("f/x4", PackageState::Waiting, &["f/f"], 100.0),
        ("d/d", PackageState::Queued { attempt: 1 }, &[], 2.0),
        ("d/e1", PackageState::Waiting, &["d/d"], 3.0),
        ("d/e2", PackageState::Waiting, &["d/d"], 7.0),
        ("d/g", PackageState::Waiting, &["d/e1", "d/e2"], 1.0),
        ("z/done", succeeded(), &[], 500.0),
        (
            "z/after",
            PackageState::Queued { attempt: 1 },
            &["z/done"],
            4.0,
        ),
    ]);
    let path = remaining_path(&t, |r| r.estimate_secs.unwrap_or(0.0));
    #[rustfmt::skip]
    let expected = [
        ("a/a", 60.0), ("a/b", 50.0), ("a/c", 30.0),
        ("f/f", 101.0), ("f/x1", 5.0), ("f/x4", 100.0),
        ("d/d", 10.0), ("d/e1", 4.0), ("d/e2", 8.0), ("d/g", 1.0),
        ("z/after", 4.0),
    ];
    for (atom, secs) in expected {
        assert_eq!(path.get(&key(atom)), Some(&secs), "{atom}");
    }
    assert_eq!(
        path.get(&key("z/done")),
        None,
        "finished packages have no priority"
    );
    // The fan-out's root goes before the chain's root although its own work is far smaller.
    assert!(path[&key("f/f")] > path[&key("a/a")]);
}

#[test]
fn head_is_the_longest_chain_of_unfinished_work_before() {
    let t = graph(&[
        (
            "a/a",
            PackageState::Building {
                attempt: 1,
                drone: fixtures::drone_name("d"),
                since_ms: 0,
            },
            &[],
            10.0,
        ),
        ("a/b", PackageState::Waiting, &["a/a"], 20.0),
        ("a/c", PackageState::Waiting, &["a/b"], 30.0),
        ("d/d", PackageState::Queued { attempt: 1 }, &[], 2.0),
        ("d/e1", PackageState::Waiting, &["d/d"], 3.0),
        ("d/e2", PackageState::Waiting, &["d/d"], 7.0),
        ("d/g", PackageState::Waiting, &["d/e1", "d/e2"], 1.0),
        ("z/done", succeeded(), &[], 500.0),
        (
            "z/after",
            PackageState::Queued { attempt: 1 },
            &["z/done"],
            4.0,
        ),
    ]);
    let head = head_path(&t, |r| r.estimate_secs.unwrap_or(0.0));
    #[rustfmt::skip]
    let expected = [
        ("a/a", 0.0), ("a/b", 10.0), ("a/c", 30.0),
        ("d/d", 0.0), ("d/e1", 2.0), ("d/e2", 2.0), ("d/g", 9.0),
        // A finished dependency is no work left.
        ("z/after", 0.0),
    ];
    for (atom, secs) in expected {
        assert_eq!(head.get(&key(atom)), Some(&secs), "{atom}");
    }
    assert_eq!(head.get(&key("z/done")), None);
    // Slack: the longest path is a/a..a/c (60 s), on which a/b has none; the diamond's e1 and
    // e2 lie 54 and 50 s off it (2 + 3 + 1 and 2 + 7 + 1 of 60).
    let rest = remaining_path(&t, |r| r.estimate_secs.unwrap_or(0.0));
    let longest = rest
        .iter()
        .map(|(k, r)| head[k] + r)
        .fold(0.0_f64, f64::max);
    assert_eq!(longest, 60.0);
    assert_eq!(longest - head[&key("a/b")] - rest[&key("a/b")], 0.0);
    assert_eq!(longest - head[&key("d/e1")] - rest[&key("d/e1")], 54.0);
    assert_eq!(longest - head[&key("d/e2")] - rest[&key("d/e2")], 50.0);
}
