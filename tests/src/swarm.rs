//! The end-to-end harness: one swarm of real processes (nats-server or a cluster, the
//! coordinator, drones, the dashboard) started from the built binaries with test timings, and
//! what a test asks of it (swarmctl, the package records, submissions).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schemas::{PackageRecord, names};
use testkit::NatsServer;

use crate::{ACK_WAIT_MS, LEASE_TTL_MS, Proc, Record, bin, read_records, submit_with};

#[derive(Debug, Clone)]
pub struct DroneSpec {
    pub name: String,
    pub cores: u32,
    pub slots: u32,
    pub env: Vec<(String, String)>,
}

impl DroneSpec {
    pub fn new(name: &str, cores: u32, slots: u32) -> DroneSpec {
        DroneSpec {
            name: name.to_owned(),
            cores,
            slots,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> DroneSpec {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A drone with the `emerge` builder running the tests' fake emerge (a script on PATH that
    /// writes a real gpkg with Portage's code), its PKGDIR, logs and build folder under `dir`.
    pub fn fake_emerge(name: &str, dir: &std::path::Path) -> DroneSpec {
        let fake = testkit::fixture("fake-emerge");
        let path = format!(
            "{}:{}",
            fake.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let python = testkit::portage::python().expect("Portage for the fake emerge");
        let under = |leaf: &str| dir.join(leaf).display().to_string();
        DroneSpec::new(name, 2, 1)
            .env("PATH", &path)
            .env("SWARM_PORTAGE_PYTHON", &python.display().to_string())
            .env("SWARM_DRONE__BUILDER", "emerge")
            .env("SWARM_DRONE__PKGDIR", &under("pkgs"))
            .env("SWARM_DRONE__LOG_DIR", &under("logs"))
            .env("SWARM_DRONE__BUILD_DIR", &dir.display().to_string())
            .env("SWARM_DRONE__MIN_FREE_MB", "1")
            // No Portage configuration here: the fingerprint is the config's (every such drone
            // shares it); `fingerprints.rs` runs the Portage probe.
            .env("SWARM_DRONE__FINGERPRINT__SOURCE", "config")
    }
}

pub struct Swarm {
    /// The server, or the first node of a cluster.
    pub nats: NatsServer,
    /// The other nodes of a cluster (nodes `n2`, `n3`, ...).
    pub others: Vec<NatsServer>,
    /// What components are given as `nats.url`: the server, or every node of a cluster.
    pub url: String,
    /// User and password the harness itself (and `swarmctl`) connects with, on a server that
    /// requires them.
    pub auth: Option<(String, String)>,
    pub dir: tempfile::TempDir,
    pub coordinator: Option<Proc>,
    pub drones: HashMap<String, Proc>,
    pub dashboard: Option<Proc>,
    pub binhost: Option<Proc>,
    pub coordinator_env: Vec<(String, String)>,
}

impl Swarm {
    pub async fn start() -> Swarm {
        Swarm::start_with(&[]).await
    }

    /// Starts nats-server and the coordinator with test timings; `coordinator_env` adds or
    /// overrides `SWARM_COORDINATOR__*` settings.
    pub async fn start_with(coordinator_env: &[(&str, &str)]) -> Swarm {
        let nats = NatsServer::start().expect("nats-server starts");
        Swarm::start_on(nats, None, coordinator_env).await
    }

    /// Like [`start_with`](Self::start_with) on a server already running; `auth` is the user
    /// and password the harness and `swarmctl` use (the coordinator's own credential goes in
    /// `coordinator_env`).
    pub async fn start_on(
        nats: NatsServer,
        auth: Option<(String, String)>,
        coordinator_env: &[(&str, &str)],
    ) -> Swarm {
        let url = nats.client_url();
        Swarm::start_inner(nats, Vec::new(), url, auth, coordinator_env).await
    }

    /// Like [`start_with`](Self::start_with) on a NATS cluster: every component gets every
    /// node's URL. Waits until the cluster's JetStream answers before the coordinator starts.
    pub async fn start_on_cluster(
        cluster: testkit::NatsCluster,
        coordinator_env: &[(&str, &str)],
    ) -> Swarm {
        let url = cluster.urls();
        let config = runtime::nats::NatsConfig {
            url: url.clone(),
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = config.connect_once("swarm-tests").await
                && async_nats::jetstream::new(client)
                    .query_account()
                    .await
                    .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster's JetStream did not come up within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut nodes = cluster.nodes;
        let first = nodes.remove(0);
        Swarm::start_inner(first, nodes, url, None, coordinator_env).await
    }

    /// Node `i` of a cluster (0 is `n1`).
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        if i == 0 {
            &mut self.nats
        } else {
            &mut self.others[i - 1]
        }
    }

    async fn start_inner(
        nats: NatsServer,
        others: Vec<NatsServer>,
        url: String,
        auth: Option<(String, String)>,
        coordinator_env: &[(&str, &str)],
    ) -> Swarm {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: Vec<(String, String)> = vec![
            (
                "SWARM_COORDINATOR__LEASE_TTL_MS".into(),
                LEASE_TTL_MS.to_string(),
            ),
            (
                "SWARM_COORDINATOR__ACK_WAIT_MS".into(),
                ACK_WAIT_MS.to_string(),
            ),
            ("SWARM_COORDINATOR__RETRY_BACKOFF_MS".into(), "200".into()),
            (
                "SWARM_COORDINATOR__RETRY_BACKOFF_MAX_MS".into(),
                "1000".into(),
            ),
            (
                "SWARM_COORDINATOR__RECONCILE_INTERVAL_MS".into(),
                "500".into(),
            ),
            ("SWARM_COORDINATOR__MAX_DELIVER".into(), "20".into()),
        ];
        for (k, v) in coordinator_env {
            env.retain(|(key, _)| key != k);
            env.push(((*k).into(), (*v).into()));
        }
        let mut swarm = Swarm {
            nats,
            others,
            url,
            auth,
            dir,
            coordinator: None,
            drones: HashMap::new(),
            dashboard: None,
            binhost: None,
            coordinator_env: env,
        };
        swarm.spawn_coordinator();
        swarm.wait_for_topology().await;
        swarm
    }

    pub fn record_file(&self) -> PathBuf {
        self.dir.path().join("records.tsv")
    }

    pub(crate) fn base_command(&self, binary: &str, log_name: &str) -> Command {
        let mut command = Command::new(bin(binary));
        let log = std::fs::File::create(self.dir.path().join(format!("{log_name}.log")))
            .expect("log file");
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWARM_NATS__URL", self.url.clone())
            .env("RUST_LOG", "info,swarm_drone=debug,swarm_coordinator=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        command
    }

    pub fn spawn_coordinator(&mut self) {
        let mut command = self.base_command("swarm-coordinator", "coordinator");
        command.envs(self.coordinator_env.iter().map(|(k, v)| (k, v)));
        command.env("SWARM_COORDINATOR__NAME", "coordinator");
        let child = command.spawn().expect("coordinator starts");
        self.coordinator = Some(Proc {
            name: "coordinator".into(),
            child,
        });
    }

    /// A client of this swarm's server, with the harness's credential when there is one.
    pub async fn client(&self) -> async_nats::Client {
        let mut config = runtime::nats::NatsConfig {
            url: self.url.clone(),
            ..Default::default()
        };
        if let Some((user, password)) = &self.auth {
            config.user = Some(user.clone());
            config.password = Some(password.clone());
        }
        config
            .connect_once("swarm-tests")
            .await
            .expect("the harness connects")
    }

    async fn wait_for_topology(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        {
            let client = self.client().await;
            let js = async_nats::jetstream::new(client);
            while Instant::now() < deadline {
                // A restricted harness user (the operator) may read the buckets only; the
                // packages bucket is created after the streams either way.
                if js.get_key_value(names::PACKAGES_BUCKET).await.is_ok()
                    && (self.auth.is_some()
                        || js.get_stream(names::DEADLETTER_STREAM).await.is_ok())
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!(
                "coordinator did not create the topology; see {}",
                self.dir.path().display()
            );
        }
    }

    /// Starts a drone running the recording build script.
    pub fn spawn_drone(&mut self, spec: &DroneSpec) {
        let mut command = self.base_command("swarm-drone", &spec.name);
        let script = testkit::fixture("record-build.sh");
        command
            .env("SWARM_DRONE__NAME", &spec.name)
            .env("SWARM_DRONE__CORES", spec.cores.to_string())
            .env("SWARM_DRONE__SLOTS", spec.slots.to_string())
            .env("SWARM_DRONE__BUILDER", "command")
            .env(
                "SWARM_DRONE__COMMAND",
                format!("[\"{}\", \"{{atom}}\"]", script.display()),
            )
            .env("SWARM_DRONE__HEARTBEAT_MS", "300")
            .env("SWARM_DRONE__PULL_EXPIRES_MS", "2000")
            .env("SWARM_DRONE__AVOID_DELAY_MS", "300")
            .env("SWARM_DRONE__SHUTDOWN_GRACE_MS", "10000")
            .env("RECORD_FILE", self.record_file())
            .env("WORLD_TSV", testkit::fixture("world-152.tsv"));
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().expect("drone starts");
        self.drones.insert(
            spec.name.clone(),
            Proc {
                name: spec.name.clone(),
                child,
            },
        );
    }

    /// Starts the dashboard binary listening on `127.0.0.1:<port>`; its log is `dashboard.log`
    /// (appended to across restarts).
    pub fn spawn_dashboard(&mut self, port: u16) {
        self.spawn_dashboard_with(port, &[]);
    }

    /// [`spawn_dashboard`](Self::spawn_dashboard) with more environment (a credential).
    pub fn spawn_dashboard_with(&mut self, port: u16, env: &[(&str, &str)]) {
        self.dashboard = Some(self.spawn_http_service("dashboard", port, env));
    }

    /// Starts `swarm-binhost` listening on `127.0.0.1:<port>`; its log is `binhost.log`.
    pub fn spawn_binhost(&mut self, port: u16) {
        self.spawn_binhost_with(port, &[]);
    }

    /// [`spawn_binhost`](Self::spawn_binhost) with more environment (a credential).
    pub fn spawn_binhost_with(&mut self, port: u16, env: &[(&str, &str)]) {
        self.binhost = Some(self.spawn_http_service("binhost", port, env));
    }

    /// Starts `swarm-<name>` (an HTTP service configured by `SWARM_<NAME>__LISTEN`) on
    /// `127.0.0.1:<port>`, its log appended to `<name>.log`.
    fn spawn_http_service(&self, name: &str, port: u16, env: &[(&str, &str)]) -> Proc {
        let log_path = self.dir.path().join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("service log");
        let mut command = Command::new(bin(&format!("swarm-{name}")));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWARM_NATS__URL", self.url.clone())
            .env(
                format!("SWARM_{}__LISTEN", name.to_uppercase()),
                format!("127.0.0.1:{port}"),
            )
            .env("RUST_LOG", format!("info,swarm_{name}=debug"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().expect("service starts");
        Proc {
            name: name.into(),
            child,
        }
    }

    /// Runs `swarmctl ARGS --json` and parses its one JSON document.
    pub fn swarmctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let output = self.swarmctl(&all);
        assert!(
            output.status.success(),
            "swarmctl {all:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("swarmctl prints JSON")
    }

    pub fn drone(&mut self, name: &str) -> &mut Proc {
        self.drones.get_mut(name).expect("drone exists")
    }

    /// Runs swarmctl against this swarm (with the harness's credential when there is one) and
    /// returns its output.
    /// `swarmctl ARGS`: whether it succeeded, and what it printed (stdout, then stderr).
    pub fn swarmctl_text(&self, args: &[&str]) -> (bool, String) {
        let out = self.swarmctl(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn swarmctl(&self, args: &[&str]) -> std::process::Output {
        self.swarmctl_command(args).output().expect("swarmctl runs")
    }

    /// `swarmctl ARGS` as this swarm's operator runs it, to spawn (stdin closed).
    pub fn swarmctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin("swarmctl"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWARM_NATS__URL", self.url.clone());
        if let Some((user, password)) = &self.auth {
            command
                .env("SWARM_NATS__USER", user)
                .env("SWARM_NATS__PASSWORD", password);
        }
        command.args(args).stdin(Stdio::null());
        command
    }

    pub fn records(&self) -> Vec<Record> {
        read_records(&self.record_file())
    }

    /// Every package record, by atom. A read that fails (a NATS node failing over under it) is
    /// tried again for up to 30 s.
    pub async fn packages(&self) -> HashMap<String, PackageRecord> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let read = async {
                let client = self.client().await;
                let js = async_nats::jetstream::new(client);
                let kv = runtime::kv::open_bucket(&js, names::PACKAGES_BUCKET).await?;
                let items = runtime::kv::read_bucket::<PackageRecord>(&kv).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(items)
            };
            match read.await {
                Ok(items) => {
                    return items
                        .into_iter()
                        .map(|item| (item.value.atom.to_string(), item.value))
                        .collect();
                }
                Err(err) if Instant::now() < deadline => {
                    eprintln!("reading the packages bucket failed ({err}); trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(err) => panic!("cannot read the packages bucket for 30 s: {err}"),
            }
        }
    }

    /// Waits until `count` packages exist and every one is final; panics with the states seen
    /// on timeout.
    pub async fn wait_final(
        &self,
        count: usize,
        timeout: Duration,
    ) -> HashMap<String, PackageRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let packages = self.packages().await;
            if packages.len() >= count && packages.values().all(|p| p.state.is_final()) {
                return packages;
            }
            if Instant::now() > deadline {
                let mut by_state: HashMap<&str, usize> = HashMap::new();
                for p in packages.values() {
                    *by_state.entry(p.state.label()).or_default() += 1;
                }
                panic!(
                    "not all {count} packages final after {timeout:?}: {by_state:?}; logs in {}",
                    self.dir.path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Submits atoms to the coordinator as swarmctl does, over the harness's connection (every
    /// node of a cluster), and returns the reply.
    pub async fn submit(&self, atoms: &[(String, Option<f64>)]) -> schemas::SubmitResult {
        let client = self.client().await;
        submit_with(&client, atoms).await
    }

    /// Waits until the coordinator answers requests (it subscribes a moment after it starts),
    /// for a test that talks to it through `swarmctl` first thing.
    pub async fn wait_coordinator(&self) {
        let client = self.client().await;
        let status = schemas::encode(&schemas::BinhostRequest {
            v: schemas::SCHEMA_VERSION,
            arch: None,
            fingerprint: None,
            command: schemas::BinhostCommand::Status,
        })
        .expect("encode");
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(err) = client
            .request(names::BINHOST_SUBJECT, status.clone().into())
            .await
        {
            assert!(
                Instant::now() < deadline,
                "the coordinator does not answer: {err}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Swarm {
    /// A failed test keeps its logs and records for inspection.
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(empty) = tempfile::tempdir()
        {
            let dir = std::mem::replace(&mut self.dir, empty);
            eprintln!("swarm logs kept in {}", dir.keep().display());
        }
    }
}
