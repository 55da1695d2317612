//! The read commands (`status`, `packages`, `drones`): the drones and packages buckets read whole,
//! turned into the summary and into rows whose JSON shape is part of swarmctl's interface.

use async_nats::jetstream;
use runtime::kv::KvItem;
use schemas::names::{DRONES_BUCKET, PACKAGES_BUCKET};
use schemas::summary::{Summary, effective_state, summarize};
use schemas::{
    Arch, Atom, BuildOutcome, DroneName, DroneRecord, DroneState, ExitInfo, FailureClass,
    PackageRecord, PackageState, RunName, Wire,
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
    /// The run it was last submitted in.
    #[serde(default)]
    pub run: Option<RunName>,
    /// Its build dependencies in the run, as atoms.
    #[serde(default)]
    pub deps: Vec<Atom>,
    /// The operator's priority (`submit --priority`).
    #[serde(default)]
    pub priority: schemas::Priority,
    /// Why it is not building, while it is queued, waiting to retry or waiting for its
    /// dependencies; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
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
    /// Whose fault a failure was: `package` (it spent an attempt), `fetch` or `infrastructure`
    /// (it did not); `null` for a success.
    #[serde(default)]
    pub class: Option<FailureClass>,
    /// The log line that decided the class, when one did.
    #[serde(default)]
    pub signature: Option<String>,
    pub duration_ms: u64,
}

impl HistoryRow {
    /// What a failure says in one line: its class and the deciding log line (or the exit).
    pub fn failure_summary(&self) -> Option<String> {
        let class = self.class?;
        let what = match (&self.signature, &self.exit) {
            (Some(line), _) => line.clone(),
            (None, Some(exit)) => exit.to_string(),
            (None, None) => String::new(),
        };
        Some(format!("{class}: {what}"))
    }
}

impl PackageRow {
    pub fn from_record(record: &PackageRecord) -> PackageRow {
        let (attempts, drone, reason) = match &record.state {
            PackageState::Building { attempt, drone, .. }
            | PackageState::Succeeded { attempt, drone } => (*attempt, Some(drone.clone()), None),
            PackageState::Failed { attempt, reason }
            | PackageState::Cancelled { attempt, reason } => (*attempt, None, Some(reason.clone())),
            PackageState::Blocked { dependency } => (
                0,
                None,
                Some(format!(
                    "blocked by its build dependency {dependency}, which did not build; building that again releases it"
                )),
            ),
            PackageState::Queued { .. }
            | PackageState::RetryWait { .. }
            | PackageState::Waiting => (
                u32::try_from(record.history.iter().filter(|h| spent_attempt(h)).count())
                    .unwrap_or(u32::MAX),
                None,
                None,
            ),
        };
        PackageRow {
            why: None,
            learned_secs: record.learned_secs,
            run: record.run.clone(),
            deps: record
                .deps
                .iter()
                .filter_map(|key| schemas::PackageKey::decode(key.as_str()))
                .collect(),
            atom: record.atom.clone(),
            priority: record.priority,
            state: record.state.label().to_owned(),
            attempts,
            drone,
            history: record
                .history
                .iter()
                .map(|h| {
                    let (outcome, exit, log_tail, class, signature) = match &h.outcome {
                        BuildOutcome::Succeeded => ("succeeded", None, None, None, None),
                        BuildOutcome::Failed {
                            exit,
                            log_tail,
                            class,
                            signature,
                        } => (
                            "failed",
                            Some(exit.clone()),
                            Some(log_tail.clone()),
                            Some(*class),
                            signature.clone(),
                        ),
                    };
                    HistoryRow {
                        attempt: h.attempt,
                        drone: h.drone.clone(),
                        outcome: outcome.to_owned(),
                        exit,
                        log_tail,
                        class,
                        signature,
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
    /// Why the drone is grounded, lost or excluded from its arch's run; only in those states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What its packages depend on (`id`, `chost`, `profile`, `settings`, `tree_timestamp`),
    /// when it says.
    #[serde(default)]
    pub fingerprint: Option<schemas::Fingerprint>,
    pub arch: Arch,
    pub version: String,
    /// Age of the last heartbeat by the server's clock, in milliseconds.
    pub heartbeat_age_ms: u64,
}

impl DroneRow {
    pub fn from_record(record: &DroneRecord, heartbeat_age_ms: u64) -> DroneRow {
        let state = effective_state(record, heartbeat_age_ms);
        let reason = match &state {
            DroneState::Grounded { reason }
            | DroneState::Lost { reason }
            | DroneState::Excluded { reason } => Some(reason.clone()),
            _ => None,
        };
        DroneRow {
            name: record.name.clone(),
            cores: record.cores,
            slots: record.slots,
            state: state.label().to_owned(),
            building: record.building.iter().map(|b| b.atom.clone()).collect(),
            reason,
            fingerprint: record.fingerprint.clone(),
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

pub(crate) async fn read<T: Wire>(
    client: &async_nats::Client,
    bucket: &str,
) -> Result<Vec<KvItem<T>>, CliError> {
    let store = open(client, bucket).await?;
    Ok(runtime::kv::read_bucket(&store).await?)
}

/// Heartbeat age by the server's timestamp of the drone's last write, so a drone with a wrong
/// clock is still judged correctly.
pub(crate) fn heartbeat_age_ms(item: &KvItem<DroneRecord>, now_ms: u64) -> u64 {
    now_ms.saturating_sub(item.created_ms)
}

/// The summary `status` prints.
pub async fn status(client: &async_nats::Client) -> Result<Summary, CliError> {
    let drones = read::<DroneRecord>(client, DRONES_BUCKET).await?;
    let packages = read::<PackageRecord>(client, PACKAGES_BUCKET).await?;
    let now = runtime::now_ms();
    let mut arches: std::collections::BTreeSet<schemas::Arch> = packages
        .iter()
        .map(|item| item.value.arch.clone())
        .collect();
    arches.extend(drones.iter().map(|item| item.value.arch.clone()));
    arches.insert(schemas::Arch::default());
    let paused = operator_paused(client, &arches).await;
    let leader = leader(client).await;
    Ok(summarize(
        drones
            .iter()
            .map(|item| (&item.value, heartbeat_age_ms(item, now))),
        packages.iter().map(|item| &item.value.state),
    )
    .paused_by_operator(paused)
    .led_by(leader))
}

/// The leading coordinator's name, if one leads (its lease in the leader bucket is alive).
pub(crate) async fn leader(client: &async_nats::Client) -> Option<String> {
    let js = async_nats::jetstream::new(client.clone());
    let bucket = js.get_key_value(schemas::names::LEADER_BUCKET).await.ok()?;
    let entry = bucket.entry(schemas::names::LEADER_KEY).await.ok()??;
    if entry.operation != async_nats::jetstream::kv::Operation::Put {
        return None;
    }
    schemas::decode::<schemas::LeaderRecord>(&entry.value)
        .ok()
        .map(|record| record.coordinator)
}

/// Whether the operator paused the swarm (`swarmctl pause`): the build consumers of one of
/// `arches` are paused. A consumer that cannot be read counts as not paused.
pub(crate) async fn operator_paused(
    client: &async_nats::Client,
    arches: &std::collections::BTreeSet<schemas::Arch>,
) -> bool {
    let js = async_nats::jetstream::new(client.clone());
    let Ok(stream) = js.get_stream(schemas::names::BUILDS_STREAM).await else {
        return false;
    };
    for arch in arches {
        if let Ok(info) = stream
            .consumer_info(schemas::names::builders_consumer(arch))
            .await
            && info.paused
        {
            return true;
        }
    }
    false
}

/// Every package (or those in one state), sorted by atom, each one not building saying why.
pub async fn packages(
    client: &async_nats::Client,
    state: Option<StateFilter>,
) -> Result<Vec<PackageRow>, CliError> {
    let records = read::<PackageRecord>(client, PACKAGES_BUCKET).await?;
    let drones = read::<DroneRecord>(client, DRONES_BUCKET).await?;
    let now = runtime::now_ms();
    let judged: Vec<crate::why::JudgedDrone<'_>> = drones
        .iter()
        .map(|item| {
            (
                &item.value,
                effective_state(&item.value, heartbeat_age_ms(item, now)),
            )
        })
        .collect();
    let by_key: std::collections::HashMap<schemas::PackageKey, &PackageRecord> = records
        .iter()
        .map(|item| (item.value.atom.key(), &item.value))
        .collect();
    let arches = records.iter().map(|item| item.value.arch.clone()).collect();
    let swarm = crate::why::Swarm {
        drones: &judged,
        paused: operator_paused(client, &arches).await,
        now_ms: now,
    };
    let mut rows: Vec<PackageRow> = records
        .iter()
        .filter(|item| state.is_none_or(|s| s.label() == item.value.state.label()))
        .map(|item| PackageRow {
            why: crate::why::why(&item.value, |k| by_key.get(k).copied(), &swarm),
            ..PackageRow::from_record(&item.value)
        })
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
    // A WHY column when some package is not building (queued, retrying or waiting).
    let why = rows.iter().any(|row| row.why.is_some());
    let mut headers = vec!["ATOM", "STATE", "ATTEMPTS", "DRONE", "LAST FAILURE"];
    if why {
        headers.push("WHY");
    }
    table(
        &headers,
        rows.iter()
            .map(|row| {
                let mut cells = vec![
                    row.atom.to_string(),
                    row.state.clone(),
                    row.attempts.to_string(),
                    row.drone
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    match (row.state.as_str(), &row.reason) {
                        ("blocked", Some(reason)) => schemas::shorten(reason, 100),
                        _ => row
                            .history
                            .iter()
                            .rev()
                            .find_map(HistoryRow::failure_summary)
                            .map(|text| schemas::shorten(&text, 100))
                            .unwrap_or_default(),
                    },
                ];
                if why {
                    cells.push(row.why.clone().unwrap_or_default());
                }
                cells
            })
            .collect(),
    )
}

/// Whether an ended build spent one of its package's attempts: a success or a package's own
/// failure did; a fetch or infrastructure failure was given back without spending one.
fn spent_attempt(record: &schemas::AttemptRecord) -> bool {
    match &record.outcome {
        BuildOutcome::Succeeded => true,
        BuildOutcome::Failed { class, .. } => *class == FailureClass::Package,
    }
}

/// The drones' table, then why each drone that is grounded, lost or excluded is so.
pub(crate) fn drones_table(rows: &[DroneRow]) -> String {
    let mut out = table(
        &["NAME", "CORES", "SLOTS", "STATE", "FINGERPRINT", "BUILDING"],
        rows.iter()
            .map(|row| {
                vec![
                    row.name.to_string(),
                    row.cores.to_string(),
                    row.slots.to_string(),
                    row.state.clone(),
                    row.fingerprint
                        .as_ref()
                        .map(|f| f.id.clone())
                        .unwrap_or_default(),
                    row.building
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
            })
            .collect(),
    );
    let reasons: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let reason = row.reason.as_ref()?;
            Some(format!("{} ({}): {}\n", row.name, row.state, reason))
        })
        .collect();
    if !reasons.is_empty() {
        out.push('\n');
        out.extend(reasons);
    }
    out
}

/// Left-aligned columns two spaces apart, without trailing spaces.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
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
#[path = "view_tests.rs"]
mod tests;
