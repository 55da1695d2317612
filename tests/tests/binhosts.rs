//! End-to-end: one published binhost per fingerprint. Two drones build with different CFLAGS
//! (so their packages are not interchangeable); a run for each fingerprint publishes to its own
//! binhost, `/published/amd64@<fingerprint>`, and Portage's client of one binhost lists only
//! the packages built for it, before and after the other fingerprint publishes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use schemas::PackageState;
use serde_json::Value;
use swarm_tests::binhost::*;
use swarm_tests::*;
use testkit::http;

/// A fake-emerge drone whose fingerprint has `cflags`.
fn drone(name: &str, dir: &std::path::Path, cflags: &str) -> DroneSpec {
    DroneSpec::fake_emerge(name, dir).env("SWARM_DRONE__FINGERPRINT__SETTINGS__CFLAGS", cflags)
}

/// The fingerprint `swarmctl drones` shows for `name`, once it has one.
async fn fingerprint_of(swarm: &Swarm, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let drones = swarm.swarmctl_json(&["drones"]);
        let id = drones.as_array().and_then(|all| {
            all.iter()
                .find(|d| d["name"] == name)
                .and_then(|d| d["fingerprint"]["id"].as_str().map(str::to_owned))
        });
        if let Some(id) = id {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never said its fingerprint"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Submits `atoms` for `fingerprint` with swarmctl and waits until the `total` packages of the
/// swarm succeeded.
async fn build_for(swarm: &Swarm, fingerprint: &str, atoms: &[&str], total: usize) {
    let mut args = vec!["submit", "--fingerprint", fingerprint];
    args.extend(atoms);
    let out = swarm.swarmctl(&args);
    assert!(out.status.success(), "{out:?}");
    let packages = swarm.wait_final(total, Duration::from_secs(90)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
}

/// `swarmctl binhost status --fingerprint FP --json` once it serves revision `number`.
async fn wait_published(swarm: &Swarm, fingerprint: &str, number: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = swarm.swarmctl_json(&["binhost", "status", "--fingerprint", fingerprint]);
        if status["current"] == number {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{fingerprint}: revision {number} never served: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fingerprint_publishes_its_own_binhost_side_by_side() {
    let mut swarm = Swarm::start().await;
    let addr = start_binhost(&mut swarm).await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    swarm.spawn_drone(&drone("o2", dir_a.path(), "-O2 -pipe"));
    swarm.spawn_drone(&drone("o3", dir_b.path(), "-O3 -march=native"));
    let fa = fingerprint_of(&swarm, "o2").await;
    let fb = fingerprint_of(&swarm, "o3").await;
    assert_ne!(fa, fb);

    // The first run targets o2's fingerprint and publishes itself when it ends.
    let first = ["app-misc/hello-1.0", "dev-libs/libfoo-2.1"];
    let atoms: Vec<String> = first.iter().map(|c| format!("={c}")).collect();
    let atoms: Vec<&str> = atoms.iter().map(String::as_str).collect();
    build_for(&swarm, &fa, &atoms, 2).await;
    let status_a = wait_published(&swarm, &fa, 1).await;
    assert_eq!(status_a["binhost"], format!("amd64@{fa}"), "{status_a}");
    assert_eq!(status_a["fingerprint"], fa.as_str());
    let url_a = format!("http://{addr}/published/amd64@{fa}");
    let client_a = tempfile::tempdir().expect("client a");
    assert_eq!(
        verified_cpvs(&portage_client(&url_a, client_a.path())),
        cpvs(&first)
    );

    // The second run targets o3's: its own binhost, revision 1, only its packages.
    let second = ["sys-apps/bar-0.5"];
    build_for(&swarm, &fb, &["=sys-apps/bar-0.5"], 3).await;
    let status_b = wait_published(&swarm, &fb, 1).await;
    assert_eq!(status_b["binhost"], format!("amd64@{fb}"), "{status_b}");
    assert_eq!(status_b["revisions"][0]["packages"], 1, "{status_b}");
    let url_b = format!("http://{addr}/published/amd64@{fb}");
    let client_b = tempfile::tempdir().expect("client b");
    assert_eq!(
        verified_cpvs(&portage_client(&url_b, client_b.path())),
        cpvs(&second)
    );

    // The first binhost is untouched: still revision 1, still only its packages, and the
    // client that cached it reads it again.
    assert_eq!(
        wait_published(&swarm, &fa, 1).await["revisions"],
        status_a["revisions"]
    );
    assert_eq!(
        verified_cpvs(&portage_client(&url_a, client_a.path())),
        cpvs(&first)
    );
    // Each package was built by its fingerprint's drone and is stamped with it.
    let built_by: BTreeSet<(String, String, String)> = swarm
        .packages()
        .await
        .into_values()
        .map(|p| {
            let drone = match &p.state {
                PackageState::Succeeded { drone, .. } => drone.to_string(),
                other => panic!("{}: {other:?}", p.atom),
            };
            (p.atom.to_string(), drone, p.fingerprint.unwrap_or_default())
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        ("=app-misc/hello-1.0", "o2", &fa),
        ("=dev-libs/libfoo-2.1", "o2", &fa),
        ("=sys-apps/bar-0.5", "o3", &fb),
    ]
    .into_iter()
    .map(|(a, d, f)| (a.to_owned(), d.to_owned(), f.clone()))
    .collect();
    assert_eq!(built_by, expected);

    // Nothing was published without a fingerprint, and a name that is none is refused.
    let plain = http::get(addr, "/published/amd64/Packages", HTTP)
        .await
        .expect("answer");
    assert_eq!(plain.status, 404, "{}", plain.body);
    let bad = http::get(addr, "/published/amd64@NOT-A-FP/Packages", HTTP)
        .await
        .expect("answer");
    assert_eq!(bad.status, 404);
    assert!(bad.body.contains("is not a binhost name"), "{}", bad.body);
    let refused = swarm.swarmctl(&["binhost", "status", "--fingerprint", "nope"]);
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("\"nope\""), "{text}");

    // The people's view names each binhost and where it is served.
    let table = String::from_utf8_lossy(
        &swarm
            .swarmctl(&["binhost", "revisions", "--fingerprint", &fa])
            .stdout,
    )
    .into_owned();
    assert!(table.contains(&format!("amd64@{fa}")), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_published_once_it_has_ended_and_its_revision_names_it() {
    let mut swarm =
        Swarm::start_with(&[("SWARM_COORDINATOR__BINHOST_AUTO_PUBLISH", "false")]).await;
    let addr = start_binhost(&mut swarm).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = DroneSpec::fake_emerge("e-n", dir.path());
    swarm.spawn_drone(&spec);
    let fp = fingerprint_of(&swarm, "e-n").await;

    let (ok, text) = swarm.swarmctl_text(&[
        "submit",
        "--run",
        "day",
        "=app-misc/one-1.0",
        "=app-misc/two-1.0",
    ]);
    assert!(ok && text.contains("in run day"), "{text}");
    let packages = swarm.wait_final(2, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");

    // The drone goes away; the night run (a rebuild of one and a new package) cannot start.
    swarm.drone("e-n").signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        swarm
            .drone("e-n")
            .wait_exit(Duration::from_secs(20))
            .is_some()
    );
    let (ok, text) = swarm.swarmctl_text(&[
        "submit",
        "--run",
        "night",
        "=app-misc/one-1.0",
        "=app-misc/three-1.0",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = swarm.swarmctl_text(&["binhost", "publish", "night"]);
    assert!(!ok, "a run under way is not published: {text}");
    assert!(
        text.contains("run night has not ended: 2 of its 2 packages"),
        "{text}"
    );
    let (ok, text) = swarm.swarmctl_text(&["binhost", "publish", "nigth"]);
    assert!(!ok && text.contains("runs: night, day"), "{text}");

    // The day run has ended: published to its fingerprint's binhost, revision 1, naming it.
    let (ok, text) = swarm.swarmctl_text(&["binhost", "publish", "day"]);
    assert!(
        ok && text.contains(&format!("published amd64@{fp}: revision 1")),
        "{text}"
    );
    let status = swarm.swarmctl_json(&["binhost", "status"]);
    assert_eq!(status["revisions"][0]["run"], "day", "{status}");
    let url = format!("http://{addr}/published/amd64@{fp}");
    let client = tempfile::tempdir().expect("client");
    let listed = verified_cpvs(&portage_client(&url, client.path()));
    assert_eq!(listed, cpvs(&["app-misc/one-1.0", "app-misc/two-1.0"]));
    // Being built again, one keeps its published package: publishing what is built now
    // changes nothing.
    let (ok, text) = swarm.swarmctl_text(&["binhost", "publish"]);
    assert!(ok && text.contains("nothing new to publish"), "{text}");
    let rows = swarm.swarmctl_json(&["packages"]);
    let runs: BTreeSet<(String, String)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["atom"].as_str().unwrap_or("").to_owned(),
                r["run"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        BTreeSet::from([
            ("=app-misc/one-1.0".to_owned(), "night".to_owned()),
            ("=app-misc/three-1.0".to_owned(), "night".to_owned()),
            ("=app-misc/two-1.0".to_owned(), "day".to_owned()),
        ])
    );

    // The drone is back, the night run ends, and is published as revision 2.
    swarm.spawn_drone(&spec);
    let packages = swarm.wait_final(3, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let (ok, text) = swarm.swarmctl_text(&["binhost", "publish", "night"]);
    assert!(ok && text.contains("revision 2"), "{text}");
    let listed = verified_cpvs(&portage_client(&url, client.path()));
    assert_eq!(
        listed,
        cpvs(&["app-misc/one-1.0", "app-misc/two-1.0", "app-misc/three-1.0"])
    );
    let (_, table) = swarm.swarmctl_text(&["binhost", "revisions"]);
    let runs: Vec<&str> = table
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(runs, ["night", "day"], "{table}");
}
