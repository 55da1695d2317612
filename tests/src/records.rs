//! The build records the test build script (`tests/fixtures/record-build.sh`) writes, one line
//! at every build's start and end, read back into builds, and what the tests ask of them: which
//! builds of one package overlapped, how many succeeded.

use std::collections::HashMap;
use std::path::Path;

/// One line of the build records.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub phase: String,
    pub atom: String,
    pub drone: String,
    pub attempt: u32,
    pub at_ms: u64,
    pub pid: u32,
    /// argv for `start`, exit code for `end`.
    pub rest: String,
    /// For `start`: the process's start time (clock ticks since boot), which tells it apart
    /// from a later process that reuses the pid.
    pub started: Option<u64>,
}

pub fn read_records(path: &Path) -> Vec<Record> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 7 {
                return None;
            }
            Some(Record {
                phase: f[0].to_owned(),
                atom: f[1].to_owned(),
                drone: f[2].to_owned(),
                attempt: f[3].parse().ok()?,
                at_ms: f[4].parse().ok()?,
                pid: f[5].parse().ok()?,
                rest: f[6].to_owned(),
                started: f.get(7).and_then(|v| v.parse().ok()),
            })
        })
        .collect()
}

/// One build as recorded: start, and end when it ended by itself.
#[derive(Debug, Clone)]
pub struct Build {
    pub atom: String,
    pub drone: String,
    pub attempt: u32,
    pub argv: String,
    /// The build script's process id and start time (see [`Record::started`]).
    pub pid: u32,
    pub started: Option<u64>,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub exit: Option<i32>,
}

pub fn builds(records: &[Record]) -> Vec<Build> {
    let mut open: HashMap<u32, Build> = HashMap::new();
    let mut done = Vec::new();
    for r in records {
        match r.phase.as_str() {
            "start" => {
                // A pid still open here belonged to a build that was killed (no end record)
                // and has been reused: that build stays in the list, unfinished.
                let killed = open.insert(
                    r.pid,
                    Build {
                        atom: r.atom.clone(),
                        drone: r.drone.clone(),
                        attempt: r.attempt,
                        argv: r.rest.clone(),
                        pid: r.pid,
                        started: r.started,
                        start_ms: r.at_ms,
                        end_ms: None,
                        exit: None,
                    },
                );
                done.extend(killed);
            }
            "end" => {
                if let Some(mut b) = open.remove(&r.pid) {
                    b.end_ms = Some(r.at_ms);
                    b.exit = r.rest.parse().ok();
                    done.push(b);
                }
            }
            _ => {}
        }
    }
    done.extend(open.into_values());
    done
}

/// Pairs of builds of one package whose run times overlap (an unfinished build counts as
/// running until `horizon_ms`).
pub fn overlaps(builds: &[Build], horizon_ms: u64) -> Vec<(Build, Build)> {
    let mut by_atom: HashMap<&str, Vec<&Build>> = HashMap::new();
    for b in builds {
        by_atom.entry(&b.atom).or_default().push(b);
    }
    let mut found = Vec::new();
    for list in by_atom.values() {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let a_end = a.end_ms.unwrap_or(horizon_ms);
                let b_end = b.end_ms.unwrap_or(horizon_ms);
                if a.start_ms < b_end && b.start_ms < a_end {
                    found.push(((*a).clone(), (*b).clone()));
                }
            }
        }
    }
    found
}

/// Count of successful builds per atom.
pub fn successes(builds: &[Build]) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for b in builds.iter().filter(|b| b.exit == Some(0)) {
        *count.entry(b.atom.clone()).or_default() += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(phase: &str, atom: &str, at_ms: u64, pid: u32, rest: &str) -> Record {
        Record {
            phase: phase.into(),
            atom: atom.into(),
            drone: "d".into(),
            attempt: 1,
            at_ms,
            pid,
            rest: rest.into(),
            started: Some(at_ms),
        }
    }

    #[test]
    fn a_killed_build_stays_when_its_pid_is_reused() {
        let records = [
            record("start", "a/killed", 10, 7, "a/killed"),
            record("start", "a/later", 50, 7, "a/later"),
            record("end", "a/later", 60, 7, "0"),
        ];
        let mut builds = builds(&records);
        builds.sort_by_key(|b| b.start_ms);
        assert_eq!(builds.len(), 2, "{builds:?}");
        assert_eq!(
            (builds[0].atom.as_str(), builds[0].end_ms),
            ("a/killed", None)
        );
        assert_eq!(
            (builds[1].atom.as_str(), builds[1].end_ms),
            ("a/later", Some(60))
        );
    }
}
