//! The scheduling part's graph (split from `scheduling.rs`): the world's build dependencies
//! and longest chain, the `emerge.log` a cold run's estimates come from, and the release
//! latency read from the builds' spans.

use std::time::Instant;

use anyhow::Context;

use super::ModelPackage;

/// Each package's build dependencies in the world's graph (`world-152-deps.tsv`).
pub fn world_deps() -> anyhow::Result<std::collections::BTreeMap<String, Vec<String>>> {
    let path = testkit::fixture("world-152-deps.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(testkit::run_file_deps(&text))
}

/// The longest chain of work in the graph, in model seconds on 8 cores.
pub fn critical_path(
    model: &[ModelPackage],
    deps: &std::collections::BTreeMap<String, Vec<String>>,
) -> f64 {
    // The file is in merge order: every dependency comes before its dependents.
    let mut finish: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for package in model {
        let ready = deps
            .get(&package.atom)
            .map(|d| {
                d.iter()
                    .filter_map(|a| finish.get(a.as_str()))
                    .fold(0.0, |m: f64, f| m.max(*f))
            })
            .unwrap_or(0.0);
        finish.insert(&package.atom, ready + package.secs);
    }
    finish.values().fold(0.0, |m: f64, f| m.max(*f))
}

/// An `emerge.log` of three merges of every package of the model, 15 % under, at and 20 % over
/// its modelled time, as a machine with 8 cores would have logged them.
pub fn emerge_log(model: &[ModelPackage]) -> String {
    let mut log = String::new();
    let mut now: u64 = 1_700_000_000;
    for factor in [0.85, 1.0, 1.2] {
        for (i, package) in model.iter().enumerate() {
            let cpv = format!("{}-1.0", package.atom);
            let n = model.len();
            log.push_str(&format!(
                "{now}:  >>> emerge ({} of {n}) {cpv} to /\n",
                i + 1
            ));
            now += (package.secs * factor).round() as u64;
            log.push_str(&format!(
                "{now}:  ::: completed emerge ({} of {n}) {cpv} to /\n",
                i + 1
            ));
        }
    }
    log
}

/// p50 and p99 of the wall milliseconds from a dependency's end to its dependent's start.
pub fn release_latency(
    spans: &[(&str, u32, drone::BuildSpan)],
    graph: &std::collections::BTreeMap<&str, &[String]>,
) -> (f64, f64) {
    let mut end: std::collections::HashMap<&str, Instant> = std::collections::HashMap::new();
    let mut start: std::collections::HashMap<&str, Instant> = std::collections::HashMap::new();
    for (_, _, span) in spans {
        let e = end.entry(span.atom.as_str()).or_insert(span.end);
        *e = (*e).max(span.end);
        let s = start.entry(span.atom.as_str()).or_insert(span.start);
        *s = (*s).min(span.start);
    }
    let mut waits: Vec<f64> = graph
        .iter()
        .filter_map(|(atom, deps)| {
            let started = start.get(atom)?;
            let ready = deps.iter().filter_map(|d| end.get(d.as_str())).max()?;
            Some(started.saturating_duration_since(*ready).as_secs_f64() * 1000.0)
        })
        .collect();
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| {
        waits
            .get(((waits.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (at(0.5), at(0.99))
}
