//! `swarmctl demo`: the whole swarm on this machine in one command. It starts a nats-server with
//! JetStream in a local data folder, the coordinator, the seed's four drones (simulated builds on
//! a compressed clock, each writing a small gpkg), the dashboard and the binhost, submits the
//! 152-package world, prints the dashboard's address and the status block whenever it changes,
//! then the published binhost and the `binrepos.conf` lines a Gentoo machine needs for it, and
//! on Ctrl-C stops every process it started, drones first so they drain, NATS last.
//!
//! Every process gets a config file the demo writes into its folder (nothing is taken from the
//! caller's `SWARM_` environment), runs in its own process group (a Ctrl-C in the terminal reaches
//! the demo only, which then stops the others in order) and logs into `<dir>/logs/`. A later run
//! stops whatever an earlier one left behind (after a `kill -9` of the demo) and starts afresh.
//!
//! The processes themselves (starting, watching and stopping them) are in `fleet.rs`; the folder,
//! the config strings, the ports and the nats-server binary are found and prepared in `setup.rs`.

mod fleet;
mod setup;

use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::input::Collected;
use crate::{ArgError, CliError, Outcome};
use fleet::{Fleet, spawn, stop_leftovers, wait_ready};
use setup::{Layout, MARKER, choose_port, find_nats_server, prepare_dir, quoted, write_file};

/// The run the demo builds: `world-152-deps.tsv`, the workload model of a Gentoo desktop/server
/// with its 1,024 real build dependencies, built in dependency order.
const WORLD: &str = include_str!("../../../tests/fixtures/world-152-deps.tsv");
/// The seed's swarm: name and cores.
const DRONES: [(&str, u32); 4] = [
    ("drone-Izar", 16),
    ("drone-Tarn", 10),
    ("drone-Meridian", 24),
    ("drone-Tau-Beta", 8),
];
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
    /// Folder holding swarm-coordinator, swarm-drone, swarm-dashboard and swarm-binhost [default: this swarmctl's folder]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// NATS client port on 127.0.0.1 [default: 4222, or a free port if it is taken]
    #[arg(long, value_name = "PORT")]
    pub nats_port: Option<u16>,
    /// Dashboard port on 127.0.0.1 [default: 8080, or a free port if it is taken]
    #[arg(long, value_name = "PORT")]
    pub dashboard_port: Option<u16>,
    /// Binhost port on 127.0.0.1 [default: 8090, or a free port if it is taken]
    #[arg(long, value_name = "PORT")]
    pub binhost_port: Option<u16>,
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
    let (coordinator_bin, drone_bin, dashboard_bin, binhost_bin) = (
        binary("swarm-coordinator")?,
        binary("swarm-drone")?,
        binary("swarm-dashboard")?,
        binary("swarm-binhost")?,
    );
    let world = world()?;

    stop_leftovers(&layout, out).await;
    prepare_dir(&layout)?;
    let nats_port = choose_port(args.nats_port, 4222);
    let dashboard_port = choose_port(args.dashboard_port, 8080);
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let dashboard_url = format!("http://127.0.0.1:{dashboard_port}/");
    let binhost_port = choose_port(args.binhost_port, 8090);
    let binhost_url = format!("http://127.0.0.1:{binhost_port}");

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
                    "# Written by swarmctl demo: a simulated build machine.\n{nats_table}\n[drone]\nname = {}\ncores = {cores}\nbuilder = \"simulate\"\npkgdir = {}\nshutdown_grace_ms = {}\n\n[drone.simulate]\ntime_scale = {}\nbinpkgs = true\n",
                    quoted(name),
                    quoted(
                        &layout
                            .file(&format!("binpkgs/{name}"))
                            .display()
                            .to_string()
                    ),
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

        let conf = layout.file("binhost.toml");
        write_file(
            &conf,
            &format!(
                "# Written by swarmctl demo.\n{nats_table}\n[binhost]\nlisten = {}\n",
                quoted(&format!("127.0.0.1:{binhost_port}"))
            ),
        )?;
        spawn(
            &mut fleet,
            &layout,
            "binhost",
            &binhost_bin,
            &["--config".as_ref(), conf.as_os_str()],
        )?;
        wait_ready(&mut fleet, "binhost", || async {
            TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, binhost_port))).is_ok()
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
        "\nThe build swarm is running: {} drones with {cores} cores, {} packages, builds simulated at time scale {}.\n\n  dashboard  {dashboard_url}\n  binhost    {binhost_url}/published/amd64@<fingerprint> (once the run is published)\n  NATS       {nats_url}\n  swarmctl   SWARM_NATS__URL={nats_url} swarmctl status\n  logs       {}\n\nPress Ctrl-C to stop every process the demo started.\n",
        DRONES.len(),
        submitted.queued + submitted.already_queued,
        args.time_scale,
        layout.logs.display(),
    )?;
    out.flush()?;

    let result = follow(
        &client,
        &mut fleet,
        Following {
            exit_when_done: args.exit_when_done,
            total: world.items.len(),
            binhost_url: &binhost_url,
        },
        out,
        &shutdown,
    )
    .await;
    drop(client);
    fleet.stop(out).await;
    let _ = std::fs::remove_file(&layout.pids);
    result
}

/// What `follow` watches for.
struct Following<'a> {
    exit_when_done: bool,
    /// Packages submitted.
    total: usize,
    binhost_url: &'a str,
}

/// Prints the status block whenever it changes, says when the queue is done and, once the run
/// is published, the binhost; ends on Ctrl-C, when a process dies, or when done (and published,
/// if nothing failed) with `--exit-when-done`.
async fn follow(
    client: &async_nats::Client,
    fleet: &mut Fleet,
    following: Following<'_>,
    out: &mut (dyn Write + Send),
    shutdown: &CancellationToken,
) -> Result<Outcome, CliError> {
    let Following {
        exit_when_done,
        total,
        binhost_url,
    } = following;
    let started = Instant::now();
    let mut last_block = String::new();
    let mut done_reported = false;
    let mut published_reported = false;
    let mut keeps_running_said = false;
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
            if summary.packages.failed > 0 {
                writeln!(
                    out,
                    "A run with failures is not published by itself: `swarmctl binhost publish` publishes what was built."
                )?;
            }
            out.flush()?;
        }
        // The coordinator publishes a run that ended with no failure at its next reconcile tick.
        if done_reported && !published_reported && summary.packages.failed == 0 {
            let status = crate::binhost(
                client,
                crate::BinhostTarget::default(),
                schemas::BinhostCommand::Status,
            )
            .await;
            if let Ok(Ok(state)) = status
                && state.current.is_some()
            {
                published_reported = true;
                writeln!(
                    out,
                    "\nPublished: {}\n\nA Gentoo machine installs these packages with `emerge --getbinpkg` after adding to\n/etc/portage/binrepos.conf:\n\n  [swarm]\n  sync-uri = {binhost_url}/published/{}\n",
                    state.status_line(),
                    state.binhost,
                )?;
                out.flush()?;
            }
        }
        let settled = done_reported && (published_reported || summary.packages.failed > 0);
        if settled && exit_when_done {
            return Ok(if summary.packages.failed == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            });
        }
        if settled && !std::mem::replace(&mut keeps_running_said, true) {
            writeln!(
                out,
                "The swarm keeps running for the dashboard and the binhost; press Ctrl-C to stop it."
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
    collected.add_atom_list(Path::new("world-152-deps.tsv"), WORLD);
    if !collected.invalid.is_empty() {
        return Err(CliError::InvalidAtoms(collected.invalid));
    }
    Ok(schemas::SubmitRequest {
        v: schemas::SCHEMA_VERSION,
        items: collected.items,
        arch: None,
        fingerprint: None,
        run: None,
        priority: None,
    })
}

async fn connect(url: &str) -> Result<async_nats::Client, CliError> {
    let config = runtime::nats::NatsConfig {
        url: url.to_owned(),
        ..Default::default()
    };
    Ok(config.connect_once(crate::CLIENT_NAME).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_built_in_world_is_the_152_packages() {
        let world = world().expect("the built-in world parses");
        assert_eq!(world.items.len(), 152);
        assert!(world.items.iter().all(|i| i.estimate_secs.is_some()));
    }
}
