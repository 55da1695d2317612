//! `swarmctl`, the operator's command line, as a library: the argument types, the commands, and
//! [`run`], which the binary, the end-to-end tests and the demo call alike.
//!
//! Every command writes its normal output to the `out` writer it is given and returns an
//! [`Outcome`] (exit status 0 or 1) or a [`CliError`] (exit status 2); only the binary prints
//! errors. Read commands take `--json` and then print exactly one JSON document.

mod binhost;
mod config;
pub mod control;
mod demo;
pub mod emerge_log;
mod error;
mod forecast;
pub mod history;
mod input;
pub mod logs;
pub mod plan;
mod rpc;
pub mod runs;
mod submit;
mod values;
mod view;
mod wait;
mod watch;
mod why;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use schemas::{Arch, BinhostCommand, RunName};

pub use binhost::{BinhostState, binhost};
pub use config::Config;
pub use demo::{DemoArgs, DemoError, demo};
pub use error::{ArgError, CliError, EXIT_ERROR};
pub use input::{InvalidAtom, Origin};
pub use plan::PlanArgs;
pub use submit::{Submitted, prepare_submission, submit};
pub use values::{PriorityArg, StateFilter};
use values::{parse_arch, parse_timeout};
pub use view::{DroneRow, HistoryRow, PackageRow, drones, packages, status};
pub use wait::{WaitReport, wait};

/// The name this client gives itself on the NATS connection.
pub const CLIENT_NAME: &str = "swarmctl";

/// How long a request waits for its reply (submission, drone control).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "swarmctl",
    version,
    about = "Operate the Gentoo build swarm: queue packages, watch the queue and the drones",
    after_help = "Exit status: 0 success; 1 the command ran but found a failure (failed packages, a refused unground); 2 error.\nConfiguration: defaults < --config FILE < environment (SWARM_NATS__URL, SWARM_NATS__CREDS_FILE, SWARM_LOG__FORMAT, ...)."
)]
pub struct Cli {
    /// TOML file with [nats] and [log] tables
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Command {
    /// Queue packages for building; every atom is checked first and nothing is sent if one is invalid
    Submit(SubmitArgs),
    /// Print the swarm summary: queue, drones, cores, status
    Status {
        /// Print JSON: queue, drones.{active,idle,grounded,...}, cores.{active,total}, status,
        /// operator_paused, packages.{queued,building,succeeded,failed,retrying,waiting,blocked,cancelled}
        #[arg(long)]
        json: bool,
        /// Print what is left as a graph: the critical path (each package's state and estimate),
        /// the work left and the earliest end with the drones online now; with --json:
        /// {run, path: [{atom, state, secs}], path_secs, work_secs, unfinished, eta_secs, cores,
        /// largest_drone_cores, now_ms, end_ms}
        #[arg(long)]
        graph: bool,
        /// Only this run: its row as `runs` shows it (with --graph: its graph)
        #[arg(long, value_name = "NAME", value_parser = RunName::parse)]
        run: Option<RunName>,
    },
    /// List runs, newest first: RUN STATE PACKAGES QUEUED BUILDING SUCCEEDED FAILED BLOCKED
    /// STARTED ENDED DURATION (UTC)
    Runs {
        /// Print a JSON list of {run, packages, counts, state, started_ms, ended_ms,
        /// duration_secs}
        #[arg(long)]
        json: bool,
    },
    /// List packages: ATOM STATE ATTEMPTS DRONE, sorted by atom
    ///
    /// ATTEMPTS counts the builds started so far: a building, succeeded or failed package shows
    /// the number of its current (or last) attempt; a queued or retry_wait package shows how many
    /// attempts already ended, so a package that was never built shows 0. DRONE is the drone that
    /// is building or that built the package, empty otherwise.
    Packages {
        /// Only packages in this state (retry_wait: failed, waiting out the backoff before the next attempt)
        #[arg(long, value_enum, value_name = "STATE")]
        state: Option<StateFilter>,
        /// Print a JSON list of {atom, state, attempts, drone, history, reason}
        #[arg(long)]
        json: bool,
    },
    /// Every ended build of a package across runs, oldest first: RUN ATTEMPT DRONE STARTED
    /// (UTC) DURATION EXIT CLASS RESULT; kept by the swarm across restarts
    History {
        #[arg(value_name = "ATOM")]
        atom: schemas::Atom,
        /// Print a JSON list of {atom, arch, run, attempt, drone, started_ms, duration_ms, exit,
        /// class, outcome, result, signature}
        #[arg(long)]
        json: bool,
    },
    /// A build's log (by default the package's current or last attempt): the complete log once
    /// the build has ended, what it has printed so far while it runs
    Logs {
        #[arg(value_name = "ATOM")]
        atom: schemas::Atom,
        /// Keep printing the running build's output as the drone writes it, until it ends
        #[arg(long, short = 'f')]
        follow: bool,
        /// This attempt instead
        #[arg(long, value_name = "N")]
        attempt: Option<u32>,
    },
    /// List drones: NAME CORES SLOTS STATE BUILDING; a drone whose heartbeat stopped shows `lost`
    Drones {
        /// Print a JSON list of {name, cores, slots, state, building, reason, ...}
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Control(control::ControlCommand),
    /// Run the whole swarm on this machine: NATS, the coordinator, the seed's four drones
    /// (simulated builds) and the dashboard, building the 152-package world; Ctrl-C stops it all
    ///
    /// Needs no running NATS and no configuration: it starts its own nats-server in --dir and
    /// writes a config file for every process there. swarm-coordinator, swarm-drone and
    /// swarm-dashboard are taken from --bin-dir. `scripts/demo.sh` builds them and runs this.
    Demo(DemoArgs),
    /// Write the run file of this Gentoo host's packages (default @world) with their build
    /// dependencies, as Portage resolves them; needs a Python with Portage, no NATS
    Plan(PlanArgs),
    /// The published binhost: publish what is built, roll back, list revisions, status
    #[command(subcommand)]
    Binhost(BinhostArgs),
    /// Print a shell completion script: `swarmctl completions bash > /etc/bash_completion.d/swarmctl`,
    /// zsh into a directory on `$fpath` as `_swarmctl`, fish into
    /// `~/.config/fish/completions/swarmctl.fish`
    Completions {
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// A live progress bar (on stderr, when it is a terminal) until nothing is queued or
    /// building: done/total, failures, rate, time left; exits as `wait` does
    Watch {
        /// Only this run's packages
        #[arg(long, value_name = "NAME", value_parser = RunName::parse)]
        run: Option<RunName>,
        /// Give up after this many seconds (default: watch for ever)
        #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
        timeout: Option<Duration>,
    },
    /// Block until nothing is queued or building; exit 0 if every package succeeded, 1 if some failed, 2 on timeout
    Wait {
        /// Give up after this many seconds (default: wait for ever)
        #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
        timeout: Option<Duration>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Args)]
#[command(group(
    clap::ArgGroup::new("input").required(true).multiple(true).args(["atoms", "file", "pretend"])
))]
pub struct SubmitArgs {
    /// Package atoms: sys-libs/zlib, =dev-libs/openssl-3.3.2, >=sys-devel/gcc-14:14
    #[arg(value_name = "ATOM")]
    pub atoms: Vec<String>,
    /// A file with one atom per line (`-` for stdin); `#` starts a comment line; a tab-separated
    /// line `atom<TAB>seconds<TAB>class` gives the build-time estimate on 8 cores and the size
    /// class (small, medium, heavy, giant), either may be empty
    #[arg(long, value_name = "FILE")]
    pub file: Vec<PathBuf>,
    /// Saved `emerge --pretend` output (`-` for stdin): every `[ebuild ...] cat/pkg-ver` line is
    /// queued as `=cat/pkg-ver`
    #[arg(long, value_name = "FILE")]
    pub pretend: Vec<PathBuf>,
    /// Arch to build for (default: the coordinator's first arch)
    #[arg(long, value_name = "ARCH", value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// The fingerprint the run targets, as `swarmctl drones` shows it (default: the arch's
    /// current one, or the one its online drones share)
    #[arg(long, value_name = "ID", value_parser = parse_fingerprint)]
    pub fingerprint: Option<String>,
    /// The run the packages belong to: a new one or one submitted to before (default: a new run
    /// named after this second, run-YYYYMMDD-HHMMSS UTC)
    #[arg(long, value_name = "NAME", value_parser = RunName::parse)]
    pub run: Option<RunName>,
    /// The packages' priority: every queued package of a higher one starts before any of a
    /// lower one, even those queued earlier
    #[arg(long, value_enum, value_name = "PRIORITY")]
    pub priority: Option<PriorityArg>,
    /// Portage's emerge.log (e.g. /var/log/emerge.log): a package without an estimate gets the
    /// median of its past merges there, so a first run is scheduled as a later one would be
    #[arg(long, value_name = "FILE")]
    pub estimates: Option<PathBuf>,
}

/// A fingerprint id as drones show it: hex digits.
fn parse_fingerprint(input: &str) -> Result<String, ArgError> {
    if !input.is_empty() && input.len() <= 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(input.to_ascii_lowercase())
    } else {
        Err(ArgError::NotFingerprint {
            input: schemas::shorten(input, 80),
        })
    }
}

/// Which published binhost a `binhost` subcommand is about: an arch's packages built for one
/// fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct BinhostTarget {
    /// Arch (default: the coordinator's first arch)
    #[arg(long, value_name = "ARCH", value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// The fingerprint whose binhost, as `swarmctl drones` shows it (default: the arch's run
    /// target's)
    #[arg(long, value_name = "ID", value_parser = parse_fingerprint)]
    pub fingerprint: Option<String>,
}

/// The `binhost` subcommands; each takes `--arch` and `--fingerprint` (`BinhostTarget`).
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum BinhostArgs {
    /// Publish the binary packages of every succeeded package built for the fingerprint as a
    /// new revision of its binhost, atomically; with RUN, once that run has ended, to its
    /// fingerprint's binhost, leaving out what runs still under way built
    Publish {
        #[arg(value_name = "RUN", value_parser = RunName::parse)]
        run: Option<RunName>,
        #[command(flatten)]
        target: BinhostTarget,
    },
    /// Serve an earlier kept revision again (default: the one before the current one)
    Rollback {
        #[arg(value_name = "REV")]
        revision: Option<u64>,
        #[command(flatten)]
        target: BinhostTarget,
    },
    /// List the kept revisions, newest first; `*` marks the one served
    Revisions {
        #[command(flatten)]
        target: BinhostTarget,
        /// Print JSON: {arch, fingerprint, binhost, current, revisions: [{number, timestamp,
        /// created_ms, packages, bytes, fingerprint}], changed}
        #[arg(long)]
        json: bool,
    },
    /// The binhost's name and URL path, the revision served, its package count and size
    Status {
        #[command(flatten)]
        target: BinhostTarget,
        /// Print JSON, as `revisions --json`
        #[arg(long)]
        json: bool,
    },
}

/// How a command that ran to its end went; errors are [`CliError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    /// Exit status 1: the command worked and found a failure (failed packages, a drone that
    /// refused to unground).
    Failure,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
        }
    }
}

/// Runs one command: validates local input (a submission's atoms) before connecting, connects
/// to NATS with `config`, then executes. Normal output goes to `out`; `wait` writes its progress
/// lines to `progress`.
pub async fn run(
    config: &Config,
    command: Command,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    if let Command::Demo(args) = &command {
        let shutdown = tokio_util::sync::CancellationToken::new();
        runtime::shutdown::cancel_on_signal(shutdown.clone());
        return demo(args, out, shutdown).await;
    }
    if let Command::Plan(args) = &command {
        return plan::plan(args, out);
    }
    if let Command::Completions { shell } = &command {
        return runs::completions(*shell, out);
    }
    let prepared = match &command {
        Command::Submit(args) => Some(prepare_submission(args)?),
        _ => None,
    };
    // `wait` and `watch` ride out an outage: the connection retries from the start, and they
    // say when they wait for the server. Every other command fails at once when it is away.
    let client = if matches!(command, Command::Wait { .. } | Command::Watch { .. }) {
        config.nats.connect(CLIENT_NAME).await?
    } else {
        config.nats.connect_once(CLIENT_NAME).await?
    };
    let outcome = dispatch(&client, command, prepared, out, progress).await;
    // A clean close; nothing is published without a reply, so nothing waits in the buffer.
    drop(client);
    outcome
}

/// Executes one command on an existing connection (tests and the demo share one client).
pub async fn execute(
    client: &async_nats::Client,
    command: Command,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    dispatch(client, command, None, out, progress).await
}

async fn dispatch(
    client: &async_nats::Client,
    command: Command,
    prepared: Option<schemas::SubmitRequest>,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    match command {
        Command::Submit(args) => {
            let request = match prepared {
                Some(request) => request,
                None => prepare_submission(&args)?,
            };
            let submitted = submit(client, &request).await?;
            writeln!(out, "{submitted}")?;
            Ok(Outcome::Success)
        }
        Command::Status {
            json,
            graph: true,
            run,
        } => {
            let graph = forecast::graph_status(client, run.as_ref()).await?;
            if json {
                write_json(out, &graph)?;
            } else {
                write!(out, "{}", graph.block())?;
            }
            Ok(Outcome::Success)
        }
        Command::Status {
            json,
            graph: false,
            run: Some(run),
        } => runs::one(client, run, json, out).await,
        Command::Runs { json } => runs::all(client, json, out).await,
        Command::Status { json, .. } => {
            let summary = status(client).await?;
            if json {
                write_json(out, &summary)?;
            } else {
                write!(out, "{}", summary.block())?;
            }
            Ok(Outcome::Success)
        }
        Command::Packages { state, json } => {
            let rows = packages(client, state).await?;
            if json {
                write_json(out, &rows)?;
            } else {
                write!(out, "{}", view::packages_table(&rows))?;
            }
            Ok(Outcome::Success)
        }
        Command::Drones { json } => {
            let rows = drones(client).await?;
            if json {
                write_json(out, &rows)?;
            } else {
                write!(out, "{}", view::drones_table(&rows))?;
            }
            Ok(Outcome::Success)
        }
        Command::Control(command) => control::run(client, command, out).await,
        Command::History { atom, json } => history::history(client, &atom, json, out).await,
        Command::Logs {
            atom,
            follow,
            attempt,
        } => logs::logs(client, &atom, attempt, follow, out).await,
        Command::Demo(args) => demo(&args, out, tokio_util::sync::CancellationToken::new()).await,
        Command::Plan(args) => plan::plan(&args, out),
        Command::Completions { shell } => runs::completions(shell, out),
        Command::Binhost(args) => {
            // (which binhost, request, print JSON, print the revisions table)
            let (target, command, json, table) = match args {
                BinhostArgs::Publish { run, target } => (
                    target,
                    BinhostCommand::Publish {
                        run: run.map(|r| r.to_string()),
                    },
                    false,
                    false,
                ),
                BinhostArgs::Rollback { revision, target } => (
                    target,
                    BinhostCommand::Rollback { to: revision },
                    false,
                    false,
                ),
                BinhostArgs::Revisions { target, json } => {
                    (target, BinhostCommand::Status, json, true)
                }
                BinhostArgs::Status { target, json } => {
                    (target, BinhostCommand::Status, json, false)
                }
            };
            let state = match binhost(client, target, command.clone()).await? {
                Ok(state) => state,
                Err(message) => {
                    writeln!(out, "{message}")?;
                    return Ok(Outcome::Failure);
                }
            };
            if json {
                write_json(out, &state)?;
            } else if table {
                write!(out, "{}", state.revisions_table())?;
            } else {
                let verb = match (&command, state.changed) {
                    (BinhostCommand::Publish { .. }, true) => "published ",
                    (BinhostCommand::Publish { .. }, false) => "nothing new to publish; serving ",
                    (BinhostCommand::Rollback { .. }, true) => "rolled back; serving ",
                    (BinhostCommand::Rollback { .. }, false) => "already serving ",
                    (BinhostCommand::Status, _) => "",
                };
                writeln!(out, "{verb}{}", state.status_line())?;
            }
            Ok(Outcome::Success)
        }
        Command::Watch { run, timeout } => {
            finished(watch::watch(client, timeout, run.as_ref()).await?, out)
        }
        Command::Wait { timeout } => finished(wait(client, timeout, progress).await?, out),
    }
}

/// Prints how the followed packages ended; exit 1 when some failed.
fn finished(report: WaitReport, out: &mut (dyn Write + Send)) -> Result<Outcome, CliError> {
    write!(out, "{report}")?;
    Ok(if report.failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

pub(crate) fn write_json<T: serde::Serialize>(
    out: &mut (dyn Write + Send),
    value: &T,
) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
