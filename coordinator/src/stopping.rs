//! The coordinator's stop: [`run`] is [`crate::run`] within `coordinator.shutdown_grace_ms` of
//! the signal. The coordinator holds nothing that NATS does not, so a step still waiting for
//! NATS when the grace is over (NATS unreachable) is abandoned as a crash would abandon it: the
//! coordinator that leads next takes up from the streams and buckets (events not acknowledged
//! are delivered again, the reconciler publishes again what has neither a job nor a lease).

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Config, RunError};

/// [`crate::run`], bounded by the shutdown grace after the signal: what the binary runs.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let grace = config.coordinator.stop_within();
    let running = crate::run(config, shutdown.clone());
    match runtime::shutdown::within_grace(&shutdown, grace, running).await {
        Some(result) => result,
        None => {
            warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown grace over; abandoned: the step still waiting for NATS (unreachable?), which the next leader redoes"
            );
            info!("coordinator stopped");
            Ok(())
        }
    }
}
