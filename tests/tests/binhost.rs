//! End-to-end: the swarm's binary packages reach a Gentoo client. Drones build with the tests'
//! fake emerge (real gpkgs, written with Portage's code); the coordinator publishes revisions;
//! `swarm-binhost` serves them; Portage's own `binarytree` (the `portage` package on PyPI, as
//! `emerge --getbinpkg` reads a remote binhost) lists what it serves, and every file it lists is
//! downloaded and checked as Portage's `BinpkgVerifier` checks it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use schemas::{PackageState, SubmitResult};
use swarm_tests::binhost::*;
use swarm_tests::*;
use testkit::http;

/// Builds `atoms` (each `=cat/pf`) and waits until all of them succeeded.
async fn build(swarm: &Swarm, atoms: &[&str], total: usize) {
    let atoms: Vec<(String, Option<f64>)> = atoms.iter().map(|a| ((*a).to_owned(), None)).collect();
    assert!(matches!(
        submit(&swarm.nats, &atoms).await,
        SubmitResult::Accepted { .. }
    ));
    let packages = swarm.wait_final(total, Duration::from_secs(90)).await;
    for (atom, record) in &packages {
        assert!(
            matches!(record.state, PackageState::Succeeded { .. }),
            "{atom}: {:?}",
            record.state
        );
    }
}

/// Waits until `swarmctl binhost status` names revision `number` as served.
async fn wait_current(swarm: &Swarm, number: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = swarm.swarmctl_json(&["binhost", "status"]);
        if status["current"] == number {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "revision {number} never served: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where `swarmctl binhost status` says its binhost is served: `/published/amd64@<fingerprint>`,
/// or `/published/amd64` when the run was submitted before its drone said its fingerprint.
fn published(status: &serde_json::Value) -> String {
    let name = status["binhost"].as_str().expect("a binhost name");
    let expected = match status["fingerprint"].as_str() {
        Some(fingerprint) => format!("amd64@{fingerprint}"),
        None => "amd64".to_owned(),
    };
    assert_eq!(name, expected, "{status}");
    format!("/published/{name}")
}

async fn index(addr: SocketAddr, path: &str) -> String {
    let response = http::get(addr, &format!("{path}/Packages"), HTTP)
        .await
        .expect("the index");
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

fn index_timestamp(index: &str) -> u64 {
    index
        .lines()
        .find_map(|l| l.strip_prefix("TIMESTAMP: "))
        .and_then(|t| t.parse().ok())
        .expect("a TIMESTAMP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gentoo_client_lists_and_downloads_what_the_swarm_built() {
    let mut swarm = Swarm::start().await;
    let addr = start_binhost(&mut swarm).await;
    // Before anything is published: a clear 404, and bad arches are named.
    let early = http::get(addr, "/published/amd64/Packages", HTTP)
        .await
        .expect("answer");
    assert_eq!(early.status, 404);
    assert!(
        early.body.contains("nothing of amd64 is published yet"),
        "{}",
        early.body
    );
    let bad = http::get(addr, "/published/..%2Fetc/Packages", HTTP)
        .await
        .expect("answer");
    assert_eq!(bad.status, 404, "{}", bad.body);
    assert!(bad.body.contains("is not a binhost name"), "{}", bad.body);

    let dir = tempfile::tempdir().expect("tempdir");
    swarm.spawn_drone(&DroneSpec::fake_emerge("e-a", dir.path()));
    let built = [
        "app-misc/hello-1.0",
        "dev-libs/libfoo-2.1",
        "sys-apps/bar-0.5",
    ];
    let atoms: Vec<String> = built.iter().map(|cpv| format!("={cpv}")).collect();
    let atoms: Vec<&str> = atoms.iter().map(String::as_str).collect();
    build(&swarm, &atoms, 3).await;
    // The run ended with no failure: it publishes itself.
    let status = wait_current(&swarm, 1).await;
    assert_eq!(status["revisions"][0]["packages"], 3, "{status}");
    let path = published(&status);

    // Portage's client lists exactly what was built, and every file verifies.
    let client_root = tempfile::tempdir().expect("client root");
    let url = format!("http://{addr}{path}");
    let client = portage_client(&url, client_root.path());
    assert_eq!(verified_cpvs(&client), cpvs(&built));
    // Asked again, the client sends If-Modified-Since from its cached copy and keeps it.
    assert_eq!(
        verified_cpvs(&portage_client(&url, client_root.path())),
        cpvs(&built)
    );
    // The drones' staging view lists the same packages.
    let staging_root = tempfile::tempdir().expect("staging root");
    let staging = portage_client(&format!("http://{addr}/staging/amd64"), staging_root.path());
    assert_eq!(verified_cpvs(&staging), cpvs(&built));

    // HTTP as a cache or a mirror sees it: lengths, dates, conditional requests.
    let response = http::get(addr, &format!("{path}/Packages"), HTTP)
        .await
        .expect("index");
    assert_eq!(
        response.header("content-length"),
        Some(response.bytes.len().to_string().as_str())
    );
    let last_modified = response
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let not_modified = http::request(
        addr,
        "GET",
        &format!("{path}/Packages"),
        &[("If-Modified-Since", &last_modified)],
        HTTP,
    )
    .await
    .expect("conditional index");
    assert_eq!((not_modified.status, not_modified.bytes.len()), (304, 0));
    let entry = &client["packages"]["app-misc/hello-1.0"];
    let file = format!("{path}/{}", entry["PATH"].as_str().expect("PATH"));
    let head = http::request(addr, "HEAD", &file, &[], HTTP)
        .await
        .expect("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), entry["SIZE"].as_str());
    assert!(head.header("last-modified").is_some(), "{:?}", head.headers);
    let etag = head.header("etag").expect("ETag").to_owned();
    let cached = http::request(addr, "GET", &file, &[("If-None-Match", &etag)], HTTP)
        .await
        .expect("conditional file");
    assert_eq!(cached.status, 304);
    let missing = http::get(
        addr,
        &format!("{path}/app-misc/none/none-1-1.gpkg.tar"),
        HTTP,
    )
    .await
    .expect("answer");
    assert_eq!(missing.status, 404);

    let text = String::from_utf8(swarm.swarmctl(&["binhost", "status"]).stdout).expect("utf-8");
    assert!(
        text.contains("revision 1") && text.contains("3 packages"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_each_revision_and_a_rollback_and_it_stays_rolled_back() {
    let mut swarm = Swarm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    swarm.spawn_drone(&DroneSpec::fake_emerge("e-r", dir.path()));
    let addr = start_binhost(&mut swarm).await;
    let client_root = tempfile::tempdir().expect("client root");

    build(&swarm, &["=app-misc/one-1.0"], 1).await;
    let path = published(&wait_current(&swarm, 1).await);
    let url = format!("http://{addr}{path}");
    let first = index(addr, &path).await;
    assert_eq!(
        verified_cpvs(&portage_client(&url, client_root.path())),
        cpvs(&["app-misc/one-1.0"])
    );

    // The next run publishes revision 2 seconds later; the same client sees it.
    build(&swarm, &["=app-misc/two-1.0"], 2).await;
    wait_current(&swarm, 2).await;
    let second = index(addr, &path).await;
    assert!(index_timestamp(&second) > index_timestamp(&first) + 5);
    assert_eq!(
        verified_cpvs(&portage_client(&url, client_root.path())),
        cpvs(&["app-misc/one-1.0", "app-misc/two-1.0"])
    );

    // Rollback: revision 1's index again, every line byte for byte but a newer TIMESTAMP, so
    // the client that holds revision 2 takes it.
    let out = swarm.swarmctl(&["binhost", "rollback"]);
    assert!(out.status.success(), "{out:?}");
    let rolled_back = index(addr, &path).await;
    let without_timestamp = |index: &str| -> Vec<String> {
        index
            .lines()
            .filter(|l| !l.starts_with("TIMESTAMP: "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(without_timestamp(&rolled_back), without_timestamp(&first));
    assert!(index_timestamp(&rolled_back) > index_timestamp(&second) + 5);
    assert_eq!(
        verified_cpvs(&portage_client(&url, client_root.path())),
        cpvs(&["app-misc/one-1.0"])
    );
    // Revision 2's files stay downloadable (a client may be fetching them).
    let two = http::get(
        addr,
        &format!("{path}/app-misc/two/two-1.0-1.gpkg.tar"),
        HTTP,
    )
    .await
    .expect("answer");
    assert_eq!(two.status, 200, "{}", two.body);
    // The run that built revision 2 ended cleanly, but nothing was built since: the rollback
    // stays over several reconcile ticks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(swarm.swarmctl_json(&["binhost", "status"])["current"], 1);
    assert_eq!(index(addr, &path).await, rolled_back);
    let revisions =
        String::from_utf8(swarm.swarmctl(&["binhost", "revisions"]).stdout).expect("utf-8");
    assert!(revisions.contains("* 1 "), "{revisions}");
}

/// What can be killed in the middle of a publication.
#[derive(Debug, Clone, Copy)]
enum Victim {
    NatsServer,
    Coordinator,
    Binhost,
}

/// Waits until the binhost serves an index again (after a restart of anything).
async fn served_index(addr: SocketAddr, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http::get(addr, &format!("{path}/Packages"), HTTP).await
            && response.status == 200
        {
            return response.body;
        }
        assert!(Instant::now() < deadline, "the binhost serves no index");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The package lines of an index: everything but its `TIMESTAMP`.
fn body_lines(index: &str) -> Vec<&str> {
    index
        .lines()
        .filter(|l| !l.starts_with("TIMESTAMP: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publication_interrupted_anywhere_leaves_the_old_revision_or_the_new_one() {
    let mut swarm =
        Swarm::start_with(&[("SWARM_COORDINATOR__BINHOST_AUTO_PUBLISH", "false")]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    swarm.spawn_drone(&DroneSpec::fake_emerge("e-k", dir.path()));
    let addr = start_binhost(&mut swarm).await;
    build(&swarm, &["=app-misc/base-1.0"], 1).await;
    // Nothing publishes by itself with auto-publication off.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        swarm.swarmctl_json(&["binhost", "status"])["current"],
        serde_json::Value::Null
    );
    assert!(swarm.swarmctl(&["binhost", "publish"]).status.success());
    let status = swarm.swarmctl_json(&["binhost", "status"]);
    let path = published(&status);
    let url = format!("http://{addr}{path}");
    let mut expected = vec!["app-misc/base-1.0".to_owned()];
    let mut before = served_index(addr, &path).await;

    // A revision written but not switched to (a writer stopped between its two steps) is not
    // served: `current` decides.
    {
        let js = async_nats::jetstream::new(swarm.client().await);
        let bucket = js
            .get_key_value(schemas::names::BINHOST_BUCKET)
            .await
            .expect("binhost bucket");
        let fingerprint = status["fingerprint"].as_str().map(str::to_owned);
        let name = schemas::BinhostName {
            arch: schemas::Arch::default(),
            fingerprint: fingerprint.clone(),
        };
        let orphan = schemas::BinhostRevision {
            v: schemas::SCHEMA_VERSION,
            arch: schemas::Arch::default(),
            number: 1_000,
            timestamp: u64::MAX / 2,
            created_ms: 0,
            packages: 1,
            bytes: 1,
            contents: "revision-nowhere".into(),
            fingerprint,
            run: None,
        };
        let key = schemas::names::binhost_revision_key(&name, 1_000);
        let encoded = schemas::encode(&orphan).expect("encode");
        bucket.put(&key, encoded.into()).await.expect("put");
        assert_eq!(served_index(addr, &path).await, before);
        bucket.delete(&key).await.expect("delete");
    }

    let victims = [
        (Victim::NatsServer, 0),
        (Victim::Coordinator, 0),
        (Victim::NatsServer, 15),
        (Victim::Coordinator, 15),
        (Victim::Binhost, 5),
        (Victim::NatsServer, 60),
    ];
    for (i, (victim, delay_ms)) in victims.into_iter().enumerate() {
        let cpv = format!("app-misc/p{i}-1.0");
        build(&swarm, &[&format!("={cpv}")], i + 2).await;
        let mut publish = swarm
            .swarmctl_command(&["binhost", "publish"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("swarmctl");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        match victim {
            Victim::NatsServer => {
                swarm.nats.kill().expect("kill nats-server");
                swarm.nats.start_again().expect("nats-server again");
            }
            Victim::Coordinator => {
                if let Some(coordinator) = swarm.coordinator.as_mut() {
                    coordinator.kill9();
                }
                swarm.spawn_coordinator();
            }
            Victim::Binhost => {
                if let Some(binhost) = swarm.binhost.as_mut() {
                    binhost.kill9();
                }
                swarm.spawn_binhost(addr.port());
            }
        }
        let _ = publish.wait();
        // What is served is the old revision or the new one, whole.
        let after = served_index(addr, &path).await;
        let root = tempfile::tempdir().expect("client root");
        let listed = verified_cpvs(&portage_client(&url, root.path()));
        let old: BTreeSet<String> = expected.iter().cloned().collect();
        let mut new = old.clone();
        new.insert(cpv.clone());
        let outcome = if listed == old {
            "the old revision"
        } else {
            "the new revision"
        };
        eprintln!("{victim:?} killed {delay_ms} ms into a publication: {outcome} served");
        if listed == old {
            assert_eq!(
                body_lines(&after),
                body_lines(&before),
                "{victim:?} {delay_ms} ms"
            );
        } else {
            assert_eq!(listed, new, "{victim:?} after {delay_ms} ms");
        }
        // Publishing again completes what was interrupted.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !swarm.swarmctl(&["binhost", "publish"]).status.success() {
            assert!(Instant::now() < deadline, "publish never succeeded again");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let root = tempfile::tempdir().expect("client root");
        assert_eq!(verified_cpvs(&portage_client(&url, root.path())), new);
        expected.push(cpv);
        before = served_index(addr, &path).await;
    }
}
