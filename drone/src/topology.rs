//! The JetStream assets a drone uses, found (never created: that is the coordinator's job). A
//! drone may start before the coordinator, so it waits until they exist.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, kv, object_store::ObjectStore};
use schemas::names;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{BuilderKind, Settings};

/// A JetStream asset the drone needs and could not find.
#[derive(Debug, thiserror::Error)]
#[error(
    "the swarm's JetStream assets are missing ({what}): {source}; start swarm-coordinator first"
)]
pub struct MissingAsset {
    pub what: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

fn missing<E>(what: &str) -> impl FnOnce(E) -> MissingAsset + '_
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |source| MissingAsset {
        what: what.to_owned(),
        source: source.into(),
    }
}

/// What a drone reads and writes.
pub struct Topology {
    pub leases: kv::Store,
    pub packages: kv::Store,
    pub drones: kv::Store,
    /// The fingerprint each arch's run targets.
    pub targets: kv::Store,
    /// The `builders-<arch>` consumer.
    pub consumer: PullConsumer,
    /// The `builders-<arch>-big` consumer, for a drone that takes big builds. A coordinator that
    /// predates big builds has none: the drone then takes normal work only.
    pub big: Option<PullConsumer>,
    /// The store of built binary packages, for a builder that writes them (`emerge`): such a
    /// drone waits for it like for the rest.
    pub artifacts: Option<ObjectStore>,
    /// The store of complete build logs (none from a coordinator that keeps none).
    pub logs: Option<ObjectStore>,
}

impl Topology {
    async fn find(js: &jetstream::Context, settings: &Settings) -> Result<Topology, MissingAsset> {
        let leases = js
            .get_key_value(names::LEASES_BUCKET)
            .await
            .map_err(missing(names::LEASES_BUCKET))?;
        let packages = js
            .get_key_value(names::PACKAGES_BUCKET)
            .await
            .map_err(missing(names::PACKAGES_BUCKET))?;
        let drones = js
            .get_key_value(names::DRONES_BUCKET)
            .await
            .map_err(missing(names::DRONES_BUCKET))?;
        let targets = js
            .get_key_value(names::TARGETS_BUCKET)
            .await
            .map_err(missing(names::TARGETS_BUCKET))?;
        let stream = js
            .get_stream(names::BUILDS_STREAM)
            .await
            .map_err(missing(names::BUILDS_STREAM))?;
        let consumer_name = names::builders_consumer(&settings.arch);
        let consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>(&consumer_name)
            .await
            .map_err(missing(&consumer_name))?;
        let big = if settings.takes_big_builds() {
            stream
                .get_consumer::<jetstream::consumer::pull::Config>(&names::big_builders_consumer(
                    &settings.arch,
                ))
                .await
                .ok()
        } else {
            None
        };
        let artifacts = match settings.builder {
            BuilderKind::Emerge => Some(
                js.get_object_store(names::ARTIFACTS_BUCKET)
                    .await
                    .map_err(missing(names::ARTIFACTS_BUCKET))?,
            ),
            _ => js.get_object_store(names::ARTIFACTS_BUCKET).await.ok(),
        };
        let logs = js.get_object_store(names::LOGS_BUCKET).await.ok();
        Ok(Topology {
            logs,
            leases,
            packages,
            drones,
            targets,
            consumer,
            big,
            artifacts,
        })
    }

    /// Waits until the coordinator has created the topology; `None` when `shutdown` came first.
    pub async fn wait(
        js: &jetstream::Context,
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Option<Topology> {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                found = Topology::find(js, settings) => match found {
                    Ok(topology) => return Some(topology),
                    Err(err) => {
                        warn!(error = %err, "waiting for the coordinator's topology");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }
}
