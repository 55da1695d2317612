//! Runs one build: a child process in its own process group with an argv vector (never a
//! shell), or a simulated build. The argv depends on the atom alone, so every attempt of a
//! package runs the byte-identical command.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use schemas::{Atom, BuildOutcome, ExitInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::config::{BuilderKind, Settings, Simulate};

/// What to run for a package.
#[derive(Debug, Clone)]
pub enum Builder {
    Process {
        template: Vec<String>,
        /// Set in the build's environment (the emerge builder's `PKGDIR`, `BINPKG_FORMAT`,
        /// `FEATURES`, `PORTAGE_BINHOST`): what differs between drones goes here, never into
        /// the argv.
        env: Vec<(String, String)>,
        /// The drone binary, which runs each build under `supervise` so that the build dies
        /// with the drone; `None` runs the build directly (unit tests).
        supervisor: Option<PathBuf>,
    },
    Simulate {
        settings: Simulate,
        /// Modelled seconds on 8 cores by atom, from `model_file`.
        model: Arc<HashMap<String, f64>>,
    },
}

impl Builder {
    pub fn from_settings(settings: &Settings) -> Result<Builder, crate::model::ModelError> {
        Ok(match settings.builder {
            BuilderKind::Command => Builder::Process {
                template: settings.command.clone(),
                env: Vec::new(),
                supervisor: None,
            },
            BuilderKind::Emerge => {
                let mut env = vec![
                    ("PKGDIR".to_owned(), settings.pkgdir.display().to_string()),
                    (
                        "BINPKG_FORMAT".to_owned(),
                        settings.binpkg_format.as_str().to_owned(),
                    ),
                    ("FEATURES".to_owned(), settings.features.join(" ")),
                ];
                if !settings.binhost.is_empty() {
                    env.push(("PORTAGE_BINHOST".to_owned(), settings.binhost.join(" ")));
                }
                Builder::Process {
                    template: emerge_template(&settings.emerge_args),
                    env,
                    supervisor: None,
                }
            }
            BuilderKind::Simulate => Builder::Simulate {
                settings: settings.simulate.clone(),
                model: Arc::new(match &settings.simulate.model_file {
                    Some(path) => crate::model::load(path)?,
                    None => HashMap::new(),
                }),
            },
        })
    }

    /// The argv for `atom`: `{atom}` inside a template argument is replaced by the atom and
    /// `{package}` by its package name (`cat/pkg`); the argument stays one argument whatever the
    /// atom contains.
    pub fn argv(&self, atom: &Atom) -> Vec<String> {
        match self {
            Builder::Process { template, .. } => {
                let package = atom.package_name();
                template
                    .iter()
                    .map(|arg| {
                        arg.replace("{atom}", atom.as_str())
                            .replace("{package}", &package)
                    })
                    .collect()
            }
            Builder::Simulate { .. } => vec!["simulate".to_owned(), atom.as_str().to_owned()],
        }
    }
}

/// The emerge builder's argv. The package itself is built from source (`--usepkg-exclude` of
/// its name) and written as a binary package (`--buildpkg`); its dependencies are installed as
/// binary packages when the drone's binhosts have them (`--usepkg --getbinpkg`), never
/// compiled again. `--quiet-build=y` keeps a success's output to emerge's summary; a failed
/// build's log is printed in full, which is what the drone classifies and reports. `extra`
/// (`drone.emerge_args`) goes before the atom.
pub fn emerge_template(extra: &[String]) -> Vec<String> {
    let mut template: Vec<String> = [
        "emerge",
        "--oneshot",
        "--buildpkg",
        "--usepkg",
        "--getbinpkg",
        "--usepkg-exclude",
        "{package}",
        "--quiet-build=y",
        "--nospinner",
        "--color=n",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    template.extend(extra.iter().cloned());
    template.push("{atom}".to_owned());
    template
}

/// The environment a build sees besides the drone's own.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    pub atom: Atom,
    pub attempt: u32,
    pub drone: String,
    pub jobs: u32,
    /// Modelled time on an 8-core slot (simulate builder only).
    pub estimate_secs: Option<f64>,
    /// How long a supervised build may go without [`Running::keep_alive`] before its supervisor
    /// kills it; `None`: only when the drone goes away.
    pub supervise: Option<Supervise>,
}

/// A supervisor's deadlines (`crate::liveness`).
#[derive(Debug, Clone, Copy)]
pub struct Supervise {
    /// Between two words.
    pub deadline: Duration,
    /// Before the first word: what is left of the deadline since the drone's last proof of life.
    pub first: Duration,
}

/// Why a build could not start: a fault of the drone, never of the package.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start builder: its argv is empty")]
    EmptyArgv,
    #[error("cannot start builder {program:?}: not found or not executable")]
    NotFound { program: String },
    #[error("cannot start builder {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create build log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running build; `wait` ends it normally, `kill` ends it at once.
pub enum Running {
    Child {
        child: Box<Child>,
        pgid: Option<i32>,
        /// The end of the build's output: the last `CLASSIFY_BYTES` (or more), of which the
        /// last `tail_bytes` are reported.
        tail: Arc<Mutex<VecDeque<u8>>>,
        tail_bytes: usize,
        readers: Vec<tokio::task::JoinHandle<()>>,
        /// The supervisor's stdin: written to keep the build alive, closed to kill it.
        lifeline: Option<tokio::process::ChildStdin>,
    },
    /// A simulated build ends at a fixed instant, so waiting for it again (the build loop polls
    /// it beside the lease renewal) never starts the clock over.
    Simulated {
        until: tokio::time::Instant,
        fails: bool,
    },
}

/// Starts the build; its output is kept (its tail), written to `log_file` and sent to `live`,
/// when given.
pub fn start(
    builder: &Builder,
    env: &BuildEnv,
    tail_bytes: usize,
    log_file: Option<PathBuf>,
    live: Option<tokio::sync::mpsc::UnboundedSender<bytes::Bytes>>,
) -> Result<Running, StartError> {
    match builder {
        Builder::Simulate {
            settings: sim,
            model,
        } => {
            let estimate = model
                .get(env.atom.as_str())
                .copied()
                .or(env.estimate_secs)
                .unwrap_or(sim.default_estimate_secs)
                .max(0.0);
            // Modelled as perfectly parallel: twice the cores, half the time.
            let secs = estimate * 8.0 / f64::from(env.jobs.max(1)) * sim.time_scale;
            let fails = sim.failure_rate > 0.0 && pseudo_random(env) < sim.failure_rate;
            Ok(Running::Simulated {
                until: tokio::time::Instant::now()
                    + Duration::from_secs_f64(secs.min(7.0 * 86_400.0)),
                fails,
            })
        }
        Builder::Process {
            supervisor,
            env: extra_env,
            ..
        } => {
            let argv = builder.argv(&env.atom);
            let (program, args) = argv.split_first().ok_or(StartError::EmptyArgv)?;
            // A missing builder is the drone's fault, not the package's: report it as such
            // before the supervisor would turn it into an ordinary failed build.
            if find_program(program).is_none() {
                return Err(StartError::NotFound {
                    program: program.clone(),
                });
            }
            let mut command = match supervisor {
                Some(drone) => {
                    let mut command = Command::new(drone);
                    command.arg("supervise").arg("--").args(&argv);
                    command.stdin(Stdio::piped());
                    if let Some(supervise) = env.supervise {
                        command
                            .env(
                                crate::supervise::DEADLINE_ENV,
                                supervise.deadline.as_millis().max(1).to_string(),
                            )
                            .env(
                                crate::supervise::FIRST_DEADLINE_ENV,
                                supervise.first.as_millis().max(1).to_string(),
                            );
                    }
                    command
                }
                None => {
                    let mut command = Command::new(program);
                    command.args(args).stdin(Stdio::null());
                    command
                }
            };
            command
                .envs(extra_env.iter().map(|(key, value)| (key, value)))
                .env("SWARM_ATOM", env.atom.as_str())
                .env("SWARM_ATTEMPT", env.attempt.to_string())
                .env("SWARM_DRONE", &env.drone)
                .env("MAKEOPTS", format!("-j{}", env.jobs))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own process group, so that killing the build kills everything it started.
                .process_group(0)
                .kill_on_drop(true);
            let mut child = command.spawn().map_err(|source| StartError::Spawn {
                program: program.clone(),
                source,
            })?;
            let pgid = child.id().map(|id| id as i32);
            // Held open for the build's life: the supervisor kills the build when it closes.
            let lifeline = child.stdin.take();
            let kept = tail_bytes.max(CLASSIFY_BYTES);
            let tail = Arc::new(Mutex::new(VecDeque::with_capacity(kept)));
            let file = match log_file {
                Some(path) => Some(
                    path.parent()
                        .map_or(Ok(()), std::fs::create_dir_all)
                        .and_then(|()| std::fs::File::create(&path))
                        .map(tokio::fs::File::from_std)
                        .map_err(|source| StartError::Log {
                            path: path.clone(),
                            source,
                        })?,
                ),
                None => None,
            };
            // The live log's channel closes when both readers have ended.
            let sinks = Arc::new(tokio::sync::Mutex::new(Sinks { file, live }));
            let mut readers = Vec::new();
            if let Some(out) = child.stdout.take() {
                readers.push(tokio::spawn(pump(out, tail.clone(), kept, sinks.clone())));
            }
            if let Some(err) = child.stderr.take() {
                readers.push(tokio::spawn(pump(err, tail.clone(), kept, sinks)));
            }
            Ok(Running::Child {
                child: Box::new(child),
                pgid,
                tail,
                tail_bytes,
                readers,
                lifeline,
            })
        }
    }
}

/// How long a build's output readers may take to finish once its process has ended: a build
/// that leaves a daemon behind holding its pipes must not block the result.
const READER_DRAIN: Duration = Duration::from_secs(2);

/// A build dropped while it runs (its job abandoned at the drone's stop) dies with its whole
/// group: `kill_on_drop` alone kills the supervisor and orphans the build. Its readers stop.
impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Child {
            child,
            pgid,
            readers,
            ..
        } = self
        {
            if let (Some(pgid), Ok(None)) = (pgid, child.try_wait()) {
                let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
            }
            for reader in readers.drain(..) {
                reader.abort();
            }
        }
    }
}

impl Running {
    /// Tells the build's supervisor the drone is still alive to the swarm (after each quickly
    /// acknowledged heartbeat), which keeps the build alive for another deadline.
    pub async fn keep_alive(&mut self) {
        if let Running::Child {
            lifeline: Some(lifeline),
            ..
        } = self
        {
            use tokio::io::AsyncWriteExt;
            let _ = lifeline.write_all(b"\n").await;
        }
    }

    /// Waits for the build to end and returns its outcome.
    pub async fn wait(&mut self) -> BuildOutcome {
        match self {
            Running::Simulated { until, fails } => {
                tokio::time::sleep_until(*until).await;
                if *fails {
                    failed(ExitInfo::code(1), "simulated build failure", usize::MAX)
                } else {
                    BuildOutcome::Succeeded
                }
            }
            Running::Child {
                child,
                tail,
                tail_bytes,
                readers,
                ..
            } => {
                let status = child.wait().await;
                // The output pipes close when the process group's last writer exits; a build
                // that leaves a daemon behind holding them must not block the result.
                for reader in readers.drain(..) {
                    let _ = tokio::time::timeout(READER_DRAIN, reader).await;
                }
                match status {
                    Ok(status) if status.success() => BuildOutcome::Succeeded,
                    Ok(status) => {
                        use std::os::unix::process::ExitStatusExt;
                        let exit = ExitInfo {
                            code: status.code(),
                            signal: status.signal(),
                        };
                        failed(exit, &tail_text(tail), *tail_bytes)
                    }
                    // Not knowing how the build ended is the machine's trouble.
                    Err(err) => BuildOutcome::Failed {
                        exit: ExitInfo {
                            code: None,
                            signal: None,
                        },
                        log_tail: format!("cannot wait for the build process: {err}"),
                        class: schemas::FailureClass::Infrastructure,
                        signature: Some(format!("cannot wait for the build process: {err}")),
                    },
                }
            }
        }
    }

    /// Kills the whole process group and reaps the child.
    pub async fn kill(&mut self) {
        if let Running::Child {
            child,
            pgid,
            readers,
            ..
        } = self
        {
            if let Some(pgid) = pgid {
                let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
            }
            let _ = child.kill().await;
            // The killed group's pipes close; the readers write out what they hold.
            for reader in readers.drain(..) {
                let _ = tokio::time::timeout(READER_DRAIN, reader).await;
            }
        }
    }
}

/// The program's path when it can be executed: a path containing '/' as it is, a bare name
/// looked up in `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &std::path::Path| {
        std::fs::metadata(path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| executable(candidate))
    })
}

/// Where a build's output goes besides its tail: the log file and the live log, both written
/// under one lock, so they hold the output of stdout and stderr in the same order.
pub struct Sinks {
    file: Option<tokio::fs::File>,
    live: Option<tokio::sync::mpsc::UnboundedSender<bytes::Bytes>>,
}

async fn pump(
    mut source: impl AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<u8>>>,
    limit: usize,
    sinks: Arc<tokio::sync::Mutex<Sinks>>,
) {
    let mut buf = [0u8; 8192];
    loop {
        match source.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut tail) = tail.lock() {
                    tail.extend(&buf[..n]);
                    let excess = tail.len().saturating_sub(limit);
                    tail.drain(..excess);
                }
                let mut sinks = sinks.lock().await;
                if let Some(file) = &mut sinks.file {
                    let _ = file.write_all(&buf[..n]).await;
                }
                if let Some(live) = &sinks.live {
                    let _ = live.send(bytes::Bytes::copy_from_slice(&buf[..n]));
                }
            }
        }
    }
    // A tokio file writes in the background: without a flush the end of the log may not be in
    // the file when the build's result is reported.
    if let Some(file) = &mut sinks.lock().await.file {
        let _ = file.flush().await;
    }
}

/// How much of a build's output end is kept to classify a failure (emerge prints its summary
/// last, but a full disk may show a screen or two above it).
const CLASSIFY_BYTES: usize = 64 * 1024;

/// A failed build's outcome: classified on the whole kept output, reported with its last
/// `tail_bytes`.
fn failed(exit: ExitInfo, output: &str, tail_bytes: usize) -> BuildOutcome {
    let classification = crate::classify::classify(&exit, output);
    let mut start = output.len().saturating_sub(tail_bytes);
    while !output.is_char_boundary(start) {
        start += 1;
    }
    BuildOutcome::Failed {
        exit,
        log_tail: output[start..].to_owned(),
        class: classification.class,
        signature: classification.signature,
    }
}

fn tail_text(tail: &Arc<Mutex<VecDeque<u8>>>) -> String {
    match tail.lock() {
        Ok(tail) => {
            let bytes: Vec<u8> = tail.iter().copied().collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Err(_) => String::new(),
    }
}

/// A number in [0, 1) that varies between builds without a random-number dependency.
fn pseudo_random(env: &BuildEnv) -> f64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    env.atom.hash(&mut hasher);
    env.attempt.hash(&mut hasher);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;
