//! `swarmctl history ATOM`: every ended attempt of a package across runs and submissions, read
//! from the build history stream (`SWARM_HISTORY`), oldest first. Read-only, so it works while
//! the coordinator is down.

use std::io::Write;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use futures::StreamExt;
use schemas::{Atom, BuildOutcome, HistoryEntry, decode, names};
use serde::Serialize;

use crate::{CliError, Outcome, write_json};

/// One attempt as `history` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryLine {
    pub atom: String,
    pub arch: String,
    pub run: Option<String>,
    pub attempt: u32,
    pub drone: String,
    pub started_ms: u64,
    pub duration_ms: u64,
    /// `0`, `1`, ... or `signal 9`; `null` for a success.
    pub exit: Option<String>,
    /// `package`, `fetch` or `infrastructure`; `null` for a success.
    pub class: Option<String>,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// The package's state after it: `succeeded`, `retry_wait`, `failed`, `queued` (given back).
    pub result: String,
    /// The line that decided the failure's class, if any.
    pub signature: Option<String>,
}

impl From<&HistoryEntry> for HistoryLine {
    fn from(entry: &HistoryEntry) -> HistoryLine {
        let (exit, class, signature, outcome) = match &entry.attempt.outcome {
            BuildOutcome::Succeeded => (None, None, None, "succeeded"),
            BuildOutcome::Failed {
                exit,
                class,
                signature,
                ..
            } => (
                Some(exit.to_string()),
                Some(class.to_string()),
                signature.clone(),
                "failed",
            ),
        };
        HistoryLine {
            atom: entry.atom.to_string(),
            arch: entry.arch.to_string(),
            run: entry.run.as_ref().map(ToString::to_string),
            attempt: entry.attempt.attempt,
            drone: entry.attempt.drone.to_string(),
            started_ms: entry.started_ms(),
            duration_ms: entry.attempt.duration_ms,
            exit,
            class,
            outcome: outcome.to_owned(),
            result: entry.result.clone(),
            signature,
        }
    }
}

/// Every history entry of `atom`'s package, oldest first.
pub async fn read(client: &async_nats::Client, atom: &Atom) -> Result<Vec<HistoryEntry>, CliError> {
    let js = jetstream::new(client.clone());
    let failed = |reason: String| CliError::Request {
        subject: names::HISTORY_STREAM.to_owned(),
        reason,
    };
    let stream = js.get_stream(names::HISTORY_STREAM).await.map_err(|err| {
        if matches!(
            err.kind(),
            jetstream::context::GetStreamErrorKind::JetStream(_)
        ) {
            CliError::AssetsMissing {
                bucket: names::HISTORY_STREAM.to_owned(),
            }
        } else {
            failed(err.to_string())
        }
    })?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: names::history_filter(&atom.key()),
            ..Default::default()
        })
        .await
        .map_err(|err| failed(err.to_string()))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut entries = Vec::new();
    if pending == 0 {
        return Ok(entries);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|err| failed(err.to_string()))?;
    while pending > 0 {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(err))) => return Err(failed(err.to_string())),
            Ok(None) | Err(_) => return Err(failed("the history stopped arriving".to_owned())),
        };
        if let Ok(entry) = decode::<HistoryEntry>(&message.payload) {
            entries.push(entry);
        }
        pending = message.info().map(|i| i.pending).unwrap_or(0);
    }
    Ok(entries)
}

/// Prints the history of `atom` as a table or JSON; exit 1 when it has none.
pub async fn history(
    client: &async_nats::Client,
    atom: &Atom,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let lines: Vec<HistoryLine> = read(client, atom).await?.iter().map(Into::into).collect();
    if json {
        write_json(out, &lines)?;
    } else if lines.is_empty() {
        writeln!(out, "no build of {atom} is in the history")?;
    } else {
        write!(out, "{}", table(&lines))?;
    }
    Ok(if lines.is_empty() {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// The aligned table: RUN ATTEMPT DRONE STARTED (UTC) DURATION EXIT CLASS RESULT.
pub fn table(lines: &[HistoryLine]) -> String {
    let rows = lines
        .iter()
        .map(|l| {
            vec![
                l.run.clone().unwrap_or_else(|| "-".to_owned()),
                l.attempt.to_string(),
                l.drone.clone(),
                runtime::dates::format_minute(l.started_ms / 1000),
                format!("{:.1} s", l.duration_ms as f64 / 1000.0),
                l.exit.clone().unwrap_or_else(|| "-".to_owned()),
                l.class.clone().unwrap_or_else(|| "-".to_owned()),
                l.result.clone(),
            ]
        })
        .collect();
    crate::view::table(
        &[
            "RUN", "ATTEMPT", "DRONE", "STARTED", "DURATION", "EXIT", "CLASS", "RESULT",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{AttemptRecord, ExitInfo, FailureClass, SCHEMA_VERSION, fixtures};

    #[test]
    fn attempts_read_as_a_table() {
        let entry = |attempt, outcome, result: &str, run: &str| HistoryEntry {
            v: SCHEMA_VERSION,
            atom: fixtures::atom("dev-libs/a"),
            arch: schemas::Arch::default(),
            run: schemas::RunName::parse(run).ok(),
            submission: 1,
            attempt: AttemptRecord {
                attempt,
                drone: fixtures::drone_name("d1"),
                outcome,
                duration_ms: 1_500,
                ended_ms: 1_796_000_061_500,
            },
            result: result.to_owned(),
        };
        let failed = BuildOutcome::Failed {
            exit: ExitInfo::code(1),
            log_tail: "x".into(),
            class: FailureClass::Package,
            signature: None,
        };
        let lines: Vec<HistoryLine> = [
            entry(1, failed, "retry_wait", "nightly-1"),
            entry(2, BuildOutcome::Succeeded, "succeeded", "nightly-1"),
        ]
        .iter()
        .map(Into::into)
        .collect();
        let text = table(&lines);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(
            rows[0],
            "RUN        ATTEMPT  DRONE  STARTED           DURATION  EXIT           CLASS    RESULT"
        );
        assert!(rows[1].starts_with("nightly-1  1        d1     "), "{text}");
        assert!(rows[1].contains("package  retry_wait"), "{text}");
        assert!(rows[1].contains("exit status 1"), "{text}");
        assert!(
            rows[2].ends_with("1.5 s     -              -        succeeded"),
            "{text}"
        );
    }
}
