//! `swarmctl wait`: poll the packages bucket until nothing is queued, waiting to retry or
//! building, then report which packages failed.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use schemas::names::PACKAGES_BUCKET;
use schemas::summary::{PackageCounts, summarize};
use schemas::{DroneRecord, PackageRecord};
use tokio::time::Instant;

use crate::CliError;
use crate::view::{self, PackageRow};

/// How often the packages bucket is read.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Progress lines are written at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Reads may fail this long in a row (a NATS reconnect, a server restart) before `wait` gives up.
const READ_FAILURE_GRACE: Duration = Duration::from_secs(15);

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

/// Waits until no package is unfinished. `None` waits for ever. An empty bucket counts as
/// finished: there is nothing to wait for.
pub async fn wait(
    client: &async_nats::Client,
    timeout: Option<Duration>,
    progress: &mut (dyn Write + Send),
) -> Result<WaitReport, CliError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let timed_out = |unfinished| CliError::WaitTimedOut {
        timeout: timeout.unwrap_or_default(),
        unfinished,
    };
    let store = view::open(client, PACKAGES_BUCKET).await?;
    let mut last_progress: Option<Instant> = None;
    let mut failing_since: Option<Instant> = None;
    let mut unfinished = 0;
    loop {
        let read = runtime::kv::read_bucket::<PackageRecord>(&store);
        let read = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| timed_out(unfinished))?,
            None => read.await,
        };
        match read {
            Ok(records) => {
                failing_since = None;
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
                if last_progress.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) {
                    writeln!(
                        progress,
                        "waiting: {} queued ({} retrying), {} waiting for dependencies, {} building, {} succeeded, {} failed, {} blocked",
                        counts.queued,
                        counts.retrying,
                        counts.waiting,
                        counts.building,
                        counts.succeeded,
                        counts.failed,
                        counts.blocked
                    )?;
                    last_progress = Some(Instant::now());
                }
            }
            Err(err) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= READ_FAILURE_GRACE {
                    return Err(err.into());
                }
                tracing::warn!(error = %err, "cannot read package state, retrying");
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
