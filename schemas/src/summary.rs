//! The operator's view of the swarm — the block `swarmctl status` and the dashboard show —
//! computed from drone records and package states by one pure function, so every reader counts
//! the same way.

use serde::{Deserialize, Serialize};

use crate::messages::{DroneRecord, DroneState, PackageState};

/// A drone whose last heartbeat is older than this many heartbeat intervals counts as lost.
pub const LOST_AFTER_INTERVALS: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SwarmStatus {
    /// Packages are queued or building and at least one drone can take them.
    Building,
    /// Nothing is queued or building.
    Idle,
    /// Packages wait but no drone can take them (all grounded, excluded, draining, lost or
    /// offline).
    Paused,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroneCounts {
    pub active: u32,
    pub idle: u32,
    pub grounded: u32,
    pub draining: u32,
    pub lost: u32,
    pub offline: u32,
    /// Healthy drones that take no work of their arch's run (fingerprint or tree).
    #[serde(default)]
    pub excluded: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreCounts {
    /// Cores of drones that are building.
    pub active: u32,
    /// Cores of drones that are online (building, idle, grounded, excluded or draining).
    pub total: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageCounts {
    /// Waiting for a drone, including those waiting out a retry backoff.
    pub queued: u64,
    pub building: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Of `queued`, those waiting out a retry backoff.
    pub retrying: u64,
    /// Waiting for build dependencies of their run to succeed.
    #[serde(default)]
    pub waiting: u64,
    /// Not built: a build dependency failed for good.
    #[serde(default)]
    pub blocked: u64,
    /// Withdrawn by the operator (`swarmctl cancel`).
    #[serde(default)]
    pub cancelled: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Unfinished packages (queued, building or waiting for their dependencies).
    pub queue: u64,
    pub drones: DroneCounts,
    pub cores: CoreCounts,
    pub status: SwarmStatus,
    pub packages: PackageCounts,
    /// The operator paused the swarm (`swarmctl pause`): no new build starts until `resume`.
    #[serde(default)]
    pub operator_paused: bool,
    /// The coordinator that leads (`coordinator.name`); `None` while none does (one died and no
    /// standby has taken the lead yet, or none runs).
    #[serde(default)]
    pub leader: Option<String>,
}

/// The state a reader should show for a drone: its own report, unless its heartbeat is stale,
/// in which case it is lost whatever it last said.
pub fn effective_state(record: &DroneRecord, heartbeat_age_ms: u64) -> DroneState {
    let online = !matches!(record.state, DroneState::Offline | DroneState::Lost { .. });
    let limit = record.heartbeat_interval_ms.max(1) * LOST_AFTER_INTERVALS;
    if online && heartbeat_age_ms > limit {
        DroneState::Lost {
            reason: format!("no heartbeat for {} ms", heartbeat_age_ms),
        }
    } else {
        record.state.clone()
    }
}

/// How long after a drone's last heartbeat (as its reader heard it) every build it was running is
/// surely dead, so that its packages may be given to other drones without two builds of one
/// package ever running at once. A build's supervisor kills it `supervise_deadline_ms` after its
/// last word from the drone, and the drone gives a word only for a heartbeat acknowledged within
/// half a period of being sent, so at most half a period after the reader could hear it; the
/// other half period covers the reader's delay in hearing it. `None` for a drone that does not
/// say (an older release, whose builds live until their lease expires).
pub fn takeover_after_ms(record: &DroneRecord) -> Option<u64> {
    let deadline = record.supervise_deadline_ms?;
    let lost = record.heartbeat_interval_ms.max(1) * LOST_AFTER_INTERVALS;
    Some((deadline + record.heartbeat_interval_ms).max(lost))
}

/// Folds drones (with the age of their last heartbeat) and package states into the summary.
pub fn summarize<'a>(
    drones: impl IntoIterator<Item = (&'a DroneRecord, u64)>,
    packages: impl IntoIterator<Item = &'a PackageState>,
) -> Summary {
    let mut counts = DroneCounts::default();
    let mut cores = CoreCounts::default();
    let mut can_work = false;
    for (record, age) in drones {
        let state = effective_state(record, age);
        match state {
            DroneState::Building => {
                counts.active += 1;
                cores.active += record.cores;
                cores.total += record.cores;
                can_work = true;
            }
            DroneState::Idle => {
                counts.idle += 1;
                cores.total += record.cores;
                can_work = true;
            }
            DroneState::Grounded { .. } => {
                counts.grounded += 1;
                cores.total += record.cores;
            }
            DroneState::Draining => {
                counts.draining += 1;
                cores.total += record.cores;
            }
            DroneState::Excluded { .. } => {
                counts.excluded += 1;
                cores.total += record.cores;
            }
            DroneState::Lost { .. } => counts.lost += 1,
            DroneState::Offline => counts.offline += 1,
        }
    }
    let mut pkgs = PackageCounts::default();
    for state in packages {
        match state {
            PackageState::Queued { .. } => pkgs.queued += 1,
            PackageState::RetryWait { .. } => {
                pkgs.queued += 1;
                pkgs.retrying += 1;
            }
            PackageState::Building { .. } => pkgs.building += 1,
            PackageState::Succeeded { .. } => pkgs.succeeded += 1,
            PackageState::Failed { .. } => pkgs.failed += 1,
            PackageState::Waiting => pkgs.waiting += 1,
            PackageState::Blocked { .. } => pkgs.blocked += 1,
            PackageState::Cancelled { .. } => pkgs.cancelled += 1,
        }
    }
    let queue = pkgs.queued + pkgs.building + pkgs.waiting;
    let status = if queue == 0 {
        SwarmStatus::Idle
    } else if can_work || pkgs.building > 0 {
        SwarmStatus::Building
    } else {
        SwarmStatus::Paused
    };
    Summary {
        queue,
        drones: counts,
        cores,
        status,
        packages: pkgs,
        operator_paused: false,
        leader: None,
    }
}

impl Summary {
    /// The summary of a swarm the operator paused (or not): a paused swarm with work left is
    /// `Paused`, whatever its drones could do.
    pub fn paused_by_operator(mut self, paused: bool) -> Summary {
        self.operator_paused = paused;
        if paused && self.status == SwarmStatus::Building {
            self.status = SwarmStatus::Paused;
        }
        self
    }

    /// The leading coordinator, as its lease in the leader bucket names it.
    pub fn led_by(mut self, leader: Option<String>) -> Summary {
        self.leader = leader;
        self
    }

    /// The block the operator reads, as `swarmctl status` prints it.
    pub fn block(&self) -> String {
        let status = match self.status {
            SwarmStatus::Building => "BUILDING",
            SwarmStatus::Idle if self.operator_paused => {
                "IDLE (PAUSED: `swarmctl resume` to go on)"
            }
            SwarmStatus::Idle => "IDLE",
            SwarmStatus::Paused if self.operator_paused => {
                "PAUSED by the operator: running builds finish, nothing new starts (`swarmctl resume`)"
            }
            SwarmStatus::Paused => "PAUSED",
        };
        format!(
            "Queue:     {} packages\nDrones:    {} active, {} idle, {} grounded\nCores:     {} active\nStatus:    {}\n",
            self.queue,
            self.drones.active,
            self.drones.idle,
            self.drones.grounded,
            self.cores.active,
            status
        ) + &match &self.leader {
            Some(leader) => format!("Leader:    {leader}\n"),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn record(name: &str, cores: u32, state: DroneState) -> DroneRecord {
        crate::fixtures::drone_record(name, cores, state)
    }

    #[test]
    fn the_seed_swarm_reads_as_the_brief_says() {
        let drones = [
            record("drone-Izar", 16, DroneState::Building),
            record("drone-Tarn", 10, DroneState::Building),
            record("drone-Meridian", 24, DroneState::Building),
            record("drone-Tau-Beta", 8, DroneState::Building),
        ];
        let packages = vec![PackageState::Queued { attempt: 1 }; 152];
        let summary = summarize(drones.iter().map(|d| (d, 0)), packages.iter());
        assert_eq!(
            summary.block(),
            "Queue:     152 packages\nDrones:    4 active, 0 idle, 0 grounded\nCores:     58 active\nStatus:    BUILDING\n"
        );
    }

    #[test]
    fn stale_heartbeat_is_lost_and_grounded_swarm_is_paused() {
        let drones = [
            record("a", 8, DroneState::Building),
            record("b", 8, DroneState::Grounded { reason: "x".into() }),
        ];
        let packages = [PackageState::Queued { attempt: 1 }];
        let summary = summarize([(&drones[0], 10_000), (&drones[1], 0)], packages.iter());
        assert_eq!(summary.drones.lost, 1);
        assert_eq!(summary.drones.grounded, 1);
        assert_eq!(summary.cores.total, 8);
        assert_eq!(summary.status, SwarmStatus::Paused);
        let none: [PackageState; 0] = [];
        assert_eq!(
            summarize([(&drones[1], 0)], none.iter()).status,
            SwarmStatus::Idle
        );
    }

    #[test]
    fn an_operator_pause_reads_paused_while_work_is_left() {
        let drones = [record("a", 8, DroneState::Building)];
        let packages = [
            PackageState::Queued { attempt: 1 },
            PackageState::Cancelled {
                attempt: 1,
                reason: "x".into(),
            },
        ];
        let summary =
            summarize(drones.iter().map(|d| (d, 0)), packages.iter()).paused_by_operator(true);
        assert_eq!(summary.status, SwarmStatus::Paused);
        assert_eq!(summary.packages.cancelled, 1);
        assert!(
            summary.block().contains("PAUSED by the operator"),
            "{}",
            summary.block()
        );
        let none: [PackageState; 0] = [];
        let idle = summarize(drones.iter().map(|d| (d, 0)), none.iter()).paused_by_operator(true);
        assert_eq!(idle.status, SwarmStatus::Idle);
        assert!(idle.block().contains("IDLE (PAUSED"), "{}", idle.block());
        let unpaused =
            summarize(drones.iter().map(|d| (d, 0)), packages.iter()).paused_by_operator(false);
        assert_eq!(unpaused.status, SwarmStatus::Building);
    }
}
