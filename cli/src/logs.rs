//! `swarmctl logs ATOM [--follow] [--attempt N]`: one attempt's build log (by default the
//! package's current or last one). A build that has ended has its complete log in the logs
//! object store (gzip), printed whole; one still running is read from the live log stream, from
//! its first byte, and with `--follow` followed as the drone writes it until the build's output
//! ends (or its build ends without an end, the drone gone). Read-only: no coordinator needed.

use std::io::Write;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use futures::StreamExt;
use schemas::{Atom, PackageRecord, PackageState, names};

use crate::{CliError, Outcome};

/// How often a follower with nothing new looks at whether the build is still running.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Prints the log; exit 1 when the attempt has none (not started, or it printed nothing).
pub async fn logs(
    client: &async_nats::Client,
    atom: &Atom,
    attempt: Option<u32>,
    follow: bool,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let js = jetstream::new(client.clone());
    let record = package(client, atom).await?;
    let attempt = attempt
        .or_else(|| Some(record.state.attempt()).filter(|a| *a > 0))
        .or_else(|| record.history.last().map(|h| h.attempt))
        .ok_or_else(|| CliError::NoLog {
            atom: atom.to_string(),
            why: "no build of it has started".to_owned(),
        })?;
    let key = atom.key();
    let name = names::log_object(&key, record.submission, attempt);
    let stored = runtime::logs::read_stored(&js, &name)
        .await
        .map_err(|err| CliError::Request {
            subject: names::LOGS_BUCKET.to_owned(),
            reason: err.to_string(),
        })?;
    if let Some(log) = stored {
        out.write_all(&log)?;
        return Ok(Outcome::Success);
    }
    let printed = live(client, &record, attempt, follow, out).await?;
    if printed == 0 {
        writeln!(
            std::io::stderr(),
            "no log of attempt {attempt} of {atom} (yet): it has printed nothing, or it has not started"
        )?;
        return Ok(Outcome::Failure);
    }
    Ok(Outcome::Success)
}

/// The package's record.
async fn package(client: &async_nats::Client, atom: &Atom) -> Result<PackageRecord, CliError> {
    let bucket = crate::view::open(client, names::PACKAGES_BUCKET).await?;
    let entry = bucket
        .get(atom.key().as_str())
        .await
        .map_err(|err| CliError::Request {
            subject: names::PACKAGES_BUCKET.to_owned(),
            reason: err.to_string(),
        })?
        .ok_or_else(|| CliError::NoLog {
            atom: atom.to_string(),
            why: "it was never submitted".to_owned(),
        })?;
    schemas::decode(&entry).map_err(|source| CliError::BadReply {
        subject: names::PACKAGES_BUCKET.to_owned(),
        source,
    })
}

/// Prints the live log from its start: what has arrived, or with `follow` everything until
/// the output ends. The bytes printed.
async fn live(
    client: &async_nats::Client,
    record: &PackageRecord,
    attempt: u32,
    follow: bool,
    out: &mut (dyn Write + Send),
) -> Result<u64, CliError> {
    let key = record.atom.key();
    let failed = |reason: String| CliError::Request {
        subject: names::LOGS_STREAM.to_owned(),
        reason,
    };
    let js = jetstream::new(client.clone());
    let Ok(stream) = js.get_stream(names::LOGS_STREAM).await else {
        return Ok(0);
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: names::log_filter(&key, record.submission, attempt),
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut pending = consumer.cached_info().num_pending;
    if pending == 0 && !follow {
        return Ok(0);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut printed = 0u64;
    loop {
        if !follow && pending == 0 {
            return Ok(printed);
        }
        let message = match tokio::time::timeout(LOOK_EVERY, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(err))) => return Err(failed(err.to_string())),
            Ok(None) => return Ok(printed),
            Err(_) => {
                // Nothing new: is the build still running?
                if !follow || !running(client, record, attempt).await {
                    return Ok(printed);
                }
                continue;
            }
        };
        pending = message.info().map(|i| i.pending).unwrap_or(0);
        out.write_all(&message.payload)?;
        out.flush()?;
        printed += message.payload.len() as u64;
        let end = message
            .headers
            .as_ref()
            .is_some_and(|h| h.get(names::HEADER_LOG_END).is_some());
        if end {
            return Ok(printed);
        }
    }
}

/// Whether `attempt` of the package may still print: it is queued for it or building it.
async fn running(client: &async_nats::Client, record: &PackageRecord, attempt: u32) -> bool {
    match package(client, &record.atom).await {
        Ok(now) => {
            now.submission == record.submission
                && matches!(
                    now.state,
                    PackageState::Queued { attempt: a } | PackageState::Building { attempt: a, .. }
                        if a == attempt
                )
        }
        Err(_) => true,
    }
}
