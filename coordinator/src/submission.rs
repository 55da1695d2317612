//! The plan of a submission, pure: validate its arch, its items and every atom (one invalid
//! atom refuses the whole request, nothing is written), and produce the package records to
//! write, each through `lifecycle::transition` (`PackageEvent::Submitted`).

use std::collections::{BTreeMap, HashSet};

use schemas::{
    Arch, Atom, AtomRejection, NameError, PackageKey, PackageRecord, PackageState, RunName,
    SCHEMA_VERSION, SizeClass, SubmitRequest,
};

use crate::graph::find_cycle;
use crate::lifecycle::{PackageEvent, Policy, transition};
use crate::table::PackageTable;

impl PackageTable {
    /// Validates a submission and plans the records to write: a new or finished package gets a
    /// record queued for attempt 1 (a finished one as its next submission, keeping what it
    /// taught about its build time); a package named twice, or still unfinished, is counted as
    /// already queued. `arches[0]` is the default arch.
    pub fn plan_submission(
        &self,
        request: &SubmitRequest,
        arches: &[Arch],
        policy: &Policy,
        now_ms: u64,
    ) -> Result<Submission, SubmitRefusal> {
        let arch = match (&request.arch, arches.first()) {
            (Some(arch), _) => arch.clone(),
            (None, Some(default)) => default.clone(),
            (None, None) => return Err(SubmitRefusal::NoArch),
        };
        if !arches.contains(&arch) {
            return Err(SubmitRefusal::UnknownArch {
                arch,
                configured: arches.to_vec(),
            });
        }
        if request.items.is_empty() {
            return Err(SubmitRefusal::Empty);
        }
        let run = match &request.run {
            Some(name) => RunName::parse(name).map_err(SubmitRefusal::BadRun)?,
            None => default_run(now_ms).map_err(SubmitRefusal::BadRun)?,
        };
        let mut atoms = Vec::with_capacity(request.items.len());
        let mut rejections = Vec::new();
        for item in &request.items {
            let mut deps = Vec::with_capacity(item.deps.len());
            for dep in &item.deps {
                match Atom::parse(dep) {
                    Ok(atom) => deps.push(atom.key()),
                    Err(err) => rejections.push(AtomRejection {
                        input: schemas::shorten(dep, 80),
                        reason: format!(
                            "build dependency of {}: {err}",
                            schemas::shorten(&item.atom, 80)
                        ),
                    }),
                }
            }
            match Atom::parse(&item.atom) {
                Ok(atom) => atoms.push((atom, item.estimate_secs, item.class, deps)),
                Err(err) => rejections.push(AtomRejection {
                    input: schemas::shorten(&item.atom, 80),
                    reason: err.to_string(),
                }),
            }
        }
        if !rejections.is_empty() {
            return Err(SubmitRefusal::InvalidAtoms(rejections));
        }
        let graph = self.run_graph(&run, &arch, &atoms)?;
        let mut plan = Submission {
            run: run.clone(),
            records: Vec::new(),
            already_queued: 0,
        };
        let mut seen = HashSet::new();
        for (atom, estimate_secs, class, _) in atoms {
            let key = atom.key();
            let deps = graph.get(&key).cloned().unwrap_or_default();
            // Ready when every build dependency in the run has succeeded already (one submitted
            // now is built now, so not yet).
            let ready = deps.iter().all(|dep| {
                !graph.contains_key(dep)
                    && self
                        .get(dep)
                        .is_some_and(|e| matches!(e.record.state, PackageState::Succeeded { .. }))
            });
            if !seen.insert(key.clone()) {
                plan.already_queued += 1;
                continue;
            }
            let known = self.get(&key);
            let state = match transition(
                known.map(|e| &e.record.state),
                &PackageEvent::Submitted { ready },
                policy,
                now_ms,
            ) {
                Ok(state) => state,
                Err(_) => {
                    plan.already_queued += 1;
                    continue;
                }
            };
            let record = PackageRecord {
                v: SCHEMA_VERSION,
                atom,
                arch: arch.clone(),
                submission: known.map_or(1, |e| e.record.submission + 1),
                state,
                history: Vec::new(),
                estimate_secs,
                class,
                // A rebuild keeps what earlier builds taught about the package's build time.
                learned_secs: known.and_then(|e| e.record.learned_secs),
                submitted_ms: now_ms,
                updated_ms: now_ms,
                // Its last success's binary packages stay published until a new success
                // replaces them (dropped when the run targets another fingerprint).
                artifacts: known
                    .map(|e| e.record.artifacts.clone())
                    .unwrap_or_default(),
                fingerprint: known.and_then(|e| e.record.fingerprint.clone()),
                run: Some(run.clone()),
                deps,
            };
            plan.records.push(NewRecord {
                key,
                revision: known.map(|e| e.revision),
                record,
            });
        }
        Ok(plan)
    }
}

/// One valid item of a submission: its atom, estimate, size class and build dependencies.
type Item = (Atom, Option<f64>, Option<SizeClass>, Vec<PackageKey>);

impl PackageTable {
    /// The build-dependency edges of a submission's packages inside its run: to another
    /// package of the submission, or to one submitted to the same run and arch before. Other
    /// edges are provided from outside (the drones' system, the binhost) and dropped. Refused
    /// when the run's edges, with these, close a cycle.
    fn run_graph(
        &self,
        run: &RunName,
        arch: &Arch,
        items: &[Item],
    ) -> Result<BTreeMap<PackageKey, Vec<PackageKey>>, SubmitRefusal> {
        let submitted: HashSet<PackageKey> = items.iter().map(|item| item.0.key()).collect();
        let of_run =
            |record: &PackageRecord| record.run.as_ref() == Some(run) && record.arch == *arch;
        let in_run = |dep: &PackageKey| {
            submitted.contains(dep) || self.get(dep).is_some_and(|e| of_run(&e.record))
        };
        let mut graph: BTreeMap<PackageKey, Vec<PackageKey>> = BTreeMap::new();
        for (atom, _, _, deps) in items {
            let mut kept: Vec<PackageKey> = deps.iter().filter(|d| in_run(d)).cloned().collect();
            kept.sort();
            kept.dedup();
            graph.entry(atom.key()).or_default().extend(kept);
        }
        // The run's earlier packages, for a cycle through them.
        let mut whole = graph.clone();
        for (key, entry) in self.entries() {
            if of_run(&entry.record) && !submitted.contains(key) {
                whole.insert(key.clone(), entry.record.deps.clone());
            }
        }
        if let Some(cycle) = find_cycle(&whole) {
            let atom_of = |key: &PackageKey| {
                items
                    .iter()
                    .find(|item| item.0.key() == *key)
                    .map(|item| item.0.clone())
                    .or_else(|| self.get(key).map(|e| e.record.atom.clone()))
            };
            return Err(SubmitRefusal::Cycle(
                cycle.iter().filter_map(atom_of).collect(),
            ));
        }
        Ok(graph)
    }
}

/// The records a submission writes, in submission order.
#[derive(Debug, PartialEq)]
pub struct Submission {
    /// The run its packages are queued in.
    pub run: RunName,
    pub records: Vec<NewRecord>,
    /// Packages named twice, or still queued, building or waiting for a retry.
    pub already_queued: u32,
}

/// One record to write: a create (`revision` `None`) or a compare-and-set update.
#[derive(Debug, PartialEq)]
pub struct NewRecord {
    pub key: PackageKey,
    pub revision: Option<u64>,
    pub record: PackageRecord,
}

/// Why a submission is refused as a whole; nothing of it is written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitRefusal {
    #[error(
        "arch {arch} is not built by this swarm (configured: {})",
        join(configured)
    )]
    UnknownArch { arch: Arch, configured: Vec<Arch> },
    /// Configuration validation refuses an empty arch list; this is its last line of defence.
    #[error("this swarm is configured to build no arch")]
    NoArch,
    #[error("the submission names no package")]
    Empty,
    #[error("{0}")]
    BadRun(NameError),
    #[error("build dependencies form a cycle: {}", .0.iter().map(Atom::as_str).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<Atom>),
    #[error("{} invalid atoms", .0.len())]
    InvalidAtoms(Vec<AtomRejection>),
}

/// The name of a run submitted at `now_ms` without one: `run-YYYYMMDD-HHMMSS`, UTC.
/// Submissions in the same second share it.
pub fn default_run(now_ms: u64) -> Result<RunName, NameError> {
    let stamp = runtime::dates::format_compact(now_ms / 1000);
    RunName::parse(&format!("run-{stamp}"))
}

fn join(arches: &[Arch]) -> String {
    arches
        .iter()
        .map(Arch::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
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
        let err = submit(&[("c/a", &["c/b"]), ("c/b", &["c/c"]), ("c/c", &["c/a"])])
            .expect_err("a cycle");
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
}
