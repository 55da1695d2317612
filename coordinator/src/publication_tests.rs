//! Table tests of the binhost's publication decisions (`publication.rs`).

use std::collections::BTreeMap;

use schemas::{Arch, Artifact, BinhostName, PackageRecord, PackageState, fixtures};

use super::*;

fn artifact(path: &str, object: &str) -> Artifact {
    Artifact {
        object: object.to_owned(),
        path: path.to_owned(),
        size: 1,
        md5: String::new(),
        sha1: String::new(),
        metadata: BTreeMap::new(),
    }
}

fn succeeded(atom: &str, artifacts: Vec<Artifact>, updated_ms: u64) -> PackageRecord {
    PackageRecord {
        artifacts,
        updated_ms,
        ..fixtures::package_record(
            atom,
            PackageState::Succeeded {
                attempt: 1,
                drone: fixtures::drone_name("d"),
            },
        )
    }
}

fn failed(atom: &str, updated_ms: u64) -> PackageRecord {
    PackageRecord {
        updated_ms,
        ..fixtures::package_record(
            atom,
            PackageState::Failed {
                attempt: 3,
                reason: "x".into(),
            },
        )
    }
}

fn amd64() -> Arch {
    Arch::default()
}

/// The binhost of amd64 with no fingerprint.
fn plain() -> BinhostName {
    BinhostName::new(amd64(), None)
}

/// The binhost of amd64 built for fingerprint `f1`.
fn fingerprinted() -> BinhostName {
    BinhostName::new(amd64(), Some("f1"))
}

#[test]
fn staged_packages_are_each_package_of_the_arch_last_built_by_path() {
    let mut other_arch = succeeded(
        "a-b/other",
        vec![artifact("a-b/other/other-1-1.gpkg.tar", "o")],
        0,
    );
    other_arch.arch = Arch::parse("arm64").expect("arch");
    let records = [
        succeeded("a-b/z", vec![artifact("a-b/z/z-1-1.gpkg.tar", "z1")], 0),
        succeeded("a-b/a", vec![artifact("a-b/a/a-1-1.gpkg.tar", "a1")], 0),
        // Built again: the same path, the newer file.
        succeeded("=a-b/a-1", vec![artifact("a-b/a/a-1-1.gpkg.tar", "a2")], 0),
        failed("a-b/f", 0),
        fixtures::package_record("a-b/q", PackageState::Queued { attempt: 1 }),
        // Built again now, and built again in vain: their last success's files stay.
        PackageRecord {
            artifacts: vec![artifact("a-b/r/r-1-1.gpkg.tar", "r1")],
            ..fixtures::package_record("a-b/r", PackageState::Queued { attempt: 1 })
        },
        PackageRecord {
            artifacts: vec![artifact("a-b/g/g-1-1.gpkg.tar", "g1")],
            ..failed("a-b/g", 0)
        },
        other_arch,
    ];
    let got_of = |fingerprint: Option<&str>| -> Vec<(String, String)> {
        staged(&records, &amd64(), fingerprint)
            .iter()
            .map(|a| (a.path.clone(), a.object.clone()))
            .collect()
    };
    let staged = staged(&records, &amd64(), None);
    let got: Vec<(&str, &str)> = staged
        .iter()
        .map(|a| (a.path.as_str(), a.object.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("a-b/a/a-1-1.gpkg.tar", "a2"),
            ("a-b/g/g-1-1.gpkg.tar", "g1"),
            ("a-b/r/r-1-1.gpkg.tar", "r1"),
            ("a-b/z/z-1-1.gpkg.tar", "z1")
        ]
    );
    // A run that targets a fingerprint publishes only what was built for it.
    let mut for_other = records.clone();
    for_other[0].fingerprint = Some("f1".into());
    for_other[1].fingerprint = Some("f2".into());
    let got: Vec<(String, String)> = staged_of(&for_other, Some("f1"));
    assert_eq!(got, [("a-b/z/z-1-1.gpkg.tar".to_owned(), "z1".to_owned())]);
    assert_eq!(got_of(Some("nobody")), Vec::<(String, String)>::new());
}

fn staged_of(records: &[PackageRecord], fingerprint: Option<&str>) -> Vec<(String, String)> {
    staged(records, &amd64(), fingerprint)
        .iter()
        .map(|a| (a.path.clone(), a.object.clone()))
        .collect()
}

fn nightly() -> Option<schemas::RunName> {
    schemas::RunName::parse("nightly").ok()
}

#[test]
fn revisions_number_up_and_their_timestamps_strictly_increase() {
    let packages = vec![artifact("a-b/a/a-1-1.gpkg.tar", "a1")];
    let (first, contents) = next_revision(
        &fingerprinted(),
        None,
        0,
        packages.clone(),
        nightly(),
        5_000_999,
    )
    .expect("a first revision");
    assert_eq!((first.number, first.timestamp), (1, 5_000));
    assert_eq!((first.packages, first.bytes), (1, 1));
    assert_eq!(first.contents, "revision-amd64_f1-000000000001");
    assert_eq!(first.fingerprint.as_deref(), Some("f1"));
    assert_eq!(first.run, nightly(), "the revision names its run");
    assert_eq!(contents.packages, packages);
    let current = Some(Serving {
        packages: &contents.packages,
        timestamp: first.timestamp,
    });
    assert_eq!(
        next_revision(&plain(), current, 1, packages.clone(), None, 9_000_000),
        None,
        "nothing new to publish"
    );
    let more = vec![
        artifact("a-b/a/a-1-1.gpkg.tar", "a1"),
        artifact("a-b/b/b-1-1.gpkg.tar", "b1"),
    ];
    // Published again within Portage's If-Modified-Since slack, or with the clock set back:
    // six seconds later.
    for now_ms in [5_000_500, 5_003_000, 4_000_000] {
        let (next, _) =
            next_revision(&plain(), current, 1, more.clone(), None, now_ms).expect("new");
        assert_eq!((next.number, next.timestamp), (2, 5_006), "{now_ms}");
    }
    let (later, held) =
        next_revision(&plain(), current, 1, more.clone(), None, 7_000_000).expect("new");
    assert_eq!(
        (later.number, later.timestamp, later.packages),
        (2, 7_000, 2)
    );
    assert_eq!(later.created_ms, 7_000_000);
    assert_eq!((held.number, held.packages), (2, more.clone()));
    // After a rollback to revision 1 (served again at 6_000) while 2 and 3 are kept: the next
    // one is 4, and its TIMESTAMP passes the rollback's, not revision 1's.
    let rolled_back = Some(Serving {
        packages: &contents.packages,
        timestamp: 6_000,
    });
    let (after, _) = next_revision(&plain(), rolled_back, 3, more, None, 5_500_000).expect("new");
    assert_eq!((after.number, after.timestamp), (4, 6_006));
}

#[test]
fn a_served_timestamp_strictly_increases_whatever_the_clock_says() {
    #[rustfmt::skip]
    let cases = [
        // (previous, now_ms, served)
        (None, 1_700_000_123_456, 1_700_000_123),
        (Some(1_699_999_000), 1_700_000_123_456, 1_700_000_123),
        (Some(1_700_000_117), 1_700_000_123_999, 1_700_000_123),
        (Some(1_700_000_118), 1_700_000_123_999, 1_700_000_124),
        (Some(1_700_000_123), 1_700_000_123_999, 1_700_000_129),
        (Some(1_800_000_000), 1_700_000_000_000, 1_800_000_006),
    ];
    for (previous, now_ms, served) in cases {
        assert_eq!(
            served_timestamp(previous, now_ms),
            served,
            "{previous:?} {now_ms}"
        );
    }
}

#[test]
fn a_run_publishes_itself_only_when_it_ended_without_new_failures() {
    let built = succeeded("a-b/a", vec![artifact("a-b/a/a-1-1.gpkg.tar", "a")], 100);
    let queued = fixtures::package_record("a-b/q", PackageState::Queued { attempt: 1 });
    let retrying = fixtures::package_record(
        "a-b/r",
        PackageState::RetryWait {
            attempt: 2,
            not_before_ms: 0,
        },
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<PackageRecord>, Option<u64>, bool)> = vec![
        ("everything built", vec![built.clone()], None, true),
        ("nothing at all", vec![], None, false),
        ("one still queued", vec![built.clone(), queued], None, false),
        ("one waiting to retry", vec![built.clone(), retrying], None, false),
        ("a failure in this run", vec![built.clone(), failed("a-b/f", 200)], Some(150), false),
        ("a failure before the last publication", vec![succeeded("a-b/n", built.artifacts.clone(), 200), failed("a-b/f", 100)], Some(150), true),
        ("built, but no binary package", vec![succeeded("a-b/c", vec![], 100)], None, false),
        ("nothing built since the last publication", vec![built.clone()], Some(150), false),
        ("a failure and nothing published yet", vec![built.clone(), failed("a-b/f", 100)], None, false),
    ];
    for (what, records, published_ms, expected) in cases {
        assert_eq!(
            run_ended_cleanly(&records, &amd64(), published_ms),
            expected,
            "{what}"
        );
    }
}

#[test]
fn the_newest_revisions_and_the_current_one_are_kept() {
    #[rustfmt::skip]
    let cases: Vec<(&[u64], u64, usize, Vec<u64>)> = vec![
        (&[1, 2, 3, 4, 5], 5, 3, vec![2, 1]),
        (&[5, 1, 3, 2, 4], 5, 3, vec![2, 1]),
        // Rolled back to 2: it stays although it is not among the newest.
        (&[1, 2, 3, 4, 5], 2, 2, vec![3, 1]),
        (&[1, 2], 2, 5, vec![]),
        (&[1, 2, 3], 3, 0, vec![2, 1]),
    ];
    for (numbers, current, keep, expected) in cases {
        assert_eq!(
            to_drop(numbers, current, keep),
            expected,
            "{numbers:?} current {current} keep {keep}"
        );
    }
}

#[test]
fn garbage_is_what_no_kept_revision_and_no_record_references() {
    let (_, kept) = next_revision(
        &plain(),
        None,
        0,
        vec![artifact("p", "sha256-in-revision")],
        None,
        1_000,
    )
    .expect("rev");
    let records = [succeeded(
        "a-b/a",
        vec![artifact("q", "sha256-in-record")],
        0,
    )];
    let objects = [
        "sha256-in-revision",
        "sha256-in-record",
        "sha256-orphan",
        "revision-amd64-000000000001",
        "sha256-another-orphan",
    ];
    assert_eq!(
        garbage(objects, std::slice::from_ref(&kept), &records),
        ["sha256-orphan", "sha256-another-orphan"],
        "revision contents are never garbage here"
    );
}
