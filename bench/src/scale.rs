//! Scale: end-to-end throughput of zero-duration `simulate` builds and the coordinator's
//! resident memory as the queue and the fleet grow, each against a small reference run (4
//! drones × 8 slots, 1,000 packages). Every configuration runs on a fresh swarm (its own
//! nats-server and coordinator) with [`run_swarm`]: the whole queue is submitted with no drone
//! online, then the drones start and the drain is timed until the coordinator has applied every
//! result, exactly as the dispatch part measures it.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dispatch::{SwarmRun, run_swarm};
use crate::harness::{DroneSpec, Options, Swarm, cpu_secs};
use crate::report::{fmt_opt, verdict};

/// Throughput that must be kept, as a fraction of the reference's.
pub const MIN_RATIO: f64 = 0.8;
/// Coordinator memory per queued package that must not be exceeded, in bytes.
pub const MAX_BYTES_PER_PACKAGE: f64 = 1_024.0;

#[derive(Debug, Clone)]
pub struct Sizes {
    /// Packages of the reference run (4 × 8).
    pub reference_packages: usize,
    /// How many times the reference runs (each on a fresh swarm); its median is the reference.
    pub reference_repeats: usize,
    /// Packages queued before 4 × 8 drones start.
    pub queued_packages: usize,
    /// Fleet sizes, each drone on its own NATS connection.
    pub fleets: Vec<usize>,
    pub fleet_slots: u32,
    /// Packages of each fleet run (and of the 4 × 8 control run at the same size).
    pub fleet_packages: usize,
    /// How many times the control and each fleet run (each on a fresh swarm); the row is the
    /// median run.
    pub fleet_repeats: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            reference_packages: 1_000,
            reference_repeats: 5,
            queued_packages: 100_000,
            fleets: vec![10, 100, 500],
            fleet_slots: 2,
            fleet_packages: 20_000,
            fleet_repeats: 3,
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            reference_packages: 100,
            reference_repeats: 1,
            queued_packages: 300,
            fleets: vec![10, 100],
            fleet_slots: 2,
            fleet_packages: 200,
            fleet_repeats: 1,
        }
    }
}

/// What a configuration is for: the reference, a control, or one with a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Reference,
    /// 4 × 8 on the fleets' queue size: separates the effect of the queue size from that of the
    /// fleet.
    Control,
    Queued,
    Fleet,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub label: String,
    pub role: Role,
    /// The median run of the row's repeats (the figures below are its).
    pub run: SwarmRun,
    /// Packages per second of every repeat, in the order they ran.
    pub runs_per_sec: Vec<f64>,
    /// Throughput (the median run's) over the reference's (median) throughput.
    pub ratio: f64,
    /// Coordinator memory per queued package (ΔRSS / packages), in bytes.
    pub bytes_per_package: Option<f64>,
    /// Seconds for this fleet to come online on the same swarm once the drain was over (the
    /// queue empty), timed separately: how much of the drain its start-up can account for.
    pub fleet_online_secs: Option<f64>,
    /// CPU seconds the machine spent outside this benchmark's processes (this one, its server
    /// and coordinator) while the row's repeats ran: another workload competing for the cores.
    pub other_cpu_secs: Option<f64>,
    /// The target this row is held to, if any, and whether it was met.
    pub ratio_target_met: Option<bool>,
    pub memory_target_met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub reference_per_sec: f64,
    pub rows: Vec<Row>,
    pub wall_secs: f64,
}

impl Scale {
    /// The coordinator's memory with the big queue queued: (idle KiB, queued KiB, packages).
    pub fn queued_memory(&self) -> Option<(u64, u64, usize)> {
        self.rows
            .iter()
            .find(|row| row.role == Role::Queued)
            .and_then(|row| {
                Some((
                    row.run.coordinator_rss_idle_kib?,
                    row.run.coordinator_rss_queued_kib?,
                    row.run.packages,
                ))
            })
    }
}

fn options() -> Options {
    Options {
        sync_always: false,
        coordinator_env: Vec::new(),
    }
}

/// Busy CPU seconds of the whole machine since boot, from `/proc/stat`.
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    let busy: f64 = fields.iter().take(8).sum::<f64>() - fields.get(3)? - fields.get(4)?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(busy / 100.0)
}

struct One {
    run: SwarmRun,
    online: Option<f64>,
    other_cpu_secs: Option<f64>,
}

/// One configuration on a fresh swarm; for a fleet, also the time the same fleet takes to come
/// online afterwards on the drained swarm.
async fn one(
    label: &str,
    packages: usize,
    drones: usize,
    slots: u32,
    time_online: bool,
) -> anyhow::Result<One> {
    let busy_before = machine_busy_secs();
    let self_before = cpu_secs(std::process::id());
    let swarm = Swarm::start(&options()).await?;
    let result = async {
        let run = run_swarm(&swarm, label, packages, drones, slots).await?;
        let online = if time_online {
            Some(fleet_online_secs(&swarm, label, drones, slots).await?)
        } else {
            None
        };
        anyhow::Ok((run, online))
    }
    .await;
    // The server and the coordinator started with this row: their whole CPU time is its.
    let ours = [
        swarm.server.pid().and_then(cpu_secs),
        swarm.coordinator_pid().and_then(cpu_secs),
        cpu_secs(std::process::id())
            .zip(self_before)
            .map(|(a, b)| a - b),
    ]
    .into_iter()
    .sum::<Option<f64>>();
    let other_cpu_secs = machine_busy_secs()
        .zip(busy_before)
        .zip(ours)
        .map(|((after, before), ours)| (after - before - ours).max(0.0));
    swarm.stop().await;
    let (run, online) = result?;
    Ok(One {
        run,
        online,
        other_cpu_secs,
    })
}

/// Starts the fleet of `run_swarm` again (same names) on an empty queue and times until every
/// drone has written an online record.
async fn fleet_online_secs(
    swarm: &Swarm,
    label: &str,
    drones: usize,
    slots: u32,
) -> anyhow::Result<f64> {
    let specs: Vec<DroneSpec> = (0..drones)
        .map(|i| DroneSpec::noop(format!("bench-{label}-{i}"), slots))
        .collect();
    let started = Instant::now();
    let fleet = swarm.spawn_drones(&specs);
    let online = swarm
        .wait_online(drones, Duration::from_secs(60 + drones as u64 / 5))
        .await;
    let secs = started.elapsed().as_secs_f64();
    fleet.stop().await?;
    online?;
    Ok(secs)
}

struct Repeated {
    run: SwarmRun,
    online: Option<f64>,
    other_cpu_secs: Option<f64>,
    runs_per_sec: Vec<f64>,
}

/// `repeats` runs of one configuration, each on a fresh swarm: the median run (the lower
/// middle one for an even count), with every run's throughput and the other processes' CPU of
/// them all.
async fn repeated(
    label: &str,
    packages: usize,
    drones: usize,
    slots: u32,
    time_online: bool,
    repeats: usize,
) -> anyhow::Result<Repeated> {
    let mut runs = Vec::new();
    for i in 0..repeats.max(1) {
        let run = one(&format!("{label}{i}"), packages, drones, slots, time_online).await?;
        eprintln!(
            "scale: {label} ({} of {}): {:.0} pkg/s",
            i + 1,
            repeats.max(1),
            run.run.packages_per_sec
        );
        runs.push(run);
    }
    let runs_per_sec: Vec<f64> = runs.iter().map(|r| r.run.packages_per_sec).collect();
    let other_cpu_secs = runs.iter().map(|r| r.other_cpu_secs).sum::<Option<f64>>();
    runs.sort_by(|a, b| a.run.packages_per_sec.total_cmp(&b.run.packages_per_sec));
    let middle = runs.swap_remove((runs.len() - 1) / 2);
    Ok(Repeated {
        run: middle.run,
        online: middle.online,
        other_cpu_secs,
        runs_per_sec,
    })
}

pub async fn run(sizes: &Sizes) -> anyhow::Result<Scale> {
    let started = Instant::now();
    let (drones, slots) = (4usize, 8u32);

    let reference = repeated(
        "reference",
        sizes.reference_packages,
        drones,
        slots,
        false,
        sizes.reference_repeats,
    )
    .await?;
    let reference_per_sec = reference.run.packages_per_sec;

    let largest_fleet = sizes.fleets.iter().copied().max().unwrap_or(0);
    let mut rows = Vec::new();
    let mut push = |label: String, role: Role, repeats: Repeated| {
        let Repeated {
            run,
            online,
            other_cpu_secs,
            runs_per_sec,
        } = repeats;
        let ratio = run.packages_per_sec / reference_per_sec;
        let bytes_per_package = run.coordinator_bytes_per_package();
        let held = role == Role::Queued || (role == Role::Fleet && run.drones == largest_fleet);
        eprintln!(
            "scale: {label}: {:.0} pkg/s ({ratio:.2} of the reference)",
            run.packages_per_sec
        );
        rows.push(Row {
            label,
            role,
            runs_per_sec,
            ratio,
            bytes_per_package,
            fleet_online_secs: online,
            other_cpu_secs,
            ratio_target_met: held.then_some(ratio >= MIN_RATIO),
            memory_target_met: (role == Role::Queued)
                .then(|| bytes_per_package.is_some_and(|b| b <= MAX_BYTES_PER_PACKAGE)),
            run,
        });
    };
    push("reference".to_owned(), Role::Reference, reference);

    let run = repeated("queued", sizes.queued_packages, drones, slots, false, 1).await?;
    push(
        format!("{} queued", sizes.queued_packages),
        Role::Queued,
        run,
    );

    let run = repeated(
        "control",
        sizes.fleet_packages,
        drones,
        slots,
        true,
        sizes.fleet_repeats,
    )
    .await?;
    push("control".to_owned(), Role::Control, run);

    for &fleet in &sizes.fleets {
        let run = repeated(
            &format!("fleet{fleet}"),
            sizes.fleet_packages,
            fleet,
            sizes.fleet_slots,
            true,
            sizes.fleet_repeats,
        )
        .await?;
        push(format!("{fleet} drones"), Role::Fleet, run);
    }

    Ok(Scale {
        reference_per_sec,
        rows,
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

/// "5321 (5026–5469)": the median run's throughput and the range of every run's.
fn per_sec(median: f64, runs: &[f64]) -> String {
    let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if runs.len() > 1 {
        format!("{median:.0} ({min:.0}–{max:.0})")
    } else {
        format!("{median:.0}")
    }
}

fn mib(kib: Option<u64>) -> String {
    fmt_opt(kib.map(|k| k as f64 / 1_024.0), 1)
}

pub fn markdown(scale: &Scale, sizes: &Sizes) -> String {
    let largest = sizes.fleets.iter().copied().max().unwrap_or(0);
    let mut md = format!(
        "## Scale\n\nZero-duration `simulate` builds, end to end: on a fresh swarm per row (server fsync at its default interval), the whole queue is submitted with no drone online, then the drones start (in this process, each with its own NATS connection) and the drain is timed until the coordinator has applied every result. Reference: 4 drones × 8 slots, {} packages, the median of {} runs. Fleets: {} slots per drone (so that {} drones have {} slots against 32 in the reference: the fleet, not its slots, is what grows), {} packages each; the control row is 4 × 8 on the same {} packages, so that the fleets' ratios can be told apart from the effect of the queue size; the control and each fleet are the median of {} runs. Every run is on a fresh swarm; pkg/s is the median run's, with the range of the runs in brackets. \"Online\" is the time the same fleet took to come online afterwards on the drained swarm, measured separately: it is part of that row's drain. \"Other processes' CPU\" is the time the machine was busy outside the benchmark's own processes (this one, its server and its coordinator) while the row ran, from `/proc/stat`: anything well above zero means another workload competed for the cores and the row's throughput is understated.\n\n| run | drones × slots | packages | submit pkg/s | drain s | pkg/s | / reference | online s | coordinator RSS idle → queued MiB | bytes per queued pkg | CPU s per 1k pkgs: server / coordinator / drones | other processes' CPU s | target |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        sizes.reference_packages,
        sizes.reference_repeats,
        sizes.fleet_slots,
        largest,
        largest * sizes.fleet_slots as usize,
        sizes.fleet_packages,
        sizes.fleet_packages,
        sizes.fleet_repeats,
    );
    for row in &scale.rows {
        let run = &row.run;
        let mut targets = Vec::new();
        if let Some(met) = row.ratio_target_met {
            targets.push(format!("ratio ≥ {MIN_RATIO}: {}", verdict(met)));
        }
        if let Some(met) = row.memory_target_met {
            targets.push(format!("≤ 1 KiB per pkg: {}", verdict(met)));
        }
        md.push_str(&format!(
            "| {} | {} × {} | {} | {:.0} | {:.2} | {} | {:.2} | {} | {} → {} | {} | {:.2} / {:.2} / {:.2} | {} | {} |\n",
            row.label,
            run.drones,
            run.slots_per_drone,
            run.packages,
            run.submit_per_sec,
            run.drain_secs,
            per_sec(run.packages_per_sec, &row.runs_per_sec),
            row.ratio,
            fmt_opt(row.fleet_online_secs, 2),
            mib(run.coordinator_rss_idle_kib),
            mib(run.coordinator_rss_queued_kib),
            fmt_opt(row.bytes_per_package, 0),
            run.cpu_per_1000[0],
            run.cpu_per_1000[1],
            run.cpu_per_1000[2],
            fmt_opt(row.other_cpu_secs, 1),
            if targets.is_empty() {
                "–".to_owned()
            } else {
                targets.join("; ")
            },
        ));
    }
    md.push_str(&format!(
        "\nTargets: {} drones and {} queued within 20% of the reference (ratio ≥ {MIN_RATIO}); coordinator ≤ 1 KiB per queued package. The drones' CPU is this process's, which also runs the harness.\n\n",
        largest,
        sizes.queued_packages,
    ));
    for row in &scale.rows {
        if let Some(met) = row.ratio_target_met {
            md.push_str(&format!(
                "- {}: throughput {} ({:.2} of the reference)\n",
                row.label,
                verdict(met),
                row.ratio
            ));
        }
        if let Some(met) = row.memory_target_met {
            md.push_str(&format!(
                "- {}: coordinator memory {} ({} bytes per queued package)\n",
                row.label,
                verdict(met),
                fmt_opt(row.bytes_per_package, 0)
            ));
        }
    }
    md.push_str(&format!("\nWall time: {:.0} s.\n", scale.wall_secs));
    md
}
