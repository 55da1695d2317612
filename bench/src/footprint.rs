//! Footprint: resident memory (`VmRSS` from `/proc`) of the swarm's daemons as an operator runs
//! them: the real `swarm-drone` and `swarm-dashboard` binaries as child processes of this one,
//! configured only through `SWARM_*` environment variables, and the coordinator with a large
//! queue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use serde_json::Value;

use crate::dispatch::noop_items;
use crate::harness::{DroneSpec, Options, Swarm, rss_kib, sibling};
use crate::report::{fmt_opt, verdict};

/// Resident memory an idle drone must stay within, in KiB.
pub const MAX_IDLE_DRONE_KIB: u64 = 15 * 1_024;

#[derive(Debug, Clone)]
pub struct Sizes {
    /// Packages queued in the coordinator.
    pub queued_packages: usize,
    /// Slots (and cores) of the drone binary, all of them filled for the busy figure.
    pub drone_slots: u32,
    /// Drones the dashboard follows, and the packages they then build.
    pub dashboard_drones: usize,
    pub dashboard_packages: usize,
    /// How long a process is left as it is before its memory is read.
    pub settle: Duration,
    /// How long the dashboard's drones report before its memory is read.
    pub dashboard_follow: Duration,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            queued_packages: 100_000,
            drone_slots: 8,
            dashboard_drones: 100,
            dashboard_packages: 2_000,
            settle: Duration::from_secs(2),
            dashboard_follow: Duration::from_secs(5),
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            queued_packages: 300,
            drone_slots: 8,
            dashboard_drones: 10,
            dashboard_packages: 50,
            settle: Duration::from_millis(500),
            dashboard_follow: Duration::from_secs(1),
        }
    }
}

/// The coordinator's memory before a submission and with it queued.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Queued {
    pub idle_kib: u64,
    pub queued_kib: u64,
    pub packages: usize,
    /// Taken from the scale part's run rather than measured here.
    pub from_scale: bool,
}

impl Queued {
    pub fn bytes_per_package(&self) -> f64 {
        (self.queued_kib as f64 - self.idle_kib as f64) * 1_024.0 / self.packages as f64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    pub drone_idle_kib: Option<u64>,
    pub drone_slots: u32,
    pub drone_building_kib: Option<u64>,
    pub coordinator: Option<Queued>,
    pub dashboard_started_kib: Option<u64>,
    pub dashboard_drones: usize,
    pub dashboard_following_kib: Option<u64>,
    pub dashboard_packages: usize,
    pub dashboard_after_packages_kib: Option<u64>,
    pub idle_drone_target_met: bool,
    pub wall_secs: f64,
}

/// A daemon of the swarm run as an operator would: its binary, `SWARM_*` variables only.
struct Daemon {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, env: &[(&str, String)], log: PathBuf) -> anyhow::Result<Daemon> {
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(sibling(name)?)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SWARM_LOG__FILTER", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                file.try_clone().context("cloning a log handle")?,
            ))
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Daemon {
            name,
            child: Some(child),
            log,
        })
    }

    fn rss_kib(&self) -> Option<u64> {
        self.child.as_ref().and_then(|c| rss_kib(c.id()))
    }

    /// An error that says where the log is if the daemon has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited ({status}); its log: {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 10 s.
    async fn stop(mut self) {
        if let Some(child) = self.child.take() {
            crate::harness::stop_child(child).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn options() -> Options {
    Options {
        sync_always: false,
        coordinator_env: Vec::new(),
    }
}

/// Polls `check` every 100 ms until it yields a value, the daemon exits or `timeout` passes.
async fn wait_for<T, F, Fut>(
    daemon: &mut Daemon,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        daemon.check_alive()?;
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!(" (last error: {err:#})"),
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: not within {timeout:?}{last}; {}'s log: {}",
                daemon.name,
                daemon.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (a) and (b): one `swarm-drone` process, idle, then with every slot running a long
/// simulated build. Returns (idle KiB, busy KiB).
async fn drone(sizes: &Sizes) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let swarm = Swarm::start(&options()).await?;
    let slots = sizes.drone_slots;
    let env = [
        ("SWARM_NATS__URL", swarm.server.client_url()),
        ("SWARM_DRONE__NAME", "footprint-drone".to_owned()),
        ("SWARM_DRONE__CORES", slots.to_string()),
        ("SWARM_DRONE__SLOTS", slots.to_string()),
        ("SWARM_DRONE__BUILDER", "simulate".to_owned()),
        // Builds that outlast the measurement: an hour's estimate at one core each.
        ("SWARM_DRONE__SIMULATE__TIME_SCALE", "1.0".to_owned()),
        (
            "SWARM_DRONE__SIMULATE__DEFAULT_ESTIMATE_SECS",
            "3600".to_owned(),
        ),
        // On stop, running builds are handed back after a second rather than five minutes.
        ("SWARM_DRONE__SHUTDOWN_GRACE_MS", "1000".to_owned()),
    ];
    let mut daemon = Daemon::spawn("swarm-drone", &env, swarm.work_dir().join("drone.log"))?;
    let result = async {
        wait_for(
            &mut daemon,
            "the drone coming online",
            Duration::from_secs(30),
            || {
                let swarm = &swarm;
                async move { Ok(swarm.wait_online(1, Duration::ZERO).await.ok()) }
            },
        )
        .await?;
        tokio::time::sleep(sizes.settle).await;
        daemon.check_alive()?;
        let idle = daemon.rss_kib();

        let items = noop_items("footprint", slots as usize)
            .into_iter()
            .map(|mut item| {
                item.estimate_secs = Some(3_600.0);
                item
            })
            .collect();
        swarm.submit(items).await?;
        wait_for(
            &mut daemon,
            "every slot building",
            Duration::from_secs(30),
            || {
                let swarm = &swarm;
                async move {
                    let states = swarm.package_states().await?;
                    let building = states.get("building").copied().unwrap_or(0);
                    Ok((building >= slots as usize).then_some(()))
                }
            },
        )
        .await?;
        tokio::time::sleep(sizes.settle).await;
        daemon.check_alive()?;
        let busy = daemon.rss_kib();
        // Still all building: the figure is of a full drone.
        let states = swarm.package_states().await?;
        if states.get("building").copied().unwrap_or(0) < slots as usize {
            bail!("the drone's builds ended before its memory was read: {states:?}");
        }
        anyhow::Ok((idle, busy))
    }
    .await;
    daemon.stop().await;
    swarm.stop().await;
    result
}

/// (c): the coordinator before a submission and with `packages` queued, no drone online.
async fn coordinator(packages: usize) -> anyhow::Result<Queued> {
    let swarm = Swarm::start(&options()).await?;
    let result = async {
        let idle = swarm
            .coordinator_rss_kib()
            .ok_or_else(|| anyhow!("no coordinator memory"))?;
        swarm.submit(noop_items("footprint", packages)).await?;
        // As the scale part does: let the allocator settle after the answer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let queued = swarm
            .coordinator_rss_kib()
            .ok_or_else(|| anyhow!("no coordinator memory"))?;
        anyhow::Ok(Queued {
            idle_kib: idle,
            queued_kib: queued,
            packages,
            from_scale: false,
        })
    }
    .await;
    swarm.stop().await;
    result
}

/// Drones the dashboard shows as online, `None` until it has caught up with the buckets.
fn online_drones(state: &Value) -> Option<usize> {
    if state.get("ready").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    Some(
        state
            .get("drones")?
            .as_array()?
            .iter()
            .filter(|d| {
                matches!(
                    d.get("state").and_then(Value::as_str),
                    Some("idle" | "building")
                )
            })
            .count(),
    )
}

async fn api_state(addr: SocketAddr) -> anyhow::Result<Value> {
    let response = testkit::http::get(addr, "/api/state", Duration::from_secs(5)).await?;
    if response.status != 200 {
        bail!("/api/state answered {}", response.status);
    }
    Ok(response.json()?)
}

/// (d): the dashboard started, then following in-process drones, then after they built a
/// queue. Returns (started KiB, following KiB, after the queue KiB).
async fn dashboard(sizes: &Sizes) -> anyhow::Result<(Option<u64>, Option<u64>, Option<u64>)> {
    let swarm = Swarm::start(&options()).await?;
    let port = testkit::free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let env = [
        ("SWARM_NATS__URL", swarm.server.client_url()),
        ("SWARM_DASHBOARD__LISTEN", addr.to_string()),
    ];
    let mut daemon = Daemon::spawn(
        "swarm-dashboard",
        &env,
        swarm.work_dir().join("dashboard.log"),
    )?;
    let n = sizes.dashboard_drones;
    let specs: Vec<DroneSpec> = (0..n)
        .map(|i| DroneSpec::noop(format!("footprint-{i}"), 2))
        .collect();
    let mut fleet = None;
    let result = async {
        wait_for(
            &mut daemon,
            "the dashboard ready",
            Duration::from_secs(30),
            || async move { Ok(online_drones(&api_state(addr).await?).map(|_| ())) },
        )
        .await?;
        tokio::time::sleep(sizes.settle).await;
        let started = daemon.rss_kib();

        fleet = Some(swarm.spawn_drones(&specs));
        wait_for(
            &mut daemon,
            &format!("the dashboard showing {n} drones online"),
            Duration::from_secs(60 + n as u64 / 5),
            || async move {
                Ok(online_drones(&api_state(addr).await?)
                    .and_then(|online| (online >= n).then_some(())))
            },
        )
        .await?;
        tokio::time::sleep(sizes.dashboard_follow).await;
        daemon.check_alive()?;
        let following = daemon.rss_kib();

        let packages = sizes.dashboard_packages;
        swarm.submit(noop_items("footprint", packages)).await?;
        swarm
            .wait_drained(Duration::from_secs(60 + packages as u64 / 50))
            .await?;
        wait_for(
            &mut daemon,
            "the dashboard counting every package done",
            Duration::from_secs(30),
            || async move {
                let state = api_state(addr).await?;
                let done = state
                    .pointer("/progress/done")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                Ok((done >= packages as u64).then_some(()))
            },
        )
        .await?;
        tokio::time::sleep(sizes.settle).await;
        daemon.check_alive()?;
        let after = daemon.rss_kib();
        anyhow::Ok((started, following, after))
    }
    .await;
    if let Some(fleet) = fleet {
        fleet.stop().await?;
    }
    daemon.stop().await;
    swarm.stop().await;
    result
}

/// Every figure; the coordinator's is `from_scale` when the scale part measured the same queue.
pub async fn run(sizes: &Sizes, from_scale: Option<Queued>) -> anyhow::Result<Footprint> {
    let started = Instant::now();
    let (drone_idle_kib, drone_building_kib) = drone(sizes).await?;
    eprintln!(
        "footprint: drone idle {} KiB, building {} KiB",
        fmt_opt(drone_idle_kib.map(|k| k as f64), 0),
        fmt_opt(drone_building_kib.map(|k| k as f64), 0)
    );
    let coordinator = match from_scale {
        Some(queued) if queued.packages == sizes.queued_packages => queued,
        _ => coordinator(sizes.queued_packages).await?,
    };
    let (dashboard_started_kib, dashboard_following_kib, dashboard_after_packages_kib) =
        dashboard(sizes).await?;
    Ok(Footprint {
        drone_idle_kib,
        drone_slots: sizes.drone_slots,
        drone_building_kib,
        coordinator: Some(coordinator),
        dashboard_started_kib,
        dashboard_drones: sizes.dashboard_drones,
        dashboard_following_kib,
        dashboard_packages: sizes.dashboard_packages,
        dashboard_after_packages_kib,
        idle_drone_target_met: drone_idle_kib.is_some_and(|k| k <= MAX_IDLE_DRONE_KIB),
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

fn mib(kib: Option<u64>) -> String {
    fmt_opt(kib.map(|k| k as f64 / 1_024.0), 1)
}

pub fn markdown(footprint: &Footprint, sizes: &Sizes) -> String {
    let f = footprint;
    let mut md = format!(
        "## Footprint\n\nResident memory (`VmRSS`, `/proc/<pid>/status`) of the release binaries, each started as a child process of the benchmark with `SWARM_*` environment variables only, on a fresh swarm each. The drone: {slots} cores, {slots} slots, `simulate` builder; a simulated build is a timer inside the drone (a real build runs under a `swarm-drone supervise` child process, whose memory is not counted here). The dashboard follows in-process drones (2 slots each, own NATS connection each).\n\n| process | condition | RSS MiB | target |\n|---|---|---|---|\n",
        slots = f.drone_slots,
    );
    md.push_str(&format!(
        "| swarm-drone | online and idle for {:.1} s | {} | ≤ 15 MiB: {} |\n",
        sizes.settle.as_secs_f64(),
        mib(f.drone_idle_kib),
        verdict(f.idle_drone_target_met),
    ));
    md.push_str(&format!(
        "| swarm-drone | {} simulated builds running (all slots) | {} | – |\n",
        f.drone_slots,
        mib(f.drone_building_kib),
    ));
    if let Some(c) = &f.coordinator {
        let bytes = c.bytes_per_package();
        md.push_str(&format!(
            "| swarm-coordinator | topology created, nothing queued | {} | – |\n",
            mib(Some(c.idle_kib)),
        ));
        md.push_str(&format!(
            "| swarm-coordinator | {} packages queued, no drone online{} | {} ({bytes:.0} bytes per queued package) | ≤ 1 KiB per package: {} |\n",
            c.packages,
            if c.from_scale { " (the scale part's run)" } else { "" },
            mib(Some(c.queued_kib)),
            verdict(bytes <= crate::scale::MAX_BYTES_PER_PACKAGE),
        ));
    }
    md.push_str(&format!(
        "| swarm-dashboard | ready, no drones | {} | – |\n",
        mib(f.dashboard_started_kib),
    ));
    md.push_str(&format!(
        "| swarm-dashboard | following {} drones, all shown online, then {:.0} s of heartbeats | {} | – |\n",
        f.dashboard_drones,
        sizes.dashboard_follow.as_secs_f64(),
        mib(f.dashboard_following_kib),
    ));
    md.push_str(&format!(
        "| swarm-dashboard | after those drones built {} no-op packages (all shown done) | {} | – |\n",
        f.dashboard_packages,
        mib(f.dashboard_after_packages_kib),
    ));
    md.push_str(&format!(
        "\nTarget: an idle drone ≤ 15 MiB: {} ({} MiB).\n\nWall time: {:.0} s.\n",
        verdict(f.idle_drone_target_met),
        mib(f.drone_idle_kib),
        f.wall_secs,
    ));
    md
}
