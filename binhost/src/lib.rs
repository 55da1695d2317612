//! `swarm-binhost`: serves the swarm's binary packages to Gentoo clients as Portage binhosts —
//! per arch and fingerprint, the revision the coordinator published
//! (`/published/<arch>@<fingerprint>`), and per arch everything built so far
//! (`/staging/<arch>`, for the drones' `--getbinpkg`). Read-only: the coordinator
//! is the binhost bucket's only writer; this reads `swarm-binhost`, `swarm-packages` and the
//! `swarm-artifacts` object store, and can be run on as many machines as the fleet needs.

pub mod config;
pub mod http;
pub mod index;
pub mod source;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] runtime::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Connect(#[from] runtime::nats::ConnectError),
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Runs the binhost on `config.binhost.listen` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let addr = config.binhost.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    serve(config, listener, shutdown).await
}

/// Runs the binhost on an already bound listener (tests bind port 0 and read the address).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    // Connecting does not wait for the server: requests are answered 503 until NATS is there.
    let client = config.nats.connect("swarm-binhost").await?;
    let app = http::app(http::AppState::new(client.clone()));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, nats = %config.nats.url, "binhost listening on http://{addr}/");
    }
    // Asked to stop, it finishes the requests under way, then closes its NATS connection, all
    // within its grace: a download waiting for an unreachable NATS is abandoned.
    let step = runtime::shutdown::Step::new("requests under way");
    let stopping = async {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .map_err(RunError::Serve);
        step.set("closing the NATS connection");
        let _ = client.drain().await;
        served
    };
    let grace = config.binhost.stop_within();
    let served = runtime::shutdown::within_grace(&shutdown, grace, stopping)
        .await
        .unwrap_or_else(|| {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown grace over; abandoned: {} (NATS unreachable?)",
                step.get()
            );
            Ok(())
        });
    tracing::info!("binhost stopped");
    served
}
