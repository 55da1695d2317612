//! The read commands (`status`, `packages`, `drones`): the drones and packages buckets read whole,
//! turned into the summary and into rows whose JSON shape is part of swarmctl's interface.

use async_nats::jetstream;
use runtime::kv::KvItem;
use schemas::names::{DRONES_BUCKET, PACKAGES_BUCKET};
use schemas::summary::{Summary, effective_state, summarize};
use schemas::{
    Arch, Atom, BuildOutcome, DroneName, DroneRecord, DroneState, ExitInfo, PackageRecord,
    PackageState, Wire,
};
use serde::{Deserialize, Serialize};

use crate::{CliError, StateFilter};

/// One package as `packages` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageRow {
    pub atom: Atom,
    /// The state's label: `queued`, `retry_wait`, `building`, `succeeded` or `failed`.
    pub state: String,
    /// Builds started so far: the current (or last) attempt's number while building and once
    /// finished; the number of ended attempts while queued or waiting to retry.
    pub attempts: u32,
    /// The drone building the package, or the drone that built it; `null` otherwise.
    pub drone: Option<DroneName>,
    /// Every ended attempt, oldest first.
    pub history: Vec<HistoryRow>,
    /// Why the package failed; only on failed packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The build time the scheduler learned from the package's successful builds, in seconds
    /// on 8 cores; `null` before the first success.
    #[serde(default)]
    pub learned_secs: Option<f64>,
}

/// One ended attempt of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub attempt: u32,
    pub drone: DroneName,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// How the build process ended; `null` for a success.
    pub exit: Option<ExitInfo>,
    /// The end of the build log; `null` for a success.
    pub log_tail: Option<String>,
    pub duration_ms: u64,
}

impl PackageRow {
    pub fn from_record(record: &PackageRecord) -> PackageRow {
        let (attempts, drone, reason) = match &record.state {
            PackageState::Building { attempt, drone, .. }
            | PackageState::Succeeded { attempt, drone } => (*attempt, Some(drone.clone()), None),
            PackageState::Failed { attempt, reason } => (*attempt, None, Some(reason.clone())),
            PackageState::Queued { .. } | PackageState::RetryWait { .. } => (
                u32::try_from(record.history.len()).unwrap_or(u32::MAX),
                None,
                None,
            ),
        };
        PackageRow {
            learned_secs: record.learned_secs,
            atom: record.atom.clone(),
            state: record.state.label().to_owned(),
            attempts,
            drone,
            history: record
                .history
                .iter()
                .map(|h| {
                    let (outcome, exit, log_tail) = match &h.outcome {
                        BuildOutcome::Succeeded => ("succeeded", None, None),
                        BuildOutcome::Failed { exit, log_tail } => {
                            ("failed", Some(exit.clone()), Some(log_tail.clone()))
                        }
                    };
                    HistoryRow {
                        attempt: h.attempt,
                        drone: h.drone.clone(),
                        outcome: outcome.to_owned(),
                        exit,
                        log_tail,
                        duration_ms: h.duration_ms,
                    }
                })
                .collect(),
            reason,
        }
    }
}

/// One drone as `drones` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneRow {
    pub name: DroneName,
    pub cores: u32,
    pub slots: u32,
    /// The effective state's label: what the drone reports, or `lost` when its heartbeat is
    /// stale.
    pub state: String,
    /// Atoms the drone is building, as it last reported.
    pub building: Vec<Atom>,
    /// Why the drone is grounded or lost; only in those states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub arch: Arch,
    pub version: String,
    /// Age of the last heartbeat by the server's clock, in milliseconds.
    pub heartbeat_age_ms: u64,
}

impl DroneRow {
    pub fn from_record(record: &DroneRecord, heartbeat_age_ms: u64) -> DroneRow {
        let state = effective_state(record, heartbeat_age_ms);
        let reason = match &state {
            DroneState::Grounded { reason } | DroneState::Lost { reason } => Some(reason.clone()),
            _ => None,
        };
        DroneRow {
            name: record.name.clone(),
            cores: record.cores,
            slots: record.slots,
            state: state.label().to_owned(),
            building: record.building.iter().map(|b| b.atom.clone()).collect(),
            reason,
            arch: record.arch.clone(),
            version: record.version.clone(),
            heartbeat_age_ms,
        }
    }
}

/// Opens one of the swarm's buckets; a missing bucket means the coordinator never ran.
pub(crate) async fn open(
    client: &async_nats::Client,
    bucket: &str,
) -> Result<jetstream::kv::Store, CliError> {
    let js = jetstream::new(client.clone());
    Ok(runtime::kv::open_bucket(&js, bucket).await?)
}

async fn read<T: Wire>(
    client: &async_nats::Client,
    bucket: &str,
) -> Result<Vec<KvItem<T>>, CliError> {
    let store = open(client, bucket).await?;
    Ok(runtime::kv::read_bucket(&store).await?)
}

/// Heartbeat age by the server's timestamp of the drone's last write, so a drone with a wrong
/// clock is still judged correctly.
fn heartbeat_age_ms(item: &KvItem<DroneRecord>, now_ms: u64) -> u64 {
    now_ms.saturating_sub(item.created_ms)
}

/// The summary `status` prints.
pub async fn status(client: &async_nats::Client) -> Result<Summary, CliError> {
    let drones = read::<DroneRecord>(client, DRONES_BUCKET).await?;
    let packages = read::<PackageRecord>(client, PACKAGES_BUCKET).await?;
    let now = runtime::now_ms();
    Ok(summarize(
        drones
            .iter()
            .map(|item| (&item.value, heartbeat_age_ms(item, now))),
        packages.iter().map(|item| &item.value.state),
    ))
}

/// Every package (or those in one state), sorted by atom.
pub async fn packages(
    client: &async_nats::Client,
    state: Option<StateFilter>,
) -> Result<Vec<PackageRow>, CliError> {
    let records = read::<PackageRecord>(client, PACKAGES_BUCKET).await?;
    let mut rows: Vec<PackageRow> = records
        .iter()
        .filter(|item| state.is_none_or(|s| s.label() == item.value.state.label()))
        .map(|item| PackageRow::from_record(&item.value))
        .collect();
    rows.sort_by(|a, b| a.atom.cmp(&b.atom));
    Ok(rows)
}

/// Every drone, sorted by name.
pub async fn drones(client: &async_nats::Client) -> Result<Vec<DroneRow>, CliError> {
    let records = read::<DroneRecord>(client, DRONES_BUCKET).await?;
    let now = runtime::now_ms();
    let mut rows: Vec<DroneRow> = records
        .iter()
        .map(|item| DroneRow::from_record(&item.value, heartbeat_age_ms(item, now)))
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

pub(crate) fn packages_table(rows: &[PackageRow]) -> String {
    table(
        &["ATOM", "STATE", "ATTEMPTS", "DRONE"],
        rows.iter()
            .map(|row| {
                vec![
                    row.atom.to_string(),
                    row.state.clone(),
                    row.attempts.to_string(),
                    row.drone
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

pub(crate) fn drones_table(rows: &[DroneRow]) -> String {
    table(
        &["NAME", "CORES", "SLOTS", "STATE", "BUILDING"],
        rows.iter()
            .map(|row| {
                vec![
                    row.name.to_string(),
                    row.cores.to_string(),
                    row.slots.to_string(),
                    row.state.clone(),
                    row.building
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
            })
            .collect(),
    )
}

/// Left-aligned columns two spaces apart, without trailing spaces.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use schemas::AttemptRecord;
    use schemas::fixtures::{self, drone_name as name};
    use schemas::summary::SwarmStatus;
    use serde_json::Value;

    use super::*;

    fn drone(n: &str, cores: u32, state: DroneState, building: &[&str]) -> DroneRecord {
        DroneRecord {
            slots: 2,
            building: fixtures::running(building, 1),
            ..fixtures::drone_record(n, cores, state)
        }
    }

    fn failed_attempt(attempt: u32, by: &str) -> AttemptRecord {
        AttemptRecord {
            attempt,
            drone: name(by),
            outcome: BuildOutcome::Failed {
                exit: ExitInfo::code(1),
                log_tail: "make: *** [all] Error 1".into(),
            },
            duration_ms: 10,
            ended_ms: 20,
        }
    }

    fn package(a: &str, state: PackageState, history: Vec<AttemptRecord>) -> PackageRecord {
        PackageRecord {
            history,
            ..fixtures::package_record(a, state)
        }
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn status_json_has_the_documented_keys() {
        let drones = [
            drone("drone-Izar", 16, DroneState::Building, &["sys-libs/zlib"]),
            drone("drone-Tarn", 10, DroneState::Idle, &[]),
            drone(
                "drone-Tau-Beta",
                8,
                DroneState::Grounded {
                    reason: "3 failures".into(),
                },
                &[],
            ),
        ];
        let packages = [
            PackageState::Queued { attempt: 1 },
            PackageState::Building {
                attempt: 1,
                drone: name("drone-Izar"),
                since_ms: 1,
            },
        ];
        let summary = summarize(drones.iter().map(|d| (d, 0)), packages.iter());
        let json = serde_json::to_value(&summary).expect("serializes");
        assert_eq!(
            keys(&json),
            ["cores", "drones", "packages", "queue", "status"]
        );
        assert_eq!(json["queue"], 2);
        assert_eq!(json["drones"]["active"], 1);
        assert_eq!(json["drones"]["idle"], 1);
        assert_eq!(json["drones"]["grounded"], 1);
        assert_eq!(json["cores"]["active"], 16);
        assert_eq!(json["cores"]["total"], 34);
        assert_eq!(json["status"], "BUILDING");
        for key in ["queued", "building", "succeeded", "failed"] {
            assert!(json["packages"][key].is_u64(), "packages.{key} in {json}");
        }
        assert_eq!(summary.status, SwarmStatus::Building);
    }

    #[test]
    fn package_rows() {
        // (record, state, attempts, drone, has reason)
        let cases = [
            (
                package("a-b/new", PackageState::Queued { attempt: 1 }, vec![]),
                "queued",
                0,
                None,
                false,
            ),
            (
                package(
                    "a-b/requeued",
                    PackageState::Queued { attempt: 2 },
                    vec![failed_attempt(1, "d1")],
                ),
                "queued",
                1,
                None,
                false,
            ),
            (
                package(
                    "a-b/retry",
                    PackageState::RetryWait {
                        attempt: 3,
                        not_before_ms: 9,
                    },
                    vec![failed_attempt(1, "d1"), failed_attempt(2, "d2")],
                ),
                "retry_wait",
                2,
                None,
                false,
            ),
            (
                package(
                    "a-b/building",
                    PackageState::Building {
                        attempt: 2,
                        drone: name("d2"),
                        since_ms: 5,
                    },
                    vec![failed_attempt(1, "d1")],
                ),
                "building",
                2,
                Some("d2"),
                false,
            ),
            (
                package(
                    "a-b/done",
                    PackageState::Succeeded {
                        attempt: 1,
                        drone: name("d3"),
                    },
                    vec![AttemptRecord {
                        attempt: 1,
                        drone: name("d3"),
                        outcome: BuildOutcome::Succeeded,
                        duration_ms: 5,
                        ended_ms: 6,
                    }],
                ),
                "succeeded",
                1,
                Some("d3"),
                false,
            ),
            (
                package(
                    "a-b/broken",
                    PackageState::Failed {
                        attempt: 3,
                        reason: "exit status 1 on 3 attempts".into(),
                    },
                    vec![
                        failed_attempt(1, "d1"),
                        failed_attempt(2, "d2"),
                        failed_attempt(3, "d1"),
                    ],
                ),
                "failed",
                3,
                None,
                true,
            ),
        ];
        for (record, state, attempts, drone, has_reason) in cases {
            let row = PackageRow::from_record(&record);
            assert_eq!(row.state, state, "{row:?}");
            assert_eq!(row.attempts, attempts, "{row:?}");
            assert_eq!(row.drone.as_ref().map(|d| d.as_str()), drone, "{row:?}");
            assert_eq!(row.reason.is_some(), has_reason, "{row:?}");
            let json = serde_json::to_value(&row).expect("serializes");
            let mut expected = vec![
                "atom",
                "attempts",
                "drone",
                "history",
                "learned_secs",
                "state",
            ];
            if has_reason {
                expected.push("reason");
                expected.sort_unstable();
            }
            assert_eq!(keys(&json), expected, "{json}");
            assert_eq!(
                json["history"].as_array().map(Vec::len),
                Some(record.history.len())
            );
            for entry in json["history"].as_array().into_iter().flatten() {
                assert_eq!(
                    keys(entry),
                    [
                        "attempt",
                        "drone",
                        "duration_ms",
                        "exit",
                        "log_tail",
                        "outcome"
                    ]
                );
            }
            let back: PackageRow = serde_json::from_value(json).expect("parses back");
            assert_eq!(back, row);
        }
        let failed = PackageRow::from_record(&package(
            "a-b/broken",
            PackageState::Failed {
                attempt: 1,
                reason: "r".into(),
            },
            vec![failed_attempt(1, "d1")],
        ));
        let json = serde_json::to_value(&failed).expect("serializes");
        assert_eq!(json["history"][0]["exit"]["code"], 1);
        assert_eq!(json["history"][0]["outcome"], "failed");
        assert_eq!(json["drone"], Value::Null);
    }

    #[test]
    fn drone_rows() {
        // (record, heartbeat age, state, reason)
        let cases = [
            (
                drone("d1", 8, DroneState::Building, &["a-b/c", "d-e/f"]),
                0,
                "building",
                None,
            ),
            (drone("d2", 8, DroneState::Idle, &[]), 500, "idle", None),
            (
                drone(
                    "d3",
                    8,
                    DroneState::Grounded {
                        reason: "3 failures".into(),
                    },
                    &[],
                ),
                0,
                "grounded",
                Some("3 failures"),
            ),
            (
                drone("d4", 8, DroneState::Building, &["a-b/c"]),
                60_000,
                "lost",
                Some("no heartbeat for 60000 ms"),
            ),
            (
                drone("d5", 8, DroneState::Offline, &[]),
                60_000,
                "offline",
                None,
            ),
        ];
        for (record, age, state, reason) in cases {
            let row = DroneRow::from_record(&record, age);
            assert_eq!(row.state, state, "{row:?}");
            assert_eq!(row.reason.as_deref(), reason, "{row:?}");
            assert_eq!(row.building.len(), record.building.len());
            let json = serde_json::to_value(&row).expect("serializes");
            let mut expected = vec![
                "arch",
                "building",
                "cores",
                "heartbeat_age_ms",
                "name",
                "slots",
                "state",
                "version",
            ];
            if reason.is_some() {
                expected.push("reason");
                expected.sort_unstable();
            }
            assert_eq!(keys(&json), expected, "{json}");
            assert!(json["building"].is_array());
        }
    }

    #[test]
    fn tables_align_and_leave_empty_cells_empty() {
        let rows = [
            PackageRow::from_record(&package(
                "sys-libs/zlib",
                PackageState::Succeeded {
                    attempt: 1,
                    drone: name("drone-Izar"),
                },
                vec![],
            )),
            PackageRow::from_record(&package(
                "a-b/c",
                PackageState::Queued { attempt: 1 },
                vec![],
            )),
        ];
        assert_eq!(
            packages_table(&rows),
            "ATOM           STATE      ATTEMPTS  DRONE\n\
             sys-libs/zlib  succeeded  1         drone-Izar\n\
             a-b/c          queued     0\n"
        );
        let drones = [DroneRow::from_record(
            &drone("d1", 24, DroneState::Building, &["a-b/c", "d-e/f"]),
            0,
        )];
        assert_eq!(
            drones_table(&drones),
            "NAME  CORES  SLOTS  STATE     BUILDING\n\
             d1    24     2      building  a-b/c d-e/f\n"
        );
        assert_eq!(drones_table(&[]), "NAME  CORES  SLOTS  STATE  BUILDING\n");
    }
}
