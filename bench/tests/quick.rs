//! The harness itself keeps working: `swarm-bench --quick` runs every part at toy sizes against
//! a real nats-server and the built binaries, and its JSON report holds a figure for every
//! measurement. (The figures of a quick run mean nothing; `scripts/bench.sh` measures.)

use std::process::Command;

#[test]
fn every_part_runs_and_reports_its_figures() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_swarm-bench"))
        .args(["--quick", "--out"])
        .arg(out.path())
        .output()
        .expect("swarm-bench runs");
    assert!(
        run.status.success(),
        "swarm-bench --quick failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out.path().join("report.json")).expect("report.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    let number = |v: &serde_json::Value, what: &str| {
        assert!(
            v.as_f64().is_some_and(|x| x.is_finite() && x > 0.0),
            "{what}: {v}"
        )
    };

    // Dispatch: ours and raw under both fsync settings.
    let dispatch = report["dispatch"].as_array().expect("dispatch runs");
    assert_eq!(dispatch.len(), 2, "{text}");
    for run in dispatch {
        number(&run["ours"]["packages_per_sec"], "ours pkg/s");
        number(&run["raw"]["messages_per_sec"], "raw msg/s");
        number(&run["ratio"], "ratio");
        number(&run["ours"]["slot_gap_p99_ms"], "slot gap p99");
    }

    // Scheduling: every run built all 152 packages, and its makespan cannot beat the bound.
    let scheduling = &report["scheduling"];
    assert_eq!(scheduling["packages"], 152);
    let runs = scheduling["runs"].as_array().expect("scheduling runs");
    assert_eq!(runs.len(), 8, "{text}");
    for run in runs {
        assert!(run["builds"].as_u64() >= Some(152), "{run}");
        assert!(run["ratio_to_bound"].as_f64() >= Some(0.99), "{run}");
        // The graph's rows report the release latency, the others have no graph.
        let graph = run["label"]
            .as_str()
            .is_some_and(|l| l.starts_with("graph:"));
        assert_eq!(run["release_ms"].is_array(), graph, "{run}");
    }

    // Scale and footprint report memory and throughput figures.
    assert!(
        report["scale"].is_object() || report["scale"].is_array(),
        "{text}"
    );
    assert!(
        report["footprint"].is_object() || report["footprint"].is_array(),
        "{text}"
    );
    // Binhost: every step of delivering the 152 packages timed, beside cp.
    let binhost = &report["binhost"];
    assert_eq!(binhost["packages"], 152, "{text}");
    let rows = binhost["rows"].as_array().expect("binhost rows");
    assert_eq!(rows.len(), 5, "{text}");
    for row in rows {
        number(&row["mb_per_sec"], "MB/s");
        number(&row["packages_per_sec"], "packages/s");
    }
    number(&binhost["delivery_vs_cp"], "delivery / cp");
    let markdown = std::fs::read_to_string(out.path().join("report.md")).expect("report.md");
    for heading in [
        "## Dispatch",
        "## Scheduling",
        "## Scale",
        "## Footprint",
        "## Binhost",
    ] {
        assert!(markdown.contains(heading), "{heading} missing:\n{markdown}");
    }
}
