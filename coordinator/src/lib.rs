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
pub mod leader;
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
pub mod stopping;
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

/// Runs the coordinator until `shutdown` is cancelled: it stands by until it wins the lead
/// (`leader::campaign`), leads until it loses it, and stands by again.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = config.nats.connect("swarm-coordinator").await?;
    let js = async_nats::jetstream::new(client.clone());
    let topo = topology::ensure(&js, &config.coordinator).await?;
    tracing::info!(url = %config.nats.url, "JetStream topology ready");
    let settings = config.coordinator.clone();
    let name = settings.effective_name();
    let ttl = settings.leader_ttl();
    loop {
        let Some(lead) =
            leader::campaign(&topo.leader, &topo.packages, &name, ttl, &shutdown).await
        else {
            break;
        };
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let (until, lead_until) = tokio::sync::watch::channel(lead.deadline());
        let fence = lead.fence;
        let keeper = tokio_util::task::TaskTracker::new();
        keeper.spawn(leader::keep(
            topo.leader.clone(),
            lead,
            stop.clone(),
            lost.clone(),
            until,
        ));
        let led = async {
            let service = service::Service::new(
                settings.clone(),
                js.clone(),
                topo.clone(),
                fence,
                lost.clone(),
                lead_until,
            )
            .await?;
            service.run(client.clone(), shutdown.clone()).await
        }
        .await;
        // Stepping down: the keeper gives the lease back unless it was lost already.
        stop.cancel();
        keeper.close();
        keeper.wait().await;
        match led {
            // Package state could not be loaded (NATS busy, a stream changing leader): the lead
            // was given back above; stand by and try again rather than leave the swarm without
            // a coordinator.
            Err(err @ service::ServiceError::Load { .. }) => {
                tracing::warn!(coordinator = %name, error = %err, "could not start leading; standing by");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ttl / 2) => continue,
                }
            }
            other => other?,
        }
        if shutdown.is_cancelled() {
            break;
        }
        tracing::warn!(coordinator = %name, "no longer leading; standing by");
    }
    Ok(())
}
