//! The drone's main loop: one task owns the lifecycle, the set of running builds and the pull
//! requests. It asks the server for exactly as many jobs as it has free slots, hands each job to
//! a build task, heartbeats its record, answers control requests and drains on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull::BatchConfig};
use async_nats::{StatusCode, Subject};
use futures::StreamExt;
use schemas::{
    DroneCommand, DroneControl, DroneControlReply, DroneName, DroneRecord, DroneState, EventKind,
    Job, PackageKey, RunningBuild, SCHEMA_VERSION, decode, encode, names,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::build::{self, BuildReport, Ctx, Reporter, SlotEvent, SlotHandle};
use crate::builder::Builder;
use crate::config::Config;
use crate::health::{HealthEvent, Lifecycle, transition};
use crate::probe::Probe;

#[derive(Debug, thiserror::Error)]
pub enum DroneError {
    #[error(transparent)]
    Connect(#[from] runtime::nats::ConnectError),
    #[error(
        "the swarm's JetStream assets are missing ({what}): {reason}; start swarm-coordinator first"
    )]
    Topology { what: String, reason: String },
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
    #[error("invalid {key}: {reason}")]
    Config { key: &'static str, reason: String },
}

struct Slot {
    atom: schemas::Atom,
    attempt: u32,
    started_ms: u64,
    handback: CancellationToken,
    /// Slots the build holds while its process runs.
    weight: usize,
    /// The process ended; the task is committing, reporting and acknowledging.
    exited: bool,
}

/// Slots held by running build processes.
fn occupied(running: &HashMap<PackageKey, Slot>) -> usize {
    running
        .values()
        .filter(|slot| !slot.exited)
        .map(|slot| slot.weight)
        .sum()
}

/// The drone record is rewritten at most this often for changes of its builds (a queue of
/// short builds changes them hundreds of times a second); changes of the drone's own state
/// (grounded, draining) are written at once.
const RECORD_MIN_INTERVAL: Duration = Duration::from_millis(1_000);
/// How often a drone that takes big builds looks at the queues it does not wait on: the big
/// queue while it builds, the normal queue while it is idle.
const BIG_CHECK: Duration = Duration::from_millis(250);
/// The longest a drone that takes big builds waits on a normal pull: when it goes idle, a pull it
/// left waiting would take normal work ahead of a big job published a moment later.
const BIG_DRONE_PULL_EXPIRES: Duration = Duration::from_secs(1);
/// A big job that reaches a drone whose builds all started at most this long ago makes the drone
/// hand them back and take the big job.
const BIG_HANDBACK_WINDOW: Duration = Duration::from_secs(2);

/// What the big-builds tasks tell the main loop.
enum BigEvent {
    /// Whether the big consumer has jobs waiting (asked while building).
    BigPending(bool),
    /// Whether the normal consumer has jobs waiting (asked while idle).
    NormalPending(bool),
    /// The answer to a pull of one big job.
    Job(Option<Box<jetstream::Message>>),
}

/// How long pulls pause after the consumer answered with an error status (a cluster electing a
/// new leader answers 503 at once; asking again at once would spin).
const PULL_PAUSE: Duration = Duration::from_millis(250);

/// Runs a drone until `shutdown` is cancelled and its builds are finished or handed back.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DroneError> {
    run_with_probe(config, shutdown, None).await
}

/// [`run`], recording measurements into `probe` (benchmarks run drones in their own process).
pub async fn run_with_probe(
    config: Config,
    shutdown: CancellationToken,
    probe: Option<Arc<Probe>>,
) -> Result<(), DroneError> {
    let settings = config.drone.clone();
    let name = DroneName::parse(&settings.name).map_err(|e| DroneError::Topology {
        what: "drone.name".into(),
        reason: e.to_string(),
    })?;
    let client = config.nats.connect(&format!("swarm-drone {name}")).await?;
    let js = jetstream::new(client.clone());
    // Wait for the coordinator to have created the topology: drones may start first.
    let (leases, packages, drones, consumer, big) = loop {
        let attempt = async {
            let leases = js
                .get_key_value(names::LEASES_BUCKET)
                .await
                .map_err(|e| missing(names::LEASES_BUCKET, e))?;
            let packages = js
                .get_key_value(names::PACKAGES_BUCKET)
                .await
                .map_err(|e| missing(names::PACKAGES_BUCKET, e))?;
            let drones = js
                .get_key_value(names::DRONES_BUCKET)
                .await
                .map_err(|e| missing(names::DRONES_BUCKET, e))?;
            let stream = js
                .get_stream(names::BUILDS_STREAM)
                .await
                .map_err(|e| missing(names::BUILDS_STREAM, e))?;
            let consumer_name = names::builders_consumer(&settings.arch);
            let consumer = stream
                .get_consumer::<jetstream::consumer::pull::Config>(&consumer_name)
                .await
                .map_err(|e| missing(&consumer_name, e))?;
            // A coordinator that predates big builds has no such consumer: the drone then
            // takes normal work only.
            let big = if settings.takes_big_builds() {
                stream
                    .get_consumer::<jetstream::consumer::pull::Config>(
                        &names::big_builders_consumer(&settings.arch),
                    )
                    .await
                    .ok()
            } else {
                None
            };
            Ok::<_, DroneError>((leases, packages, drones, consumer, big))
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            result = attempt => match result {
                Ok(found) => break found,
                Err(err) => {
                    warn!(error = %err, "waiting for the coordinator's topology");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    let mut leases_stream = leases.stream.clone();
    let lease_ttl = leases_stream
        .info()
        .await
        .map(|i| i.config.max_age)
        .unwrap_or(Duration::from_secs(30));
    let ack_wait = consumer.cached_info().config.ack_wait;
    let renew_every = (lease_ttl.min(ack_wait) / 3).max(Duration::from_millis(20));
    let boot_ms = runtime::now_ms();
    let ctx = Arc::new(Ctx {
        name: name.clone(),
        settings: settings.clone(),
        builder: with_supervisor(Builder::from_settings(&settings).map_err(|err| {
            DroneError::Config {
                key: "drone.simulate.model_file",
                reason: err.to_string(),
            }
        })?),
        leases,
        packages,
        drones: drones.clone(),
        reporter: Reporter::new(client.clone(), name.clone(), boot_ms),
        refused: runtime::throttle::Throttle::default(),
        lease_ttl,
        renew_every,
        probe,
    });
    let inbox = Subject::from(client.new_inbox());
    let mut jobs_in = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| DroneError::Subscribe {
            subject: inbox.to_string(),
            reason: e.to_string(),
        })?;
    let control_subject = names::drone_control_subject(&name);
    let mut control = client
        .subscribe(control_subject.clone())
        .await
        .map_err(|e| DroneError::Subscribe {
            subject: control_subject.clone(),
            reason: e.to_string(),
        })?;

    let slots = settings.slots() as usize;
    let heartbeat = Duration::from_millis(settings.heartbeat_ms);
    let pull_expires = Duration::from_millis(settings.pull_expires_ms);
    // A drone that takes big builds waits on a normal pull for a shorter time (see
    // BIG_DRONE_PULL_EXPIRES); a pull's idle heartbeat must be shorter than its expiry.
    let normal_expires = if big.is_some() {
        pull_expires.min(BIG_DRONE_PULL_EXPIRES)
    } else {
        pull_expires
    };
    let idle_heartbeat = (normal_expires / 2)
        .min(heartbeat)
        .max(Duration::from_millis(50));
    let threshold = settings.ground_after_failures;

    let mut lifecycle = Lifecycle::start();
    let build_dir = settings.effective_build_dir();
    let mut running: HashMap<PackageKey, Slot> = HashMap::new();
    let tracker = TaskTracker::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<SlotEvent>();
    let mut requested: usize = 0;
    // When each free slot freed, oldest first: the next build started takes the oldest.
    let mut freed: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    let mut last_pull_activity = Instant::now();
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut heartbeat_tick = tokio::time::interval(heartbeat);
    heartbeat_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut record_pending = false;
    // After a pull status that means the consumer cannot serve (no leader, 503), the next pull
    // waits a moment instead of spinning.
    let mut pull_paused_until: Option<Instant> = None;
    // Big builds (a drone with a big consumer). Idle, the drone waits on the big queue only, and
    // asks for normal work once it has seen some queued: so a big job published with normal
    // ones finds it idle instead of busy with the first normal jobs. Building, it pulls normal
    // work and looks at the big queue; while a big job waits it takes no normal work, and once
    // idle it takes the big job with every slot.
    let (big_tx, mut big_rx) = mpsc::unbounded_channel::<BigEvent>();
    let mut big_pending = false;
    let mut normal_pending = false;
    let mut big_pull_out = false;
    // A big job received while builds that had just started were being handed back.
    let mut held_big: Option<Box<jetstream::Message>> = None;
    let mut record_dirty_start = false;
    let mut asking = false;
    let mut big_check = tokio::time::interval(BIG_CHECK);
    big_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first record is written at once.
    let mut last_record = Instant::now()
        .checked_sub(RECORD_MIN_INTERVAL)
        .unwrap_or_else(Instant::now);

    info!(drone = %name, cores = settings.cores, slots, arch = %settings.arch, lease_ttl_ms = lease_ttl.as_millis() as u64, "drone online");
    ctx.reporter
        .note(EventKind::Online {
            cores: settings.cores,
            slots: slots as u32,
            arch: settings.arch.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
        .await;
    // A machine that cannot build says so before it takes any job.
    if let Some(dir) = &build_dir
        && let Err(reason) = crate::disk::check_build_dir(dir, settings.min_free_mb)
    {
        ground_unhealthy(&ctx, &mut lifecycle, threshold, reason).await;
    }

    loop {
        // A big job held while the builds it displaced were handed back starts once they ended.
        if let Some(message) = held_big.take() {
            if !lifecycle.pulls() {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            } else if occupied(&running) == 0 {
                start_build(
                    &ctx,
                    &tracker,
                    &done_tx,
                    &mut running,
                    *message,
                    (freed.pop_front(), slots, settings.cores),
                );
                freed.drain(..freed.len().min(slots - 1));
                record_dirty_start = true;
            } else {
                held_big = Some(message);
            }
        }
        let idle = occupied(&running) == 0;
        if let Some(big) = &big
            && lifecycle.pulls()
            && idle
            && !big_pull_out
        {
            big_pull_out = true;
            let big = big.clone();
            let tx = big_tx.clone();
            tokio::spawn(async move {
                let pull = big.batch().max_messages(1).expires(pull_expires).messages();
                let message = match pull.await {
                    Ok(mut batch) => batch.next().await.and_then(Result::ok).map(Box::new),
                    Err(_) => None,
                };
                let _ = tx.send(BigEvent::Job(message));
            });
        }
        let normal_allowed = match (&big, idle) {
            _ if held_big.is_some() => false,
            (None, _) => true,
            (Some(_), true) => normal_pending || requested > 0,
            (Some(_), false) => !big_pending,
        };
        // Ask for exactly the free slots not already asked for.
        if lifecycle.pulls()
            && normal_allowed
            && pull_paused_until.is_none_or(|at| Instant::now() >= at)
        {
            pull_paused_until = None;
            let free = slots.saturating_sub(occupied(&running) + requested);
            if free > 0 {
                normal_pending = false;
                if idle {
                    // Idle and asking for normal work: a big job seen before went elsewhere
                    // (this drone's big pull would have had it).
                    big_pending = false;
                }
                let request = BatchConfig {
                    batch: free,
                    expires: Some(normal_expires),
                    idle_heartbeat,
                    ..Default::default()
                };
                match consumer.request_batch(request, inbox.clone()).await {
                    Ok(()) => {
                        if requested == 0 {
                            last_pull_activity = Instant::now();
                        }
                        requested += free;
                    }
                    Err(err) => {
                        warn!(error = %err, "pull request not sent");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        if matches!(lifecycle, Lifecycle::Draining) && running.is_empty() {
            break;
        }
        // A pull that went silent (a lost connection drops the server's pending requests) is
        // forgotten after a few missed heartbeats, and the next pass asks again.
        let pull_silence = idle_heartbeat * 3 + Duration::from_millis(500);
        let watchdog = tokio::time::Instant::from(last_pull_activity + pull_silence);
        let drain_at = drain_deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        // A change of the drone's own state is written at once, a change of its builds at most
        // every RECORD_MIN_INTERVAL.
        let mut record_urgent = false;
        let mut record_dirty = std::mem::take(&mut record_dirty_start);
        let record_at = tokio::time::Instant::from(last_record + RECORD_MIN_INTERVAL);
        tokio::select! {
            _ = shutdown.cancelled(), if !matches!(lifecycle, Lifecycle::Draining) => {
                info!(running = running.len(), grace_ms = settings.shutdown_grace_ms, "draining: no more pulls");
                if let Ok(next) = transition(&lifecycle, &HealthEvent::Shutdown, threshold) {
                    lifecycle = next;
                }
                drain_deadline = Some(tokio::time::Instant::now() + Duration::from_millis(settings.shutdown_grace_ms));
                ctx.reporter.note(EventKind::Draining).await;
                record_urgent = true;
            }
            _ = tokio::time::sleep_until(drain_at), if drain_deadline.is_some() => {
                info!(running = running.len(), "grace period over: handing back running builds");
                for slot in running.values() {
                    slot.handback.cancel();
                }
                drain_deadline = None;
            }
            Some(message) = jobs_in.next() => {
                last_pull_activity = Instant::now();
                match message.status {
                    Some(StatusCode::IDLE_HEARTBEAT) => {}
                    Some(status) if status == StatusCode::TIMEOUT || status == StatusCode::REQUEST_TERMINATED || status == StatusCode::NOT_FOUND => {
                        let unfilled = message
                            .headers
                            .as_ref()
                            .and_then(|h| h.get("Nats-Pending-Messages"))
                            .and_then(|v| v.as_str().parse::<usize>().ok());
                        match unfilled {
                            Some(n) => requested = requested.saturating_sub(n),
                            None => requested = 0,
                        }
                    }
                    Some(status) => {
                        debug!(%status, "pull status; pausing pulls for {} ms", PULL_PAUSE.as_millis());
                        requested = 0;
                        pull_paused_until = Some(Instant::now() + PULL_PAUSE);
                    }
                    None => {
                        requested = requested.saturating_sub(1);
                        let message = jetstream::Message { message, context: js.clone() };
                        let unfit = match &build_dir {
                            Some(dir) if lifecycle.pulls() => {
                                crate::disk::check_build_dir(dir, settings.min_free_mb).err()
                            }
                            _ => None,
                        };
                        if let Some(reason) = unfit {
                            // Given back at once, no attempt used: the package is fine, this
                            // machine is not.
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                            ground_unhealthy(&ctx, &mut lifecycle, threshold, reason).await;
                            record_urgent = true;
                        } else if held_big.is_some() || (big_pending && big.is_some()) {
                            // A big job waits for this drone to be free: no more normal work.
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                        } else if !lifecycle.pulls() || occupied(&running) >= slots {
                            // Delivered by a pull this drone had already given up on.
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                        } else {
                            start_build(&ctx, &tracker, &done_tx, &mut running, message, (freed.pop_front(), 1, ctx.settings.cores_per_slot()));
                            record_dirty = true;
                        }
                    }
                }
            }
            Some(event) = done_rx.recv() => match event {
                SlotEvent::Exited { key, at, outcome } => {
                    if let Some(slot) = running.get_mut(&key)
                        && !slot.exited
                    {
                        slot.exited = true;
                        freed.extend(std::iter::repeat_n(at, slot.weight));
                        // The verdict on the machine is taken as the build ends, before its
                        // slot is filled again: a drone that grounds itself takes nothing more.
                        let event = match outcome {
                            Some(schemas::BuildOutcome::Succeeded) => Some(HealthEvent::BuildSucceeded),
                            Some(schemas::BuildOutcome::Failed { exit, .. }) => Some(HealthEvent::BuildFailed { atom: slot.atom.clone(), why: exit.to_string() }),
                            None => None,
                        };
                        if let Some(event) = event {
                            record_urgent |= apply_health(&ctx, &mut lifecycle, &event, threshold).await;
                        }
                    }
                    record_dirty = true;
                }
                SlotEvent::Done { key, report, unused } => {
                    if let Some(slot) = running.remove(&key) {
                        if !slot.exited {
                            // No build ran in the slot: it is free since it was last freed.
                            let at = unused.unwrap_or_else(Instant::now);
                            for _ in 0..slot.weight {
                                freed.push_front(at);
                            }
                        }
                        debug!(package = %slot.atom, ?report, "job done");
                        if let BuildReport::BuilderBroken { atom, reason } = &report {
                            let event = HealthEvent::BuildFailed { atom: atom.clone(), why: reason.clone() };
                            record_urgent |= apply_health(&ctx, &mut lifecycle, &event, threshold).await;
                        }
                    }
                    record_dirty = true;
                }
            },
            Some(request) = control.next() => {
                let reply = handle_control(&mut lifecycle, threshold, &request.payload, &ctx.refused);
                if reply.ok {
                    info!(drone = %name, "ungrounded by operator");
                    ctx.reporter.note(EventKind::Ungrounded).await;
                    record_urgent = true;
                }
                if let (Some(to), Ok(bytes)) = (request.reply, encode(&reply)) {
                    let _ = client.publish(to, bytes.into()).await;
                }
            }
            _ = tokio::time::sleep_until(watchdog), if requested > 0 => {
                debug!(requested, "pull went silent; asking again");
                requested = 0;
            }
            _ = tokio::time::sleep_until(pull_paused_until.unwrap_or_else(Instant::now).into()), if pull_paused_until.is_some() => {}
            _ = big_check.tick(), if big.is_some() && !asking && lifecycle.pulls() => {
                if let Some(big) = &big {
                    asking = true;
                    let tx = big_tx.clone();
                    // Idle: is there normal work? Building: is a big job waiting?
                    let (mut queue, idle) = if occupied(&running) == 0 {
                        (consumer.clone(), true)
                    } else {
                        (big.clone(), false)
                    };
                    tokio::spawn(async move {
                        let pending = matches!(
                            tokio::time::timeout(Duration::from_secs(2), queue.info()).await,
                            Ok(Ok(info)) if info.num_pending > 0
                        );
                        let _ = tx.send(if idle { BigEvent::NormalPending(pending) } else { BigEvent::BigPending(pending) });
                    });
                }
            }
            Some(event) = big_rx.recv() => {
                match event {
                    BigEvent::BigPending(pending) => { asking = false; big_pending = pending; }
                    BigEvent::NormalPending(pending) => { asking = false; normal_pending = pending; }
                    BigEvent::Job(None) => { big_pull_out = false; big_pending = false; }
                    BigEvent::Job(Some(message)) => {
                        big_pull_out = false;
                        big_pending = false;
                        let now = runtime::now_ms();
                        let building: Vec<&Slot> = running.values().filter(|s| !s.exited).collect();
                        let just_started = building
                            .iter()
                            .all(|s| now.saturating_sub(s.started_ms) <= BIG_HANDBACK_WINDOW.as_millis() as u64);
                        if !lifecycle.pulls() {
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                        } else if building.is_empty() || just_started {
                            // Builds started a moment ago (normal jobs taken as the big one was
                            // published) are handed back, costing seconds; the big job, which
                            // sets the run's length, waits only for them to stop.
                            for slot in &building {
                                slot.handback.cancel();
                            }
                            if !building.is_empty() {
                                info!(handed_back = building.len(), "big build taken: handing back the builds started just now");
                            }
                            held_big = Some(message);
                        } else {
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                        }
                    }
                }
            }
            _ = heartbeat_tick.tick() => record_dirty = true,
            _ = tokio::time::sleep_until(record_at), if record_pending => {}
        }
        record_pending |= record_dirty;
        if record_urgent || (record_pending && last_record.elapsed() >= RECORD_MIN_INTERVAL) {
            record_pending = false;
            last_record = Instant::now();
            let record = drone_record(
                &ctx,
                &lifecycle,
                &running,
                slots,
                boot_ms,
                ctx.reporter.next_seq(),
            );
            write_record(&drones, &name, &record).await;
        }
    }

    tracker.close();
    tracker.wait().await;
    let mut record = drone_record(
        &ctx,
        &lifecycle,
        &running,
        slots,
        boot_ms,
        ctx.reporter.next_seq(),
    );
    record.state = DroneState::Offline;
    write_record(&drones, &name, &record).await;
    ctx.reporter.note(EventKind::Offline).await;
    let _ = client.flush().await;
    info!(drone = %name, "drone offline");
    Ok(())
}

/// Applies a build's verdict to the lifecycle; true when the drone has just grounded itself.
async fn apply_health(
    ctx: &Ctx,
    lifecycle: &mut Lifecycle,
    event: &HealthEvent,
    threshold: u32,
) -> bool {
    let Ok(next) = transition(lifecycle, event, threshold) else {
        return false;
    };
    let grounded = match (&*lifecycle, &next) {
        (Lifecycle::Working { .. }, Lifecycle::Grounded { reason }) => {
            warn!(drone = %ctx.name, reason = %reason, "grounded: no more pulls until `swarmctl unground`");
            ctx.reporter
                .note(EventKind::Grounded {
                    reason: reason.clone(),
                })
                .await;
            true
        }
        _ => false,
    };
    *lifecycle = next;
    grounded
}

/// Grounds the drone because the machine cannot build (`reason` names the build directory and
/// the fault), and says so in the log and the event stream.
async fn ground_unhealthy(ctx: &Ctx, lifecycle: &mut Lifecycle, threshold: u32, reason: String) {
    let event = HealthEvent::Unhealthy {
        reason: reason.clone(),
    };
    if let Ok(next) = transition(lifecycle, &event, threshold) {
        if matches!(lifecycle, Lifecycle::Working { .. }) {
            warn!(drone = %ctx.name, %reason, "grounded: this machine cannot build; no more pulls until `swarmctl unground`");
            ctx.reporter.note(EventKind::Grounded { reason }).await;
        }
        *lifecycle = next;
    }
}

/// Runs process builds under this very binary's `supervise` mode, so they die with the drone.
fn with_supervisor(builder: Builder) -> Builder {
    match builder {
        Builder::Process { template, .. } => Builder::Process {
            template,
            supervisor: std::env::current_exe().ok(),
        },
        other => other,
    }
}

fn missing(what: &str, err: impl std::fmt::Display) -> DroneError {
    DroneError::Topology {
        what: what.to_owned(),
        reason: err.to_string(),
    }
}

fn start_build(
    ctx: &Arc<Ctx>,
    tracker: &TaskTracker,
    done: &mpsc::UnboundedSender<SlotEvent>,
    running: &mut HashMap<PackageKey, Slot>,
    message: jetstream::Message,
    // When the slot freed (for the probe), the slots the build takes, the cores it gets.
    (freed_at, weight, jobs): (Option<Instant>, usize, u32),
) {
    let job = match decode::<Job>(&message.payload) {
        Ok(job) => job,
        Err(err) => {
            // A job that cannot be read can never be built; keep it out of the queue.
            if let Some(suppressed) = ctx.refused.allow("undecodable job") {
                warn!(subject = %message.subject, error = %err, suppressed, "undecodable job terminated");
            }
            terminate(message);
            return;
        }
    };
    let key = job.atom.key();
    if names::key_of_build_subject(&message.subject) != Some(key.as_str()) {
        if let Some(suppressed) = ctx.refused.allow("job under another subject") {
            warn!(subject = %message.subject, package = %job.atom, suppressed, "job published under another package's subject; terminated");
        }
        terminate(message);
        return;
    }
    if running.contains_key(&key) {
        // The same job delivered twice to this drone (a redelivery racing its own build).
        tokio::spawn(async move {
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        });
        return;
    }
    let handback = CancellationToken::new();
    running.insert(
        key.clone(),
        Slot {
            atom: job.atom.clone(),
            attempt: job.attempt,
            started_ms: runtime::now_ms(),
            handback: handback.clone(),
            weight,
            exited: false,
        },
    );
    let ctx = ctx.clone();
    let mut slot = SlotHandle::new(
        key,
        done.clone(),
        freed_at,
        (weight, jobs),
        ctx.probe.clone(),
    );
    tracker.spawn(async move {
        let report = build::run(ctx, message, job, handback, &mut slot, jobs).await;
        slot.done(report);
    });
}

fn terminate(message: jetstream::Message) {
    tokio::spawn(async move {
        let _ = message.ack_with(AckKind::Term).await;
    });
}

fn handle_control(
    lifecycle: &mut Lifecycle,
    threshold: u32,
    payload: &[u8],
    refused: &runtime::throttle::Throttle,
) -> DroneControlReply {
    let reply = |ok: bool, message: String| DroneControlReply {
        v: SCHEMA_VERSION,
        ok,
        message,
    };
    match decode::<DroneControl>(payload) {
        Ok(DroneControl {
            command: DroneCommand::Unground,
            ..
        }) => match transition(lifecycle, &HealthEvent::Unground, threshold) {
            Ok(next) => {
                *lifecycle = next;
                reply(true, "ungrounded: pulling work again".to_owned())
            }
            Err(err) => reply(false, err.to_string()),
        },
        Err(err) => {
            if let Some(suppressed) = refused.allow("malformed control request") {
                warn!(error = %err, suppressed, "malformed control request discarded");
            }
            reply(false, err.to_string())
        }
    }
}

fn drone_record(
    ctx: &Ctx,
    lifecycle: &Lifecycle,
    running: &HashMap<PackageKey, Slot>,
    slots: usize,
    boot_ms: u64,
    seq: u64,
) -> DroneRecord {
    let state = match lifecycle {
        Lifecycle::Working { .. } if running.is_empty() => DroneState::Idle,
        Lifecycle::Working { .. } => DroneState::Building,
        Lifecycle::Grounded { reason } => DroneState::Grounded {
            reason: reason.clone(),
        },
        Lifecycle::Draining => DroneState::Draining,
    };
    let consecutive_failures = match lifecycle {
        Lifecycle::Working { failed_streak } => failed_streak.len() as u32,
        _ => 0,
    };
    let mut building: Vec<RunningBuild> = running
        .values()
        .map(|s| RunningBuild {
            atom: s.atom.clone(),
            attempt: s.attempt,
            started_ms: s.started_ms,
        })
        .collect();
    building.sort_by(|a, b| a.atom.cmp(&b.atom));
    DroneRecord {
        big_builds: ctx.settings.takes_big_builds(),
        v: SCHEMA_VERSION,
        name: ctx.name.clone(),
        cores: ctx.settings.cores,
        slots: slots as u32,
        arch: ctx.settings.arch.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        state,
        building,
        consecutive_failures,
        heartbeat_ms: runtime::now_ms(),
        heartbeat_interval_ms: ctx.settings.heartbeat_ms,
        boot_ms,
        seq,
    }
}

async fn write_record(drones: &jetstream::kv::Store, name: &DroneName, record: &DroneRecord) {
    match encode(record) {
        Ok(bytes) => {
            if let Err(err) = drones.put(name.as_str(), bytes.into()).await {
                debug!(error = %err, "drone record not written");
            }
        }
        Err(err) => warn!(error = %err, "cannot encode drone record"),
    }
}
