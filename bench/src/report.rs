//! The report: Markdown tables for people, the same figures as JSON for machines.

use serde_json::{Map, Value, json};

#[derive(Debug, Default)]
pub struct Report {
    pub markdown: String,
    pub json: Map<String, Value>,
}

impl Report {
    pub fn section(&mut self, key: &str, markdown: String, value: Value) {
        self.markdown.push_str(&markdown);
        self.markdown.push('\n');
        self.json.insert(key.to_owned(), value);
    }

    pub fn to_json(&self) -> Value {
        Value::Object(self.json.clone())
    }
}

/// "met" or "MISSED", for a target's line in a table.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

pub fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "–".to_owned(),
    }
}

/// What the report says about the machine it ran on.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let nats = testkit::nats_server_binary()
        .ok()
        .and_then(|bin| {
            std::process::Command::new(bin)
                .arg("--version")
                .output()
                .ok()
        })
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": cores,
        "memory_gib": memory_kib.map(|k| (k as f64 / 1_048_576.0 * 10.0).round() / 10.0),
        "kernel": kernel,
        "nats_server": nats,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
