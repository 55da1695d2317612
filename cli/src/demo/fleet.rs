//! The processes `swarmctl demo` starts: each in its own process group with its output in a log
//! file, watched while the swarm starts and runs, and stopped in order (drones first, NATS last);
//! also the processes an earlier demo left behind after it was killed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::setup::{Layout, io_error};
use super::{DRONE_GRACE, DemoError, START_TIMEOUT, STOP_TIMEOUT};

/// One process the demo started.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// `Some(status)` once it has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(err) => Some(format!("cannot be waited for: {err}")),
        }
    }

    fn died(&mut self) -> Option<DemoError> {
        let status = self.exited()?;
        Some(DemoError::Exited {
            what: self.name.clone(),
            status,
            log: self.log.clone(),
            tail: log_tail(&self.log),
        })
    }
}

/// Every process the demo started, in start order. Dropping it kills whatever still runs, so
/// even a panic leaves nothing behind.
#[derive(Default)]
pub(super) struct Fleet {
    procs: Vec<Proc>,
}

impl Fleet {
    /// Stops everything: drones first (they drain: builds finish within the grace or are handed
    /// back), then the dashboard, the binhost and the coordinator, NATS last; anything still running after its
    /// time is killed.
    pub(super) async fn stop(&mut self, out: &mut (dyn Write + Send)) {
        if self.procs.is_empty() {
            return;
        }
        let _ = writeln!(out, "stopping the swarm: drones first, NATS last");
        let order: [(&str, Duration); 5] = [
            ("drone-", DRONE_GRACE + STOP_TIMEOUT),
            ("dashboard", STOP_TIMEOUT),
            ("binhost", STOP_TIMEOUT),
            ("coordinator", STOP_TIMEOUT),
            ("nats-server", STOP_TIMEOUT),
        ];
        for (prefix, timeout) in order {
            let group: Vec<usize> = (0..self.procs.len())
                .filter(|&i| self.procs[i].name.starts_with(prefix))
                .collect();
            for &i in &group {
                if self.procs[i].exited().is_none() {
                    let _ = kill(self.procs[i].pid(), Signal::SIGTERM);
                }
            }
            let deadline = Instant::now() + timeout;
            for &i in &group {
                while self.procs[i].exited().is_none() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if self.procs[i].exited().is_none() {
                    let _ = writeln!(
                        out,
                        "{} did not stop within {} s; killing it",
                        self.procs[i].name,
                        timeout.as_secs()
                    );
                    let _ = killpg(self.procs[i].pid(), Signal::SIGKILL);
                    let _ = self.procs[i].child.wait();
                }
            }
        }
        let count = self.procs.len();
        self.procs.clear();
        let _ = writeln!(out, "stopped all {count} processes the demo started");
    }

    pub(super) fn died(&mut self) -> Option<DemoError> {
        self.procs.iter_mut().find_map(Proc::died)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            let _ = killpg(proc.pid(), Signal::SIGKILL);
            let _ = proc.child.wait();
        }
    }
}

/// Polls `ready` every 100 ms until it holds, failing early if a process of the fleet dies.
pub(super) async fn wait_ready<F, Fut>(
    fleet: &mut Fleet,
    what: &str,
    ready: F,
) -> Result<(), DemoError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(died) = fleet.died() {
            return Err(died);
        }
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = fleet
                .procs
                .iter()
                .rev()
                .find(|p| what.contains(p.name.as_str()))
                .or(fleet.procs.last())
                .map(|p| p.log.clone())
                .unwrap_or_default();
            return Err(DemoError::NotReady {
                what: what.to_owned(),
                timeout: START_TIMEOUT,
                tail: log_tail(&log),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts one process in its own process group, its output in `logs/<name>.log`, with no
/// `SWARM_` variables from the caller's environment (the config files say everything).
pub(super) fn spawn(
    fleet: &mut Fleet,
    layout: &Layout,
    name: &str,
    binary: &Path,
    args: &[&std::ffi::OsStr],
) -> Result<(), DemoError> {
    let log = layout.logs.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).map_err(io_error("cannot create", &log))?;
    let err_file = file.try_clone().map_err(io_error("cannot open", &log))?;
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(&layout.dir)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file);
    for (key, _) in std::env::vars_os() {
        if key
            .to_string_lossy()
            .starts_with(runtime::config::ENV_PREFIX)
        {
            command.env_remove(key);
        }
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().map_err(|e| DemoError::Spawn {
        what: format!("{name} ({})", binary.display()),
        reason: e.to_string(),
    })?;
    let line = format!("{} {name}\n", child.id());
    fleet.procs.push(Proc {
        name: name.to_owned(),
        child,
        log,
    });
    let mut pids = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&layout.pids)
        .map_err(io_error("cannot open", &layout.pids))?;
    pids.write_all(line.as_bytes())
        .map_err(io_error("cannot write", &layout.pids))
}

/// Stops the processes an earlier run left behind (the demo was killed with `kill -9`): those
/// in its pid file whose command line still names this folder.
pub(super) async fn stop_leftovers(layout: &Layout, out: &mut (dyn Write + Send)) {
    let Ok(text) = std::fs::read_to_string(&layout.pids) else {
        return;
    };
    let needle = layout.dir.display().to_string();
    let alive = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
            .unwrap_or(false)
    };
    let leftovers: Vec<(i32, String)> = text
        .lines()
        .filter_map(|line| {
            let (pid, name) = line.split_once(' ')?;
            Some((pid.parse().ok()?, name.to_owned()))
        })
        .filter(|(pid, _)| alive(*pid))
        .collect();
    if leftovers.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "stopping {} processes an earlier demo left running",
        leftovers.len()
    );
    for (pid, _) in &leftovers {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + DRONE_GRACE + STOP_TIMEOUT;
    while leftovers.iter().any(|(pid, _)| alive(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (pid, _) in &leftovers {
        if alive(*pid) {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
