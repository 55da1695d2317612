//! End-to-end: a run is a graph. The 152-package world with its 1,024 real build edges
//! (`tests/fixtures/world-152-deps.tsv`) on the seed's four drones: no package starts before
//! every one of its build dependencies has ended its build; a dependency that fails for good
//! blocks exactly its transitive dependents, and building it again releases them; a cycle is
//! refused at submission, naming it. With real binary packages: when a build starts, every one
//! of its build dependencies is downloadable from the staging binhost, and `swarmctl status
//! --graph` names the run's critical path.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use schemas::PackageState;
use swarm_tests::*;

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_world_builds_in_dependency_order() {
    let mut swarm = Swarm::start().await;
    for (name, cores, slots) in [
        ("drone-Izar", 16, 4),
        ("drone-Tarn", 10, 2),
        ("drone-Meridian", 24, 6),
        ("drone-Tau-Beta", 8, 2),
    ] {
        swarm.spawn_drone(&DroneSpec::new(name, cores, slots).env("SWARM_TEST_SCALE", "0.0002"));
    }
    swarm.wait_coordinator().await;
    let file = testkit::fixture("world-152-deps.tsv");
    let edges = testkit::run_file_deps(&std::fs::read_to_string(&file).expect("run file"));
    assert_eq!(edges.values().map(Vec::len).sum::<usize>(), 1_024);
    let (ok, text) = swarm.swarmctl_text(&["submit", "--file", &file.display().to_string()]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(152, Duration::from_secs(240)).await;
    assert!(all_succeeded(&packages), "{packages:?}");

    // Every package started after each of its build dependencies ended.
    let records = swarm.records();
    let first_start: BTreeMap<&str, u64> =
        records
            .iter()
            .filter(|r| r.phase == "start")
            .fold(BTreeMap::new(), |mut m, r| {
                let at = m.entry(r.atom.as_str()).or_insert(r.at_ms);
                *at = (*at).min(r.at_ms);
                m
            });
    let last_end: BTreeMap<&str, u64> = records
        .iter()
        .filter(|r| r.phase == "end" && r.rest == "0")
        .map(|r| (r.atom.as_str(), r.at_ms))
        .collect();
    let mut early = Vec::new();
    let mut release_ms = Vec::new();
    for (atom, deps) in &edges {
        let start = first_start[atom.as_str()];
        let ready = deps.iter().map(|d| last_end[d.as_str()]).max();
        for dep in deps {
            if start < last_end[dep.as_str()] {
                early.push(format!("{atom} started before {dep} ended"));
            }
        }
        if let Some(ready) = ready {
            release_ms.push(start.saturating_sub(ready));
        }
    }
    assert!(early.is_empty(), "{} early: {early:#?}", early.len());
    release_ms.sort_unstable();
    eprintln!(
        "release latency (last dependency's build end to the dependent's start) over {} packages: p50 {} ms, p99 {} ms",
        release_ms.len(),
        percentile(&release_ms, 0.5),
        percentile(&release_ms, 0.99)
    );
}

/// The acceptance builder: the tests' fake emerge writes a real gpkg for every package,
/// and before that checks (`tests/fixtures/check_staging.py`) that each of the package's build
/// dependencies in the run is in the staging binhost's index and downloads with the size it
/// states, failing the build otherwise. Over the whole world: no build fails, so no package
/// ever started before its dependencies were there to install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dependency_is_in_staging_when_its_dependent_starts() {
    let mut swarm = Swarm::start().await;
    let addr = binhost::start_binhost(&mut swarm).await;
    let file = testkit::fixture("world-152-deps.tsv");
    let dir = tempfile::tempdir().expect("tempdir");
    let staging = format!("[\"http://{addr}/staging/amd64\"]");
    for name in ["drone-a", "drone-b", "drone-c"] {
        std::fs::create_dir_all(dir.path().join(name)).expect("build directory");
        let spec = DroneSpec {
            cores: 4,
            slots: 2,
            ..DroneSpec::fake_emerge(name, &dir.path().join(name))
        };
        swarm.spawn_drone(
            &spec
                .env("SWARM_TEST_DEPS_FILE", &file.display().to_string())
                .env("SWARM_DRONE__BINHOST", &staging),
        );
    }
    swarm.wait_coordinator().await;
    // The drones online, so that the plan has cores to forecast with.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while swarm.swarmctl_json(&["status"])["cores"]["total"].as_u64() < Some(12) {
        assert!(
            std::time::Instant::now() < deadline,
            "the drones never came online"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, text) = swarm.swarmctl_text(&["submit", "--file", &file.display().to_string()]);
    assert!(ok, "{text}");

    // The plan, as the operator reads it while the run starts: the world's critical path ends
    // with chromium, through rust and qtbase.
    let graph = swarm.swarmctl_json(&["status", "--graph"]);
    let path: Vec<&str> = graph["path"]
        .as_array()
        .expect("a path")
        .iter()
        .filter_map(|s| s["atom"].as_str())
        .collect();
    assert_eq!(path.last(), Some(&"www-client/chromium"), "{graph}");
    for on_path in ["dev-lang/rust", "dev-qt/qtbase"] {
        assert!(path.contains(&on_path), "{on_path}: {graph}");
    }
    assert!(graph["unfinished"].as_u64() > Some(100), "{graph}");
    assert!(
        graph["end_ms"].as_u64() > graph["now_ms"].as_u64(),
        "{graph} {}",
        swarm.swarmctl_json(&["drones"])
    );
    let (ok, block) = swarm.swarmctl_text(&["status", "--graph"]);
    assert!(ok && block.contains("critical path: "), "{block}");
    assert!(block.contains("earliest end: "), "{block}");

    let packages = swarm.wait_final(152, Duration::from_secs(400)).await;
    let mut failed_attempts = Vec::new();
    for (atom, record) in &packages {
        assert!(
            matches!(record.state, PackageState::Succeeded { .. }),
            "{atom}: {:?} {:?}",
            record.state,
            record.history
        );
        for attempt in &record.history {
            if !matches!(attempt.outcome, schemas::BuildOutcome::Succeeded) {
                failed_attempts.push(format!("{atom}: {:?}", attempt.outcome));
            }
        }
    }
    assert!(
        failed_attempts.is_empty(),
        "{} builds found a dependency missing from staging: {failed_attempts:#?}",
        failed_attempts.len()
    );
    // The staging view lists the whole world (what succeeded in the current second from the
    // next one).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let index = testkit::http::get(addr, "/staging/amd64/Packages", binhost::HTTP)
            .await
            .expect("the staging index");
        let listed = index.body.matches("\nCPV: ").count();
        if listed == 152 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", index.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, done) = swarm.swarmctl_text(&["status", "--graph"]);
    assert!(ok && done.contains("nothing left to build"), "{done}");
    let log = std::fs::read_to_string(swarm.dir.path().join("binhost.log")).unwrap_or_default();
    eprintln!(
        "binary packages the binhost had to open again before sending: {}",
        log.matches("trying again").count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dependency_blocks_exactly_its_dependents_until_built_again() {
    let mut swarm = Swarm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run.tsv");
    // a <- b <- c, a <- d, and e on its own; a cannot be built by the first drone.
    std::fs::write(
        &run,
        "t-a/a\t\t\t-\nt-b/b\t\t\tt-a/a\nt-c/c\t\t\tt-b/b\nt-d/d\t\t\tt-a/a\nt-e/e\t\t\t-\n",
    )
    .expect("run file");
    swarm.spawn_drone(&DroneSpec::new("broken", 2, 2).env("SWARM_TEST_FAIL_ATOMS", "t-a/a"));
    swarm.wait_coordinator().await;
    let (ok, text) = swarm.swarmctl_text(&["submit", "--file", &run.display().to_string()]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(5, Duration::from_secs(60)).await;
    let states: BTreeMap<String, String> = packages
        .iter()
        .map(|(atom, p)| (atom.clone(), p.state.label().to_owned()))
        .collect();
    let expected: BTreeMap<String, String> = [
        ("t-a/a", "failed"),
        ("t-b/b", "blocked"),
        ("t-c/c", "blocked"),
        ("t-d/d", "blocked"),
        ("t-e/e", "succeeded"),
    ]
    .into_iter()
    .map(|(a, s)| (a.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(states, expected);
    // Blocked packages were never started, and say what blocks them.
    let started: BTreeSet<String> = swarm
        .records()
        .into_iter()
        .filter(|r| r.phase == "start")
        .map(|r| r.atom)
        .collect();
    assert_eq!(
        started,
        BTreeSet::from(["t-a/a".to_owned(), "t-e/e".to_owned()])
    );
    let (_, table) = swarm.swarmctl_text(&["packages", "--state", "blocked"]);
    for (atom, by) in [("t-b/b", "t-a/a"), ("t-c/c", "t-b/b"), ("t-d/d", "t-a/a")] {
        assert!(
            table.lines().any(|l| l.starts_with(atom)
                && l.contains(&format!("blocked by its build dependency {by},"))),
            "{atom}: {table}"
        );
    }
    assert_eq!(table.lines().count(), 4, "a header and three rows: {table}");
    let rows = swarm.swarmctl_json(&["packages"]);
    let row = |atom: &str| {
        rows.as_array()
            .and_then(|all| all.iter().find(|r| r["atom"] == atom))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(row("t-c/c")["deps"], serde_json::json!(["t-b/b"]), "{rows}");
    assert_eq!(row("t-a/a")["deps"], serde_json::json!([]), "{rows}");

    // A drone that can build it; a is submitted again and everything it blocked follows.
    swarm
        .drone("broken")
        .signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        swarm
            .drone("broken")
            .wait_exit(Duration::from_secs(20))
            .is_some()
    );
    swarm.spawn_drone(&DroneSpec::new("fixed", 2, 2));
    let (ok, text) = swarm.swarmctl_text(&["submit", "t-a/a"]);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(5, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");

    // A cycle is refused whole, named, and nothing of it is queued.
    let cyclic = dir.path().join("cycle.tsv");
    std::fs::write(&cyclic, "u-a/a\t\t\tu-b/b\nu-b/b\t\t\tu-a/a\n").expect("run file");
    let (ok, text) = swarm.swarmctl_text(&["submit", "--file", &cyclic.display().to_string()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("build dependencies form a cycle: u-a/a -> u-b/b -> u-a/a"),
        "{text}"
    );
    assert_eq!(swarm.packages().await.len(), 5);
    assert!(
        !swarm
            .packages()
            .await
            .values()
            .any(|p| matches!(p.state, PackageState::Waiting)),
    );
}
