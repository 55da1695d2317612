//! Benchmark of the dashboard with a run of 100,000 packages in a build-dependency graph: the
//! memory the fold's package views take, and the time of one snapshot, which works out the run's
//! critical path and what each waiting package waits for — made afresh, and as the fold's task
//! makes them every tick, reusing its last forecast within its budget. Run with
//!
//! ```sh
//! cargo bench -p swarm-dashboard --bench graph
//! ```
//!
//! The graph is 50 layers of 2,000 packages (`GRAPH_BENCH_WIDTH` sets the layers' width), each
//! package depending on three of the layer before it: the first ten layers built, the eleventh half building and half queued, the rest
//! waiting, 100 drones of 16 cores online. The same packages without dependencies are measured
//! too: what the graph adds. Memory is the resident set's growth while the records are folded one
//! by one (`/proc/self/statm`), both pictures kept; it includes the atom parser's interned names
//! (about 30 bytes per distinct name, see the fold benchmark).

use std::time::{Duration, Instant};

use schemas::fixtures;
use schemas::{DroneRecord, DroneState, PackageKey, PackageRecord, PackageState};
use swarm_dashboard::fold::{Input, Swarm};
use swarm_dashboard::graph::ForecastCache;
use swarm_dashboard::view::Snapshot;

const LAYERS: usize = 50;
const DRONES: usize = 100;
const NOW: u64 = 1_800_000_000_000;
const SNAPSHOTS: u32 = 10;

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Packages per layer: `GRAPH_BENCH_WIDTH`, 2,000 by default.
fn width() -> usize {
    std::env::var("GRAPH_BENCH_WIDTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn key(layer: usize, j: usize) -> PackageKey {
    fixtures::atom(&format!("dev-graph/l{layer:02}p{j:04}")).key()
}

/// Package `j` of `layer`, with or without its three dependencies in the layer before.
fn record(layer: usize, j: usize, graph: bool) -> PackageRecord {
    let drone = fixtures::drone_name("drone-000");
    let state = match layer {
        0..10 => PackageState::Succeeded { attempt: 1, drone },
        10 if j.is_multiple_of(2) => PackageState::Building {
            attempt: 1,
            drone,
            since_ms: NOW - 60_000,
        },
        10 => PackageState::Queued { attempt: 1 },
        _ if graph => PackageState::Waiting,
        _ => PackageState::Queued { attempt: 1 },
    };
    let deps = if graph && layer > 0 {
        (0..3)
            .map(|k| key(layer - 1, (j * 7 + k * 613) % width()))
            .collect()
    } else {
        Vec::new()
    };
    PackageRecord {
        estimate_secs: Some(60.0 + ((layer * width() + j) * 37 % 1_200) as f64),
        deps,
        submitted_ms: NOW - 3_600_000,
        updated_ms: NOW - 1_800_000,
        ..fixtures::package_record(&format!("dev-graph/l{layer:02}p{j:04}"), state)
    }
}

/// A swarm of 100 idle drones and the 100,000 packages; the resident memory the packages took.
fn picture(graph: bool) -> (Swarm, u64) {
    let mut swarm = Swarm::new(20);
    for i in 0..DRONES {
        let name = format!("drone-{i:03}");
        swarm.apply(Input::DroneRecord {
            key: name.clone(),
            written_ms: NOW,
            record: DroneRecord {
                heartbeat_interval_ms: 60_000,
                supervise_deadline_ms: None,
                boot_ms: 1,
                seq: 1,
                ..fixtures::drone_record(&name, 16, DroneState::Idle)
            },
        });
    }
    let before = rss();
    for layer in 0..LAYERS {
        for j in 0..width() {
            let record = record(layer, j, graph);
            swarm.apply(Input::Package {
                key: record.atom.key().to_string(),
                revision: 1,
                record,
            });
        }
    }
    (swarm, rss().saturating_sub(before))
}

/// The mean and the longest of `SNAPSHOTS` snapshots a second apart, and the last one's JSON
/// size; with `cache`, as the fold's task makes them.
fn snapshots(
    swarm: &Swarm,
    mut cache: Option<&mut ForecastCache>,
) -> (Duration, Duration, usize, Snapshot) {
    let mut total = Duration::ZERO;
    let mut longest = Duration::ZERO;
    let mut last = None;
    for i in 0..SNAPSHOTS {
        let now_ms = NOW + u64::from(i) * 1_000;
        let start = Instant::now();
        let snap = match cache.as_deref_mut() {
            Some(cache) => Snapshot::of_cached(swarm, now_ms, true, cache),
            None => Snapshot::of(swarm, now_ms, true),
        };
        let took = start.elapsed();
        total += took;
        longest = longest.max(took);
        last = Some(snap);
    }
    let snap = last.expect("snapshots taken");
    let bytes = serde_json::to_vec(&snap).expect("serializes").len();
    (total / SNAPSHOTS, longest, bytes, snap)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn main() {
    let packages = (LAYERS * width()) as u64;
    let (flat, flat_memory) = picture(false);
    let (graph, graph_memory) = picture(true);
    let (graph_mean, graph_longest, graph_bytes, snap) = snapshots(&graph, None);
    assert_eq!(snap.progress.total, packages);
    assert_eq!(snap.progress.critical_path.len(), LAYERS - 10);
    assert!(snap.progress.critical_eta_secs.is_some());
    assert_eq!(
        snap.dependencies.waiting_total,
        (width() * (LAYERS - 11)) as u64
    );
    let mut cache = ForecastCache::default();
    let (tick_mean, tick_longest, _, snap) = snapshots(&graph, Some(&mut cache));
    assert_eq!(snap.progress.critical_path.len(), LAYERS - 10);
    let (flat_mean, flat_longest, flat_bytes, snap) = snapshots(&flat, None);
    assert!(snap.progress.critical_path.is_empty());

    println!("## Dashboard graph benchmark\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| packages | {packages} ({LAYERS} layers of {}, 3 build dependencies each; {DRONES} drones online) |",
        width()
    );
    println!(
        "| resident memory of the package views, with dependencies | {:.1} MiB ({} bytes per package) |",
        mib(graph_memory),
        graph_memory / packages
    );
    println!(
        "| resident memory of the package views, without | {:.1} MiB ({} bytes per package) |",
        mib(flat_memory),
        flat_memory / packages
    );
    println!(
        "| one snapshot with the graph (critical path, waiting lists) | {:.1} ms mean, {:.1} ms longest of {SNAPSHOTS}; {graph_bytes} bytes of JSON |",
        ms(graph_mean),
        ms(graph_longest)
    );
    println!(
        "| a snapshot a second as the fold's task makes them (the forecast reused within its budget) | {:.1} ms mean, {:.1} ms longest of {SNAPSHOTS} |",
        ms(tick_mean),
        ms(tick_longest)
    );
    println!(
        "| one snapshot of the same packages without dependencies | {:.1} ms mean, {:.1} ms longest of {SNAPSHOTS}; {flat_bytes} bytes of JSON |",
        ms(flat_mean),
        ms(flat_longest)
    );
}
