//! Creates the swarm's JetStream assets — the only place in the product that does. Every call is
//! idempotent: an existing asset is updated to the configured settings, never recreated, so a
//! restart or a second coordinator loses nothing.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, object_store::ObjectStore, stream};
use schemas::names;

use crate::config::{Settings, Storage};

/// Why an asset could not be created or updated. The source is the client's error of the step
/// that failed (reading, creating or updating the asset), each its own type, so it is boxed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot create or update stream {name}: {source}")]
    Stream {
        name: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot create or update bucket {name}: {source}")]
    Bucket {
        name: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot create or update consumer {name}: {source}")]
    Consumer {
        name: String,
        #[source]
        source: stream::ConsumerError,
    },
}

fn storage(settings: &Settings) -> stream::StorageType {
    match settings.storage {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}

/// The work stream: one job per package subject, enforced by the server (a second job for a
/// subject that still holds one is refused), removed when a drone acknowledges it.
pub fn builds_stream(settings: &Settings) -> stream::Config {
    stream::Config {
        name: names::BUILDS_STREAM.to_owned(),
        subjects: vec![format!("{}.>", names::BUILD_SUBJECT_PREFIX)],
        retention: stream::RetentionPolicy::WorkQueue,
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        duplicate_window: Duration::from_millis(settings.duplicate_window_ms),
        storage: storage(settings),
        num_replicas: settings.replicas,
        allow_direct: true,
        ..Default::default()
    }
}

pub fn events_stream(settings: &Settings) -> stream::Config {
    stream::Config {
        name: names::EVENTS_STREAM.to_owned(),
        subjects: vec![names::events_filter()],
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(settings.events_max_age_secs),
        storage: storage(settings),
        num_replicas: settings.replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// Live build logs, in chunks, kept as long as the complete logs.
pub fn logs_stream(settings: &Settings) -> stream::Config {
    stream::Config {
        name: names::LOGS_STREAM.to_owned(),
        subjects: vec![format!("{}.>", names::LOG_SUBJECT_PREFIX)],
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(settings.log_retention_secs),
        storage: storage(settings),
        num_replicas: settings.replicas,
        duplicate_window: Duration::from_millis(settings.duplicate_window_ms),
        ..Default::default()
    }
}

/// The build history: one entry per ended attempt, subject per package, kept for
/// `history_max_age_secs`, the newest `history_per_package` of each package.
pub fn history_stream(settings: &Settings) -> stream::Config {
    stream::Config {
        name: names::HISTORY_STREAM.to_owned(),
        subjects: vec![format!("{}.>", names::HISTORY_SUBJECT_PREFIX)],
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(settings.history_max_age_secs),
        max_messages_per_subject: settings.history_per_package,
        storage: storage(settings),
        num_replicas: settings.replicas,
        duplicate_window: Duration::from_millis(settings.duplicate_window_ms),
        allow_direct: true,
        ..Default::default()
    }
}

/// Keeps the server's max-deliveries advisories, which are otherwise fire-and-forget, until the
/// coordinator has handled them.
pub fn deadletter_stream(settings: &Settings) -> stream::Config {
    stream::Config {
        name: names::DEADLETTER_STREAM.to_owned(),
        subjects: vec![names::max_deliveries_advisory_filter()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: storage(settings),
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

fn bucket(settings: &Settings, name: &str, max_age: Duration) -> kv::Config {
    kv::Config {
        bucket: name.to_owned(),
        history: 1,
        max_age,
        storage: storage(settings),
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

pub fn builders_consumer(settings: &Settings, arch: &schemas::Arch) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names::builders_consumer(arch)),
        filter_subject: names::build_filter(arch),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_millis(settings.ack_wait_ms),
        max_deliver: settings.max_deliver,
        // Drones pull exactly their free slots; the server-side cap only guards against a
        // misbehaving client.
        max_ack_pending: 100_000,
        max_waiting: 4_096,
        ..Default::default()
    }
}

/// The consumer of one arch's big jobs: the same settings, its own subjects. Only drones that
/// take big builds pull from it.
pub fn big_builders_consumer(settings: &Settings, arch: &schemas::Arch) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names::big_builders_consumer(arch)),
        filter_subject: names::big_build_filter(arch),
        ..builders_consumer(settings, arch)
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, TopologyError> {
    let name = config.name.clone();
    let err = |source: async_nats::Error| TopologyError::Stream {
        name: name.clone(),
        source,
    };
    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let current = existing
                .info()
                .await
                .map_err(|e| err(e.into()))?
                .config
                .clone();
            if current != config {
                js.update_stream(&config).await.map_err(|e| err(e.into()))?;
            }
            Ok(existing)
        }
        Err(_) => js.create_stream(config).await.map_err(|e| err(e.into())),
    }
}

async fn ensure_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, TopologyError> {
    let name = config.bucket.clone();
    let err = |source: async_nats::Error| TopologyError::Bucket {
        name: name.clone(),
        source,
    };
    match js.get_key_value(&name).await {
        Ok(store) => {
            // A bucket is a stream named KV_<bucket>; keep its limits in step with the config.
            let mut stream = js
                .get_stream(format!("KV_{name}"))
                .await
                .map_err(|e| err(e.into()))?;
            let mut current = stream
                .info()
                .await
                .map_err(|e| err(e.into()))?
                .config
                .clone();
            if current.max_age != config.max_age || current.num_replicas != config.num_replicas {
                current.max_age = config.max_age;
                current.num_replicas = config.num_replicas;
                // The server refuses a duplicate window longer than the max age, and the bucket
                // was created with a window fitted to its old max age.
                if !config.max_age.is_zero() && current.duplicate_window > config.max_age {
                    current.duplicate_window = config.max_age;
                }
                js.update_stream(&current)
                    .await
                    .map_err(|e| err(e.into()))?;
            }
            Ok(store)
        }
        Err(_) => js.create_key_value(config).await.map_err(|e| err(e.into())),
    }
}

/// The object store of built binary packages. Objects are named by their contents, so an
/// upload repeated after a retry or a redelivery stores nothing new.
async fn ensure_object_store(
    js: &jetstream::Context,
    settings: &Settings,
    name: &str,
    description: &str,
    max_age: Duration,
) -> Result<ObjectStore, TopologyError> {
    if let Ok(store) = js.get_object_store(name).await {
        return Ok(store);
    }
    js.create_object_store(async_nats::jetstream::object_store::Config {
        bucket: name.to_owned(),
        description: Some(description.to_owned()),
        storage: storage(settings),
        num_replicas: settings.replicas,
        max_age,
        ..Default::default()
    })
    .await
    .map_err(|source| TopologyError::Bucket {
        name: name.to_owned(),
        source: source.into(),
    })
}

/// Handles to what the coordinator uses after setting up.
#[derive(Clone)]
pub struct Topology {
    pub builds: stream::Stream,
    pub events: stream::Stream,
    pub deadletter: stream::Stream,
    pub drones: kv::Store,
    pub leases: kv::Store,
    pub packages: kv::Store,
    /// The coordinators' leader lease (`leader`).
    pub leader: kv::Store,
    pub binhost: kv::Store,
    pub targets: kv::Store,
    pub artifacts: ObjectStore,
}

pub async fn ensure(
    js: &jetstream::Context,
    settings: &Settings,
) -> Result<Topology, TopologyError> {
    let builds = ensure_stream(js, builds_stream(settings)).await?;
    let events = ensure_stream(js, events_stream(settings)).await?;
    let deadletter = ensure_stream(js, deadletter_stream(settings)).await?;
    ensure_stream(js, history_stream(settings)).await?;
    // Drone records outlive a stopped drone for a day so the dashboard can show it as offline.
    let drones = ensure_bucket(
        js,
        bucket(settings, names::DRONES_BUCKET, Duration::from_secs(86_400)),
    )
    .await?;
    // The fingerprint each arch's run targets: kept until a submission changes it.
    let targets =
        ensure_bucket(js, bucket(settings, names::TARGETS_BUCKET, Duration::ZERO)).await?;
    let leases = ensure_bucket(
        js,
        bucket(settings, names::LEASES_BUCKET, settings.lease_ttl()),
    )
    .await?;
    let packages =
        ensure_bucket(js, bucket(settings, names::PACKAGES_BUCKET, Duration::ZERO)).await?;
    // The leader lease lives as long as its last renewal allows.
    let leader = ensure_bucket(
        js,
        bucket(settings, names::LEADER_BUCKET, settings.leader_ttl()),
    )
    .await?;
    let artifacts = ensure_object_store(
        js,
        settings,
        names::ARTIFACTS_BUCKET,
        "binary packages built by the swarm, by content",
        Duration::ZERO,
    )
    .await?;
    // Build logs: the complete ones, and the live stream they are written to as builds run.
    let retention = Duration::from_secs(settings.log_retention_secs);
    ensure_object_store(
        js,
        settings,
        names::LOGS_BUCKET,
        "complete build logs, gzip, one per attempt",
        retention,
    )
    .await?;
    ensure_stream(js, logs_stream(settings)).await?;
    // Published binhost revisions: kept until the coordinator drops them.
    let binhost =
        ensure_bucket(js, bucket(settings, names::BINHOST_BUCKET, Duration::ZERO)).await?;
    for arch in &settings.arches {
        for config in [
            builders_consumer(settings, arch),
            big_builders_consumer(settings, arch),
        ] {
            let name = config.durable_name.clone().unwrap_or_default();
            // A paused swarm stays paused across a coordinator restart: the pause is the
            // consumers' own (`swarmctl pause`), and updating their settings keeps it.
            let mut config = config;
            if let Ok(info) = builds.consumer_info(&name).await {
                config.pause_until = info.config.pause_until;
            }
            builds
                .create_consumer(config)
                .await
                .map_err(|source| TopologyError::Consumer { name, source })?;
        }
    }
    events
        .create_consumer(consumer::pull::Config {
            durable_name: Some(names::COORDINATOR_EVENTS_CONSUMER.to_owned()),
            filter_subject: names::events_filter(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .map_err(|source| TopologyError::Consumer {
            name: names::COORDINATOR_EVENTS_CONSUMER.to_owned(),
            source,
        })?;
    deadletter
        .create_consumer(consumer::pull::Config {
            durable_name: Some(names::COORDINATOR_DEADLETTER_CONSUMER.to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|source| TopologyError::Consumer {
            name: names::COORDINATOR_DEADLETTER_CONSUMER.to_owned(),
            source,
        })?;
    Ok(Topology {
        builds,
        events,
        deadletter,
        drones,
        leases,
        packages,
        leader,
        binhost,
        targets,
        artifacts,
    })
}
