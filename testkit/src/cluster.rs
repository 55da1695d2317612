//! A cluster of real nats-servers on loopback, each with its own store, routed to each other,
//! with clustered JetStream: nodes can be killed and started again on the same ports and store.

use crate::{NatsServer, TestkitError, free_port};

/// Nodes named `n1`, `n2`, ... in cluster `swarm`.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes (at least 3 for JetStream to keep a quorum when one fails).
    pub fn start(size: usize) -> Result<NatsCluster, TestkitError> {
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
