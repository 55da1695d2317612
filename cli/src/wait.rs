//! `swarmctl wait` (and `watch`'s loop, `follow`): poll the packages bucket until nothing is
//! queued, waiting to retry or building, then report which packages failed. It rides out a NATS outage (a server restarting,
//! not up yet): the connection retries by itself, and `wait` says that it waits for the server
//! and goes on until its timeout.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use schemas::names::PACKAGES_BUCKET;
use schemas::summary::{PackageCounts, summarize};
use schemas::{DroneRecord, PackageRecord, RunName};
use tokio::time::Instant;

use crate::CliError;
use crate::view::{self, PackageRow};

/// How often the packages bucket is read.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Progress lines are written at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// How a finished queue ended.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitReport {
    pub succeeded: u64,
    /// The failed packages, sorted by atom.
    pub failed: Vec<PackageRow>,
}

impl fmt::Display for WaitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let packages = |n: u64| if n == 1 { "package" } else { "packages" };
        if self.failed.is_empty() {
            return writeln!(
                f,
                "all {} {} succeeded",
                self.succeeded,
                packages(self.succeeded)
            );
        }
        writeln!(
            f,
            "{} {} succeeded, {} failed:",
            self.succeeded,
            packages(self.succeeded),
            self.failed.len()
        )?;
        for row in &self.failed {
            writeln!(
                f,
                "  {}: {}",
                row.atom,
                row.reason.as_deref().unwrap_or("no reason recorded")
            )?;
        }
        Ok(())
    }
}

fn counts(records: &[runtime::kv::KvItem<PackageRecord>]) -> PackageCounts {
    summarize(
        std::iter::empty::<(&DroneRecord, u64)>(),
        records.iter().map(|item| &item.value.state),
    )
    .packages
}

/// What the follow loop tells whoever shows its progress.
pub(crate) trait Progress {
    /// The packages followed, read again (every poll).
    fn counts(&mut self, counts: &PackageCounts, total: u64) -> std::io::Result<()>;
    /// The server cannot be read (`why`), at most every `PROGRESS_INTERVAL`.
    fn outage(&mut self, why: &str) -> std::io::Result<()>;
    /// The server answers again after an outage.
    fn back(&mut self) -> std::io::Result<()>;
}

/// `wait`'s progress: a line every `PROGRESS_INTERVAL`.
struct Lines<'a> {
    out: &'a mut (dyn Write + Send),
    last: Option<Instant>,
}

impl Progress for Lines<'_> {
    fn counts(&mut self, counts: &PackageCounts, _total: u64) -> std::io::Result<()> {
        if self.last.is_some_and(|at| at.elapsed() < PROGRESS_INTERVAL) {
            return Ok(());
        }
        self.last = Some(Instant::now());
        writeln!(
            self.out,
            "waiting: {} queued ({} retrying), {} waiting for dependencies, {} building, {} succeeded, {} failed, {} blocked",
            counts.queued,
            counts.retrying,
            counts.waiting,
            counts.building,
            counts.succeeded,
            counts.failed,
            counts.blocked
        )
    }

    fn outage(&mut self, why: &str) -> std::io::Result<()> {
        writeln!(self.out, "{why}")
    }

    fn back(&mut self) -> std::io::Result<()> {
        writeln!(self.out, "the server answers again")
    }
}

/// Waits until no package is unfinished. `None` waits for ever. An empty bucket counts as
/// finished: there is nothing to wait for.
pub async fn wait(
    client: &async_nats::Client,
    timeout: Option<Duration>,
    progress: &mut (dyn Write + Send),
) -> Result<WaitReport, CliError> {
    let mut lines = Lines {
        out: progress,
        last: None,
    };
    follow(client, timeout, None, &mut lines).await
}

/// Follows the packages (of `run` only, when given) until none is unfinished, telling
/// `progress` what it sees; rides out a NATS outage until `timeout`.
pub(crate) async fn follow(
    client: &async_nats::Client,
    timeout: Option<Duration>,
    run: Option<&RunName>,
    progress: &mut dyn Progress,
) -> Result<WaitReport, CliError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let timed_out = |unfinished| CliError::WaitTimedOut {
        timeout: timeout.unwrap_or_default(),
        unfinished,
    };
    let mut store = None;
    let mut last_outage: Option<Instant> = None;
    let mut unfinished = 0;
    loop {
        if client.connection_state() != async_nats::connection::State::Connected {
            // Reads would wait for the connection: say why nothing moves, and look again soon.
            if last_outage.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) {
                progress.outage("waiting for the NATS server (not connected)")?;
                last_outage = Some(Instant::now());
            }
            let wake = Instant::now() + POLL_INTERVAL;
            match deadline {
                Some(deadline) if deadline <= wake => {
                    tokio::time::sleep_until(deadline).await;
                    return Err(timed_out(unfinished));
                }
                _ => tokio::time::sleep_until(wake).await,
            }
            continue;
        }
        let read = async {
            if store.is_none() {
                store = Some(view::open(client, PACKAGES_BUCKET).await?);
            }
            let Some(store) = &store else {
                unreachable!("opened above");
            };
            runtime::kv::read_bucket::<PackageRecord>(store)
                .await
                .map_err(CliError::from)
        };
        let read = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| timed_out(unfinished))?,
            None => read.await,
        };
        match read {
            Ok(mut records) => {
                if last_outage.take().is_some() {
                    progress.back()?;
                }
                if let Some(run) = run {
                    records.retain(|item| item.value.run.as_ref() == Some(run));
                }
                let counts = counts(&records);
                unfinished = counts.queued + counts.building + counts.waiting;
                if unfinished == 0 {
                    let mut failed: Vec<PackageRow> = records
                        .iter()
                        .filter(|item| matches!(item.value.state.label(), "failed" | "blocked"))
                        .map(|item| PackageRow::from_record(&item.value))
                        .collect();
                    failed.sort_by(|a, b| a.atom.cmp(&b.atom));
                    return Ok(WaitReport {
                        succeeded: counts.succeeded,
                        failed,
                    });
                }
                progress.counts(&counts, records.len() as u64)?;
            }
            // The server answered that the swarm's buckets do not exist: no outage, an answer.
            Err(err @ CliError::AssetsMissing { .. }) => return Err(err),
            // The server is away (restarting, not up yet) or its JetStream is not ready: say so
            // now and then, and keep waiting until the timeout.
            Err(err) => {
                if last_outage.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) {
                    progress.outage(&format!("waiting for the NATS server: {err}"))?;
                    last_outage = Some(Instant::now());
                }
                store = None;
            }
        }
        let mut wake = Instant::now() + POLL_INTERVAL;
        if let Some(deadline) = deadline {
            if Instant::now() >= deadline {
                return Err(timed_out(unfinished));
            }
            wake = wake.min(deadline);
        }
        tokio::time::sleep_until(wake).await;
    }
}

#[cfg(test)]
mod tests {
    use schemas::PackageState;

    use super::*;

    #[test]
    fn the_report_names_failed_packages() {
        let failed = PackageRow::from_record(&schemas::fixtures::package_record(
            "dev-libs/broken",
            PackageState::Failed {
                attempt: 3,
                reason: "exit status 2".into(),
            },
        ));
        let ok = WaitReport {
            succeeded: 152,
            failed: vec![],
        };
        assert_eq!(ok.to_string(), "all 152 packages succeeded\n");
        let some = WaitReport {
            succeeded: 151,
            failed: vec![failed],
        };
        assert_eq!(
            some.to_string(),
            "151 packages succeeded, 1 failed:\n  dev-libs/broken: exit status 2\n"
        );
    }
}
