//! The coordinator: creates the JetStream topology, accepts submissions, owns every package's
//! state and keeps it consistent with the work stream and the leases.

pub mod config;
pub mod lifecycle;
pub mod schedule;
pub mod service;
pub mod topology;

use tokio_util::sync::CancellationToken;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Connect(#[from] runtime::nats::ConnectError),
    #[error(transparent)]
    Topology(#[from] topology::TopologyError),
    #[error(transparent)]
    Service(#[from] service::ServiceError),
}

/// Runs the coordinator until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = config.nats.connect("swarm-coordinator").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topo = topology::ensure(&js, &config.coordinator).await?;
    tracing::info!(url = %config.nats.url, "JetStream topology ready");
    let service = service::Service::new(config.coordinator.clone(), js, topo).await?;
    service.run(client, shutdown).await?;
    Ok(())
}
