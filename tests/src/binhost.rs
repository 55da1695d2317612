//! What the binhost tests (`binhost.rs`, `binhosts.rs`) share: `swarm-binhost` started on a
//! free port, and Portage's own client (`binarytree`, as `emerge --getbinpkg` reads a remote
//! binhost) listing and verifying what it serves.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::http;

use crate::Swarm;

/// How long one HTTP request to the binhost may take.
pub const HTTP: Duration = Duration::from_secs(10);

/// Starts `swarm-binhost` and waits until it answers.
pub async fn start_binhost(swarm: &mut Swarm) -> SocketAddr {
    let port = testkit::free_port().expect("a free port");
    swarm.spawn_binhost(port);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = http::get(addr, "/healthz", HTTP).await
            && response.status == 200
        {
            return addr;
        }
        assert!(Instant::now() < deadline, "swarm-binhost did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What Portage's client lists from the binhost at `url` (its cache kept in `root` between
/// calls), every file downloaded and verified.
pub fn portage_client(url: &str, root: &Path) -> serde_json::Value {
    testkit::portage::oracle(&[
        "binhost-client",
        url,
        &root.display().to_string(),
        "download",
    ])
    .expect("Portage reads the binhost")
}

/// The CPVs the client lists, after checking every file downloaded with the size and every
/// checksum the index states.
pub fn verified_cpvs(client: &serde_json::Value) -> BTreeSet<String> {
    let packages = client["packages"].as_object().expect("packages");
    for (cpv, entry) in packages {
        let downloaded = &entry["downloaded"];
        assert_eq!(downloaded["verified"], true, "{cpv}: {downloaded}");
        let checked: Vec<&str> = downloaded["checked"]
            .as_array()
            .expect("checked")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for digest in ["size", "MD5", "SHA1"] {
            assert!(
                checked.contains(&digest),
                "{cpv} unchecked {digest}: {checked:?}"
            );
        }
        assert_eq!(
            downloaded["bytes"]
                .as_u64()
                .map(|b| b.to_string())
                .as_deref(),
            entry["SIZE"].as_str(),
            "{cpv}"
        );
    }
    let messages = client["messages"].as_str().unwrap_or_default();
    assert!(
        !messages.contains("If-Modified-Since") && !messages.contains("!!! ["),
        "Portage complained: {messages}"
    );
    packages.keys().cloned().collect()
}

pub fn cpvs(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}
