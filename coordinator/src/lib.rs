//! The coordinator: creates the JetStream topology, accepts submissions, owns every package's
//! state and keeps it consistent with the work stream and the leases.
//!
//! Pure parts (no I/O, table-tested): `lifecycle`, `table`, `retry`, `watermark`, `hold`,
//! `reconcile`, `drones`, `big_jobs`, `schedule`, `events`. I/O: `store` and `publish` (one
//! request each), `topology`, and the service (`service` wiring, with its handlers in
//! `control`, `submit`, `apply` and `upkeep`; `api` is the control service they answer, and
//! `select` the pure choice of what a cancel or retry acts on).

pub mod api;
mod apply;
pub mod big_jobs;
pub mod binhost;
mod binhost_store;
pub mod config;
mod control;
pub mod drones;
pub mod events;
pub mod graph;
pub mod history;
pub mod hold;
pub mod lifecycle;
pub mod priority;
pub mod publication;
pub mod publish;
pub mod reconcile;
pub mod retry;
pub mod runs;
pub mod schedule;
pub mod select;
pub mod service;
pub mod store;
pub mod submission;
mod submit;
pub mod table;
pub mod takeover;
pub mod target;
pub mod topology;
mod upkeep;
pub mod watermark;

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
