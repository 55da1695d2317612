//! `status --graph`: what is left of the swarm's runs (or one run) as a graph — its critical
//! path, the work left and the earliest the run can end with the drones online now
//! (`schemas::paths::forecast`), read from the packages and drones buckets.

use schemas::names::{DRONES_BUCKET, PACKAGES_BUCKET};
use schemas::paths::{Forecast, forecast};
use schemas::summary::effective_state;
use schemas::{DroneRecord, DroneState, PackageRecord, RunName};
use serde::Serialize;

use crate::CliError;
use crate::view::{heartbeat_age_ms, read};

/// The forecast and when it was made, as `status --graph --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphStatus {
    /// Only this run's packages; `null`: every unfinished package.
    pub run: Option<RunName>,
    #[serde(flatten)]
    pub forecast: Forecast,
    /// Cores of the drones online for the packages' archs, and of the largest of them.
    pub cores: u32,
    pub largest_drone_cores: u32,
    /// When the forecast was made (unix ms), and the earliest end it predicts; `null` when it
    /// predicts none.
    pub now_ms: u64,
    pub end_ms: Option<u64>,
}

/// Reads the buckets and forecasts `run` (every run with `None`).
pub async fn graph_status(
    client: &async_nats::Client,
    run: Option<&RunName>,
) -> Result<GraphStatus, CliError> {
    let packages = read::<PackageRecord>(client, PACKAGES_BUCKET).await?;
    let drones = read::<DroneRecord>(client, DRONES_BUCKET).await?;
    let now_ms = runtime::now_ms();
    let records: Vec<&PackageRecord> = packages
        .iter()
        .map(|item| &item.value)
        .filter(|r| run.is_none_or(|run| r.run.as_ref() == Some(run)))
        .collect();
    let online: Vec<&DroneRecord> = drones
        .iter()
        .filter(|item| {
            matches!(
                effective_state(&item.value, heartbeat_age_ms(item, now_ms)),
                DroneState::Idle | DroneState::Building
            )
        })
        .map(|item| &item.value)
        .filter(|d| records.iter().any(|r| r.arch == d.arch))
        .collect();
    let cores = online.iter().map(|d| d.cores).sum();
    let largest = online.iter().map(|d| d.cores).max().unwrap_or(0);
    Ok(of(records, cores, largest, now_ms, run.cloned()))
}

/// The forecast of `records` with `cores` online, the largest drone `largest`.
pub fn of(
    records: Vec<&PackageRecord>,
    cores: u32,
    largest: u32,
    now_ms: u64,
    run: Option<RunName>,
) -> GraphStatus {
    let forecast = forecast(records, cores, largest, now_ms);
    let end_ms = forecast
        .eta_secs
        .map(|secs| now_ms + (secs * 1000.0).round() as u64);
    GraphStatus {
        run,
        forecast,
        cores,
        largest_drone_cores: largest,
        now_ms,
        end_ms,
    }
}

impl GraphStatus {
    /// The block people read.
    pub fn block(&self) -> String {
        let f = &self.forecast;
        let scope = match &self.run {
            Some(run) => format!("run {run}"),
            None => "every run".to_owned(),
        };
        if f.unfinished == 0 {
            return format!("{scope}: nothing left to build\n");
        }
        let mut out = format!(
            "{scope}: {} packages left, {} of work on 8 cores\ncritical path: {} packages, {} on 8 cores\n",
            f.unfinished,
            duration(f.work_secs),
            f.path.len(),
            duration(f.path_secs),
        );
        let width = f
            .path
            .iter()
            .map(|s| s.atom.as_str().len())
            .max()
            .unwrap_or(0);
        for step in &f.path {
            out.push_str(&format!(
                "  {:<width$}  {:<10} {:>9}\n",
                step.atom.as_str(),
                step.state,
                duration(step.secs)
            ));
        }
        match (f.eta_secs, self.end_ms) {
            (Some(secs), Some(end)) => {
                let by = if f.path_secs * 8.0 / f64::from(self.largest_drone_cores.max(1))
                    >= f.work_secs * 8.0 / f64::from(self.cores.max(1))
                {
                    format!(
                        "the critical path on the largest drone ({} cores)",
                        self.largest_drone_cores
                    )
                } else {
                    format!("the work left on the {} cores online", self.cores)
                };
                out.push_str(&format!(
                    "earliest end: {} UTC (in {}), set by {by}\n",
                    runtime::dates::format_minute(end / 1000),
                    duration(secs)
                ));
            }
            _ => out.push_str("earliest end: unknown (no drone online for these packages)\n"),
        }
        out
    }
}

/// Seconds as people read them: `45 s`, `12m 05s`, `4h 27m`.
pub(crate) fn duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{PackageState, fixtures};

    #[test]
    fn the_block_names_the_path_its_length_and_the_end() {
        let mut records: Vec<PackageRecord> = Vec::new();
        for (atom, deps, secs) in [
            ("sys-devel/gcc", vec![], 4_800.0),
            ("sys-libs/glibc", vec!["sys-devel/gcc"], 900.0),
            ("app-misc/small", vec![], 60.0),
        ] {
            records.push(PackageRecord {
                estimate_secs: Some(secs),
                deps: deps.iter().map(|d| fixtures::atom(d).key()).collect(),
                ..fixtures::package_record(
                    atom,
                    if deps.is_empty() {
                        PackageState::Queued { attempt: 1 }
                    } else {
                        PackageState::Waiting
                    },
                )
            });
        }
        // 5,700 s of path on 24 cores: 1,900 s; 5,760 s of work on 58 cores: 794 s.
        let status = of(records.iter().collect(), 58, 24, 0, None);
        assert_eq!(status.end_ms, Some(1_900_000));
        let block = status.block();
        assert!(block.starts_with("every run: 3 packages left, 1h 36m of work on 8 cores\ncritical path: 2 packages, 1h 35m on 8 cores\n"), "{block}");
        assert!(
            block.contains("  sys-devel/gcc   queued        1h 20m\n"),
            "{block}"
        );
        assert!(
            block.contains("  sys-libs/glibc  waiting      15m 00s\n"),
            "{block}"
        );
        assert!(
            block.contains("earliest end: 1970-01-01 00:31 UTC (in 31m 40s), set by the critical path on the largest drone (24 cores)"),
            "{block}"
        );
        // No drone online: no end.
        let offline = of(records.iter().collect(), 0, 0, 0, None).block();
        assert!(offline.ends_with("earliest end: unknown (no drone online for these packages)\n"));
        assert_eq!(
            of(Vec::new(), 8, 8, 0, None).block(),
            "every run: nothing left to build\n"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(45.2), "45 s");
        assert_eq!(duration(725.0), "12m 05s");
        assert_eq!(duration(16_020.0), "4h 27m");
    }
}
