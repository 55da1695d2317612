//! End-to-end: every component asked to stop (SIGTERM, as `systemctl stop` and `rc-service stop`
//! send it) exits within its grace while nats-server is unreachable, and the drones leave no
//! build process behind (issue 15). nats-server is killed, stopped for good (its port closed)
//! or frozen (its port open, nothing answering), with builds running on every drone.

use std::collections::{HashMap, HashSet};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use schemas::SubmitResult;
use swarm_tests::invariants::Observer;
use swarm_tests::*;

/// Every component's grace in these tests: `drone.shutdown_grace_ms`, and the coordinator's,
/// the dashboard's and the binhost's `shutdown_grace_ms`.
const GRACE_MS: u64 = 2_000;
/// What the tests allow past a component's bound: the signal's delivery, the process's exit and
/// a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1_500);
/// Builds that would outlast every test.
const BUILD_SECS: &str = "60";
/// What a component logs when something on its way out ignored its bound (the daemons' last
/// resort, `runtime::daemon`): never expected.
const BACKSTOP_LINE: &str = "did not stop within";

/// How nats-server goes away.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outage {
    /// SIGKILL: its connections are reset at once.
    Killed,
    /// SIGTERM: it closes its connections and its port stays closed.
    Stopped,
    /// SIGSTOP: connections and port stay open but nothing answers.
    Frozen,
}

/// The builds' leases: the harness's (1.5 s; a build outlives the drone's last acknowledged
/// heartbeat by under a second), or long ones (30 s; builds outlive it by 15 s, longer than a
/// drone's whole stop, so the drone must kill them itself).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Leases {
    Short,
    Long,
}

/// A swarm with every component running and `drones` drones building two long builds each.
struct Running {
    swarm: Swarm,
    drones: Vec<String>,
    /// The builds, as the build script recorded their start.
    builds: Vec<Build>,
    /// The build scripts' process groups, which must all be gone once the drones have exited.
    groups: HashSet<i32>,
    /// When each build process was seen dead.
    observer: Observer,
}

async fn running_swarm(drones: usize, leases: Leases) -> Running {
    let mut env = vec![("SWARM_COORDINATOR__SHUTDOWN_GRACE_MS", "2000")];
    if leases == Leases::Long {
        env.extend([
            ("SWARM_COORDINATOR__LEASE_TTL_MS", "30000"),
            ("SWARM_COORDINATOR__ACK_WAIT_MS", "60000"),
        ]);
    }
    let mut swarm = Swarm::start_with(&env).await;
    let observer = Observer::start(swarm.record_file());
    let names: Vec<String> = (0..drones).map(|i| format!("stop-{i}")).collect();
    for name in &names {
        let mut spec = DroneSpec::new(name, 4, 2)
            .env("SWARM_TEST_SLEEP", BUILD_SECS)
            .env("SWARM_DRONE__SHUTDOWN_GRACE_MS", &GRACE_MS.to_string());
        if leases == Leases::Long {
            spec = spec.env("SWARM_DRONE__SUPERVISE_DEADLINE_MS", "15000");
        }
        swarm.spawn_drone(&spec);
    }
    let grace = [("SWARM_DASHBOARD__SHUTDOWN_GRACE_MS", "2000")];
    swarm.spawn_dashboard_with(testkit::free_port().expect("free port"), &grace);
    let grace = [("SWARM_BINHOST__SHUTDOWN_GRACE_MS", "2000")];
    swarm.spawn_binhost_with(testkit::free_port().expect("free port"), &grace);
    let count = drones * 2;
    let items: Vec<(String, Option<f64>)> = (0..count)
        .map(|i| (format!("=dev-test/stop-1.{i}"), None))
        .collect();
    assert!(matches!(
        swarm.submit(&items).await,
        SubmitResult::Accepted { queued, .. } if queued as usize == count
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let running: Vec<Build> = builds(&swarm.records())
            .into_iter()
            .filter(|b| b.end_ms.is_none())
            .collect();
        if running.len() == count {
            break running;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} builds started; logs in {}",
            running.len(),
            swarm.dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let groups: HashSet<i32> = started
        .iter()
        .map(|b| process_group(b.pid).expect("a running build's process group"))
        .collect();
    assert!(
        names
            .iter()
            .all(|name| started.iter().filter(|b| &b.drone == name).count() == 2),
        "every drone builds two: {started:?}"
    );
    Running {
        swarm,
        drones: names,
        builds: started,
        groups,
        observer,
    }
}

/// The process group of `pid`, while it runs.
fn process_group(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (in parentheses): state, parent, process group.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(1)?.parse().ok()
}

/// Every live process (zombies aside) whose process group is one of `groups`.
fn members(groups: &HashSet<i32>) -> Vec<(u32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, process_group(pid)?)))
        .filter(|(_, group)| groups.contains(group))
        .collect()
}

fn outage(swarm: &mut Swarm, how: Outage) {
    let pid = Pid::from_raw(swarm.nats.pid().expect("nats-server runs") as i32);
    match how {
        Outage::Killed => swarm.nats.kill().expect("nats-server killed"),
        Outage::Frozen => kill(pid, Signal::SIGSTOP).expect("nats-server frozen"),
        Outage::Stopped => {
            kill(pid, Signal::SIGTERM).expect("nats-server stopped");
            let port = swarm.nats.port();
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                assert!(Instant::now() < deadline, "nats-server did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One component's stop: how it ended, how long it took after its SIGTERM and when it exited
/// (ms since the epoch).
struct Stop {
    status: Option<ExitStatus>,
    took: Duration,
    exited_ms: u64,
}

/// Sends SIGTERM to every component at once and waits for each to exit; a component still
/// running after `limit` is reported with no status.
async fn stop_all(swarm: &mut Swarm, limit: Duration) -> HashMap<String, Stop> {
    let mut procs: Vec<&mut Proc> = Vec::new();
    let Swarm {
        coordinator,
        drones,
        dashboard,
        binhost,
        ..
    } = swarm;
    procs.extend(coordinator.as_mut());
    procs.extend(dashboard.as_mut());
    procs.extend(binhost.as_mut());
    procs.extend(drones.values_mut());
    let signalled = Instant::now();
    for proc in &procs {
        proc.signal(Signal::SIGTERM);
    }
    let mut stops: HashMap<String, Stop> = HashMap::new();
    while stops.len() < procs.len() && signalled.elapsed() < limit {
        for proc in procs.iter_mut() {
            if !stops.contains_key(&proc.name)
                && let Some(status) = proc.wait_exit(Duration::ZERO)
            {
                let took = signalled.elapsed();
                stops.insert(
                    proc.name.clone(),
                    Stop {
                        status: Some(status),
                        took,
                        exited_ms: runtime::now_ms(),
                    },
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for proc in procs {
        stops.entry(proc.name.clone()).or_insert(Stop {
            status: None,
            took: signalled.elapsed(),
            exited_ms: runtime::now_ms(),
        });
    }
    stops
}

/// The most a component may take to exit after SIGTERM: its grace, and for a drone the time it
/// then has to hand its builds back and say goodbye (`min(grace, 10 s)`, at least 1 s).
fn bound(name: &str) -> Duration {
    let grace = Duration::from_millis(GRACE_MS);
    if name.starts_with("stop-") {
        grace + grace.clamp(Duration::from_secs(1), Duration::from_secs(10))
    } else {
        grace
    }
}

/// Takes NATS away `after_outage` before SIGTERM, and checks that every component exited 0
/// within its bound, that no build process is left and that no component needed its last resort.
async fn stops_without_nats(
    drones: usize,
    how: Outage,
    after_outage: Duration,
    leases: Leases,
) -> Running {
    let mut running = running_swarm(drones, leases).await;
    outage(&mut running.swarm, how);
    tokio::time::sleep(after_outage).await;
    let stops = stop_all(&mut running.swarm, Duration::from_secs(60)).await;
    let mut late = Vec::new();
    for (name, stop) in &stops {
        let ok = stop.status.is_some_and(|s| s.success());
        if !ok || stop.took > bound(name) + MARGIN {
            late.push(format!(
                "{name}: {:?} after {:?} (bound {:?} + {MARGIN:?})",
                stop.status,
                stop.took,
                bound(name)
            ));
        }
    }
    eprintln!(
        "{how:?}: {}",
        stops
            .iter()
            .map(|(name, stop)| format!("{name} {:?} {} ms", stop.status, stop.took.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let left = members(&running.groups);
    let logs = running.swarm.dir.path().display().to_string();
    assert!(late.is_empty(), "{how:?}: {late:?}; logs in {logs}");
    assert!(
        left.is_empty(),
        "{how:?}: build processes left behind (pid, group): {left:?}; logs in {logs}"
    );
    // Every build died before its drone exited: killed by the drone (or, NATS gone, by its
    // supervisor), not left to die with the drone's exit.
    let deaths = running.observer.deaths();
    for build in &running.builds {
        let died = build
            .started
            .and_then(|started| deaths.get(&(build.pid, started)))
            .copied();
        let exited = stops[&build.drone].exited_ms;
        assert!(
            died.is_some_and(|died| died < exited),
            "{how:?}: the build of {} on {} died at {died:?}, its drone exited at {exited}; logs in {logs}",
            build.atom,
            build.drone
        );
    }
    for name in
        running
            .drones
            .iter()
            .map(String::as_str)
            .chain(["coordinator", "dashboard", "binhost"])
    {
        let log = std::fs::read_to_string(running.swarm.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        assert!(
            !log.contains(BACKSTOP_LINE),
            "{how:?}: {name} needed its last resort; logs in {logs}"
        );
    }
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_stops_within_its_grace_after_nats_server_was_killed() {
    let running =
        stops_without_nats(3, Outage::Killed, Duration::from_secs(3), Leases::Short).await;
    // A drone says what it could not do.
    let log = std::fs::read_to_string(running.swarm.dir.path().join("stop-0.log")).expect("log");
    assert!(
        log.contains("offline record not written"),
        "stop-0 does not say its offline record was not written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_stops_within_its_grace_while_nats_server_stays_down() {
    stops_without_nats(3, Outage::Stopped, Duration::from_secs(3), Leases::Short).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_stops_within_its_grace_while_nats_server_is_frozen() {
    stops_without_nats(3, Outage::Frozen, Duration::from_secs(3), Leases::Short).await;
}

/// The report's case: SIGTERM a moment after nats-server went away, every drone building.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drones_signalled_just_after_nats_server_stopped_exit_promptly() {
    stops_without_nats(4, Outage::Killed, Duration::from_millis(100), Leases::Short).await;
}

/// The same with builds that would outlive the drone's stop: the drone kills them itself when
/// its grace is over and it cannot hand them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drone_that_cannot_hand_its_builds_back_kills_them_before_it_exits() {
    stops_without_nats(3, Outage::Killed, Duration::from_millis(100), Leases::Long).await;
}
