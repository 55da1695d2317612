//! `swarmctl demo`: the whole swarm on this machine in one command. It starts a nats-server with
//! JetStream in a local data folder, the coordinator, the seed's four drones (simulated builds on
//! a compressed clock) and the dashboard, submits the 152-package world, prints the dashboard's
//! address and the status block whenever it changes, and on Ctrl-C stops every process it
//! started, drones first so they drain, NATS last.
//!
//! Every process gets a config file the demo writes into its folder (nothing is taken from the
//! caller's `SWARM_` environment), runs in its own process group (a Ctrl-C in the terminal reaches
//! the demo only, which then stops the others in order) and logs into `<dir>/logs/`. A later run
//! stops whatever an earlier one left behind (after a `kill -9` of the demo) and starts afresh.

use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use crate::input::Collected;
use crate::{ArgError, CliError, Outcome};

/// The queue the demo builds: `world-152.tsv`, the workload model of a Gentoo desktop/server.
const WORLD: &str = include_str!("../../tests/fixtures/world-152.tsv");
/// The seed's swarm: name and cores.
const DRONES: [(&str, u32); 4] = [
    ("drone-Izar", 16),
    ("drone-Tarn", 10),
    ("drone-Meridian", 24),
    ("drone-Tau-Beta", 8),
];
/// Marks a folder as the demo's own, so that `--dir` pointing anywhere else is never wiped.
const MARKER: &str = ".swarm-demo-dir";
/// How long a drone may finish its builds after Ctrl-C before handing them back.
const DRONE_GRACE: Duration = Duration::from_secs(5);
/// How long each process may take to start, and to stop after SIGTERM (drones: plus the grace).
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Args)]
pub struct DemoArgs {
    /// Folder for the demo's NATS data, config files, logs and pids; emptied at start
    #[arg(long, value_name = "DIR", default_value = ".swarm-demo")]
    pub dir: PathBuf,
    /// The nats-server binary (2.11 or newer) [default: $NATS_SERVER_BIN, then nats-server on PATH]
    #[arg(long, value_name = "PATH")]
    pub nats_server: Option<PathBuf>,
    /// Folder holding swarm-coordinator, swarm-drone and swarm-dashboard [default: this swarmctl's folder]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// NATS client port on 127.0.0.1 [default: 4222, or a free port if it is taken]
    #[arg(long, value_name = "PORT")]
    pub nats_port: Option<u16>,
    /// Dashboard port on 127.0.0.1 [default: 8080, or a free port if it is taken]
    #[arg(long, value_name = "PORT")]
    pub dashboard_port: Option<u16>,
    /// Multiplies every simulated build time; at 0.003 the 152 packages take about two and a half minutes
    #[arg(long, value_name = "FACTOR", default_value_t = 0.003, value_parser = parse_scale)]
    pub time_scale: f64,
    /// Stop everything once every package has finished, instead of waiting for Ctrl-C
    #[arg(long)]
    pub exit_when_done: bool,
}

fn parse_scale(input: &str) -> Result<f64, ArgError> {
    match input.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=100.0).contains(&x) => Ok(x),
        _ => Err(ArgError::NotTimeScale {
            input: input.to_owned(),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "{path} exists and was not made by swarmctl demo (no {MARKER} in it); choose another --dir",
        path = path.display()
    )]
    ForeignDir { path: PathBuf },
    #[error("{what} {path}: {reason}", path = path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("no nats-server found ({searched}); run scripts/install-deps.sh or pass --nats-server")]
    NoNatsServer { searched: String },
    #[error("{path} is nats-server {found:?}; the swarm needs 2.11 or newer (scripts/install-deps.sh installs one)", path = path.display())]
    NatsServerTooOld { path: PathBuf, found: String },
    #[error("{path} is missing; build the swarm first (cargo build --bins) or pass --bin-dir", path = path.display())]
    NoBinary { path: PathBuf },
    #[error("cannot start {what}: {reason}")]
    Spawn { what: String, reason: String },
    #[error("{what} did not become ready within {} s; the end of {log}:\n{tail}", timeout.as_secs(), log = log.display())]
    NotReady {
        what: String,
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("{what} exited ({status}); the end of {log}:\n{tail}", log = log.display())]
    Exited {
        what: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
}

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
struct Fleet {
    procs: Vec<Proc>,
}

impl Fleet {
    /// Stops everything: drones first (they drain: builds finish within the grace or are handed
    /// back), then the dashboard and the coordinator, NATS last; anything still running after its
    /// time is killed.
    async fn stop(&mut self, out: &mut (dyn Write + Send)) {
        if self.procs.is_empty() {
            return;
        }
        let _ = writeln!(out, "stopping the swarm: drones first, NATS last");
        let order: [(&str, Duration); 4] = [
            ("drone-", DRONE_GRACE + STOP_TIMEOUT),
            ("dashboard", STOP_TIMEOUT),
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

    fn died(&mut self) -> Option<DemoError> {
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

/// Where everything of one demo run lives.
struct Layout {
    dir: PathBuf,
    logs: PathBuf,
    pids: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Result<Layout, DemoError> {
        let dir = std::path::absolute(dir).map_err(|e| DemoError::Io {
            what: "cannot resolve",
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Layout {
            logs: dir.join("logs"),
            pids: dir.join("pids"),
            dir,
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn io_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DemoError + 'a {
    move |e| DemoError::Io {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Runs the demo until Ctrl-C (`shutdown`), or until every package finished with
/// `--exit-when-done`.
pub async fn demo(
    args: &DemoArgs,
    out: &mut (dyn Write + Send),
    shutdown: CancellationToken,
) -> Result<Outcome, CliError> {
    let layout = Layout::new(&args.dir)?;
    let nats_server = find_nats_server(args.nats_server.as_deref())?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_default(),
    };
    let binary = |name: &str| {
        let path = bin_dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(DemoError::NoBinary { path })
        }
    };
    let (coordinator_bin, drone_bin, dashboard_bin) = (
        binary("swarm-coordinator")?,
        binary("swarm-drone")?,
        binary("swarm-dashboard")?,
    );
    let world = world()?;

    stop_leftovers(&layout, out).await;
    prepare_dir(&layout)?;
    let nats_port = choose_port(args.nats_port, 4222);
    let dashboard_port = choose_port(args.dashboard_port, 8080);
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let dashboard_url = format!("http://127.0.0.1:{dashboard_port}/");

    let mut fleet = Fleet::default();
    let started = async {
        // NATS with JetStream, its data in the demo's folder.
        let conf = layout.file("nats-server.conf");
        write_file(
            &conf,
            &format!(
                "# Written by swarmctl demo: one local server with JetStream.\nlisten: {}\njetstream {{\n  store_dir: {}\n}}\n",
                quoted(&format!("127.0.0.1:{nats_port}")),
                quoted(&layout.file("nats").display().to_string()),
            ),
        )?;
        spawn(
            &mut fleet,
            &layout,
            "nats-server",
            &nats_server,
            &["-c".as_ref(), conf.as_os_str()],
        )?;
        wait_ready(&mut fleet, "nats-server", || async {
            TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, nats_port))).is_ok()
        })
        .await?;

        let nats_table = format!("[nats]\nurl = {}\n", quoted(&nats_url));
        let conf = layout.file("coordinator.toml");
        write_file(
            &conf,
            &format!("# Written by swarmctl demo.\n{nats_table}\n[coordinator]\n"),
        )?;
        spawn(
            &mut fleet,
            &layout,
            "coordinator",
            &coordinator_bin,
            &["--config".as_ref(), conf.as_os_str()],
        )?;
        let client = connect(&nats_url).await?;
        let nats = &client;
        wait_ready(&mut fleet, "coordinator", move || async move {
            let js = async_nats::jetstream::new(nats.clone());
            runtime::kv::open_bucket(&js, schemas::names::PACKAGES_BUCKET)
                .await
                .is_ok()
        })
        .await?;

        for (name, cores) in DRONES {
            let conf = layout.file(&format!("{name}.toml"));
            write_file(
                &conf,
                &format!(
                    "# Written by swarmctl demo: a simulated build machine.\n{nats_table}\n[drone]\nname = {}\ncores = {cores}\nbuilder = \"simulate\"\nshutdown_grace_ms = {}\n\n[drone.simulate]\ntime_scale = {}\n",
                    quoted(name),
                    DRONE_GRACE.as_millis(),
                    args.time_scale,
                ),
            )?;
            spawn(
                &mut fleet,
                &layout,
                name,
                &drone_bin,
                &["--config".as_ref(), conf.as_os_str()],
            )?;
        }

        let conf = layout.file("dashboard.toml");
        write_file(
            &conf,
            &format!(
                "# Written by swarmctl demo.\n{nats_table}\n[dashboard]\nlisten = {}\n",
                quoted(&format!("127.0.0.1:{dashboard_port}"))
            ),
        )?;
        spawn(
            &mut fleet,
            &layout,
            "dashboard",
            &dashboard_bin,
            &["--config".as_ref(), conf.as_os_str()],
        )?;
        wait_ready(&mut fleet, "dashboard", || async {
            TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, dashboard_port))).is_ok()
        })
        .await?;
        // Every drone online before the queue goes in, so the first pulls are spread.
        wait_ready(&mut fleet, "the four drones", move || async move {
            crate::drones(nats)
                .await
                .map(|rows| rows.iter().filter(|d| d.state == "idle").count() == DRONES.len())
                .unwrap_or(false)
        })
        .await?;
        Ok::<_, CliError>(client)
    };
    let started = tokio::select! {
        _ = shutdown.cancelled() => None,
        started = started => Some(started),
    };
    let client = match started {
        Some(Ok(client)) => client,
        Some(Err(err)) => {
            fleet.stop(out).await;
            return Err(err);
        }
        None => {
            fleet.stop(out).await;
            return Ok(Outcome::Success);
        }
    };

    let submitted = crate::submit(&client, &world).await?;
    let cores: u32 = DRONES.iter().map(|(_, c)| c).sum();
    writeln!(
        out,
        "\nThe build swarm is running: {} drones with {cores} cores, {} packages, builds simulated at time scale {}.\n\n  dashboard  {dashboard_url}\n  NATS       {nats_url}\n  swarmctl   SWARM_NATS__URL={nats_url} swarmctl status\n  logs       {}\n\nPress Ctrl-C to stop every process the demo started.\n",
        DRONES.len(),
        submitted.queued + submitted.already_queued,
        args.time_scale,
        layout.logs.display(),
    )?;
    out.flush()?;

    let result = follow(
        &client,
        &mut fleet,
        args.exit_when_done,
        out,
        &shutdown,
        world.items.len(),
    )
    .await;
    drop(client);
    fleet.stop(out).await;
    let _ = std::fs::remove_file(&layout.pids);
    result
}

/// Prints the status block whenever it changes and says when the queue is done; ends on Ctrl-C,
/// when a process dies, or when done with `--exit-when-done`.
async fn follow(
    client: &async_nats::Client,
    fleet: &mut Fleet,
    exit_when_done: bool,
    out: &mut (dyn Write + Send),
    shutdown: &CancellationToken,
    total: usize,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let mut last_block = String::new();
    let mut done_reported = false;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(Outcome::Success),
            _ = ticker.tick() => {}
        }
        if let Some(died) = fleet.died() {
            writeln!(out, "error: {died}")?;
            return Err(died.into());
        }
        let Ok(summary) = crate::status(client).await else {
            continue;
        };
        let block = summary.block();
        if block != last_block {
            writeln!(out, "-- {} --\n{block}", elapsed(started.elapsed()))?;
            out.flush()?;
            last_block = block;
        }
        let finished = summary.packages.succeeded + summary.packages.failed;
        if !done_reported && summary.queue == 0 && finished as usize >= total {
            done_reported = true;
            writeln!(
                out,
                "All {total} packages finished after {}: {} succeeded, {} failed.",
                elapsed(started.elapsed()),
                summary.packages.succeeded,
                summary.packages.failed
            )?;
            if exit_when_done {
                return Ok(if summary.packages.failed == 0 {
                    Outcome::Success
                } else {
                    Outcome::Failure
                });
            }
            writeln!(
                out,
                "The swarm keeps running for the dashboard; press Ctrl-C to stop it."
            )?;
            out.flush()?;
        }
    }
}

struct Elapsed(Duration);

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        write!(f, "{}:{:02}", secs / 60, secs % 60)
    }
}

fn elapsed(d: Duration) -> Elapsed {
    Elapsed(d)
}

fn world() -> Result<schemas::SubmitRequest, CliError> {
    let mut collected = Collected::default();
    collected.add_atom_list(Path::new("world-152.tsv"), WORLD);
    if !collected.invalid.is_empty() {
        return Err(CliError::InvalidAtoms(collected.invalid));
    }
    Ok(schemas::SubmitRequest {
        v: schemas::SCHEMA_VERSION,
        items: collected.items,
        arch: None,
    })
}

async fn connect(url: &str) -> Result<async_nats::Client, CliError> {
    let config = runtime::nats::NatsConfig {
        url: url.to_owned(),
        ..Default::default()
    };
    Ok(config.connect_once(crate::CLIENT_NAME).await?)
}

/// Polls `ready` every 100 ms until it holds, failing early if a process of the fleet dies.
async fn wait_ready<F, Fut>(fleet: &mut Fleet, what: &str, ready: F) -> Result<(), DemoError>
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
fn spawn(
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
async fn stop_leftovers(layout: &Layout, out: &mut (dyn Write + Send)) {
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

/// Empties the demo's folder (only if it is the demo's own) and recreates its layout.
fn prepare_dir(layout: &Layout) -> Result<(), DemoError> {
    let dir = &layout.dir;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io_error("cannot read", dir))?;
        let ours = dir.join(MARKER).exists();
        if !ours && entries.next().is_some() {
            return Err(DemoError::ForeignDir { path: dir.clone() });
        }
        std::fs::remove_dir_all(dir).map_err(io_error("cannot empty", dir))?;
    }
    std::fs::create_dir_all(&layout.logs).map_err(io_error("cannot create", &layout.logs))?;
    write_file(
        &dir.join(MARKER),
        "This folder belongs to `swarmctl demo`, which empties it at every start.\n",
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(io_error("cannot write", path))
}

/// A TOML (and nats-server config) basic string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `wanted` if given; otherwise `default` if it is free on loopback, else any free port.
fn choose_port(wanted: Option<u16>, default: u16) -> u16 {
    if let Some(port) = wanted {
        return port;
    }
    if TcpListener::bind((Ipv4Addr::LOCALHOST, default)).is_ok() {
        return default;
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(default)
}

/// The nats-server to run: the one given, `$NATS_SERVER_BIN`, or `nats-server` on `PATH`; it
/// must be 2.11 or newer.
fn find_nats_server(given: Option<&Path>) -> Result<PathBuf, DemoError> {
    let mut searched = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = given {
        candidates.push(path.to_path_buf());
        searched.push(format!("--nats-server {}", path.display()));
    } else {
        if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
            searched.push(format!(
                "NATS_SERVER_BIN={}",
                PathBuf::from(&path).display()
            ));
            candidates.push(path.into());
        }
        if let Some(dirs) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&dirs).map(|d| d.join("nats-server")));
        }
        searched.push("nats-server on PATH".to_owned());
    }
    let Some(path) = candidates.into_iter().find(|p| p.is_file()) else {
        return Err(DemoError::NoNatsServer {
            searched: searched.join(", "),
        });
    };
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if version_at_least(&version, (2, 11)) {
        Ok(path)
    } else {
        Err(DemoError::NatsServerTooOld {
            path,
            found: version,
        })
    }
}

/// Whether `nats-server --version` output (`nats-server: v2.15.1`) is at least `minimum`.
fn version_at_least(output: &str, minimum: (u32, u32)) -> bool {
    let Some(at) = output.find('v') else {
        return false;
    };
    let mut parts = output[at + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => (major, minor) >= minimum,
        _ => false,
    }
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_by_major_and_minor() {
        assert!(version_at_least("nats-server: v2.15.1", (2, 11)));
        assert!(version_at_least("nats-server: v2.11.0", (2, 11)));
        assert!(!version_at_least("nats-server: v2.9.10", (2, 11)));
        assert!(version_at_least("nats-server: v3.0.0", (2, 11)));
        assert!(!version_at_least("garbage", (2, 11)));
    }

    #[test]
    fn time_scales_are_between_0_and_100() {
        assert_eq!(parse_scale("0"), Ok(0.0));
        assert_eq!(parse_scale("100"), Ok(100.0));
        for input in ["-0.1", "100.5", "fast", "NaN", "inf"] {
            assert_eq!(
                parse_scale(input),
                Err(ArgError::NotTimeScale {
                    input: input.to_owned()
                }),
                "{input}"
            );
        }
    }

    #[test]
    fn config_strings_are_quoted() {
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted("x\ny"), "\"x\\u000Ay\"");
    }

    #[test]
    fn the_built_in_world_is_the_152_packages() {
        let world = world().expect("the built-in world parses");
        assert_eq!(world.items.len(), 152);
        assert!(world.items.iter().all(|i| i.estimate_secs.is_some()));
    }

    #[test]
    fn a_folder_not_made_by_the_demo_is_never_emptied() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("precious.txt"), "keep me").expect("write");
        let layout = Layout::new(dir.path()).expect("layout");
        assert!(matches!(
            prepare_dir(&layout),
            Err(DemoError::ForeignDir { .. })
        ));
        assert!(dir.path().join("precious.txt").exists());
        // An empty folder is taken, marked, and emptied on the next run.
        let empty = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(empty.path()).expect("layout");
        prepare_dir(&layout).expect("an empty folder is fine");
        std::fs::write(empty.path().join("old.log"), "x").expect("write");
        prepare_dir(&layout).expect("the demo's own folder is emptied");
        assert!(!empty.path().join("old.log").exists());
        assert!(empty.path().join(MARKER).exists());
    }
}
