//! A swarm for one measurement: its own nats-server (file storage, in a temp dir), the
//! `swarm-coordinator` binary as a child process (so its memory can be read), and drones run
//! in this process as tasks, each with its own NATS connection and a probe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use async_nats::jetstream;
use schemas::{
    PackageRecord, SCHEMA_VERSION, SubmitItem, SubmitReply, SubmitRequest, SubmitResult,
};
use testkit::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where the swarm's binaries are: beside this benchmark's own executable (`scripts/bench.sh`
/// builds them all in one profile).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark's executable")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("the benchmark's executable has no directory"))?
        .to_path_buf();
    Ok(dir)
}

/// A binary of the swarm beside this one, or an error that says how to build it.
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing; build every binary in the benchmark's profile first (scripts/bench.sh does: cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space-separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

/// CPU time of the server, the coordinator and this process (the drones), in that order.
pub fn cpu_split(swarm: &Swarm) -> [f64; 3] {
    [
        swarm.server.pid().and_then(cpu_secs).unwrap_or(0.0),
        swarm.coordinator_pid().and_then(cpu_secs).unwrap_or(0.0),
        cpu_secs(std::process::id()).unwrap_or(0.0),
    ]
}

#[derive(Debug, Clone)]
pub struct Options {
    /// `jetstream { sync_interval: always }`: every write is fsynced before it is acknowledged.
    pub sync_always: bool,
    /// `SWARM_COORDINATOR__*` settings for this run, e.g. the scheduling policy.
    pub coordinator_env: Vec<(String, String)>,
}

pub struct Swarm {
    pub server: NatsServer,
    coordinator: Option<Child>,
    coordinator_env: Vec<(String, String)>,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    work: tempfile::TempDir,
}

impl Swarm {
    pub async fn start(options: &Options) -> anyhow::Result<Swarm> {
        let server = NatsServer::builder()
            .sync_always(options.sync_always)
            .start()
            .context("starting nats-server (run scripts/install-deps.sh)")?;
        let work = tempfile::Builder::new()
            .prefix("swarm-bench-")
            .tempdir()
            .context("creating the benchmark's temp dir")?;
        let client = async_nats::ConnectOptions::new()
            .name("swarm-bench")
            .connect(server.client_url())
            .await
            .context("connecting to the benchmark's nats-server")?;
        let js = jetstream::new(client.clone());
        let mut swarm = Swarm {
            server,
            coordinator: None,
            coordinator_env: options.coordinator_env.clone(),
            client,
            js,
            work,
        };
        swarm.spawn_coordinator()?;
        swarm.wait_for_topology().await?;
        Ok(swarm)
    }

    /// Stops the coordinator and starts it again (it loads every package record), waiting until
    /// it listens for submissions.
    pub async fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.coordinator.take() {
            stop_child(child).await;
        }
        self.spawn_coordinator()?;
        self.wait_for_topology().await
    }

    fn spawn_coordinator(&mut self) -> anyhow::Result<()> {
        let env = &self.coordinator_env;
        let log = std::fs::File::create(self.work.path().join("coordinator.log"))
            .context("creating the coordinator's log")?;
        let child = Command::new(sibling("swarm-coordinator")?)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SWARM_NATS__URL", self.server.client_url())
            .env("SWARM_LOG__FILTER", "warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone().context("cloning a log handle")?,
            ))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting swarm-coordinator")?;
        self.coordinator = Some(child);
        Ok(())
    }

    /// Waits until the coordinator has created the topology and listens for submissions. It
    /// subscribes only after loading its state, so a topology alone does not mean that a
    /// submission finds it (it would fail with "no responders").
    async fn wait_for_topology(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .js
                .get_key_value(schemas::names::PACKAGES_BUCKET)
                .await
                .is_ok()
                && self
                    .js
                    .get_stream(schemas::names::DEADLETTER_STREAM)
                    .await
                    .is_ok()
                && self.submissions_heard().await
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the coordinator did not create the topology and listen for submissions within 30 s; its log: {}",
            self.work.path().join("coordinator.log").display()
        )
    }

    /// Whether anyone subscribes to the submission subject, by the server's `/subsz`.
    async fn submissions_heard(&self) -> bool {
        let Ok(addr) = format!("127.0.0.1:{}", self.server.monitor_port()).parse() else {
            return false;
        };
        let Ok(response) =
            testkit::http::get(addr, "/subsz?subs=1&limit=100000", Duration::from_secs(5)).await
        else {
            return false;
        };
        response.json().is_ok_and(|subsz| {
            subsz["subscriptions_list"].as_array().is_some_and(|subs| {
                subs.iter()
                    .any(|sub| sub["subject"] == schemas::names::SUBMIT_SUBJECT)
            })
        })
    }

    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().map(Child::id)
    }

    pub fn coordinator_rss_kib(&self) -> Option<u64> {
        self.coordinator_pid().and_then(rss_kib)
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Submits `items` in requests of at most 5,000 (a request must fit the server's 1 MiB
    /// payload limit) and returns how long the coordinator took to accept them all.
    pub async fn submit(&self, items: Vec<SubmitItem>) -> anyhow::Result<Duration> {
        let started = Instant::now();
        for chunk in items.chunks(5_000) {
            let request = SubmitRequest {
                v: SCHEMA_VERSION,
                items: chunk.to_vec(),
                arch: None,
                fingerprint: None,
                run: None,
                priority: None,
            };
            let payload = schemas::encode(&request)?;
            let reply = self
                .client
                .send_request(
                    schemas::names::SUBMIT_SUBJECT,
                    async_nats::Request::new()
                        .payload(payload.into())
                        .timeout(Some(Duration::from_secs(300))),
                )
                .await
                .context("submitting to the coordinator")?;
            let reply: SubmitReply = schemas::decode(&reply.payload)?;
            match reply.result {
                SubmitResult::Accepted { .. } => {}
                other => bail!("submission not accepted: {other:?}"),
            }
        }
        Ok(started.elapsed())
    }

    /// Waits until the work stream is empty, the coordinator has applied every event (every job
    /// was acknowledged, so every result was stored before it, and applied) and no package is
    /// left unfinished.
    pub async fn wait_drained(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut builds = self.js.get_stream(schemas::names::BUILDS_STREAM).await?;
        let events = self.js.get_stream(schemas::names::EVENTS_STREAM).await?;
        let mut consumer = events
            .get_consumer::<jetstream::consumer::pull::Config>(
                schemas::names::COORDINATOR_EVENTS_CONSUMER,
            )
            .await
            .map_err(|e| anyhow!("opening the coordinator's consumer: {e}"))?;
        loop {
            let jobs = builds.info().await?.state.messages;
            if jobs == 0 {
                let info = consumer.info().await?;
                // With build dependencies the stream is empty for a moment between a result
                // and the release of what waited on it: drained means nothing unfinished.
                if info.num_pending == 0 && info.num_ack_pending == 0 {
                    let states = self.package_states().await?;
                    let unfinished = ["queued", "building", "retry_wait", "waiting"]
                        .iter()
                        .any(|state| states.get(*state).is_some_and(|n| *n > 0));
                    if !unfinished {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("the queue did not drain within {timeout:?}: {jobs} jobs left");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Packages by state label, read from the packages bucket.
    pub async fn package_states(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        let bucket = self
            .js
            .get_key_value(schemas::names::PACKAGES_BUCKET)
            .await?;
        let items = runtime::kv::read_bucket::<PackageRecord>(&bucket).await?;
        let mut counts = BTreeMap::new();
        for item in items {
            *counts
                .entry(item.value.state.label().to_owned())
                .or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Waits until `n` drones have written a record saying they are idle or building.
    pub async fn wait_online(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let bucket = self.js.get_key_value(schemas::names::DRONES_BUCKET).await?;
        loop {
            let records = runtime::kv::read_bucket::<schemas::DroneRecord>(&bucket).await?;
            let online = records
                .iter()
                .filter(|r| {
                    matches!(
                        r.value.state,
                        schemas::DroneState::Idle | schemas::DroneState::Building
                    )
                })
                .count();
            if online >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {online} of {n} drones came online within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages the server received and sent since it started (`/varz`).
    pub async fn server_messages(&self) -> anyhow::Result<(u64, u64)> {
        let addr = format!("127.0.0.1:{}", self.server.monitor_port()).parse()?;
        let response = testkit::http::get(addr, "/varz", Duration::from_secs(5))
            .await
            .context("reading /varz")?;
        let varz = response.json().context("parsing /varz")?;
        let field = |name: &str| varz.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
        Ok((field("in_msgs"), field("out_msgs")))
    }

    /// Starts drones in this process.
    pub fn spawn_drones(&self, specs: &[DroneSpec]) -> Drones {
        let token = CancellationToken::new();
        let mut handles = Vec::with_capacity(specs.len());
        let mut probes = Vec::with_capacity(specs.len());
        for spec in specs {
            let probe = Arc::new(crate::probe::Probe::new());
            let config = spec.config(&self.server.client_url());
            let token = token.clone();
            let task_probe = probe.clone();
            handles.push(tokio::spawn(async move {
                drone::run_observed(config, token, task_probe)
                    .await
                    .map_err(|e| anyhow!("{e}"))
            }));
            probes.push(probe);
        }
        Drones {
            token,
            handles,
            probes,
        }
    }

    pub async fn stop(mut self) {
        if let Some(child) = self.coordinator.take() {
            stop_child(child).await;
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if let Some(mut child) = self.coordinator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops a child process: SIGTERM, then SIGKILL if it has not exited within 10 s.
pub async fn stop_child(mut child: Child) {
    let _ = nix_kill(child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGTERM, the way an operator stops a daemon.
pub fn nix_kill(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -TERM {pid}: {status}")))
    }
}

/// One simulated drone.
#[derive(Debug, Clone)]
pub struct DroneSpec {
    pub name: String,
    pub cores: u32,
    /// 0: the drone's default (one per 4 cores).
    pub slots: u32,
    /// Multiplies every modelled build time; 0 makes every build a no-op.
    pub time_scale: f64,
    /// Modelled durations (seconds on 8 cores) by atom, the truth the scheduler must learn.
    pub model: Option<PathBuf>,
}

impl DroneSpec {
    pub fn noop(name: String, slots: u32) -> DroneSpec {
        DroneSpec {
            name,
            cores: slots,
            slots,
            time_scale: 0.0,
            model: None,
        }
    }

    fn config(&self, url: &str) -> drone::Config {
        let mut config = drone::Config::default();
        config.nats.url = url.to_owned();
        config.drone.name = self.name.clone();
        config.drone.cores = self.cores;
        config.drone.slots = self.slots;
        config.drone.builder = drone::config::BuilderKind::Simulate;
        config.drone.simulate.time_scale = self.time_scale;
        config.drone.simulate.model_file = self.model.clone();
        config.drone.shutdown_grace_ms = 1_000;
        config
    }
}

pub struct Drones {
    token: CancellationToken,
    handles: Vec<JoinHandle<anyhow::Result<()>>>,
    pub probes: Vec<Arc<crate::probe::Probe>>,
}

impl Drones {
    /// Every slot gap recorded by every drone so far.
    pub fn take_slot_gaps(&self) -> Vec<Duration> {
        self.probes
            .iter()
            .flat_map(|probe| probe.take_slot_gaps())
            .collect()
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        for handle in self.handles {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => bail!("a drone failed: {err:#}"),
                Err(err) => bail!("a drone task panicked: {err}"),
            }
        }
        Ok(())
    }
}

/// The `q` quantile (0..=1) of `values`, by the nearest-rank method.
pub fn quantile(values: &mut [Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&mut values, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&mut values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&mut values, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&mut [], 0.5), None);
        let mut one = vec![Duration::from_millis(7)];
        assert_eq!(quantile(&mut one, 0.99), Some(Duration::from_millis(7)));
    }
}
