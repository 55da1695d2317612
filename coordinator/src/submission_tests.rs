//! Table tests of a submission's plan (`submission.rs`): refusals, what is queued, runs and graphs.

use super::*;
use schemas::{AttemptRecord, BuildOutcome, PackageState, SizeClass, SubmitItem, fixtures};

use crate::table::testing::{POLICY, building, entry, table};

fn request(atoms: &[&str], arch: Option<&str>) -> SubmitRequest {
    SubmitRequest {
        v: SCHEMA_VERSION,
        items: atoms
            .iter()
            .map(|atom| SubmitItem {
                atom: (*atom).into(),
                estimate_secs: Some(60.0),
                class: Some(SizeClass::Small),
                deps: Vec::new(),
            })
            .collect(),
        arch: arch.map(|a| Arch::parse(a).expect("arch")),
        fingerprint: None,
        run: None,
        priority: None,
    }
}

#[test]
fn a_submission_is_refused_as_a_whole() {
    let table = PackageTable::default();
    let arches = [Arch::default()];
    let plan =
        |req: &SubmitRequest, arches: &[Arch]| table.plan_submission(req, arches, &POLICY, 9);
    let err = plan(&request(&["a/p"], Some("arm64")), &arches).expect_err("arch");
    assert_eq!(
        err.to_string(),
        "arch arm64 is not built by this swarm (configured: amd64)"
    );
    assert_eq!(
        plan(&request(&["a/p"], None), &[]),
        Err(SubmitRefusal::NoArch)
    );
    let err = plan(&request(&[], None), &arches).expect_err("empty");
    assert_eq!(err.to_string(), "the submission names no package");
    let long = "!".repeat(200);
    match plan(&request(&["a/ok", "not an atom", &long], None), &arches) {
        Err(SubmitRefusal::InvalidAtoms(rejections)) => {
            let inputs: Vec<_> = rejections.iter().map(|r| r.input.as_str()).collect();
            // Every invalid atom is named, a long one shortened to 80 bytes.
            let shortened = format!("{}...", "!".repeat(80));
            assert_eq!(inputs, ["not an atom", shortened.as_str()]);
            assert!(rejections.iter().all(|r| !r.reason.is_empty()));
        }
        other => panic!("{other:?}"),
    }
}

/// Every kind of package a submission can name: new, named twice, unfinished in each
/// state, and finished (resubmitted).
#[test]
fn a_submission_queues_new_and_finished_packages_only() {
    let mut done = entry(
        "a/done",
        PackageState::Succeeded {
            attempt: 2,
            drone: fixtures::drone_name("d"),
        },
        7,
    );
    done.1.record.submission = 3;
    done.1.record.learned_secs = Some(99.0);
    done.1.record.history = vec![AttemptRecord {
        attempt: 1,
        drone: fixtures::drone_name("d"),
        outcome: BuildOutcome::Succeeded,
        duration_ms: 1,
        ended_ms: 1,
    }];
    let table = table(vec![
        done,
        entry(
            "a/failed",
            PackageState::Failed {
                attempt: 3,
                reason: "x".into(),
            },
            4,
        ),
        entry("a/queued", PackageState::Queued { attempt: 1 }, 1),
        entry("a/building", building("d"), 1),
        entry(
            "a/waiting",
            PackageState::RetryWait {
                attempt: 2,
                not_before_ms: 5,
            },
            1,
        ),
    ]);
    let names = [
        "a/new",
        "a/new",
        "a/done",
        "a/failed",
        "a/queued",
        "a/building",
        "a/waiting",
    ];
    let plan = table
        .plan_submission(
            &request(&names, Some("amd64")),
            &[Arch::default()],
            &POLICY,
            9,
        )
        .expect("accepted");
    assert_eq!(plan.already_queued, 4);
    let got: Vec<(String, Option<u64>, u64)> = plan
        .records
        .iter()
        .map(|r| (r.record.atom.to_string(), r.revision, r.record.submission))
        .collect();
    assert_eq!(
        got,
        [
            ("a/new".into(), None, 1),
            ("a/done".into(), Some(7), 4),
            ("a/failed".into(), Some(4), 2)
        ]
    );
    for new in &plan.records {
        assert_eq!(new.key, new.record.atom.key());
        assert_eq!(new.record.state, PackageState::Queued { attempt: 1 });
        assert!(new.record.history.is_empty());
        assert_eq!((new.record.submitted_ms, new.record.updated_ms), (9, 9));
        assert_eq!(
            (new.record.estimate_secs, new.record.class),
            (Some(60.0), Some(SizeClass::Small))
        );
    }
    assert_eq!(
        plan.records[1].record.learned_secs,
        Some(99.0),
        "kept across submissions"
    );
    assert_eq!(plan.records[0].record.learned_secs, None);
}

/// A submission belongs to the run it names, else to one named after its second; a name
/// that cannot be one refuses it whole.
#[test]
fn every_package_of_a_submission_is_stamped_with_its_run() {
    let table = PackageTable::default();
    // 2026-12-03 08:15:02.750 UTC.
    let now = 1_796_285_702_750;
    #[rustfmt::skip]
    let cases: [(Option<&str>, Result<&str, &str>); 4] = [
        (None, Ok("run-20261203-081502")),
        (Some("nightly-1"), Ok("nightly-1")),
        (Some("../x"), Err("run name \"../x\" must start with a letter or digit")),
        (Some(""), Err("run name is empty")),
    ];
    for (given, expected) in cases {
        let mut req = request(&["a/one", "a/two"], None);
        req.run = given.map(str::to_owned);
        let plan = table.plan_submission(&req, &[Arch::default()], &POLICY, now);
        match (plan, expected) {
            (Ok(plan), Ok(name)) => {
                assert_eq!(plan.run.as_str(), name);
                for new in &plan.records {
                    assert_eq!(new.record.run.as_ref().map(|r| r.as_str()), Some(name));
                }
            }
            (Err(err), Err(message)) => {
                assert!(err.to_string().starts_with(message), "{given:?}: {err}")
            }
            (got, want) => panic!("{given:?}: {got:?}, expected {want:?}"),
        }
    }
}

/// Build dependencies inside the run become edges; a package waits for those not yet
/// succeeded; edges to packages outside the run are dropped; a cycle refuses the whole
/// submission, naming it.
#[test]
fn a_submission_carries_its_graph_and_refuses_cycles() {
    let succeeded_in = |atom: &str, run: &str| {
        let state = PackageState::Succeeded {
            attempt: 1,
            drone: fixtures::drone_name("d"),
        };
        let mut built = entry(atom, state, 1);
        built.1.record.run = RunName::parse(run).ok();
        built
    };
    let table = table(vec![
        succeeded_in("a/done", "night"),
        succeeded_in("a/other", "day"),
    ]);
    let submit = |rows: &[(&str, &[&str])]| {
        let mut req = request(&[], None);
        req.run = Some("night".into());
        req.items = rows
            .iter()
            .map(|(atom, deps)| SubmitItem {
                atom: (*atom).into(),
                estimate_secs: None,
                class: None,
                deps: deps.iter().map(|d| (*d).to_owned()).collect(),
            })
            .collect();
        table.plan_submission(&req, &[Arch::default()], &POLICY, 9)
    };
    let plan = submit(&[
        ("b/lib", &["a/done", "z/outside", "a/other"]),
        ("b/app", &["b/lib", "a/done"]),
        ("b/tool", &[]),
    ])
    .expect("accepted");
    let got: Vec<(String, &str, usize)> = plan
        .records
        .iter()
        .map(|n| {
            (
                n.record.atom.to_string(),
                n.record.state.label(),
                n.record.deps.len(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // Its one dependency in the run succeeded before: queued at once; the outside
            // one and the other run's are dropped.
            ("b/lib".to_owned(), "queued", 1),
            // Its dependency is built now: it waits.
            ("b/app".to_owned(), "waiting", 2),
            ("b/tool".to_owned(), "queued", 0),
        ]
    );
    // A dependency one letter off a package of the run is dropped as outside, and named.
    let plan = submit(&[("d/zlib", &[]), ("d/app", &["d/zlb", "z/far-away"])]).expect("ok");
    assert_eq!(
        plan.notes,
        [
            "build dependency d/zlb of d/app names no package of the run, so it is taken as provided from outside; did you mean d/zlib?"
        ]
    );
    assert_eq!(super::edits("kitten", "sitting"), 3);
    assert_eq!(super::edits("", "ab"), 2);
    let err =
        submit(&[("c/a", &["c/b"]), ("c/b", &["c/c"]), ("c/c", &["c/a"])]).expect_err("a cycle");
    assert_eq!(
        err.to_string(),
        "build dependencies form a cycle: c/a -> c/b -> c/c -> c/a"
    );
    let err = submit(&[("c/a", &["not an atom"])]).expect_err("a bad dependency");
    match err {
        SubmitRefusal::InvalidAtoms(rejections) => {
            assert_eq!(rejections[0].input, "not an atom");
            assert!(
                rejections[0]
                    .reason
                    .starts_with("build dependency of c/a: ")
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Thousands of refused atoms: the first `MAX_REJECTIONS_LISTED` are listed and the rest counted,
/// so that the reply fits in one message.
#[test]
fn a_flood_of_refused_atoms_is_listed_up_to_a_limit_and_counted() {
    let table = PackageTable::default();
    let bad: Vec<String> = (0..5_000).map(|i| format!("!blocker/p{i}")).collect();
    let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
    let err = table
        .plan_submission(&request(&refs, None), &[Arch::default()], &POLICY, 9)
        .expect_err("refused");
    let SubmitRefusal::InvalidAtoms(rejections) = err else {
        panic!("{err:?}");
    };
    assert_eq!(rejections.len(), MAX_REJECTIONS_LISTED + 1);
    assert_eq!(rejections[0].input, "!blocker/p0");
    let last = rejections.last().expect("a last line");
    assert!(last.reason.contains("4000 more"), "{}", last.reason);
    let reply = schemas::SubmitReply {
        v: SCHEMA_VERSION,
        result: schemas::SubmitResult::Rejected { rejections },
    };
    let bytes = schemas::encode(&reply).expect("encodes");
    assert!(
        bytes.len() < schemas::MAX_MESSAGE_BYTES / 2,
        "{} bytes",
        bytes.len()
    );
}
