//! A TCP proxy on loopback that a test can partition: a component connects through it instead of
//! straight to NATS, and [`TcpProxy::cut`] stops every byte in both directions — the connections
//! stay open, as they do when a network link goes down, and new connections are held — until
//! [`TcpProxy::restore`] lets everything through again, like a healed network.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; dropping it stops it and closes its connections.
pub struct TcpProxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<TcpProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (open, gate) = watch::channel(true);
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                let gate = gate.clone();
                connections.push(tokio::spawn(async move {
                    // A connection made during a partition waits for the link to come back.
                    if wait_open(&gate).await.is_err() {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let up = tokio::spawn(pump(client_read, server_write, gate.clone()));
                    let down = tokio::spawn(pump(server_read, client_write, gate));
                    let _ = tokio::join!(up, down);
                }));
                connections.retain(|c| !c.is_finished());
            }
            for connection in connections {
                connection.abort();
            }
        });
        Ok(TcpProxy { addr, open, task })
    }

    /// Where components connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Partitions: nothing passes in either direction until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Heals the partition: what was held back flows on.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_open(gate: &watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    let mut gate = gate.clone();
    gate.wait_for(|open| *open).await.map(|_| ())
}

/// Copies from `from` to `to`, reading nothing while the link is cut, so bytes wait in the
/// sockets' buffers as they would on a broken network path.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    gate: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if wait_open(&gate).await.is_err() {
            return;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // A read that completed just as the link was cut is held until it is restored.
        if wait_open(&gate).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
