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

use crate::build::{self, BuildReport, Ctx, Reporter};
use crate::builder::Builder;
use crate::config::Config;
use crate::health::{HealthEvent, Lifecycle, transition};

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
}

struct Slot {
    atom: schemas::Atom,
    attempt: u32,
    started_ms: u64,
    handback: CancellationToken,
}

/// Runs a drone until `shutdown` is cancelled and its builds are finished or handed back.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DroneError> {
    let settings = config.drone.clone();
    let name = DroneName::parse(&settings.name).map_err(|e| DroneError::Topology {
        what: "drone.name".into(),
        reason: e.to_string(),
    })?;
    let client = config.nats.connect(&format!("swarm-drone {name}")).await?;
    let js = jetstream::new(client.clone());
    // Wait for the coordinator to have created the topology: drones may start first.
    let (leases, packages, drones, consumer) = loop {
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
            Ok::<_, DroneError>((leases, packages, drones, consumer))
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
        builder: with_supervisor(Builder::from_settings(&settings)),
        leases,
        packages,
        drones: drones.clone(),
        reporter: Reporter::new(js.clone(), name.clone(), boot_ms),
        refused: runtime::throttle::Throttle::default(),
        lease_ttl,
        renew_every,
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
    let idle_heartbeat = (pull_expires / 2)
        .min(heartbeat)
        .max(Duration::from_millis(50));
    let threshold = settings.ground_after_failures;

    let mut lifecycle = Lifecycle::start();
    let build_dir = settings.effective_build_dir();
    let mut running: HashMap<PackageKey, Slot> = HashMap::new();
    let tracker = TaskTracker::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(PackageKey, BuildReport)>();
    let mut requested: usize = 0;
    let mut last_pull_activity = Instant::now();
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut heartbeat_tick = tokio::time::interval(heartbeat);
    heartbeat_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

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
        // Ask for exactly the free slots not already asked for.
        if lifecycle.pulls() {
            let free = slots.saturating_sub(running.len() + requested);
            if free > 0 {
                let request = BatchConfig {
                    batch: free,
                    expires: Some(pull_expires),
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
        let mut record_dirty = false;
        tokio::select! {
            _ = shutdown.cancelled(), if !matches!(lifecycle, Lifecycle::Draining) => {
                info!(running = running.len(), grace_ms = settings.shutdown_grace_ms, "draining: no more pulls");
                if let Ok(next) = transition(&lifecycle, &HealthEvent::Shutdown, threshold) {
                    lifecycle = next;
                }
                drain_deadline = Some(tokio::time::Instant::now() + Duration::from_millis(settings.shutdown_grace_ms));
                ctx.reporter.note(EventKind::Draining).await;
                record_dirty = true;
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
                        debug!(%status, "pull status");
                        requested = 0;
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
                            record_dirty = true;
                        } else if !lifecycle.pulls() || running.len() >= slots {
                            // Delivered by a pull this drone had already given up on.
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                        } else {
                            start_build(&ctx, &tracker, &done_tx, &mut running, message);
                            record_dirty = true;
                        }
                    }
                }
            }
            Some((key, report)) = done_rx.recv() => {
                if let Some(slot) = running.remove(&key) {
                    let event = match &report {
                        BuildReport::Finished { outcome: schemas::BuildOutcome::Succeeded, .. } => Some(HealthEvent::BuildSucceeded),
                        BuildReport::Finished { atom, outcome: schemas::BuildOutcome::Failed { exit, .. } } => Some(HealthEvent::BuildFailed { atom: atom.clone(), why: exit.to_string() }),
                        BuildReport::BuilderBroken { atom, reason } => Some(HealthEvent::BuildFailed { atom: atom.clone(), why: reason.clone() }),
                        _ => None,
                    };
                    debug!(package = %slot.atom, ?report, "slot freed");
                    if let Some(event) = event
                        && let Ok(next) = transition(&lifecycle, &event, threshold)
                    {
                        if let (Lifecycle::Working { .. }, Lifecycle::Grounded { reason }) = (&lifecycle, &next) {
                            warn!(drone = %name, reason = %reason, "grounded: no more pulls until `swarmctl unground`");
                            ctx.reporter.note(EventKind::Grounded { reason: reason.clone() }).await;
                        }
                        lifecycle = next;
                    }
                }
                record_dirty = true;
            }
            Some(request) = control.next() => {
                let reply = handle_control(&mut lifecycle, threshold, &request.payload, &ctx.refused);
                if reply.ok {
                    info!(drone = %name, "ungrounded by operator");
                    ctx.reporter.note(EventKind::Ungrounded).await;
                    record_dirty = true;
                }
                if let (Some(to), Ok(bytes)) = (request.reply, encode(&reply)) {
                    let _ = client.publish(to, bytes.into()).await;
                }
            }
            _ = tokio::time::sleep_until(watchdog), if requested > 0 => {
                debug!(requested, "pull went silent; asking again");
                requested = 0;
            }
            _ = heartbeat_tick.tick() => record_dirty = true,
        }
        if record_dirty {
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
    done: &mpsc::UnboundedSender<(PackageKey, BuildReport)>,
    running: &mut HashMap<PackageKey, Slot>,
    message: jetstream::Message,
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
        },
    );
    let ctx = ctx.clone();
    let done = done.clone();
    tracker.spawn(async move {
        let report = build::run(ctx, message, job, handback).await;
        let _ = done.send((key, report));
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
