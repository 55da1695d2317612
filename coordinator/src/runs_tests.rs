//! Table tests of the run decisions (`runs.rs`).

use std::collections::BTreeMap;

use schemas::{Arch, Artifact, PackageRecord, PackageState, RunName, fixtures};

use super::*;

fn run(name: &str) -> RunName {
    RunName::parse(name).expect("run name")
}

/// A gpkg of `cpv` (`cat/pf`) with build id `build`, stored as `object`.
fn gpkg(cpv: &str, build: u32, object: &str) -> Artifact {
    let (category, pf) = cpv.split_once('/').expect("cat/pf");
    let pn = pf.rsplit_once('-').map_or(pf, |(pn, _)| pn);
    Artifact {
        object: object.to_owned(),
        path: format!("{category}/{pn}/{pf}-{build}.gpkg.tar"),
        size: 1,
        md5: String::new(),
        sha1: String::new(),
        metadata: BTreeMap::from([
            ("CATEGORY".to_owned(), category.to_owned()),
            ("PF".to_owned(), pf.to_owned()),
        ]),
    }
}

/// A record of `atom` in `run_name` for fingerprint `fp`, in `state`, with `artifacts`.
fn record(
    atom: &str,
    run_name: &str,
    fp: &str,
    state: PackageState,
    artifacts: Vec<Artifact>,
    updated_ms: u64,
) -> PackageRecord {
    PackageRecord {
        run: Some(run(run_name)),
        fingerprint: Some(fp.to_owned()),
        artifacts,
        updated_ms,
        ..fixtures::package_record(atom, state)
    }
}

fn done() -> PackageState {
    PackageState::Succeeded {
        attempt: 1,
        drone: fixtures::drone_name("d"),
    }
}

fn queued() -> PackageState {
    PackageState::Queued { attempt: 1 }
}

fn amd64() -> Arch {
    Arch::default()
}

#[test]
fn a_run_stands_by_its_packages() {
    let mut unnamed = fixtures::package_record("a/old", done());
    unnamed.run = None;
    let mut other_arch = record("a/arm", "night", "f1", queued(), vec![], 9);
    other_arch.arch = Arch::parse("arm64").expect("arch");
    let records = [
        record("a/one", "night", "f1", done(), vec![], 5),
        record("a/two", "night", "f1", queued(), vec![], 7),
        record("a/three", "day", "f2", done(), vec![], 3),
        unnamed,
        other_arch,
    ];
    let runs = standings(&records, &amd64());
    assert_eq!(runs.len(), 2, "{runs:?}");
    let night = &runs[&run("night")];
    assert_eq!((night.total, night.unfinished, night.updated_ms), (2, 1, 7));
    assert!(!night.ended());
    assert!(runs[&run("day")].ended());
    assert_eq!(latest(&runs), Some(run("night")));
}

#[test]
fn a_run_is_published_to_its_fingerprint_once_it_has_ended() {
    let records = [
        record("a/one", "night", "f1", done(), vec![], 5),
        record("a/two", "night", "f1", queued(), vec![], 7),
        record("a/three", "day", "f2", done(), vec![], 3),
        record("a/four", "mixed", "f1", done(), vec![], 1),
        record("a/five", "mixed", "f2", done(), vec![], 2),
    ];
    let runs = standings(&records, &amd64());
    let target = |name: &str, wanted: Option<&str>| {
        target(&runs, &amd64(), name, wanted).map_err(|e| e.to_string())
    };
    // (run, --fingerprint, its fingerprint or the start of the refusal)
    type Case<'a> = (&'a str, Option<&'a str>, Result<Option<&'a str>, &'a str>);
    #[rustfmt::skip]
    let cases: [Case; 7] = [
        ("day", None, Ok(Some("f2"))),
        ("day", Some("f2"), Ok(Some("f2"))),
        ("day", Some("f1"), Err("run day was not built for fingerprint f1 (it was built for f2)")),
        ("night", None, Err("run night has not ended: 1 of its 2 packages are queued")),
        ("mixed", None, Err("run mixed was built for several fingerprints (f1, f2); name one")),
        ("mixed", Some("f2"), Ok(Some("f2"))),
        ("nigth", None, Err("no package of amd64 belongs to run \"nigth\"; runs: night, day, mixed")),
    ];
    for (name, wanted, expected) in cases {
        match (target(name, wanted), expected) {
            (Ok((got_name, got_fp)), Ok(fp)) => {
                assert_eq!(got_name.as_str(), name);
                assert_eq!(got_fp.as_deref(), fp, "{name} {wanted:?}");
            }
            (Err(err), Err(start)) => assert!(err.starts_with(start), "{name}: {err}"),
            (got, want) => panic!("{name} {wanted:?}: {got:?}, expected {want:?}"),
        }
    }
    // No runs at all: said so.
    let none = super::target(&BTreeMap::new(), &amd64(), "x", None).expect_err("unknown");
    assert!(none.to_string().ends_with("runs: none"), "{none}");
}

#[test]
fn a_runs_publication_leaves_out_what_runs_under_way_built() {
    let old_b = gpkg("a/b-1", 1, "b-old");
    let serving = vec![gpkg("a/a-1", 1, "a-old"), old_b.clone()];
    let records = [
        // The ended run: a rebuilt and a new package.
        record(
            "a/a",
            "day",
            "f1",
            done(),
            vec![gpkg("a/a-1", 2, "a-new")],
            5,
        ),
        record("a/c", "day", "f1", done(), vec![gpkg("a/c-1", 1, "c")], 5),
        // A run under way: b built again already (held back: the served b stays), d queued
        // with its last success's file (kept), e queued for the first time.
        record(
            "a/b",
            "night",
            "f1",
            done(),
            vec![gpkg("a/b-1", 2, "b-new")],
            8,
        ),
        record(
            "a/d",
            "night",
            "f1",
            queued(),
            vec![gpkg("a/d-1", 1, "d")],
            8,
        ),
        record("a/e", "night", "f1", queued(), vec![], 8),
        // Another fingerprint's package: never.
        record("a/z", "day", "f2", done(), vec![gpkg("a/z-1", 1, "z")], 5),
    ];
    let runs = standings(&records, &amd64());
    let objects = |packages: Vec<Artifact>| -> Vec<String> {
        packages.into_iter().map(|a| a.object).collect()
    };
    assert_eq!(
        objects(contents(&records, &amd64(), Some("f1"), &runs, &serving)),
        ["a-new", "b-old", "c", "d"]
    );
    // Once the night run has ended, its packages are in.
    let mut ended = records.clone();
    ended[4].state = done();
    ended[4].artifacts = vec![gpkg("a/e-1", 1, "e")];
    ended[3].state = done();
    let runs = standings(&ended, &amd64());
    assert_eq!(
        objects(contents(&ended, &amd64(), Some("f1"), &runs, &serving)),
        ["a-new", "b-new", "c", "d", "e"]
    );
    // With nothing served yet, the held-back package is simply absent.
    let runs = standings(&records, &amd64());
    assert_eq!(
        objects(contents(&records, &amd64(), Some("f1"), &runs, &[])),
        ["a-new", "c", "d"]
    );
    assert_eq!(old_b.cpv().as_deref(), Some("a/b-1"));
}
