//! `swarmctl runs`: every run the packages bucket knows, with its counts, start, end and
//! duration, newest first; `status --run NAME` is one run's row (`runs` is pure over the
//! records; `all` and `one` read and print). Also `completions`, which needs no NATS.

use std::collections::BTreeMap;
use std::io::Write;

use schemas::summary::{PackageCounts, summarize};
use schemas::{DroneRecord, PackageRecord, RunName};
use serde::Serialize;

use crate::{Cli, CliError, Outcome, view, write_json};

/// One run as `runs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub run: RunName,
    /// Packages last submitted in it.
    pub packages: u64,
    pub counts: PackageCounts,
    /// `running` while a package of it is unfinished, `ended` once none is.
    pub state: &'static str,
    /// Its first package's submission (unix ms).
    pub started_ms: u64,
    /// When its last package finished (unix ms); `null` while it runs.
    pub ended_ms: Option<u64>,
    /// From its start to its end, or to `now` while it runs, in seconds.
    pub duration_secs: u64,
}

/// The runs of `records` at `now_ms`, newest first. A package submitted before runs had names
/// belongs to none and is left out.
pub fn runs<'a>(records: impl IntoIterator<Item = &'a PackageRecord>, now_ms: u64) -> Vec<RunRow> {
    let mut by_run: BTreeMap<&RunName, Vec<&PackageRecord>> = BTreeMap::new();
    for record in records {
        if let Some(run) = &record.run {
            by_run.entry(run).or_default().push(record);
        }
    }
    let mut rows: Vec<RunRow> = by_run
        .into_iter()
        .map(|(run, records)| {
            let counts = summarize(
                std::iter::empty::<(&DroneRecord, u64)>(),
                records.iter().map(|r| &r.state),
            )
            .packages;
            let started_ms = records.iter().map(|r| r.submitted_ms).min().unwrap_or(0);
            let running = records.iter().any(|r| !r.state.is_final());
            let ended_ms =
                (!running).then(|| records.iter().map(|r| r.updated_ms).max().unwrap_or(0));
            let until = ended_ms.unwrap_or(now_ms);
            RunRow {
                run: run.clone(),
                packages: records.len() as u64,
                counts,
                state: if running { "running" } else { "ended" },
                started_ms,
                ended_ms,
                duration_secs: until.saturating_sub(started_ms) / 1000,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.started_ms
            .cmp(&a.started_ms)
            .then_with(|| a.run.cmp(&b.run))
    });
    rows
}

/// `runs`: every run, as a table or JSON.
pub async fn all(
    client: &async_nats::Client,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let records = view::read::<PackageRecord>(client, schemas::names::PACKAGES_BUCKET).await?;
    let rows = runs(records.iter().map(|item| &item.value), runtime::now_ms());
    if json {
        write_json(out, &rows)?;
    } else {
        write!(out, "{}", table(&rows))?;
    }
    Ok(Outcome::Success)
}

/// `status --run NAME`: that run's row; an unknown run is an error naming it.
pub async fn one(
    client: &async_nats::Client,
    run: RunName,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let records = view::read::<PackageRecord>(client, schemas::names::PACKAGES_BUCKET).await?;
    let rows = runs(records.iter().map(|item| &item.value), runtime::now_ms());
    let Some(row) = rows.into_iter().find(|row| row.run == run) else {
        return Err(CliError::NoSuchRun { run });
    };
    if json {
        write_json(out, &row)?;
    } else {
        write!(out, "{}", table(std::slice::from_ref(&row)))?;
    }
    Ok(Outcome::Success)
}

/// Writes the completion script of `shell` for every command and flag of this binary.
pub fn completions(
    shell: clap_complete::Shell,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "swarmctl", &mut script);
    out.write_all(&script)?;
    Ok(Outcome::Success)
}

/// The aligned table people read.
pub fn table(rows: &[RunRow]) -> String {
    let cells = rows
        .iter()
        .map(|r| {
            vec![
                r.run.to_string(),
                r.state.to_owned(),
                r.packages.to_string(),
                (r.counts.queued + r.counts.waiting).to_string(),
                r.counts.building.to_string(),
                r.counts.succeeded.to_string(),
                r.counts.failed.to_string(),
                r.counts.blocked.to_string(),
                minute(r.started_ms),
                r.ended_ms.map_or_else(|| "-".to_owned(), minute),
                crate::forecast::duration(r.duration_secs as f64),
            ]
        })
        .collect();
    crate::view::table(
        &[
            "RUN",
            "STATE",
            "PACKAGES",
            "QUEUED",
            "BUILDING",
            "SUCCEEDED",
            "FAILED",
            "BLOCKED",
            "STARTED",
            "ENDED",
            "DURATION",
        ],
        cells,
    )
}

fn minute(ms: u64) -> String {
    runtime::dates::format_minute(ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{PackageState, fixtures};

    fn record(
        atom: &str,
        run: &str,
        state: PackageState,
        submitted: u64,
        updated: u64,
    ) -> PackageRecord {
        PackageRecord {
            run: Some(RunName::parse(run).expect("run")),
            submitted_ms: submitted,
            updated_ms: updated,
            ..fixtures::package_record(atom, state)
        }
    }

    fn done() -> PackageState {
        PackageState::Succeeded {
            attempt: 1,
            drone: fixtures::drone_name("d"),
        }
    }

    #[test]
    fn runs_are_counted_dated_and_listed_newest_first() {
        let failed = PackageState::Failed {
            attempt: 3,
            reason: "x".into(),
        };
        let records = [
            record("a/one", "nightly-1", done(), 1_000, 61_000),
            record("a/two", "nightly-1", failed, 2_000, 3_723_000),
            record("b/one", "nightly-2", done(), 4_000_000, 4_010_000),
            record(
                "b/two",
                "nightly-2",
                PackageState::Waiting,
                4_000_000,
                4_000_000,
            ),
            record(
                "b/three",
                "nightly-2",
                PackageState::Queued { attempt: 1 },
                4_000_000,
                4_000_000,
            ),
            // A package of no run (submitted before runs had names) is left out.
            PackageRecord {
                run: None,
                ..fixtures::package_record("c/old", done())
            },
        ];
        let rows = runs(&records, 4_100_000);
        assert_eq!(rows.len(), 2);
        let (newest, oldest) = (&rows[0], &rows[1]);
        assert_eq!(newest.run.as_str(), "nightly-2");
        assert_eq!(
            (newest.state, newest.packages, newest.ended_ms),
            ("running", 3, None)
        );
        assert_eq!(
            (
                newest.counts.queued,
                newest.counts.waiting,
                newest.counts.succeeded
            ),
            (1, 1, 1)
        );
        assert_eq!(newest.duration_secs, 100, "until now while it runs");
        assert_eq!(oldest.run.as_str(), "nightly-1");
        assert_eq!((oldest.state, oldest.ended_ms), ("ended", Some(3_723_000)));
        assert_eq!((oldest.counts.succeeded, oldest.counts.failed), (1, 1));
        assert_eq!(oldest.duration_secs, 3_722);
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("RUN        STATE    PACKAGES  QUEUED"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("nightly-2  running  3         2       0"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("1970-01-01 00:00  1970-01-01 01:02  1h 02m"),
            "{text}"
        );
    }
}
