//! `swarm-bench`: starts its own nats-server and the swarm's components and measures them. Run it
//! with `scripts/bench.sh` (release build of every binary first); `--quick` runs every part at
//! a small size, which is what the test suite does to keep the harness working.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;

mod binhost;
mod dispatch;
mod footprint;
mod harness;
mod probe;
mod report;
mod scale;
mod scheduling;

use report::{Report, fmt_opt, verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Dispatch,
    Scheduling,
    Scale,
    Footprint,
    Binhost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SyncMode {
    /// The server's default fsync interval (2 minutes).
    Default,
    /// `sync_interval: always`, the durable deployment setting.
    Always,
    /// Dispatch under both, side by side.
    Both,
}

#[derive(Debug, Parser)]
#[command(
    name = "swarm-bench",
    about = "Benchmarks of the build swarm against its limits"
)]
struct Args {
    /// Parts to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Part::Dispatch, Part::Scheduling, Part::Scale, Part::Footprint, Part::Binhost])]
    only: Vec<Part>,
    /// Server fsync setting for the dispatch part.
    #[arg(long, value_enum, default_value_t = SyncMode::Both)]
    sync: SyncMode,
    /// Small sizes everywhere: checks that the harness works, measures nothing worth reporting.
    #[arg(long)]
    quick: bool,
    /// The scheduling part's graph rows only (the world with its build dependencies).
    #[arg(long)]
    graph_only: bool,
    /// Packages of the dispatch part.
    #[arg(long, default_value_t = 20_000)]
    packages: usize,
    /// Directory for report.md and report.json.
    #[arg(long, default_value = "artifacts/bench")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut report = Report::default();
    let machine = report::machine();
    report.section(
        "machine",
        format!(
            "# Swarm benchmark\n\nMachine: {} ({} cores, {} GiB), Linux {}, {}, {} build{}.\n",
            machine["cpu"].as_str().unwrap_or_default(),
            machine["cores"],
            machine["memory_gib"],
            machine["kernel"].as_str().unwrap_or_default(),
            machine["nats_server"].as_str().unwrap_or_default(),
            machine["profile"].as_str().unwrap_or_default(),
            if args.quick {
                " (--quick: sizes too small for the figures to mean anything)"
            } else {
                ""
            },
        ),
        machine.clone(),
    );
    // The coordinator's memory with the big queue, measured by the scale part and reused by the
    // footprint part.
    let mut queued = None;
    for part in &args.only {
        match part {
            Part::Dispatch => run_dispatch(&args, &mut report).await?,
            Part::Scale => queued = run_scale(&args, &mut report).await?,
            Part::Footprint => run_footprint(&args, &mut report, queued).await?,
            Part::Scheduling => run_scheduling(&args, &mut report).await?,
            Part::Binhost => {
                // Quick: every package a thousand times smaller (about 1.4 MB in all).
                let result = binhost::run(if args.quick { 1_000 } else { 1 }).await?;
                report.section(
                    "binhost",
                    binhost::markdown(&result),
                    serde_json::to_value(&result)?,
                );
            }
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = serde_json::to_string_pretty(&report.to_json())?;
    std::fs::write(args.out.join("report.md"), &report.markdown)?;
    std::fs::write(args.out.join("report.json"), &json)?;
    println!("{}", report.markdown);
    println!("```json\n{json}\n```");
    Ok(())
}

async fn run_dispatch(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let packages = if args.quick { 300 } else { args.packages };
    let (drones, slots) = (4usize, 8u32);
    let modes: &[bool] = match args.sync {
        SyncMode::Default => &[false],
        SyncMode::Always => &[true],
        SyncMode::Both => &[false, true],
    };
    let mut markdown = format!(
        "## Dispatch\n\n{packages} no-op packages (`simulate` builder, zero duration) on {drones} drones × {slots} slots, queued before the drones start; the drain ends when the coordinator has applied every result. Raw: the same server, {drones} workers asking for their free slots (at most {slots}) and answering each message with `double_ack` only, on {packages} messages.\n\n| fsync | ours pkg/s | raw msg/s | ours / raw | slot free → next start p50 | p99 | broker msgs per pkg (in / out) | raw msgs per msg (in / out) | submit pkg/s | CPU s per 1k pkgs: server / coordinator / drones |\n|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut results = Vec::new();
    for &always in modes {
        let swarm = harness::Swarm::start(&harness::Options {
            sync_always: always,
            coordinator_env: Vec::new(),
        })
        .await?;
        let ours = dispatch::run_swarm(&swarm, "dispatch", packages, drones, slots).await?;
        let raw = dispatch::run_raw(&swarm, packages, drones, slots as usize).await?;
        swarm.stop().await;
        let ratio = ours.packages_per_sec / raw.messages_per_sec;
        let label = if always { "always" } else { "default (2 min)" };
        markdown.push_str(&format!(
            "| {label} | {:.0} | {:.0} | {:.2} | {} ms | {} ms | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} | {:.2} / {:.2} / {:.2} |\n",
            ours.packages_per_sec,
            raw.messages_per_sec,
            ratio,
            fmt_opt(ours.slot_gap_p50_ms, 2),
            fmt_opt(ours.slot_gap_p99_ms, 2),
            ours.server_in_msgs_per_package,
            ours.server_out_msgs_per_package,
            raw.server_in_msgs_per_message,
            raw.server_out_msgs_per_message,
            ours.submit_per_sec,
            ours.cpu_per_1000[0],
            ours.cpu_per_1000[1],
            ours.cpu_per_1000[2],
        ));
        results.push(json!({
            "sync_always": always,
            "ours": ours,
            "raw": raw,
            "ratio": ratio,
            "targets": {
                "ratio_at_least_one_third": ratio >= 1.0 / 3.0,
                "p99_at_most_10_ms": ours.slot_gap_p99_ms.is_some_and(|p| p <= 10.0),
            },
        }));
    }
    markdown.push_str("\nTargets: ours / raw ≥ 0.33; p99 slot free → next start ≤ 10 ms.\n\n");
    for result in &results {
        let always = result["sync_always"].as_bool().unwrap_or(false);
        markdown.push_str(&format!(
            "- fsync {}: ratio {} ({:.2}), p99 {} ({} ms)\n",
            if always { "always" } else { "default" },
            verdict(result["targets"]["ratio_at_least_one_third"].as_bool() == Some(true)),
            result["ratio"].as_f64().unwrap_or(0.0),
            verdict(result["targets"]["p99_at_most_10_ms"].as_bool() == Some(true)),
            fmt_opt(result["ours"]["slot_gap_p99_ms"].as_f64(), 2),
        ));
    }
    report.section("dispatch", markdown, json!(results));
    Ok(())
}

async fn run_scheduling(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    // At 0.002 the lower bound (about 15,400 model seconds) is 31 s of wall time; the shortest
    // builds (15 model seconds on 8 cores) still last 15 ms on an 8-core slot.
    let time_scale = if args.quick { 0.0002 } else { 0.002 };
    let result = scheduling::run(time_scale, args.graph_only, &args.out).await?;
    report.section(
        "scheduling",
        scheduling::markdown(&result),
        serde_json::to_value(&result)?,
    );
    Ok(())
}

async fn run_scale(args: &Args, report: &mut Report) -> anyhow::Result<Option<footprint::Queued>> {
    let sizes = if args.quick {
        scale::Sizes::quick()
    } else {
        scale::Sizes::full()
    };
    let result = scale::run(&sizes).await?;
    let queued = result
        .queued_memory()
        .map(|(idle_kib, queued_kib, packages)| footprint::Queued {
            idle_kib,
            queued_kib,
            packages,
            from_scale: true,
        });
    report.section(
        "scale",
        scale::markdown(&result, &sizes),
        serde_json::to_value(&result)?,
    );
    Ok(queued)
}

async fn run_footprint(
    args: &Args,
    report: &mut Report,
    queued: Option<footprint::Queued>,
) -> anyhow::Result<()> {
    let sizes = if args.quick {
        footprint::Sizes::quick()
    } else {
        footprint::Sizes::full()
    };
    let result = footprint::run(&sizes, queued).await?;
    report.section(
        "footprint",
        footprint::markdown(&result, &sizes),
        serde_json::to_value(&result)?,
    );
    Ok(())
}
