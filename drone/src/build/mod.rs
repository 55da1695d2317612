//! One job from receipt to acknowledgement, in stages that each do one thing:
//! [`claim`](claim::claim) the package with a lease (the fencing token), [`prepare`] the build
//! (start the builder, say so), [`run`](watch::watch) it while renewing the lease and
//! progress-acking the job on one timer, [`report`](report::report) the result (commit it on the
//! lease by compare-and-set, store the `finished` event, acknowledge the job), and release the
//! lease on every path that built nothing. At the end of the drone's stop, a job still waiting
//! (for NATS) is abandoned ([`Ctx::abandon`]): dropped where it waits, its build's process group
//! killed.
//!
//! **Invariant:** a build whose lease renewal fails, or whose lease deadline passes without a
//! renewal, is killed at once, and nothing is acknowledged or reported as a result for it.

mod claim;
pub mod logship;
mod report;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, AckKind, kv, object_store::ObjectStore};
use bytes::Bytes;
use schemas::{Artifact, Atom, BuildOutcome, DroneName, EventKind, FailureClass, Job, PackageKey};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::artifacts::{self, ArtifactError};
use crate::builder::{self, BuildEnv, Builder, Running};
use crate::config::Settings;
use crate::observer::{BuildSpan, Observer};
use crate::reporter::Reporter;

pub use watch::RunEnd;

/// Everything a build task needs, shared by all of them.
pub struct Ctx {
    pub name: DroneName,
    pub settings: Settings,
    pub builder: Builder,
    pub leases: kv::Store,
    pub packages: kv::Store,
    pub drones: kv::Store,
    pub reporter: Reporter,
    /// Refused input is logged once per kind and window, not per message.
    pub refused: runtime::throttle::Throttle,
    pub lease_ttl: Duration,
    /// One timer renews the lease and progress-acks the job.
    pub renew_every: Duration,
    /// The drone's proof of life, which keeps its builds' supervisors waiting.
    pub liveness: crate::liveness::Liveness,
    pub observer: Arc<dyn Observer>,
    /// Where the builder writes binary packages, when it writes any (`Settings::writes_binpkgs`).
    pub pkgdir: Option<PathBuf>,
    /// The store a successful build's binary packages go to.
    pub artifacts: Option<ObjectStore>,
    /// Where live build logs are published (`logship`).
    pub js: jetstream::Context,
    /// The store of complete build logs; `None` with a coordinator that keeps none.
    pub logs: Option<ObjectStore>,
    /// Cancelled when the drone's stop can wait no longer (`crate::stopping`): every job still
    /// running ends where it is, its build killed.
    pub abandon: CancellationToken,
}

/// How a job left this drone.
#[derive(Debug)]
pub enum BuildReport {
    /// Built, result committed and reported, job acknowledged.
    Finished { atom: Atom, outcome: BuildOutcome },
    /// Not built here: another drone holds it, it is stale, or it was left to another drone.
    NotBuilt,
    /// Handed back unbuilt (shutdown grace over, or displaced by a big job).
    HandedBack,
    /// The builder could not start: a fault of this drone, not of the package.
    BuilderBroken { atom: Atom, reason: String },
    /// The lease was lost and the build killed, or its result could not be stored.
    LeaseLost,
    /// The build failed for a reason that is not the package's (`class`): given back without
    /// spending an attempt.
    GivenBack { class: FailureClass },
    /// The build succeeded but its binary packages could not be stored: given back, and a
    /// fault of this drone (or its link to the store).
    NotStored { reason: String },
    /// An operator cancelled the package: the build was killed and the job given up for good.
    Cancelled,
    /// Abandoned at the end of the drone's stop, still waiting for NATS: its build was killed,
    /// its lease is left to expire and its job to be delivered again.
    Abandoned,
}

/// The two ways a build is stopped early from outside its task.
#[derive(Debug, Clone, Default)]
pub struct Stops {
    /// Hand the build back to be built elsewhere (shutdown grace over, a big job displacing it).
    pub handback: CancellationToken,
    /// The operator cancelled the package: kill the build, give its job up for good.
    pub cancel: CancellationToken,
}

/// What a build task tells the main loop about its slots.
#[derive(Debug)]
pub enum SlotEvent {
    /// The build's process ended at `at`; its slots are free. `outcome` is the build's result
    /// when it ran to its end within its lease (`None` when it was killed because its lease was
    /// lost, or ended only after its lease deadline: no verdict on the machine then).
    Exited {
        key: PackageKey,
        at: Instant,
        outcome: Option<BuildOutcome>,
    },
    /// The job left this drone. `unused` is when its slot had freed if no build started in it.
    Done {
        key: PackageKey,
        report: BuildReport,
        unused: Option<Instant>,
    },
}

/// A build task's hold on its slots. The main loop counts a slot free again as soon as the
/// build's process has ended (`process_exited`): committing, reporting and acknowledging use
/// the network, not the build's cores.
pub struct SlotHandle {
    pub key: PackageKey,
    tx: UnboundedSender<SlotEvent>,
    /// When the slot this job took had freed, until a build starts in it.
    freed_at: Option<Instant>,
    exited: bool,
    /// The build's process start and atom, for the observer.
    started: Option<(Instant, String)>,
    slots: usize,
    jobs: u32,
    observer: Arc<dyn Observer>,
}

impl SlotHandle {
    /// `freed_at`: when the slot had freed; `slots` and `jobs`: the slots the build takes and
    /// the cores it gets.
    pub fn new(
        key: PackageKey,
        tx: UnboundedSender<SlotEvent>,
        freed_at: Option<Instant>,
        (slots, jobs): (usize, u32),
        observer: Arc<dyn Observer>,
    ) -> SlotHandle {
        SlotHandle {
            key,
            tx,
            freed_at,
            exited: false,
            started: None,
            slots,
            jobs,
            observer,
        }
    }

    fn build_started(&mut self, atom: &Atom) {
        if let Some(freed_at) = self.freed_at.take() {
            self.observer.slot_filled(freed_at.elapsed());
        }
        self.started = Some((Instant::now(), atom.to_string()));
    }

    fn process_exited(&mut self, outcome: Option<&BuildOutcome>) {
        if self.exited {
            return;
        }
        self.exited = true;
        if let Some((start, atom)) = self.started.take() {
            self.observer.build_ended(BuildSpan {
                atom,
                start,
                end: Instant::now(),
                slots: self.slots,
                jobs: self.jobs,
            });
        }
        let _ = self.tx.send(SlotEvent::Exited {
            key: self.key.clone(),
            at: Instant::now(),
            outcome: outcome.cloned(),
        });
    }

    /// Tells the main loop the job is gone, with the report.
    pub fn done(self, report: BuildReport) {
        let _ = self.tx.send(SlotEvent::Done {
            key: self.key,
            report,
            unused: self.freed_at,
        });
    }
}

/// Gives a job back to be delivered again after `delay`.
async fn nak(message: &jetstream::Message, delay: Option<Duration>) {
    if let Err(err) = message.ack_with(AckKind::Nak(delay)).await {
        debug!(error = %err, "nak not sent; the job is redelivered after its ack wait");
    }
}

/// How long one job acknowledgement waits for the server's confirmation.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one received job to its end. The caller has decoded `job` from `message` and checked
/// that it was published under its own package's subject. `jobs` is the cores the build gets.
/// When the drone abandons its jobs (`Ctx::abandon`) the job ends where it waits: a running
/// build is killed with its whole process group as its `Running` is dropped.
pub async fn run(
    ctx: Arc<Ctx>,
    message: jetstream::Message,
    job: Job,
    stops: Stops,
    slot: &mut SlotHandle,
    jobs: u32,
) -> BuildReport {
    let abandon = ctx.abandon.clone();
    let (atom, attempt) = (job.atom.clone(), job.attempt);
    tokio::select! {
        report = stages(ctx, message, job, stops, slot, jobs) => report,
        () = abandon.cancelled() => {
            warn!(package = %atom, attempt, "abandoned at shutdown, still waiting for NATS: its build killed if it ran, its lease left to expire and its job to be delivered again");
            BuildReport::Abandoned
        }
    }
}

/// The job's stages, from the claim to the report.
async fn stages(
    ctx: Arc<Ctx>,
    message: jetstream::Message,
    job: Job,
    stops: Stops,
    slot: &mut SlotHandle,
    jobs: u32,
) -> BuildReport {
    let claim = match claim::claim(&ctx, &message, &job).await {
        Ok(claim) => claim,
        Err(report) => return report,
    };
    let (running, output) = match prepare(&ctx, &job, &claim, jobs, slot).await {
        Ok(started) => started,
        Err(err) => {
            warn!(package = %job.atom, error = %err, "builder did not start; handing the job back");
            let reason = err.to_string();
            claim.release(&ctx).await;
            nak(&message, None).await;
            hand_back(&ctx, &job, reason.clone(), None).await;
            return BuildReport::BuilderBroken {
                atom: job.atom,
                reason,
            };
        }
    };
    info!(package = %job.atom, attempt = job.attempt, delivery = claim.delivery, "build started");
    // The log is shipped while the build runs, and stored once its output has ended.
    let shipping = async {
        match output {
            Some(output) => Some(logship::ship(&ctx, &job, output).await),
            None => None,
        }
    };
    let (end, shipped) = tokio::join!(
        watch::watch(&ctx, &message, &job, claim, running, &stops, slot),
        shipping
    );
    if let Some(shipped) = shipped {
        debug!(package = %job.atom, ?shipped, "build log shipped");
    }
    match end {
        RunEnd::Exited {
            claim,
            outcome:
                outcome @ BuildOutcome::Failed {
                    class: class @ (FailureClass::Fetch | FailureClass::Infrastructure),
                    ..
                },
            duration_ms,
        } => {
            // Not the package's fault: it goes back without spending an attempt, to other
            // drones after a moment for the machine's faults, to anyone later for a download.
            let delay = match class {
                FailureClass::Fetch => ctx.settings.fetch_retry_ms,
                _ => ctx.settings.avoid_delay_ms,
            };
            warn!(package = %job.atom, attempt = job.attempt, %class, "build failed, not for the package's fault; giving it back");
            claim.release(&ctx).await;
            let reason = format!("{class} failure");
            hand_back(&ctx, &job, reason, Some((outcome, duration_ms))).await;
            nak(&message, Some(Duration::from_millis(delay))).await;
            BuildReport::GivenBack { class }
        }
        RunEnd::Exited {
            claim,
            outcome: BuildOutcome::Succeeded,
            duration_ms,
        } => match store_artifacts(&ctx, &job, duration_ms).await {
            Ok(artifacts) => {
                let built = report::Built {
                    outcome: BuildOutcome::Succeeded,
                    duration_ms,
                    jobs,
                    artifacts,
                };
                report::report(&ctx, &message, &job, claim, built).await
            }
            // Built, but not delivered: the machine's or the store's fault, so the build is
            // given back to be done again without spending an attempt.
            Err(err) => {
                let reason = err.to_string();
                warn!(package = %job.atom, attempt = job.attempt, error = %reason, "binary packages not stored; giving the build back");
                claim.release(&ctx).await;
                let outcome = BuildOutcome::Failed {
                    exit: schemas::ExitInfo::code(0),
                    log_tail: reason.clone(),
                    class: FailureClass::Infrastructure,
                    signature: Some(reason.clone()),
                };
                let why = "infrastructure failure".to_owned();
                hand_back(&ctx, &job, why, Some((outcome, duration_ms))).await;
                let delay = Duration::from_millis(ctx.settings.avoid_delay_ms);
                nak(&message, Some(delay)).await;
                BuildReport::NotStored { reason }
            }
        },
        RunEnd::Exited {
            claim,
            outcome,
            duration_ms,
        } => {
            let built = report::Built {
                outcome,
                duration_ms,
                jobs,
                artifacts: Vec::new(),
            };
            report::report(&ctx, &message, &job, claim, built).await
        }
        RunEnd::LeaseLost { reason } => lease_lost(&ctx, &job, reason).await,
        RunEnd::Cancelled { claim } => {
            // The coordinator recorded the cancel before asking: the job is removed from the
            // work stream (acknowledged), so no drone builds it again.
            claim.release(&ctx).await;
            if let Err(err) = message.ack().await {
                debug!(package = %job.atom, error = %err, "cancelled job not acknowledged; a drone that takes it again is told to cancel it");
            }
            info!(package = %job.atom, attempt = job.attempt, "build cancelled by the operator; its process group was killed");
            ctx.reporter
                .note(EventKind::Cancelled {
                    atom: job.atom.clone(),
                    attempt: job.attempt,
                })
                .await;
            BuildReport::Cancelled
        }
        RunEnd::HandedBack { claim } => {
            claim.release(&ctx).await;
            nak(&message, None).await;
            info!(package = %job.atom, "build handed back");
            let reason = "drone shut down before the build finished".to_owned();
            hand_back(&ctx, &job, reason, None).await;
            BuildReport::HandedBack
        }
    }
}

/// Starts the builder and announces the claim (`started` is the claim event); the build's
/// output comes out of the receiver, for a builder that runs a process.
async fn prepare(
    ctx: &Ctx,
    job: &Job,
    claim: &claim::Claim,
    jobs: u32,
    slot: &mut SlotHandle,
) -> Result<(Running, Option<UnboundedReceiver<Bytes>>), builder::StartError> {
    let env = BuildEnv {
        atom: job.atom.clone(),
        attempt: job.attempt,
        drone: ctx.name.to_string(),
        jobs,
        estimate_secs: job.estimate_secs,
        // The supervisor kills the build when the drone's heartbeats stop being acknowledged:
        // a frozen or cut-off drone's build is dead before the coordinator releases it.
        supervise: Some(builder::Supervise {
            deadline: ctx.liveness.deadline,
            first: ctx.liveness.remaining(),
        }),
    };
    let log_file = ctx
        .settings
        .effective_log_dir()
        .map(|dir| dir.join(format!("{}-{}.log", job.atom.key(), job.attempt)));
    let (live, output) = match ctx.builder {
        Builder::Process { .. } => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        Builder::Simulate { .. } => (None, None),
    };
    let running = builder::start(
        &ctx.builder,
        &env,
        ctx.settings.log_tail_bytes,
        log_file,
        live,
    )?;
    slot.build_started(&job.atom);
    ctx.reporter
        .note(EventKind::Started {
            atom: job.atom.clone(),
            attempt: job.attempt,
            argv: ctx.builder.argv(&job.atom),
            jobs,
            delivery: claim.delivery,
            lease_rev: claim.revision,
        })
        .await;
    Ok((running, output))
}

/// The lease is lost (or may be): nothing of the build is acknowledged or reported as a
/// result; the loss is logged and reported for observers.
async fn lease_lost(ctx: &Ctx, job: &Job, reason: String) -> BuildReport {
    warn!(package = %job.atom, attempt = job.attempt, reason, "lease lost; nothing of the build is reported");
    ctx.reporter
        .note(EventKind::LeaseLost {
            atom: job.atom.clone(),
            attempt: job.attempt,
            reason,
        })
        .await;
    BuildReport::LeaseLost
}

/// Finds, describes and stores the binary packages a successful build wrote (none for a
/// builder that writes none).
async fn store_artifacts(
    ctx: &Ctx,
    job: &Job,
    duration_ms: u64,
) -> Result<Vec<Artifact>, ArtifactError> {
    let Some(pkgdir) = ctx.pkgdir.clone() else {
        return Ok(Vec::new());
    };
    let store = ctx.artifacts.as_ref().ok_or(ArtifactError::NoStore)?;
    if ctx.settings.builder == crate::config::BuilderKind::Simulate {
        // The simulated build's package, written as a real build would have written it.
        let (dir, atom, arch) = (pkgdir.clone(), job.atom.clone(), ctx.settings.arch.clone());
        let name = ctx.name.clone();
        tokio::task::spawn_blocking(move || {
            artifacts::write_simulated(&dir, &atom, &arch, &name, runtime::now_ms() / 1000)
        })
        .await
        .map_err(|err| ArtifactError::Upload {
            path: job.atom.to_string(),
            reason: err.to_string(),
        })??;
    }
    // Files written since the build started (two seconds of slack for coarse file times).
    let since = SystemTime::now() - Duration::from_millis(duration_ms) - Duration::from_secs(2);
    let package = job.atom.package_name();
    // Reading and hashing whole packages is blocking work; it is awaited here.
    let found = tokio::task::spawn_blocking(move || {
        let paths = artifacts::find(&pkgdir, &package, since)?;
        paths
            .into_iter()
            .map(|path| artifacts::describe(&pkgdir, &path).map(|artifact| (path, artifact)))
            .collect::<Result<Vec<_>, ArtifactError>>()
    })
    .await
    .map_err(|err| ArtifactError::Upload {
        path: job.atom.to_string(),
        reason: err.to_string(),
    })??;
    let mut stored = Vec::with_capacity(found.len());
    for (path, artifact) in found {
        artifacts::upload(store, &path, &artifact).await?;
        info!(package = %job.atom, path = %artifact.path, size = artifact.size, object = %artifact.object, "binary package stored");
        stored.push(artifact);
    }
    Ok(stored)
}

/// Reports a job given back unbuilt, waiting for the stream to store it: the coordinator
/// requeues the package at once instead of waiting for the reconciler.
async fn hand_back(ctx: &Ctx, job: &Job, reason: String, failed: Option<(BuildOutcome, u64)>) {
    let (outcome, duration_ms) = match failed {
        Some((outcome, duration_ms)) => (Some(outcome), duration_ms),
        None => (None, 0),
    };
    let event = EventKind::HandedBack {
        atom: job.atom.clone(),
        attempt: job.attempt,
        reason,
        outcome,
        duration_ms,
    };
    if let Err(err) = ctx.reporter.send(event, None).await {
        debug!(package = %job.atom, error = %err, "hand-back not reported; the reconciler requeues the package");
    }
}
