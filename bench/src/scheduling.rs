//! The scheduling part: the world-152 model on the seed's four drones, simulated on a time
//! scale, against the makespan's lower bound.
//!
//! The drones run the `simulate` builder with the model as their `model_file`: a build of a
//! package lasts its modelled seconds on 8 cores × 8 / the cores it gets × the time scale. The
//! coordinator is never told the model: the submission carries each package's size class only
//! (the TSV's third column), as a user without timings would submit it. Three runs:
//! - FIFO: the coordinator's `fifo` schedule, the submission in the model's order;
//! - longest-first, first run: estimates from the size classes only;
//! - longest-first, second run: the same queue submitted again to the same swarm, with the build
//!   times the coordinator learned from the first run;
//! - longest-first with the model's times submitted as estimates, on a fresh swarm (what
//!   `swarmctl submit world-152.tsv` does, the TSV carrying them).
//!
//! Then the same world as a graph (`world-152-deps.tsv`, 1,024 build edges), its packages
//! released as their dependencies succeed: FIFO in emerge order and longest-first by each
//! package's own estimate (the model's times submitted), then the default critical-path
//! schedule (each package's work plus the longest chain of work waiting on it, the critical
//! path on the largest drone) cold, its estimates imported from an `emerge.log` the way
//! `swarmctl submit --estimates` does (three past merges per package, 15 % under to 20 % over
//! the model's time), and warm, the same run submitted again with the learned times.
//!
//! Lower bound: max(total work / total cores, the longest package on the fastest drone), in
//! model seconds; for the graph also the critical path on the fastest drone. Idle slot-time: the slot-seconds drones had free while some package had not
//! started yet (from the build spans the in-process drones record).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::harness::{DroneSpec, Options, Swarm};

#[path = "scheduling_graph.rs"]
mod graph;
pub use graph::{critical_path, world_deps};
use graph::{emerge_log, release_latency};

/// One package of the model.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    pub atom: String,
    /// Seconds on 8 cores.
    pub secs: f64,
    pub class: Option<schemas::SizeClass>,
}

/// The world-152 model, read from the repository's fixture.
pub fn world() -> anyhow::Result<(std::path::PathBuf, Vec<ModelPackage>)> {
    let path = testkit::fixture("world-152.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut packages = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let atom = fields.next().unwrap_or_default().to_owned();
        let secs: f64 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{}: no seconds for {atom}", path.display()))?;
        let class = fields.next().and_then(schemas::SizeClass::parse);
        packages.push(ModelPackage { atom, secs, class });
    }
    Ok((path, packages))
}

/// The seed's drones: (name, cores). Slots are the drones' default, one per 4 cores.
pub const SEED: [(&str, u32); 4] = [
    ("drone-Izar", 16),
    ("drone-Tarn", 10),
    ("drone-Meridian", 24),
    ("drone-Tau-Beta", 8),
];

fn slots_of(cores: u32) -> usize {
    (cores / 4).max(1) as usize
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub label: String,
    /// From the submission to the last build's end, in model seconds.
    pub makespan_secs: f64,
    pub ratio_to_bound: f64,
    /// Slot-seconds (model) free while some package had not started.
    pub idle_slot_secs: f64,
    /// The same as a share of all slot-time until the last start.
    pub idle_share: f64,
    /// Which drone built the longest package, and with how many cores.
    pub longest_on: String,
    pub builds: usize,
    /// For a graph: wall milliseconds from a dependency's end to its dependent's start, p50
    /// and p99 over every package with dependencies in the run (waiting for a free slot
    /// included).
    pub release_ms: Option<(f64, f64)>,
    /// The builds that ended last: (atom, drone, cores, start, end), model seconds from the
    /// submission; they show what set the makespan.
    pub last_builds: Vec<(String, String, u32, f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchedulingResult {
    pub time_scale: f64,
    pub packages: usize,
    pub total_work_core_secs: f64,
    pub total_cores: u32,
    pub bound_secs: f64,
    pub bound_is: &'static str,
    /// The graph's longest chain of work, model seconds on 8 cores.
    pub critical_path_secs: f64,
    pub runs: Vec<RunResult>,
}

/// Lower bound of the makespan in model seconds, and which term sets it.
pub fn bound(model: &[ModelPackage], cores: &[u32]) -> (f64, &'static str) {
    let work: f64 = model.iter().map(|p| p.secs * 8.0).sum();
    let total: u32 = cores.iter().sum();
    let fastest = cores.iter().copied().max().unwrap_or(1);
    let longest = model.iter().map(|p| p.secs).fold(0.0, f64::max);
    let by_work = work / f64::from(total);
    let by_longest = longest * 8.0 / f64::from(fastest);
    if by_work >= by_longest {
        (by_work, "total work / total cores")
    } else {
        (by_longest, "longest package on the fastest drone")
    }
}

/// Runs the part; `graph_only`: only the rows of the world with its build dependencies.
pub async fn run(
    time_scale: f64,
    graph_only: bool,
    out: &std::path::Path,
) -> anyhow::Result<SchedulingResult> {
    let (path, model) = world()?;
    let cores: Vec<u32> = SEED.iter().map(|(_, c)| *c).collect();
    let (bound_secs, bound_is) = bound(&model, &cores);
    let specs: Vec<DroneSpec> = SEED
        .iter()
        .map(|(name, cores)| DroneSpec {
            name: (*name).to_owned(),
            cores: *cores,
            slots: 0,
            time_scale,
            model: Some(path.clone()),
        })
        .collect();
    let items: Vec<schemas::SubmitItem> = model
        .iter()
        .map(|p| schemas::SubmitItem {
            atom: p.atom.clone(),
            estimate_secs: None,
            class: p.class,
            deps: Vec::new(),
        })
        .collect();
    let timeout = Duration::from_secs_f64((bound_secs * time_scale * 6.0).max(60.0));
    let setup = Setup {
        time_scale,
        bound_secs,
        timeout,
        out,
    };
    let mut runs = Vec::new();

    // With the model's own times as submitted estimates (what `swarmctl submit world.tsv` sends).
    let estimated: Vec<schemas::SubmitItem> = model
        .iter()
        .map(|p| schemas::SubmitItem {
            atom: p.atom.clone(),
            estimate_secs: Some(p.secs),
            class: p.class,
            deps: Vec::new(),
        })
        .collect();
    let deps = world_deps()?;
    let graph: Vec<schemas::SubmitItem> = estimated
        .iter()
        .map(|item| schemas::SubmitItem {
            deps: deps.get(&item.atom).cloned().unwrap_or_default(),
            ..item.clone()
        })
        .collect();
    let critical_path_secs = critical_path(&model, &deps);
    // Cold: estimates from a user's emerge.log, read by swarmctl's own parser.
    let history = cli::emerge_log::parse(&emerge_log(&model));
    let cold: Vec<schemas::SubmitItem> = graph
        .iter()
        .map(|item| schemas::SubmitItem {
            estimate_secs: schemas::Atom::parse(&item.atom)
                .ok()
                .and_then(|atom| history.estimate(&atom)),
            ..item.clone()
        })
        .collect();
    let fifo = vec![("SWARM_COORDINATOR__SCHEDULE".to_owned(), "fifo".to_owned())];
    let by_own = vec![(
        "SWARM_COORDINATOR__SCHEDULE".to_owned(),
        "longest-first".to_owned(),
    )];
    // Each group of runs on a fresh swarm: (coordinator settings, [(items, label)]).
    let groups: [Group<'_>; 6] = [
        (fifo.clone(), vec![(&items, "FIFO (submission order)")]),
        (
            Vec::new(),
            vec![
                (&items, "longest-first, first run (size classes only)"),
                (&items, "longest-first, second run (learned estimates)"),
            ],
        ),
        (
            Vec::new(),
            vec![(&estimated, "longest-first, first run (submitted estimates)")],
        ),
        (
            fifo.clone(),
            vec![(
                &graph,
                "graph: FIFO in emerge order, released by dependencies",
            )],
        ),
        (
            by_own,
            vec![(
                &graph,
                "graph: longest-first by own estimates, no graph priority",
            )],
        ),
        (
            Vec::new(),
            vec![
                (
                    &cold,
                    "graph: critical path, cold (estimates from emerge.log)",
                ),
                (&cold, "graph: critical path, warm (second run, learned)"),
            ],
        ),
    ];
    let skip = if graph_only { 3 } else { 0 };
    for (coordinator_env, group) in groups.into_iter().skip(skip) {
        let swarm = Swarm::start(&Options {
            sync_always: false,
            coordinator_env,
        })
        .await?;
        let drones = swarm.spawn_drones(&specs);
        swarm
            .wait_online(specs.len(), Duration::from_secs(30))
            .await?;
        for (items, label) in group {
            runs.push(one_run(&swarm, &drones, items, label, &setup).await?);
        }
        drones.stop().await?;
        swarm.stop().await;
    }
    Ok(SchedulingResult {
        time_scale,
        packages: model.len(),
        total_work_core_secs: model.iter().map(|p| p.secs * 8.0).sum(),
        total_cores: cores.iter().sum(),
        bound_secs,
        bound_is,
        critical_path_secs,
        runs,
    })
}

/// One submission of a run: its items and the run's label.
type Submission<'a> = (&'a [schemas::SubmitItem], &'a str);
/// Runs on one fresh swarm: its coordinator's settings and its submissions, in order.
type Group<'a> = (Vec<(String, String)>, Vec<Submission<'a>>);

/// What every run of the part shares.
#[derive(Clone, Copy)]
struct Setup<'a> {
    time_scale: f64,
    bound_secs: f64,
    timeout: Duration,
    out: &'a std::path::Path,
}

async fn one_run(
    swarm: &Swarm,
    drones: &crate::harness::Drones,
    items: &[schemas::SubmitItem],
    label: &str,
    setup: &Setup<'_>,
) -> anyhow::Result<RunResult> {
    let Setup {
        time_scale,
        bound_secs,
        timeout,
        out,
    } = *setup;
    for probe in &drones.probes {
        probe.take_builds();
    }
    let graph: std::collections::BTreeMap<&str, &[String]> = items
        .iter()
        .filter(|i| !i.deps.is_empty())
        .map(|i| (i.atom.as_str(), i.deps.as_slice()))
        .collect();
    let submitted = Instant::now();
    swarm.submit(items.to_vec()).await?;
    swarm.wait_drained(timeout).await?;
    let states = swarm.package_states().await?;
    if states.get("succeeded").copied().unwrap_or(0) != items.len() {
        bail!("{label}: not every package succeeded: {states:?}");
    }
    // Per drone: its slots and its builds.
    let mut spans = Vec::new();
    for (probe, (name, cores)) in drones.probes.iter().zip(SEED) {
        for span in probe.take_builds() {
            spans.push((name, cores, span));
        }
    }
    if spans.len() < items.len() {
        bail!(
            "{label}: {} builds recorded for {} packages",
            spans.len(),
            items.len()
        );
    }
    let end = spans.iter().map(|(_, _, s)| s.end).max().expect("builds");
    let last_start = spans.iter().map(|(_, _, s)| s.start).max().expect("builds");
    let makespan = end.duration_since(submitted).as_secs_f64() / time_scale;
    // Idle slot-time until the last start: total slots × that time − slot-time used before it.
    let total_slots: usize = SEED.iter().map(|(_, c)| slots_of(*c)).sum();
    let window = last_start.duration_since(submitted).as_secs_f64();
    let used: f64 = spans
        .iter()
        .map(|(_, _, s)| {
            let from = s.start.max(submitted);
            let to = s.end.min(last_start);
            to.saturating_duration_since(from).as_secs_f64() * s.slots as f64
        })
        .sum();
    let idle = (total_slots as f64 * window - used).max(0.0);
    let longest = items
        .iter()
        .zip(world()?.1)
        .max_by(|a, b| a.1.secs.total_cmp(&b.1.secs))
        .map(|(i, _)| i.atom.clone())
        .unwrap_or_default();
    let longest_on = spans
        .iter()
        .filter(|(_, _, s)| s.atom == longest)
        .map(|(name, _, s)| format!("{name} ({} cores)", s.jobs))
        .collect::<Vec<_>>()
        .join(", ");
    // Every build of the run, for a closer look: atom, drone, cores, start, end (model seconds).
    let mut tsv = String::from("atom\tdrone\tcores\tstart_s\tend_s\n");
    for (name, _, s) in &spans {
        tsv.push_str(&format!(
            "{}\t{name}\t{}\t{:.0}\t{:.0}\n",
            s.atom,
            s.jobs,
            s.start.saturating_duration_since(submitted).as_secs_f64() / time_scale,
            s.end.saturating_duration_since(submitted).as_secs_f64() / time_scale,
        ));
    }
    let file: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join(format!("builds-{file}.tsv")), tsv)?;
    let mut by_end: Vec<_> = spans.iter().collect();
    by_end.sort_by_key(|(_, _, s)| std::cmp::Reverse(s.end));
    let model_secs =
        |at: Instant| at.saturating_duration_since(submitted).as_secs_f64() / time_scale;
    let last_builds = by_end
        .iter()
        .take(6)
        .map(|(name, _, s)| {
            (
                s.atom.clone(),
                (*name).to_owned(),
                s.jobs,
                model_secs(s.start).round(),
                model_secs(s.end).round(),
            )
        })
        .collect();
    let release_ms = (!graph.is_empty()).then(|| release_latency(&spans, &graph));
    Ok(RunResult {
        release_ms,
        last_builds,
        label: label.to_owned(),
        makespan_secs: makespan,
        ratio_to_bound: makespan / bound_secs,
        idle_slot_secs: idle / time_scale,
        idle_share: if window > 0.0 {
            idle / (total_slots as f64 * window)
        } else {
            0.0
        },
        longest_on,
        builds: spans.len(),
    })
}

pub fn markdown(result: &SchedulingResult) -> String {
    let mut out = format!(
        "## Scheduling\n\nThe world-152 model ({} packages, {:.0} core-seconds) on the seed's drones (Izar 16, Tarn 10, Meridian 24, Tau-Beta 8 cores = {} cores; one slot per 4 cores), `simulate` builder at time scale {} (figures below are in model seconds). The coordinator gets size classes only, except in the last row, where the submission carries the model's times as estimates (as `swarmctl submit world-152.tsv` does). Lower bound {:.0} s ({}).\n\n| schedule | makespan s | ÷ bound | idle slot-s while queued | idle share | longest package built on |\n|---|---|---|---|---|---|\n",
        result.packages,
        result.total_work_core_secs,
        result.total_cores,
        result.time_scale,
        result.bound_secs,
        result.bound_is,
    );
    for run in &result.runs {
        out.push_str(&format!(
            "| {} | {:.0} | {:.3} | {:.0} | {:.1} % | {} |\n",
            run.label,
            run.makespan_secs,
            run.ratio_to_bound,
            run.idle_slot_secs,
            run.idle_share * 100.0,
            run.longest_on,
        ));
    }
    out.push_str(&format!(
        "\nThe graph's rows build the same world with its 1,024 build dependencies; its critical path is {:.0} s on 8 cores ({:.0} s on the fastest drone's 24, {:.0} s on a 4-core slot), so the bound holds for them too.\n\nFrom a dependency's end to its dependent's start (wall milliseconds, waiting for a free slot included):\n\n| schedule | p50 ms | p99 ms |\n|---|---|---|\n",
        result.critical_path_secs,
        result.critical_path_secs * 8.0 / 24.0,
        result.critical_path_secs * 2.0,
    ));
    for run in &result.runs {
        if let Some((p50, p99)) = run.release_ms {
            out.push_str(&format!("| {} | {p50:.0} | {p99:.0} |\n", run.label));
        }
    }
    out.push_str("\nTarget: makespan ≤ 1.05 × bound.\n\n");
    for run in result.runs.iter().skip(1) {
        out.push_str(&format!(
            "- {}: {} ({:.3})\n",
            run.label,
            crate::report::verdict(run.ratio_to_bound <= 1.05),
            run.ratio_to_bound
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_bound_is_set_by_the_total_work() {
        let (_, model) = world().expect("fixture");
        assert_eq!(model.len(), 152);
        let (bound, by) = bound(&model, &[16, 10, 24, 8]);
        assert_eq!(by, "total work / total cores");
        assert!((bound - 111_935.0 * 8.0 / 58.0).abs() < 1e-6, "{bound}");
        // The graph's longest chain, as the run file's header states it.
        let deps = world_deps().expect("graph");
        assert_eq!(deps.values().map(Vec::len).sum::<usize>(), 1_024);
        assert!((critical_path(&model, &deps) - 40_185.0).abs() < 1e-6);
    }
}
