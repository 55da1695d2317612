//! The live dashboard: folds the drones' events and the drones and packages buckets into one
//! picture of the swarm (`fold`), serves it as a page, a JSON snapshot, a WebSocket of changes,
//! Prometheus metrics and a health check (`http`). Read-only: it never writes to NATS.

pub mod config;
pub mod fold;
pub mod graph;
pub mod http;
pub mod hub;
pub mod logs;
pub mod metrics;
pub mod source;
pub mod view;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// Inputs buffered between the sources and the fold; a full buffer slows the sources down.
const INPUT_QUEUE: usize = 8_192;

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

/// Runs the dashboard on `config.dashboard.listen` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let addr = config.dashboard.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    serve(config, listener, shutdown).await
}

/// Runs the dashboard on an already bound listener (tests bind port 0 and read the address).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let settings = config.dashboard.clone();
    // Connecting does not wait for the server: the page is served, and says NATS is down,
    // while the client keeps trying.
    let client = config.nats.connect("swarm-dashboard").await?;
    let tracker = TaskTracker::new();
    let (inputs, fold_inputs) = mpsc::channel(INPUT_QUEUE);
    let nats = client.clone();
    let hub = hub::spawn(
        &tracker,
        settings.failures_kept,
        Duration::from_millis(settings.tick_ms),
        move || nats.connection_state() == async_nats::connection::State::Connected,
        fold_inputs,
        shutdown.clone(),
    );
    tracker.spawn(source::follow(
        client.clone(),
        Duration::from_millis(settings.stream_poll_ms),
        inputs,
        shutdown.clone(),
    ));
    let app = http::app(http::AppState {
        hub,
        client: client.clone(),
        shutdown: shutdown.clone(),
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, nats = %config.nats.url, "dashboard listening on http://{addr}/");
    }
    // Asked to stop, it closes open pages and their WebSockets, stops its sources and the fold,
    // and closes its NATS connection, all within its grace: what waits for an unreachable NATS
    // then is abandoned.
    let step = runtime::shutdown::Step::new("open HTTP connections");
    let stopping = async {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .map_err(RunError::Serve);
        shutdown.cancel();
        step.set("the sources' reads of NATS and the fold");
        tracker.close();
        tracker.wait().await;
        step.set("closing the NATS connection");
        let _ = client.drain().await;
        served
    };
    let grace = settings.stop_within();
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
    tracing::info!("dashboard stopped");
    served
}
