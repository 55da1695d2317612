//! A cluster of real nats-servers on loopback, each with its own store, routed to each other,
//! with clustered JetStream: nodes can be killed and started again on the same ports and store.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::{NatsServer, TestkitError, free_port};

/// How many times a cluster is started on fresh ports when a node finds one of its ports taken
/// (they are picked free, then released, so another process may take one meanwhile).
const START_TRIES: usize = 3;
/// How long the JetStream meta group may take to count every node as a current peer.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Nodes named `n1`, `n2`, ... in cluster `swarm`.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes (at least 3 for JetStream to keep a quorum when one fails) and waits
    /// until JetStream's meta group has a leader that counts every other node as a current peer,
    /// so that a stream replicated on every node can be placed at once.
    pub fn start(size: usize) -> Result<NatsCluster, TestkitError> {
        let mut tries = 0;
        let cluster = loop {
            tries += 1;
            match Self::start_on_fresh_ports(size) {
                Err(TestkitError::Exited { log_tail, .. })
                    if tries < START_TRIES && log_tail.contains("address already in use") => {}
                other => break other?,
            }
        };
        cluster.wait_formed(FORM_TIMEOUT)?;
        Ok(cluster)
    }

    fn start_on_fresh_ports(size: usize) -> Result<NatsCluster, TestkitError> {
        let client_ports: Vec<u16> = (0..size).map(|_| free_port()).collect::<Result<_, _>>()?;
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mut nodes = Vec::with_capacity(size);
        for i in 0..size {
            let routes: Vec<String> = cluster_ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, port)| format!("nats-route://127.0.0.1:{port}"))
                .collect();
            let config = format!(
                "server_name: {}\ncluster {{\n  name: swarm\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}",
                Self::name(i),
                cluster_ports[i],
                routes.join(", ")
            );
            nodes.push(
                NatsServer::builder()
                    .port(client_ports[i])
                    .sync_always(true)
                    .extra_config(config)
                    .start()?,
            );
        }
        Ok(NatsCluster { nodes })
    }

    /// Waits until a node leads the JetStream meta group and sees every other node as a current
    /// peer (its `/jsz` monitoring page).
    fn wait_formed(&self, timeout: Duration) -> Result<(), TestkitError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.nodes.iter().enumerate().any(|(i, node)| {
                jsz(node.monitor_port())
                    .is_some_and(|jsz| meta_group_complete(&jsz, &Self::name(i), self.nodes.len()))
            }) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log_tail = self
                    .nodes
                    .first()
                    .map(|n| std::fs::read_to_string(n.log_file()).unwrap_or_default())
                    .unwrap_or_default();
                return Err(TestkitError::Timeout {
                    waiting_for: "the cluster's JetStream meta group to count every node",
                    timeout,
                    log_tail,
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server name of node `i`.
    pub fn name(i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// Every node's URL, comma-separated, as the swarm's `nats.url` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Starts a killed node again on its ports, which another process may have taken meanwhile (a
/// client's outgoing connection from the ephemeral range, another test's server): tries again
/// every half second for up to `patience`.
pub fn start_again_patiently(
    node: &mut NatsServer,
    patience: Duration,
) -> Result<(), TestkitError> {
    let deadline = Instant::now() + patience;
    loop {
        match node.start_again() {
            Err(TestkitError::Exited { log_tail, .. })
                if Instant::now() < deadline && log_tail.contains("address already in use") =>
            {
                thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Copies the nodes' logs (`NatsServer::log_file`) into a directory a failed test keeps, when
/// dropped during a panic: declared after the swarm, it is dropped first, while the nodes' temp
/// dirs still exist.
pub struct KeepLogs {
    logs: Vec<PathBuf>,
    into: PathBuf,
}

impl KeepLogs {
    pub fn new(logs: Vec<PathBuf>, into: &Path) -> KeepLogs {
        KeepLogs {
            logs,
            into: into.to_path_buf(),
        }
    }
}

impl Drop for KeepLogs {
    fn drop(&mut self) {
        if thread::panicking() {
            for (i, log) in self.logs.iter().enumerate() {
                let name = format!("nats-{}.log", NatsCluster::name(i));
                let _ = std::fs::copy(log, self.into.join(name));
            }
        }
    }
}

/// `/jsz` of the node whose monitoring port is `port`, or `None` while it does not answer.
fn jsz(port: u16) -> Option<serde_json::Value> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET /jsz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    crate::http::parse(&raw).ok()?.json().ok()
}

/// Whether this `/jsz` of node `name` shows it leading the meta group, with every other node of
/// a cluster of `size` as a current peer.
fn meta_group_complete(jsz: &serde_json::Value, name: &str, size: usize) -> bool {
    let meta = &jsz["meta_cluster"];
    let leads = meta["leader"] == name;
    let current = meta["replicas"]
        .as_array()
        .map(|peers| peers.iter().filter(|p| p["current"] == true).count())
        .unwrap_or(0);
    leads && current + 1 >= size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meta_group_is_complete_when_its_leader_has_every_peer_current() {
        let jsz = |leader: &str, current: &[bool]| {
            let replicas: Vec<serde_json::Value> = current
                .iter()
                .map(|c| serde_json::json!({ "name": "n", "current": c }))
                .collect();
            serde_json::json!({ "meta_cluster": { "leader": leader, "replicas": replicas } })
        };
        assert!(meta_group_complete(&jsz("n1", &[true, true]), "n1", 3));
        assert!(!meta_group_complete(&jsz("n1", &[true, false]), "n1", 3));
        assert!(!meta_group_complete(&jsz("n1", &[true]), "n1", 3));
        // Another node's view: its leader is not itself.
        assert!(!meta_group_complete(&jsz("n2", &[true, true]), "n1", 3));
        assert!(!meta_group_complete(&serde_json::json!({}), "n1", 3));
    }
}
