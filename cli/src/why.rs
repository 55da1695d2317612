//! Why a package that is not finished is not building, as `swarmctl packages` says it: waiting
//! for build dependencies, waiting out a retry's backoff, or queued with no drone able to take
//! it now (the operator paused the swarm, none online for its arch or its run's fingerprint,
//! every one grounded, draining or excluded, every slot busy). Pure over the records and the
//! drones as readers judge them.

use schemas::paths::waits_for;
use schemas::{DroneRecord, DroneState, PackageKey, PackageRecord, PackageState};

/// A drone and the state readers judge it in (its heartbeat's age applied).
pub type JudgedDrone<'a> = (&'a DroneRecord, DroneState);

/// What a package's reason reads of the swarm besides the package records.
pub struct Swarm<'a> {
    pub drones: &'a [JudgedDrone<'a>],
    /// The operator paused the swarm (`swarmctl pause`).
    pub paused: bool,
    pub now_ms: u64,
}

/// Why `record` is not building now; `None` for a package building or finished.
pub fn why<'a>(
    record: &'a PackageRecord,
    get: impl Fn(&PackageKey) -> Option<&'a PackageRecord>,
    swarm: &Swarm<'_>,
) -> Option<String> {
    let (drones, now_ms) = (swarm.drones, swarm.now_ms);
    match &record.state {
        PackageState::Waiting => {
            let deps = waits_for(record, get);
            Some(if deps.is_empty() {
                "its build dependencies are built: released in a moment".to_owned()
            } else {
                let names: Vec<&str> = deps.iter().map(|a| a.as_str()).collect();
                format!("waits for its build dependencies: {}", names.join(", "))
            })
        }
        PackageState::RetryWait {
            attempt,
            not_before_ms,
        } if *not_before_ms > now_ms => {
            let left = (not_before_ms - now_ms).div_ceil(1000);
            Some(if left <= 3_600 {
                format!("waiting out the backoff after attempt {attempt}, {left} s more")
            } else {
                format!(
                    "waiting out the backoff after attempt {attempt}, until {} UTC",
                    runtime::dates::format_minute(not_before_ms / 1000)
                )
            })
        }
        PackageState::Queued { .. } | PackageState::RetryWait { .. } if swarm.paused => {
            Some("the swarm is paused: no new build starts until `swarmctl resume`".to_owned())
        }
        PackageState::Queued { .. } | PackageState::RetryWait { .. } => {
            Some(queued(record, drones))
        }
        _ => None,
    }
}

/// Why a queued package has no drone yet.
fn queued(record: &PackageRecord, drones: &[JudgedDrone<'_>]) -> String {
    let arch = &record.arch;
    let of_arch: Vec<&JudgedDrone<'_>> = drones.iter().filter(|(d, _)| d.arch == *arch).collect();
    let online: Vec<&DroneRecord> = of_arch
        .iter()
        .filter(|(_, state)| matches!(state, DroneState::Idle | DroneState::Building))
        .map(|(d, _)| *d)
        .collect();
    if of_arch.is_empty() {
        return format!("no drone of {arch} has ever reported");
    }
    if online.is_empty() {
        let away: Vec<String> = of_arch
            .iter()
            .map(|(d, state)| format!("{} {}", d.name, state.label()))
            .collect();
        return format!("no drone of {arch} takes work now: {}", away.join(", "));
    }
    if let Some(wanted) = &record.fingerprint {
        let fits = online
            .iter()
            .any(|d| d.fingerprint.as_ref().is_some_and(|f| f.id == *wanted));
        if !fits {
            return format!("no drone online has the run's fingerprint {wanted}");
        }
    }
    let slots: u32 = online.iter().map(|d| d.slots).sum();
    let busy: usize = online.iter().map(|d| d.building.len()).sum();
    if busy as u32 >= slots {
        return format!(
            "every slot is building ({busy} builds on {} drones online)",
            online.len()
        );
    }
    "in line: the next drone to ask for work takes it".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures;

    fn drone(name: &str, state: DroneState, slots: u32, building: usize) -> DroneRecord {
        let running = schemas::RunningBuild {
            atom: fixtures::atom("a/running"),
            attempt: 1,
            started_ms: 0,
        };
        DroneRecord {
            slots,
            building: vec![running; building],
            ..fixtures::drone_record(name, 8, state)
        }
    }

    fn swarm<'a>(drones: &'a [JudgedDrone<'a>], paused: bool) -> Swarm<'a> {
        Swarm {
            drones,
            paused,
            now_ms: 1_000,
        }
    }

    #[test]
    fn each_unbuilt_package_says_what_it_waits_for() {
        let dep = fixtures::package_record("a/dep", PackageState::Queued { attempt: 1 });
        let waiting = PackageRecord {
            deps: vec![dep.atom.key()],
            ..fixtures::package_record("a/top", PackageState::Waiting)
        };
        let get = |k: &PackageKey| (*k == dep.atom.key()).then_some(&dep);
        let queued = fixtures::package_record("a/q", PackageState::Queued { attempt: 1 });
        let backoff = fixtures::package_record(
            "a/r",
            PackageState::RetryWait {
                attempt: 2,
                not_before_ms: 10_500,
            },
        );
        let idle = drone("d1", DroneState::Idle, 2, 0);
        let full = drone("d1", DroneState::Building, 1, 1);
        let grounded = drone(
            "d2",
            DroneState::Grounded {
                reason: "disk".into(),
            },
            2,
            0,
        );
        let judged = |d: &DroneRecord| (d.clone(), d.state.clone());
        let (idle, full, grounded) = (judged(&idle), judged(&full), judged(&grounded));
        let view = |d: &[(DroneRecord, DroneState)]| -> Vec<String> {
            let drones: Vec<JudgedDrone<'_>> = d.iter().map(|(r, s)| (r, s.clone())).collect();
            [&waiting, &backoff, &queued]
                .iter()
                .map(|r| why(r, get, &swarm(&drones, false)).unwrap_or_default())
                .collect()
        };
        let with_idle = view(std::slice::from_ref(&idle));
        assert_eq!(with_idle[0], "waits for its build dependencies: a/dep");
        assert_eq!(
            with_idle[1],
            "waiting out the backoff after attempt 2, 10 s more"
        );
        assert_eq!(
            with_idle[2],
            "in line: the next drone to ask for work takes it"
        );
        assert!(
            view(std::slice::from_ref(&full))[2]
                .starts_with("every slot is building (1 builds on 1 drones online)")
        );
        let away = &view(std::slice::from_ref(&grounded))[2];
        assert_eq!(away, "no drone of amd64 takes work now: d2 grounded");
        assert_eq!(view(&[])[2], "no drone of amd64 has ever reported");
        let pinned = PackageRecord {
            fingerprint: Some("abc123".into()),
            ..queued.clone()
        };
        let drones: Vec<JudgedDrone<'_>> = vec![(&idle.0, idle.1.clone())];
        assert_eq!(
            why(&pinned, get, &swarm(&drones, false)).as_deref(),
            Some("no drone online has the run's fingerprint abc123")
        );
        // Building and finished packages have nothing to explain.
        let building = fixtures::package_record(
            "a/b",
            PackageState::Building {
                attempt: 1,
                drone: fixtures::drone_name("d1"),
                since_ms: 0,
            },
        );
        assert_eq!(why(&building, get, &swarm(&drones, false)), None);
        // Paused by the operator: that is why, whatever the drones could do.
        assert_eq!(
            why(&queued, get, &swarm(&drones, true)).as_deref(),
            Some("the swarm is paused: no new build starts until `swarmctl resume`")
        );
        assert_eq!(
            why(&waiting, get, &swarm(&drones, true)).as_deref(),
            Some("waits for its build dependencies: a/dep")
        );
    }
}
