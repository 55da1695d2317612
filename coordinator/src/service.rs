//! The coordinator's one task: it owns the package table (loaded from the packages bucket at
//! start), the drone registry, the reconciler, the event watermark and the claim hold, and is
//! the only writer of package state. This file is the wiring: it opens the inputs (the control
//! service's requests, `api`; the event and dead-letter consumers; the drones bucket; timers)
//! and selects over them, handing each to its handler (`control.rs`, `submit.rs`, `apply.rs`,
//! `upkeep.rs`, `binhost.rs`), which calls the pure parts and writes their decisions.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, kv};
use futures::StreamExt;
use futures::stream::BoxStream;
use schemas::{PackageKey, PackageRecord, names};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::api::Api;
use crate::apply::Pending;
use crate::config::Settings;
use crate::drones::DroneRegistry;
use crate::hold::Hold;
use crate::lifecycle::Policy;
use crate::reconcile::Reconciler;
use crate::table::{Entry, PackageTable};
use crate::takeover::Takeover;
use crate::topology::Topology;
use crate::watermark::Watermark;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot load package state from bucket {bucket}: {source}")]
    Load {
        bucket: &'static str,
        #[source]
        source: runtime::kv::KvReadError,
    },
    #[error(transparent)]
    Api(#[from] crate::api::StartError),
}

/// Events applied together at most.
const EVENT_BATCH: usize = 256;
/// How often drones' silence is judged (lost marks, takeover of their builds).
const SILENCE_CHECK: Duration = Duration::from_millis(250);

pub struct Service {
    pub(crate) settings: Settings,
    /// Writes package records, fenced by this coordinator's term.
    pub(crate) writer: crate::store::Writer,
    /// Cancelled when this coordinator no longer leads (its lease lost, or a write refused).
    pub(crate) lost: CancellationToken,
    /// Until when its lease is surely held, as its keeper last renewed it.
    pub(crate) lead_until: tokio::sync::watch::Receiver<std::time::Instant>,
    pub(crate) policy: Policy,
    pub(crate) js: jetstream::Context,
    pub(crate) topo: Topology,
    pub(crate) table: PackageTable,
    pub(crate) drones: DroneRegistry,
    /// When a silent drone's builds may be given to the others.
    pub(crate) takeover: Takeover,
    /// Keys of package records that could not be read at load (a newer release's): never
    /// written, their atoms refused.
    pub(crate) unreadable: std::collections::HashSet<String>,
    pub(crate) reconciler: Reconciler,
    pub(crate) watermark: Watermark,
    /// Refused input (malformed, forged) is logged once per kind and window, not per message.
    pub(crate) refused: runtime::throttle::Throttle,
    /// Claims not yet written; their events stay unacknowledged until written.
    pub(crate) held: Hold<Pending>,
    /// Tasks that wait on another component (a drone's answer), joined when the service stops.
    pub(crate) tasks: TaskTracker,
}

impl Service {
    /// The service of a coordinator that leads: `fence` is its term's, `lost` is cancelled when
    /// it no longer leads. Package state is loaded here, after the term began.
    pub async fn new(
        settings: Settings,
        js: jetstream::Context,
        topo: Topology,
        fence: crate::leader::Fence,
        lost: CancellationToken,
        lead_until: tokio::sync::watch::Receiver<std::time::Instant>,
    ) -> Result<Service, ServiceError> {
        let policy = Policy {
            max_attempts: settings.max_attempts,
            backoff_ms: settings.retry_backoff_ms,
            backoff_max_ms: settings.retry_backoff_max_ms,
        };
        let items = runtime::kv::read_bucket::<PackageRecord>(&topo.packages)
            .await
            .map_err(|source| ServiceError::Load {
                bucket: names::PACKAGES_BUCKET,
                source,
            })?;
        let loaded = items.len();
        // Events at or below the consumer's ack floor were applied by an earlier run; without
        // this a restarted coordinator would wait for a new event before it could requeue.
        let floor = ack_floor(&topo.events).await.unwrap_or(0);
        let mut table = PackageTable::with_capacity(loaded);
        for item in items {
            let key = item.value.atom.key();
            let entry = Entry {
                record: item.value,
                revision: item.revision,
            };
            table.store(&key, Some(entry));
        }
        // Records this coordinator cannot read (a newer release's) are left alone: never
        // overwritten, so that the release that wrote them still finds them.
        let mut unreadable = std::collections::HashSet::new();
        if let Ok(mut keys) = topo.packages.keys().await {
            while let Some(Ok(key)) = keys.next().await {
                let known =
                    PackageKey::decode(&key).is_some_and(|atom| table.contains(&atom.key()));
                if names::is_package_key(&key) && !known {
                    unreadable.insert(key);
                }
            }
        }
        if !unreadable.is_empty() {
            warn!(
                count = unreadable.len(),
                "package records this coordinator cannot read are left as they are, and their atoms refused"
            );
        }
        info!(packages = loaded, "package state loaded");
        Ok(Service {
            settings,
            writer: crate::store::Writer {
                js: js.clone(),
                bucket: topo.packages.clone(),
                fence,
            },
            lost,
            lead_until,
            policy,
            js,
            topo,
            table,
            drones: DroneRegistry::default(),
            takeover: Takeover::default(),
            unreadable,
            reconciler: Reconciler::default(),
            watermark: Watermark::new(floor),
            refused: runtime::throttle::Throttle::default(),
            held: Hold::default(),
            tasks: TaskTracker::new(),
        })
    }

    pub async fn run(
        mut self,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let mut api = Api::start(&client).await?;
        // Events are taken in batches of whatever has arrived (up to EVENT_BATCH), so that the
        // writes of one batch go out together.
        let events_consumer = names::COORDINATOR_EVENTS_CONSUMER;
        let mut events = open_consumer(&self.topo.events, events_consumer)
            .await
            .ready_chunks(EVENT_BATCH);
        let deadletter_consumer = names::COORDINATOR_DEADLETTER_CONSUMER;
        let mut deadletters = open_consumer(&self.topo.deadletter, deadletter_consumer).await;
        let mut drone_watch = self.topo.drones.watch_all().await.ok();
        let mut reconcile =
            tokio::time::interval(Duration::from_millis(self.settings.reconcile_interval_ms));
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retry_tick_ms = (self.settings.retry_backoff_ms / 4).clamp(20, 1_000);
        let mut retries = tokio::time::interval(Duration::from_millis(retry_tick_ms));
        retries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut silence = tokio::time::interval(SILENCE_CHECK);
        silence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_check = std::time::Instant::now();
        self.catch_up_unacknowledged().await;
        info!("coordinator ready");
        loop {
            // Checked before anything else each turn: a coordinator that resumes after a freeze
            // past its lease acts on nothing it finds waiting.
            if !self.leading() {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.lost.cancelled() => break,
                Some((endpoint, request)) = api.next() => self.handle_api(endpoint, request).await,
                batch = events.next() => match batch {
                    Some(batch) => {
                        let mut messages = Vec::with_capacity(batch.len());
                        for item in batch {
                            match item {
                                Ok(message) => messages.push(message),
                                Err(err) => warn!(error = %err, "event consumer"),
                            }
                        }
                        self.handle_events(messages).await;
                        self.advance_graph().await;
                    }
                    None => {
                        warn!("event consumer ended, reopening");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        events = open_consumer(&self.topo.events, events_consumer).await.ready_chunks(EVENT_BATCH);
                    }
                },
                message = deadletters.next() => match message {
                    Some(Ok(message)) => self.handle_deadletter(message).await,
                    Some(Err(err)) => warn!(error = %err, "dead-letter consumer"),
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        deadletters = open_consumer(&self.topo.deadletter, deadletter_consumer).await;
                    }
                },
                entry = next_watch(&mut drone_watch) => match entry {
                    Some(entry) => self.handle_drone_entry(entry),
                    None => {
                        self.takeover.listening(false, &self.drones, std::time::Instant::now());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        drone_watch = self.topo.drones.watch_all().await.ok();
                    }
                },
                _ = sleep_until(self.held.next_due()) => self.write_due_claims().await,
                _ = retries.tick() => {
                    self.publish_due_retries().await;
                    self.advance_graph().await;
                }
                _ = silence.tick() => {
                    let now = std::time::Instant::now();
                    let connected = client.connection_state() == async_nats::connection::State::Connected;
                    // A tick far behind its time (this process frozen or starved) is a gap in
                    // what the coordinator heard, not the drones' silence.
                    let on_time = now.saturating_duration_since(last_check) < SILENCE_CHECK * 4;
                    last_check = now;
                    self.takeover.listening(connected && drone_watch.is_some() && on_time, &self.drones, now);
                    if self.leading() {
                        self.mark_lost_drones().await;
                        self.release_silent_drones().await;
                    }
                }
                _ = reconcile.tick() => {
                    if let Err(err) = self.reconcile_once().await {
                        warn!(error = %err, "reconcile pass failed; trying again next interval");
                    }
                    self.publish_finished_runs().await;
                }
            }
        }
        api.stop().await;
        self.tasks.close();
        // A drone's answer waits at most its timeout; a task still waiting when half the
        // shutdown grace is over (a drone or NATS unreachable) is abandoned.
        if tokio::time::timeout(self.settings.stop_within() / 2, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("control tasks still waiting for drones at shutdown; abandoned");
        }
        info!("coordinator stopped");
        Ok(())
    }
}

impl Service {
    /// Whether this coordinator still leads: its lease not lost, its deadline not passed.
    pub(crate) fn leading(&self) -> bool {
        !self.lost.is_cancelled() && std::time::Instant::now() < *self.lead_until.borrow()
    }
}

/// The event consumer's ack floor and the last event delivered to it: every event at or below
/// the floor was acknowledged, so applied. `None` when the consumer cannot be asked.
pub(crate) async fn consumer_position(events: &jetstream::stream::Stream) -> Option<(u64, u64)> {
    let mut consumer = events
        .get_consumer::<pull::Config>(names::COORDINATOR_EVENTS_CONSUMER)
        .await
        .ok()?;
    let info = consumer.info().await.ok()?;
    Some((
        info.ack_floor.stream_sequence,
        info.delivered.stream_sequence,
    ))
}

pub(crate) async fn ack_floor(events: &jetstream::stream::Stream) -> Option<u64> {
    consumer_position(events).await.map(|(floor, _)| floor)
}

type MessageStream = BoxStream<'static, Result<jetstream::Message, pull::MessagesError>>;

/// Opens the continuous pull of a durable consumer; while the consumer cannot be reached the
/// stream is empty and ends, and the caller reopens it.
async fn open_consumer(stream: &jetstream::stream::Stream, name: &str) -> MessageStream {
    let consumer = match stream.get_consumer::<pull::Config>(name).await {
        Ok(c) => c,
        Err(err) => {
            warn!(consumer = name, error = %err, "cannot open consumer");
            return futures::stream::empty().boxed();
        }
    };
    match consumer.messages().await {
        Ok(messages) => messages.boxed(),
        Err(err) => {
            warn!(consumer = name, error = %err, "cannot pull from consumer");
            futures::stream::empty().boxed()
        }
    }
}

async fn next_watch(watch: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    match watch {
        Some(w) => match w.next().await {
            Some(Ok(entry)) => Some(entry),
            Some(Err(err)) => {
                warn!(error = %err, "drone watch error");
                None
            }
            None => None,
        },
        None => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}

/// Sleeps until `at`; never returns when there is nothing to wait for.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => futures::future::pending().await,
    }
}
