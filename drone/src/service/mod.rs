//! The drone's I/O shell. One task owns the [`Drone`] state; it selects over its inputs (pulled
//! jobs and pull statuses, build tasks' slot events, control requests, looks at the queues,
//! timers), feeds each to the state, and carries out what the state decides: pull requests,
//! naks, build tasks, events and the drone record. Every task it spawns is tracked and joined
//! before the drone goes offline; on its way out nothing waits past its stop (`wind_down`,
//! `crate::stopping`), NATS reachable or not.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::jetstream::{self, consumer::PullConsumer};
use bytes::Bytes;
use futures::StreamExt;
use schemas::{DroneName, DroneRecord, DroneState, EventKind, SCHEMA_VERSION, encode, names};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::build::{Ctx, SlotEvent};
use crate::builder::Builder;
use crate::config::Config;
use crate::observer::{Observer, Quiet};
use crate::reporter::Reporter;
use crate::state::{Drone, Look, PullGate};
use crate::topology::{MissingAsset, Topology};

mod records;
mod verdicts;
mod wind_down;
mod work;

#[derive(Debug, thiserror::Error)]
pub enum DroneError {
    #[error(transparent)]
    Connect(#[from] runtime::nats::ConnectError),
    #[error(transparent)]
    Topology(#[from] MissingAsset),
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error("invalid {key}: {reason}")]
    Config { key: &'static str, reason: String },
}

/// How often a drone that takes big builds looks at the queues it does not wait on: the big
/// queue while it builds, the normal queue while it is idle.
const BIG_CHECK: Duration = Duration::from_millis(250);
/// The longest a drone that takes big builds waits on a normal pull: when it goes idle, a pull it
/// left waiting would take normal work ahead of a big job published a moment later.
const BIG_DRONE_PULL_EXPIRES: Duration = Duration::from_secs(1);
/// How long a look at a queue's pending count may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a pull request could not be sent.
const PULL_RETRY: Duration = Duration::from_millis(200);

type JobMessage = Box<jetstream::Message>;

/// What the helper tasks (big pulls, looks) tell the main loop.
enum BigEvent {
    Looked(Look, bool),
    /// The answer to a pull of one big job.
    Job(Option<JobMessage>),
}

/// Runs a drone until `shutdown` is cancelled and its builds are finished or handed back.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DroneError> {
    run_observed(config, shutdown, Arc::new(Quiet)).await
}

/// [`run`], telling `observer` when builds start and end (a benchmark measures drones it runs
/// in its own process this way).
pub async fn run_observed(
    config: Config,
    shutdown: CancellationToken,
    observer: Arc<dyn Observer>,
) -> Result<(), DroneError> {
    let settings = config.drone.clone();
    let name = DroneName::parse(&settings.name).map_err(|e| DroneError::Config {
        key: "drone.name",
        reason: e.to_string(),
    })?;
    let builder = Builder::from_settings(&settings).map_err(|e| DroneError::Config {
        key: "drone.simulate.model_file",
        reason: e.to_string(),
    })?;
    let client = config.nats.connect(&format!("swarm-drone {name}")).await?;
    let js = jetstream::new(client.clone());
    let Some(topology) = Topology::wait(&js, &settings, &shutdown).await else {
        return Ok(());
    };
    let lease_ttl = topology
        .leases
        .stream
        .clone()
        .info()
        .await
        .map(|i| i.config.max_age)
        .unwrap_or(Duration::from_secs(30));
    let ack_wait = topology.consumer.cached_info().config.ack_wait;
    let boot_ms = runtime::now_ms();
    let renew_every = (lease_ttl.min(ack_wait) / 3).max(Duration::from_millis(20));
    let heartbeat = Duration::from_millis(settings.heartbeat_ms);
    let deadline = crate::liveness::deadline(
        settings.supervise_deadline_ms.map(Duration::from_millis),
        heartbeat,
        lease_ttl,
        renew_every,
    );
    let ctx = Arc::new(Ctx {
        name: name.clone(),
        settings: settings.clone(),
        builder: with_supervisor(builder),
        leases: topology.leases.clone(),
        packages: topology.packages.clone(),
        drones: topology.drones.clone(),
        reporter: Reporter::new(client.clone(), name.clone(), boot_ms),
        refused: runtime::throttle::Throttle::default(),
        lease_ttl,
        renew_every,
        liveness: crate::liveness::Liveness::new(deadline, heartbeat),
        observer,
        pkgdir: settings.writes_binpkgs(),
        artifacts: topology.artifacts.clone(),
        js: js.clone(),
        logs: topology.logs.clone(),
        abandon: CancellationToken::new(),
    });
    let subscribe = |subject: String| {
        let client = client.clone();
        async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|source| DroneError::Subscribe { subject, source })
        }
    };
    let inbox = Subject::from(client.new_inbox());
    let jobs_in = subscribe(inbox.to_string()).await?;
    let control = subscribe(names::drone_control_subject(&name)).await?;
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (big_tx, big_rx) = mpsc::unbounded_channel();
    let mut shell = Shell::new(ctx, client, js, topology, inbox, done_tx, big_tx);
    let inputs = Inputs {
        jobs_in,
        control,
        done_rx,
        big_rx,
    };
    shell.run(inputs, shutdown).await;
    Ok(())
}

/// The streams and channels the main loop selects over.
struct Inputs {
    jobs_in: async_nats::Subscriber,
    control: async_nats::Subscriber,
    done_rx: mpsc::UnboundedReceiver<SlotEvent>,
    big_rx: mpsc::UnboundedReceiver<BigEvent>,
}

/// The main loop's I/O handles and the drone's state.
struct Shell {
    ctx: Arc<Ctx>,
    client: async_nats::Client,
    js: jetstream::Context,
    drones: jetstream::kv::Store,
    targets: jetstream::kv::Store,
    /// The drone's fingerprint as last taken (`fit`), shown in its record.
    fingerprint: Option<schemas::Fingerprint>,
    consumer: PullConsumer,
    big: Option<PullConsumer>,
    inbox: Subject,
    drone: Drone<JobMessage>,
    build_dir: Option<PathBuf>,
    /// Build tasks and helper tasks, joined before the drone goes offline.
    tracker: TaskTracker,
    /// Stops the helper tasks (big pulls, looks) when the loop ends.
    helpers: CancellationToken,
    done_tx: mpsc::UnboundedSender<SlotEvent>,
    big_tx: mpsc::UnboundedSender<BigEvent>,
    pull_expires: Duration,
    /// Expiry of a normal pull (shorter for a drone that takes big builds).
    normal_expires: Duration,
    idle_heartbeat: Duration,
    /// When the drone was asked to stop.
    signalled: Option<Instant>,
}

impl Shell {
    fn new(
        ctx: Arc<Ctx>,
        client: async_nats::Client,
        js: jetstream::Context,
        topology: Topology,
        inbox: Subject,
        done_tx: mpsc::UnboundedSender<SlotEvent>,
        big_tx: mpsc::UnboundedSender<BigEvent>,
    ) -> Shell {
        let settings = &ctx.settings;
        let heartbeat = Duration::from_millis(settings.heartbeat_ms);
        let pull_expires = Duration::from_millis(settings.pull_expires_ms);
        // A pull's idle heartbeat must be shorter than its expiry.
        let normal_expires = if topology.big.is_some() {
            pull_expires.min(BIG_DRONE_PULL_EXPIRES)
        } else {
            pull_expires
        };
        let idle_heartbeat = (normal_expires / 2)
            .min(heartbeat)
            .max(Duration::from_millis(50));
        let drone = Drone::new(
            settings.slots() as usize,
            settings.ground_after_failures,
            topology.big.is_some(),
            Instant::now(),
        );
        Shell {
            build_dir: settings.effective_build_dir(),
            client,
            js,
            drones: topology.drones,
            targets: topology.targets,
            fingerprint: None,
            consumer: topology.consumer,
            big: topology.big,
            inbox,
            drone,
            tracker: TaskTracker::new(),
            helpers: CancellationToken::new(),
            done_tx,
            big_tx,
            pull_expires,
            normal_expires,
            idle_heartbeat,
            signalled: None,
            ctx,
        }
    }

    /// Runs the drone until it has stopped. Asked to stop, it drains (`serve` ends when its
    /// last job has left); if its jobs still wait (for NATS) when the stop's time to abandon
    /// them comes, the loop is left where it waits. Then it winds down.
    async fn run(&mut self, inputs: Inputs, shutdown: CancellationToken) {
        let grace = Duration::from_millis(self.ctx.settings.shutdown_grace_ms);
        let abandon_after = crate::stopping::abandon_after(grace);
        let cut = runtime::shutdown::after_cancel(&shutdown, abandon_after);
        let cut = tokio::select! {
            () = self.serve(inputs, &shutdown) => None,
            signalled = cut => Some(signalled.into_std()),
        };
        let signalled = match cut {
            Some(signalled) => {
                warn!(
                    jobs = self.drone.slots.len(),
                    after_ms = abandon_after.as_millis() as u64,
                    "shutdown: jobs still running or waiting for NATS; abandoning them"
                );
                signalled
            }
            None => self.signalled.unwrap_or_else(Instant::now),
        };
        self.wind_down(crate::stopping::Stop::new(signalled, grace))
            .await;
    }

    /// The main loop, until the drone has drained after the signal.
    async fn serve(&mut self, mut inputs: Inputs, shutdown: &CancellationToken) {
        let settings = self.ctx.settings.clone();
        // The fingerprint is taken, and the run's target read, before any job is taken.
        let mut fit = crate::fit::follow(
            &self.tracker,
            settings.clone(),
            self.targets.clone(),
            self.helpers.clone(),
        )
        .await;
        let first = fit.borrow_and_update().clone();
        self.apply_fit(first);
        info!(drone = %self.ctx.name, cores = settings.cores, slots = self.drone.slots.capacity(), arch = %settings.arch, lease_ttl_ms = self.ctx.lease_ttl.as_millis() as u64, supervise_deadline_ms = self.ctx.liveness.deadline.as_millis() as u64, "drone online");
        self.ctx
            .reporter
            .note(EventKind::Online {
                cores: settings.cores,
                slots: self.drone.slots.capacity() as u32,
                arch: settings.arch.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .await;
        // A machine that cannot build says so before it takes any job.
        if let Some(dir) = &self.build_dir
            && let Err(err) = crate::disk::check_build_dir(dir, settings.min_free_mb)
        {
            self.ground_unhealthy(err.to_string()).await;
        }
        let mut heartbeat = tokio::time::interval(Duration::from_millis(settings.heartbeat_ms));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut big_check = tokio::time::interval(BIG_CHECK);
        big_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A pull that went silent (a lost connection drops the server's pending requests) is
        // forgotten after a few missed heartbeats, and the next pass asks again.
        let silence = self.idle_heartbeat * 3 + Duration::from_millis(500);
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let records = records::spawn(&self.tracker, self.ctx.clone(), self.helpers.clone());

        loop {
            self.start_held().await;
            self.pull_big();
            self.pull_normal().await;
            if self.drone.drained() {
                break;
            }
            let watchdog = self.drone.pull_watchdog(silence);
            let paused = match self.drone.gate {
                PullGate::Paused { until } => Some(until),
                PullGate::Open => None,
            };
            let drain_at = self.drone.drain_deadline;
            let record_at = self.drone.record_due_at();
            let at = |instant: Option<Instant>| instant.map_or_else(far, Into::into);
            let mut urgent = false;
            tokio::select! {
                _ = shutdown.cancelled(), if !self.drone.draining() => urgent = self.begin_drain().await,
                _ = tokio::time::sleep_until(at(drain_at)), if drain_at.is_some() => self.grace_over(),
                Some(message) = inputs.jobs_in.next() => urgent = self.pulled(message).await,
                Some(event) = inputs.done_rx.recv() => urgent = self.slot_event(event).await,
                Some(request) = inputs.control.next() => urgent = self.control(request).await,
                _ = tokio::time::sleep_until(at(watchdog)), if watchdog.is_some() => {
                    debug!(requested = self.drone.slots.requested(), "pull went silent; asking again");
                    self.drone.slots.forget_requests();
                }
                _ = tokio::time::sleep_until(at(paused)), if paused.is_some() => {}
                _ = big_check.tick(), if self.drone.may_look() => self.look(),
                Some(event) = inputs.big_rx.recv() => self.big_event(event).await,
                // A heartbeat is written on time whatever the throttle on build changes: readers
                // judge a drone lost after three heartbeat intervals of silence.
                _ = heartbeat.tick() => urgent = true,
                Ok(()) = fit.changed() => {
                    let now = fit.borrow_and_update().clone();
                    urgent = self.apply_fit(now);
                }
                _ = tokio::time::sleep_until(at(record_at)), if record_at.is_some() => {}
            }
            if self.drone.record_due(urgent, Instant::now()) {
                records.send_replace(self.record(self.drone.record_state()));
            }
        }
    }

    /// Shutdown asked: no more pulls; running builds get the grace period.
    async fn begin_drain(&mut self) -> bool {
        let grace = Duration::from_millis(self.ctx.settings.shutdown_grace_ms);
        self.signalled = Some(Instant::now());
        info!(
            running = self.drone.slots.len(),
            grace_ms = grace.as_millis() as u64,
            "draining: no more pulls"
        );
        self.drone.drain(Instant::now() + grace);
        self.ctx.reporter.note(EventKind::Draining).await;
        true
    }

    fn grace_over(&mut self) {
        info!(
            running = self.drone.slots.len(),
            "grace period over: handing back running builds"
        );
        self.drone.slots.hand_back_all();
        self.drone.drain_deadline = None;
    }

    /// The drone's fingerprint and its fit to the run, as `fit` last said; `true` when whether
    /// it takes work changed.
    fn apply_fit(&mut self, fit: crate::fit::Fit) -> bool {
        self.fingerprint = fit.fingerprint;
        let changed = self.drone.set_excluded(fit.excluded.clone());
        if changed {
            match &fit.excluded {
                Some(reason) => warn!(%reason, "excluded from the run: taking no work"),
                None => info!("fits the run: taking work"),
            }
        }
        changed
    }

    /// The drone record as the drone is now, encoded.
    fn record(&self, state: DroneState) -> Option<Bytes> {
        let settings = &self.ctx.settings;
        let record = DroneRecord {
            big_builds: settings.takes_big_builds(),
            v: SCHEMA_VERSION,
            name: self.ctx.name.clone(),
            cores: settings.cores,
            slots: self.drone.slots.capacity() as u32,
            arch: settings.arch.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            state,
            building: self.drone.slots.running_builds(),
            consecutive_failures: self.drone.failed_streak(),
            heartbeat_ms: runtime::now_ms(),
            heartbeat_interval_ms: settings.heartbeat_ms,
            supervise_deadline_ms: Some(self.ctx.liveness.deadline.as_millis() as u64),
            boot_ms: self.ctx.reporter.boot_ms(),
            seq: self.ctx.reporter.next_seq(),
            fingerprint: self.fingerprint.clone(),
        };
        match encode(&record) {
            Ok(bytes) => Some(bytes.into()),
            Err(err) => {
                warn!(error = %err, "cannot encode drone record");
                None
            }
        }
    }
}

/// Runs process builds under this very binary's `supervise` mode, so they die with the drone.
fn with_supervisor(builder: Builder) -> Builder {
    match builder {
        Builder::Process { template, env, .. } => Builder::Process {
            template,
            env,
            supervisor: std::env::current_exe().ok(),
        },
        other => other,
    }
}
