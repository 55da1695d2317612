//! End-to-end: a run targets one fingerprint (arch, CHOST, profile, the settings that change
//! packages) and one ebuild tree. Only drones of that fingerprint whose tree is at least as new
//! as the run's take its jobs; the others take none and `swarmctl drones` says why; a drone
//! that syncs its tree starts taking work. A drone that asks Portage (`portageq`, Portage's own
//! code from PyPI, over a configuration root made here) gets the fingerprint of a drone
//! configured with the same values.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use swarm_tests::*;

const OLD_TREE: &str = "Tue, 01 Dec 2026 00:45:01 +0000";
const NEW_TREE: &str = "Wed, 02 Dec 2026 00:45:01 +0000";

/// A tree timestamp file (`metadata/timestamp.chk`) saying `date`.
fn tree_file(dir: &Path, name: &str, date: &str) -> PathBuf {
    let path = dir.join(format!("{name}-timestamp.chk"));
    std::fs::write(&path, format!("{date}\n")).expect("tree timestamp written");
    path
}

/// A drone whose fingerprint is its config's: `settings` as make.conf would have them, its
/// tree's timestamp in `tree`, taken again every 300 ms.
fn configured(name: &str, settings: &[(&str, &str)], tree: Option<&Path>) -> DroneSpec {
    let mut spec = DroneSpec::new(name, 2, 2)
        .env("SWARM_DRONE__FINGERPRINT__SOURCE", "config")
        .env(
            "SWARM_DRONE__FINGERPRINT__PROFILE",
            "default/linux/amd64/23.0",
        )
        .env("SWARM_DRONE__FINGERPRINT__REFRESH_MS", "300")
        .env("SWARM_TEST_SLEEP", "0.2");
    if let Some(tree) = tree {
        spec = spec.env(
            "SWARM_DRONE__FINGERPRINT__TREE_TIMESTAMP_FILE",
            &tree.display().to_string(),
        );
    }
    for (key, value) in settings {
        spec = spec.env(&format!("SWARM_DRONE__FINGERPRINT__SETTINGS__{key}"), value);
    }
    spec
}

/// The drone's row of `swarmctl drones --json` once `ready` holds for it.
async fn wait_drone(
    swarm: &Swarm,
    name: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let drones = swarm.swarmctl_json(&["drones"]);
        let row = drones
            .as_array()
            .and_then(|all| all.iter().find(|d| d["name"] == name))
            .cloned();
        if let Some(row) = &row
            && ready(row)
        {
            return row.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {name}: {what}; last seen {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn fingerprint_id(row: &Value) -> String {
    row["fingerprint"]["id"]
        .as_str()
        .expect("the drone says its fingerprint")
        .to_owned()
}

fn has_fingerprint(row: &Value) -> bool {
    row["fingerprint"]["id"].is_string()
}

/// `swarmctl submit ARGS`: (success, stdout + stderr).
fn submit_cli(swarm: &Swarm, args: &[&str]) -> (bool, String) {
    let mut all = vec!["submit"];
    all.extend(args);
    swarm.swarmctl_text(&all)
}

/// The drones that started a build of one of `atoms`.
fn builders_of(swarm: &Swarm, atoms: &[&str]) -> BTreeSet<String> {
    swarm
        .records()
        .into_iter()
        .filter(|r| r.phase == "start" && atoms.contains(&r.atom.as_str()))
        .map(|r| r.drone)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_only_to_drones_of_its_fingerprint_with_a_tree_as_new_as_its_own() {
    let mut swarm = Swarm::start().await;
    let trees = swarm.dir.path().to_owned();
    let o2 = [("CFLAGS", "-O2 -pipe"), ("USE", "ssl")];
    let o3 = [("CFLAGS", "-O3 -march=native"), ("USE", "ssl")];
    let fa_tree = tree_file(&trees, "fa", NEW_TREE);
    let fb_tree = tree_file(&trees, "fb", NEW_TREE);
    swarm.spawn_drone(&configured("fa", &o2, Some(&fa_tree)));
    swarm.spawn_drone(&configured("fb", &o3, Some(&fb_tree)));
    let fa = fingerprint_id(&wait_drone(&swarm, "fa", "a fingerprint", has_fingerprint).await);
    let fb = fingerprint_id(&wait_drone(&swarm, "fb", "a fingerprint", has_fingerprint).await);
    assert_ne!(fa, fb, "different CFLAGS, different packages");

    // Two fingerprints online and the submission names none: refused, nothing queued.
    let (ok, text) = submit_cli(&swarm, &["sys-libs/zlib"]);
    assert!(!ok, "an ambiguous submission is refused: {text}");
    assert!(
        text.contains("several fingerprints") && text.contains("--fingerprint"),
        "{text}"
    );
    assert!(text.contains(&fa) && text.contains(&fb), "{text}");
    assert!(swarm.packages().await.is_empty(), "nothing was queued");

    // A fingerprint nobody has: refused, naming what is online.
    let (ok, text) = submit_cli(&swarm, &["--fingerprint", "0123456789ab", "sys-libs/zlib"]);
    assert!(!ok && text.contains("no online drone"), "{text}");

    // The run targets fb's fingerprint: only fb builds, fa says why it takes nothing.
    let first = [
        "sys-libs/zlib",
        "app-arch/xz-utils",
        "dev-libs/expat",
        "sys-libs/ncurses",
    ];
    let mut args = vec!["--fingerprint", fb.as_str()];
    args.extend(first);
    let (ok, text) = submit_cli(&swarm, &args);
    assert!(ok, "{text}");
    let packages = swarm.wait_final(first.len(), Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    assert!(
        packages
            .values()
            .all(|p| p.fingerprint.as_deref() == Some(fb.as_str())),
        "every package is stamped with the run's fingerprint"
    );
    assert_eq!(
        builders_of(&swarm, &first),
        BTreeSet::from(["fb".to_owned()])
    );
    let row = wait_drone(&swarm, "fa", "excluded", |d| d["state"] == "excluded").await;
    let reason = row["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&fa) && reason.contains(&format!("is not the run's {fb}")),
        "{reason}"
    );

    // fc has fb's settings and an older tree: it takes nothing until it syncs.
    let fc_tree = tree_file(&trees, "fc", OLD_TREE);
    swarm.spawn_drone(&configured("fc", &o3, Some(&fc_tree)));
    let row = wait_drone(&swarm, "fc", "excluded", |d| d["state"] == "excluded").await;
    assert_eq!(fingerprint_id(&row), fb);
    let reason = row["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("older than the run's") && reason.contains("sync it"),
        "{reason}"
    );
    let table = String::from_utf8_lossy(&swarm.swarmctl(&["drones"]).stdout).into_owned();
    assert!(
        table.contains("fc (excluded): its ebuild tree (01 Dec 2026 00:45 UTC) is older than the run's (02 Dec 2026 00:45 UTC): sync it"),
        "{table}"
    );

    // With fb gone, the next packages of the run wait for a drone that fits.
    swarm.drone("fb").signal(Signal::SIGTERM);
    assert!(
        swarm
            .drone("fb")
            .wait_exit(Duration::from_secs(20))
            .is_some()
    );
    let second = ["dev-libs/libffi", "sys-apps/sed", "app-misc/pax-utils"];
    // The run keeps its target: no --fingerprint needed, fa's does not make it ambiguous.
    let (ok, text) = submit_cli(&swarm, &second);
    assert!(ok, "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        builders_of(&swarm, &second).is_empty(),
        "no drone fits, nothing of the run is built"
    );

    // fc syncs: its tree is now the run's, so it builds them; fa still builds nothing.
    std::fs::write(&fc_tree, format!("{NEW_TREE}\n")).expect("synced");
    wait_drone(&swarm, "fc", "fit after its sync", |d| {
        d["state"] != "excluded"
    })
    .await;
    let packages = swarm
        .wait_final(first.len() + second.len(), Duration::from_secs(60))
        .await;
    assert!(all_succeeded(&packages), "{packages:?}");
    assert_eq!(
        builders_of(&swarm, &second),
        BTreeSet::from(["fc".to_owned()])
    );
    let everything: Vec<&str> = first.iter().chain(second.iter()).copied().collect();
    assert!(!builders_of(&swarm, &everything).contains("fa"));
}

/// A Portage configuration root: `make.conf` with `make_conf`, a profile linked as Portage's
/// installer links it (below a repository's `profiles/`).
fn portage_root(dir: &Path, make_conf: &str) -> PathBuf {
    let root = dir.join("portage-root");
    let profile = dir.join("repo/profiles/default/linux/amd64/23.0");
    std::fs::create_dir_all(root.join("etc/portage")).expect("config root");
    std::fs::create_dir_all(&profile).expect("profile");
    std::fs::write(profile.join("eapi"), "8\n").expect("eapi");
    std::fs::write(
        profile.join("make.defaults"),
        "ARCH=\"amd64\"\nACCEPT_KEYWORDS=\"amd64\"\n",
    )
    .expect("make.defaults");
    std::os::unix::fs::symlink(&profile, root.join("etc/portage/make.profile")).expect("link");
    std::fs::write(root.join("etc/portage/make.conf"), make_conf).expect("make.conf");
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drone_asking_portage_shares_the_fingerprint_of_one_configured_alike() {
    let mut swarm = Swarm::start().await;
    let python = testkit::portage::python().expect("Portage for portageq");
    let venv_bin = python.parent().expect("venv bin").to_owned();
    let root = portage_root(
        swarm.dir.path(),
        "CHOST=\"x86_64-pc-linux-gnu\"\nCFLAGS=\"-O2   -pipe\"\nUSE=\"ssl\"\n",
    );
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    swarm.spawn_drone(
        &DroneSpec::new("asks", 2, 1)
            .env("PATH", &path)
            .env("PORTAGE_CONFIGROOT", &root.display().to_string())
            .env("SWARM_DRONE__FINGERPRINT__SOURCE", "portage")
            .env("SWARM_DRONE__FINGERPRINT__REFRESH_MS", "500"),
    );
    // The profile adds `amd64` to USE (its ARCH); order and spacing do not matter.
    swarm.spawn_drone(&configured(
        "told",
        &[("CFLAGS", "-O2 -pipe"), ("USE", "ssl amd64")],
        None,
    ));
    let asks = wait_drone(&swarm, "asks", "a fingerprint", has_fingerprint).await;
    let told = wait_drone(&swarm, "told", "a fingerprint", has_fingerprint).await;
    assert_eq!(asks["fingerprint"]["profile"], "default/linux/amd64/23.0");
    assert_eq!(asks["fingerprint"]["chost"], "x86_64-pc-linux-gnu");
    assert_eq!(
        fingerprint_id(&asks),
        fingerprint_id(&told),
        "Portage's answer and the config's agree: {asks} / {told}"
    );

    // make.conf changes: the drone takes its fingerprint again and it is another.
    std::fs::write(
        root.join("etc/portage/make.conf"),
        "CHOST=\"x86_64-pc-linux-gnu\"\nCFLAGS=\"-O3 -pipe\"\nUSE=\"ssl\"\n",
    )
    .expect("make.conf");
    let before = fingerprint_id(&told);
    wait_drone(&swarm, "asks", "a new fingerprint", |d| {
        has_fingerprint(d) && fingerprint_id(d) != before
    })
    .await;
}
