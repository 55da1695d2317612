//! Which packages an operator's cancel or retry acts on, as a pure decision over the package
//! table: the atoms named and the run named become package keys, and every named package the
//! request cannot act on is listed with the reason. Refusals carry the control service's codes.

use std::collections::BTreeSet;

use schemas::{Atom, PackageKey, PackageRecord, PackageState, RunName, Unchanged};

use crate::api::ApiError;
use crate::table::PackageTable;

/// What the request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Withdraw unfinished packages.
    Cancel,
    /// Build packages again that will not be built otherwise (failed, blocked, cancelled).
    Retry,
}

impl Action {
    /// Whether a package in `state` is one the action moves.
    pub fn applies(self, state: &PackageState) -> bool {
        match self {
            Action::Cancel => !state.is_final(),
            Action::Retry => matches!(
                state,
                PackageState::Failed { .. }
                    | PackageState::Blocked { .. }
                    | PackageState::Cancelled { .. }
            ),
        }
    }

    /// Why a package in `state` is left as it is.
    fn refusal(self, state: &PackageState) -> String {
        match self {
            Action::Cancel => format!("already {}", state.label()),
            Action::Retry => format!(
                "is {}: only failed, blocked or cancelled packages are retried",
                state.label()
            ),
        }
    }

    /// Whether a package of a named run is taken: every unfinished one for a cancel, every one
    /// that failed for good for a retry (its blocked dependents follow by themselves).
    fn of_run(self, state: &PackageState) -> bool {
        match self {
            Action::Cancel => !state.is_final(),
            Action::Retry => matches!(state, PackageState::Failed { .. }),
        }
    }
}

/// The request, as the selection reads it.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub atoms: &'a [String],
    pub run: Option<&'a str>,
    /// Every package that failed for good (of `run` only, when given): `retry --failed`.
    pub failed: bool,
}

/// The packages to act on, in key order, and the named ones left alone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    pub keys: Vec<PackageKey>,
    pub unchanged: Vec<Unchanged>,
}

pub fn select(
    table: &PackageTable,
    action: Action,
    request: &Request<'_>,
) -> Result<Selection, ApiError> {
    if request.atoms.is_empty() && request.run.is_none() && !request.failed {
        return Err(ApiError::bad_request(match action {
            Action::Cancel => "name the packages to cancel (atoms) or a run",
            Action::Retry => "name the packages to retry (atoms), or ask for every failed one",
        }));
    }
    let mut invalid = Vec::new();
    let mut atoms = Vec::new();
    for text in request.atoms {
        match Atom::parse(text) {
            Ok(atom) => atoms.push(atom),
            Err(err) => invalid.push(format!("{text:?}: {err}")),
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid atoms: {}",
            invalid.join("; ")
        )));
    }
    let run = match request.run {
        Some(text) => Some(
            RunName::parse(text)
                .map_err(|err| ApiError::bad_request(format!("invalid run {text:?}: {err}")))?,
        ),
        None => None,
    };
    let in_run =
        |record: &PackageRecord| run.as_ref().is_none_or(|r| record.run.as_ref() == Some(r));
    if let Some(run) = &run
        && !table.records().any(|r| r.run.as_ref() == Some(run))
    {
        return Err(ApiError::not_found(format!("no run named {run}")));
    }
    let mut keys = BTreeSet::new();
    let mut unchanged = Vec::new();
    let mut known = 0usize;
    for atom in &atoms {
        let Some(entry) = table.get(&atom.key()) else {
            unchanged.push(Unchanged {
                atom: atom.to_string(),
                reason: "was never submitted".to_owned(),
            });
            continue;
        };
        known += 1;
        let state = &entry.record.state;
        if action.applies(state) {
            keys.insert(atom.key());
        } else {
            unchanged.push(Unchanged {
                atom: atom.to_string(),
                reason: action.refusal(state),
            });
        }
    }
    if !atoms.is_empty() && known == 0 && run.is_none() && !request.failed {
        let names: Vec<String> = atoms.iter().map(ToString::to_string).collect();
        return Err(ApiError::not_found(format!(
            "no package of the swarm is {}",
            names.join(", ")
        )));
    }
    // The run's packages (or, for `--failed`, every failed one) when no atom narrows them.
    if atoms.is_empty() && (run.is_some() || request.failed) {
        for (key, entry) in table.entries() {
            let record = &entry.record;
            if in_run(record) && action.of_run(&record.state) {
                keys.insert(key.clone());
            }
        }
    }
    Ok(Selection {
        keys: keys.into_iter().collect(),
        unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::testing::{building, entry, table};
    use schemas::codes;

    fn with_run(
        mut e: (PackageKey, crate::table::Entry),
        run: &str,
    ) -> (PackageKey, crate::table::Entry) {
        e.1.record.run = Some(RunName::parse(run).expect("run"));
        e
    }

    fn failed() -> PackageState {
        PackageState::Failed {
            attempt: 3,
            reason: "x".into(),
        }
    }

    fn swarm() -> PackageTable {
        table(vec![
            with_run(
                entry("a-a/queued", PackageState::Queued { attempt: 1 }, 1),
                "r1",
            ),
            with_run(entry("a-a/building", building("d1"), 1), "r1"),
            with_run(entry("a-a/failed", failed(), 1), "r1"),
            with_run(
                entry(
                    "a-a/done",
                    PackageState::Succeeded {
                        attempt: 1,
                        drone: schemas::fixtures::drone_name("d1"),
                    },
                    1,
                ),
                "r1",
            ),
            with_run(entry("b-b/failed", failed(), 1), "r2"),
            with_run(entry("b-b/waiting", PackageState::Waiting, 1), "r2"),
            with_run(
                entry(
                    "b-b/blocked",
                    PackageState::Blocked {
                        dependency: schemas::fixtures::atom("b-b/failed"),
                    },
                    1,
                ),
                "r2",
            ),
        ])
    }

    fn names(selection: &Selection) -> Vec<String> {
        selection
            .keys
            .iter()
            .map(|k| k.as_str().replace("_2F", "/"))
            .collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn selections() {
        let t = swarm();
        type Case<'a> = (
            Action,
            &'a [&'a str],
            Option<&'a str>,
            bool,
            Result<(&'a [&'a str], usize), usize>,
        );
        let cases: Vec<Case> = vec![
            // Cancel by atom: unfinished ones; finished ones and strangers are listed.
            (
                Action::Cancel,
                &["a-a/queued", "a-a/building"],
                None,
                false,
                Ok((&["a-a/building", "a-a/queued"], 0)),
            ),
            (
                Action::Cancel,
                &["a-a/done", "a-a/queued", "x-x/never"],
                None,
                false,
                Ok((&["a-a/queued"], 2)),
            ),
            (
                Action::Cancel,
                &["x-x/never"],
                None,
                false,
                Err(codes::NOT_FOUND),
            ),
            (
                Action::Cancel,
                &["not an atom"],
                None,
                false,
                Err(codes::BAD_REQUEST),
            ),
            (Action::Cancel, &[], None, false, Err(codes::BAD_REQUEST)),
            // Cancel a run: every unfinished package of it, and of it only.
            (
                Action::Cancel,
                &[],
                Some("r1"),
                false,
                Ok((&["a-a/building", "a-a/queued"], 0)),
            ),
            (
                Action::Cancel,
                &[],
                Some("r2"),
                false,
                Ok((&["b-b/waiting"], 0)),
            ),
            (
                Action::Cancel,
                &[],
                Some("r9"),
                false,
                Err(codes::NOT_FOUND),
            ),
            (
                Action::Cancel,
                &[],
                Some("no spaces"),
                false,
                Err(codes::BAD_REQUEST),
            ),
            // Retry by atom: failed, blocked or cancelled ones.
            (
                Action::Retry,
                &["a-a/failed", "b-b/blocked", "a-a/queued"],
                None,
                false,
                Ok((&["a-a/failed", "b-b/blocked"], 1)),
            ),
            // Retry every failed package, or a run's.
            (
                Action::Retry,
                &[],
                None,
                true,
                Ok((&["a-a/failed", "b-b/failed"], 0)),
            ),
            (
                Action::Retry,
                &[],
                Some("r2"),
                true,
                Ok((&["b-b/failed"], 0)),
            ),
            (
                Action::Retry,
                &[],
                Some("r2"),
                false,
                Ok((&["b-b/failed"], 0)),
            ),
            (Action::Retry, &[], None, false, Err(codes::BAD_REQUEST)),
        ];
        for (action, atoms, run, failed, expected) in cases {
            let atoms = strings(atoms);
            let request = Request {
                atoms: &atoms,
                run,
                failed,
            };
            let got = select(&t, action, &request);
            match (got, expected) {
                (Ok(selection), Ok((keys, unchanged))) => {
                    assert_eq!(
                        names(&selection),
                        strings(keys),
                        "{action:?} {atoms:?} {run:?}"
                    );
                    assert_eq!(
                        selection.unchanged.len(),
                        unchanged,
                        "{action:?} {atoms:?}: {:?}",
                        selection.unchanged
                    );
                }
                (Err(err), Err(code)) => {
                    assert_eq!(err.code, code, "{action:?} {atoms:?} {run:?}: {err}")
                }
                (got, expected) => {
                    panic!("{action:?} {atoms:?} {run:?}: {got:?}, expected {expected:?}")
                }
            }
        }
    }

    #[test]
    fn what_is_left_alone_says_why() {
        let t = swarm();
        let atoms = strings(&["a-a/done", "x-x/never"]);
        let request = Request {
            atoms: &atoms,
            run: None,
            failed: false,
        };
        let selection = select(&t, Action::Cancel, &request).expect("selects");
        let reasons: Vec<(&str, &str)> = selection
            .unchanged
            .iter()
            .map(|u| (u.atom.as_str(), u.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("a-a/done", "already succeeded"),
                ("x-x/never", "was never submitted")
            ]
        );
    }
}
