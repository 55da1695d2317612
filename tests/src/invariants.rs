//! The reliability invariants, checked after every fault test from three independent records:
//!
//! - the **build records** the recording build script writes (start and end of every build),
//!   completed by an [`Observer`] that watches each build's process and notes when it died, so a
//!   build killed with its drone (no end record) still has an end;
//! - the **package states** in the packages bucket;
//! - the **results the drones reported**: every `finished` event in the event stream.
//!
//! What must hold: every submitted package exists and is final (nothing lost); no two builds of
//! one package ran at the same time (nothing built twice at once); a succeeded package has exactly
//! one reported success, by the drone and attempt its state names, backed by a build that exited
//! 0, and a failed package none (no stale or duplicate success).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use schemas::{BuildOutcome, Event, EventKind, PackageRecord, PackageState, names};

use crate::{Build, Swarm, builds, overlaps, read_records};

/// How often the observer looks at the build processes: the resolution of a killed build's end.
const OBSERVE_EVERY: Duration = Duration::from_millis(20);

/// Watches the processes of the builds in a record file and notes when each one that did not
/// write an end record died.
pub struct Observer {
    /// (pid, process start time) -> when it was seen dead. The start time matters: pids are
    /// reused within a long run (the kernel's limit here is 32,768).
    deaths: Arc<Mutex<HashMap<(u32, u64), u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    pub fn start(record_file: PathBuf) -> Observer {
        let deaths = Arc::new(Mutex::new(HashMap::new()));
        let found = deaths.clone();
        let task = tokio::spawn(async move {
            let mut offset = 0u64;
            // pid -> process start time, for builds that started and have not ended.
            let mut alive: HashMap<u32, u64> = HashMap::new();
            loop {
                offset = read_new_lines(&record_file, offset, &mut alive);
                let now = runtime::now_ms();
                let dead: Vec<(u32, u64)> = alive
                    .iter()
                    .filter(|(pid, started)| process_start(**pid) != Some(**started))
                    .map(|(pid, started)| (*pid, *started))
                    .collect();
                if !dead.is_empty() {
                    let mut deaths = found.lock().unwrap_or_else(|e| e.into_inner());
                    for (pid, started) in dead {
                        alive.remove(&pid);
                        deaths.insert((pid, started), now);
                    }
                }
                tokio::time::sleep(OBSERVE_EVERY).await;
            }
        });
        Observer { deaths, task }
    }

    /// When each build process that died without an end record was seen dead, by pid and
    /// process start time.
    pub fn deaths(&self) -> HashMap<(u32, u64), u64> {
        self.deaths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the record lines appended since `offset`: a start adds the build's process to `alive`,
/// an end removes it. Returns the new offset (only whole lines are consumed).
fn read_new_lines(path: &Path, offset: u64, alive: &mut HashMap<u32, u64>) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return offset;
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut reader = std::io::BufReader::new(file);
    let mut consumed = offset;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) if !line.ends_with('\n') => {
                let _ = n;
                break;
            }
            Ok(n) => consumed += n as u64,
        }
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        let pid = fields.get(5).and_then(|p| p.parse::<u32>().ok());
        match (fields.first(), pid) {
            (Some(&"start"), Some(pid)) => {
                if let Some(started) = fields.get(7).and_then(|s| s.parse().ok()) {
                    alive.insert(pid, started);
                }
            }
            (Some(&"end"), Some(pid)) => {
                alive.remove(&pid);
            }
            _ => {}
        }
    }
    consumed
}

/// The start time (clock ticks since boot) of process `pid`, if it exists and has not exited
/// (a zombie, killed and not yet reaped, has exited).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces; fields after it are
    // plain: the state is field 3 and the start time field 22.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// One result a drone reported: a `finished` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub atom: String,
    pub drone: String,
    pub attempt: u32,
    pub succeeded: bool,
}

/// Every `finished` event in the event stream, read through an ephemeral consumer up to the
/// stream's last sequence at the start (a cluster's fetch can come back empty for a moment
/// after a leader change: it is asked again, and a read that stays short fails the test as such).
pub async fn reported_results(swarm: &Swarm) -> Vec<Reported> {
    let client = swarm.client().await;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(names::EVENTS_STREAM)
        .await
        .expect("event stream");
    let last = stream
        .info()
        .await
        .expect("event stream info")
        .state
        .last_sequence;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .expect("reader");
    let mut read_to = 0;
    let mut reported = Vec::new();
    while read_to < last {
        let mut batch = consumer
            .fetch()
            .max_messages(1_000)
            .messages()
            .await
            .expect("fetch");
        let mut got = 0;
        while let Some(Ok(message)) = batch.next().await {
            got += 1;
            read_to = message.info().map(|i| i.stream_sequence).unwrap_or(read_to);
            let Ok(event) = schemas::decode::<Event>(&message.payload) else {
                continue;
            };
            if let EventKind::Finished {
                atom,
                attempt,
                outcome,
                ..
            } = event.kind
            {
                reported.push(Reported {
                    atom: atom.to_string(),
                    drone: event.drone.to_string(),
                    attempt,
                    succeeded: matches!(outcome, BuildOutcome::Succeeded),
                });
            }
        }
        if got == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the event stream was read to sequence {read_to} of {last} only"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    reported
}

/// The verdict of one run: what was checked and every violation found.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// What was done to the swarm, for the report.
    pub fault: String,
    pub packages: usize,
    pub builds: usize,
    /// Submitted packages missing from the bucket or not final.
    pub lost: Vec<String>,
    /// Packages with two builds at once, or more than one reported success.
    pub built_twice: Vec<String>,
    /// Packages whose final state does not match what the drones reported and built.
    pub wrong_final: Vec<String>,
    pub succeeded: usize,
    pub failed: usize,
}

impl Verdict {
    /// Panics with every violation when there is one; otherwise prints and records the row.
    pub fn assert_ok(&self) {
        self.record();
        let [packages, succeeded, failed, builds, lost, twice, wrong] = self.figures();
        println!(
            "{}: {packages} packages ({succeeded} succeeded, {failed} failed), {builds} builds; lost {lost}, built twice {twice}, wrong final state {wrong}",
            self.fault
        );
        assert!(
            self.lost.is_empty() && self.built_twice.is_empty() && self.wrong_final.is_empty(),
            "{}: invariants violated: lost {:?}; built twice {:?}; wrong final state {:?}",
            self.fault,
            self.lost,
            self.built_twice,
            self.wrong_final
        );
    }

    /// The run's figures, in the order of the report's columns: packages, succeeded, failed,
    /// builds, lost, built twice, wrong final state.
    fn figures(&self) -> [usize; 7] {
        [
            self.packages,
            self.succeeded,
            self.failed,
            self.builds,
            self.lost.len(),
            self.built_twice.len(),
            self.wrong_final.len(),
        ]
    }

    /// Appends this run to `artifacts/reliability.tsv`, the figures `docs/reliability.md` shows.
    fn record(&self) {
        let dir = testkit::workspace_root().join("artifacts");
        let _ = std::fs::create_dir_all(&dir);
        let figures = self.figures().map(|n| n.to_string()).join("\t");
        let line = format!("{}\t{}\t{figures}\n", runtime::now_ms(), self.fault);
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("reliability.tsv"))
        {
            let _ = std::io::Write::write_all(&mut file, line.as_bytes());
        }
    }
}

/// Builds as recorded, each without an end record given the time its process was seen dead.
pub fn completed_builds(record_file: &Path, observer: &Observer) -> Vec<Build> {
    let deaths = observer.deaths();
    let records = read_records(record_file);
    let mut builds = builds(&records);
    for build in &mut builds {
        if build.end_ms.is_none()
            && let Some(started) = build.started
            && let Some(died) = deaths.get(&(build.pid, started))
        {
            build.end_ms = Some(*died);
        }
    }
    builds
}

/// Checks every invariant for the packages in `submitted` (atoms as submitted).
pub async fn check(
    swarm: &Swarm,
    fault: &str,
    submitted: &[String],
    observer: &Observer,
) -> Verdict {
    // Let the observer see the last build processes go.
    tokio::time::sleep(OBSERVE_EVERY * 5).await;
    let packages: HashMap<String, PackageRecord> = swarm.packages().await;
    let builds = completed_builds(&swarm.record_file(), observer);
    let reported = reported_results(swarm).await;
    verdict(fault, submitted, &packages, &builds, &reported)
}

/// The pure part of [`check`].
pub fn verdict(
    fault: &str,
    submitted: &[String],
    packages: &HashMap<String, PackageRecord>,
    builds: &[Build],
    reported: &[Reported],
) -> Verdict {
    let mut v = Verdict {
        fault: fault.to_owned(),
        packages: submitted.len(),
        builds: builds.len(),
        ..Verdict::default()
    };
    let horizon = runtime::now_ms();
    let mut twice: BTreeMap<String, ()> = overlaps(builds, horizon)
        .into_iter()
        .map(|(a, _)| (a.atom, ()))
        .collect();
    let mut successes: HashMap<&str, Vec<&Reported>> = HashMap::new();
    for r in reported.iter().filter(|r| r.succeeded) {
        successes.entry(r.atom.as_str()).or_default().push(r);
    }
    for atom in submitted {
        let Some(record) = packages.get(atom) else {
            v.lost.push(format!("{atom}: not in the packages bucket"));
            continue;
        };
        let reported_ok = successes
            .get(atom.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if reported_ok.len() > 1 {
            twice.insert(atom.clone(), ());
        }
        match &record.state {
            PackageState::Succeeded { attempt, drone } => {
                v.succeeded += 1;
                let matching = reported_ok
                    .iter()
                    .any(|r| r.drone == drone.as_str() && r.attempt == *attempt);
                let built = builds.iter().any(|b| {
                    &b.atom == atom
                        && b.drone == drone.as_str()
                        && b.attempt == *attempt
                        && b.exit == Some(0)
                });
                if reported_ok.len() != 1 || !matching || !built {
                    v.wrong_final.push(format!(
                        "{atom}: succeeded on {drone} attempt {attempt}, but reported successes {reported_ok:?}, build exited 0: {built}"
                    ));
                }
            }
            PackageState::Failed { .. } => {
                v.failed += 1;
                if !reported_ok.is_empty() {
                    v.wrong_final.push(format!(
                        "{atom}: failed, but a success was reported: {reported_ok:?}"
                    ));
                }
            }
            other => v.lost.push(format!("{atom}: still {}", other.label())),
        }
    }
    v.built_twice = twice.into_keys().collect();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures::{drone_name, package_record};

    fn record(atom: &str, state: PackageState) -> (String, PackageRecord) {
        (atom.to_owned(), package_record(atom, state))
    }

    fn build(atom: &str, drone: &str, start: u64, end: u64, exit: i32) -> Build {
        Build {
            atom: atom.into(),
            drone: drone.into(),
            attempt: 1,
            argv: atom.into(),
            pid: start as u32,
            started: Some(start),
            start_ms: start,
            end_ms: Some(end),
            exit: Some(exit),
        }
    }

    fn ok(atom: &str, drone: &str) -> Reported {
        Reported {
            atom: atom.into(),
            drone: drone.into(),
            attempt: 1,
            succeeded: true,
        }
    }

    #[test]
    fn the_checker_catches_each_kind_of_violation() {
        let done = |drone: &str| PackageState::Succeeded {
            attempt: 1,
            drone: drone_name(drone),
        };
        let submitted: Vec<String> = ["a-b/ok", "a-b/lost", "a-b/twice", "a-b/stale", "a-b/queued"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let packages: HashMap<String, PackageRecord> = [
            record("a-b/ok", done("d1")),
            record("a-b/twice", done("d1")),
            record("a-b/stale", done("d1")),
            record("a-b/queued", PackageState::Queued { attempt: 1 }),
        ]
        .into_iter()
        .collect();
        let builds = vec![
            build("a-b/ok", "d1", 10, 20, 0),
            build("a-b/twice", "d1", 10, 20, 0),
            build("a-b/twice", "d2", 15, 25, 0),
            build("a-b/stale", "d1", 10, 20, 0),
        ];
        let reported = vec![
            ok("a-b/ok", "d1"),
            ok("a-b/twice", "d1"),
            ok("a-b/stale", "d1"),
            ok("a-b/stale", "d2"),
        ];
        let v = verdict("test", &submitted, &packages, &builds, &reported);
        assert_eq!(v.lost.len(), 2, "{v:?}");
        assert_eq!(v.built_twice, ["a-b/stale", "a-b/twice"]);
        assert_eq!(v.wrong_final.len(), 1, "{v:?}");
        assert!(v.wrong_final[0].starts_with("a-b/stale"));
    }
}
