//! The run stage: the build runs while one timer renews the lease (`update` at the current
//! revision) and, only when that succeeded, progress-acks the job; each proof of the drone's
//! life (`crate::liveness`) is passed on to the build's supervisor. The drone keeps the two
//! deadlines itself: `last successful renewal + TTL − TTL/10`, past which the lease may be gone,
//! and `last proof of life + supervisor deadline`, past which the coordinator may give the
//! package to another drone; past either the build is killed and nothing of it is reported.

use std::time::Instant;

use async_nats::jetstream::{self, AckKind};
use schemas::{BuildOutcome, Job, encode};
use tracing::debug;

use super::claim::Claim;
use super::{Ctx, SlotHandle, Stops};
use crate::builder::Running;

/// How the run stage ended.
pub enum RunEnd {
    /// The process ran to its end within the lease.
    Exited {
        claim: Claim,
        outcome: BuildOutcome,
        duration_ms: u64,
    },
    /// The lease is lost or may be: the build was killed (or had ended only after the lease
    /// deadline); nothing is acknowledged or reported as a result.
    LeaseLost { reason: String },
    /// Handed back: the build was killed, the lease is still held.
    HandedBack { claim: Claim },
    /// Cancelled by the operator: the build was killed, the lease is still held.
    Cancelled { claim: Claim },
}

/// Runs the build to its end, its lease's loss or its hand-back.
pub async fn watch(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &Job,
    mut claim: Claim,
    mut running: Running,
    stops: &Stops,
    slot: &mut SlotHandle,
) -> RunEnd {
    let mut deadline = claim.deadline(ctx.lease_ttl);
    let mut renew = tokio::time::interval_at(
        tokio::time::Instant::now() + ctx.renew_every,
        ctx.renew_every,
    );
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    // The supervisor's clock, kept here too: past it the supervisor has killed the build (or is
    // about to), and its end is the drone's silence, never a verdict on the package.
    let mut alive = ctx.liveness.subscribe();
    let mut silent_at = started + ctx.liveness.remaining();
    let lost = loop {
        // Biased, deadline first: a drone that was frozen or starved wakes up with its
        // deadline passed and, often, its build already killed by the supervisor; that
        // build's end is the lease's loss, never a verdict on the package or the machine.
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline.into()) => {
                break "lease deadline passed without a renewal".to_owned();
            }
            _ = tokio::time::sleep_until(silent_at.into()) => {
                break silence(ctx);
            }
            outcome = running.wait() => {
                if Instant::now() >= deadline {
                    break "the build ended after its lease deadline".to_owned();
                }
                if Instant::now() >= silent_at {
                    break silence(ctx);
                }
                slot.process_exited(Some(&outcome));
                return RunEnd::Exited {
                    claim,
                    outcome,
                    duration_ms: started.elapsed().as_millis() as u64,
                };
            }
            _ = stops.handback.cancelled() => {
                // The slot frees when the job leaves (`SlotHandle::done`), a moment later.
                running.kill().await;
                return RunEnd::HandedBack { claim };
            }
            _ = stops.cancel.cancelled() => {
                // No verdict on the package or the machine: nobody's build failed.
                running.kill().await;
                slot.process_exited(None);
                return RunEnd::Cancelled { claim };
            }
            Ok(()) = alive.changed() => {
                let proof = *alive.borrow_and_update();
                silent_at = proof + ctx.liveness.deadline;
                running.keep_alive().await;
            }
            _ = renew.tick() => {
                let sent = Instant::now();
                let Ok(bytes) = encode(&claim.lease) else { continue };
                let remaining = deadline.saturating_duration_since(sent);
                let update = ctx.leases.update(claim.key.as_str(), bytes.into(), claim.revision);
                match tokio::time::timeout(remaining, update).await {
                    Ok(Ok(next)) => {
                        claim.revision = next;
                        claim.renewed_at = sent;
                        deadline = claim.deadline(ctx.lease_ttl);
                        if let Err(err) = message.ack_with(AckKind::Progress).await {
                            debug!(package = %job.atom, error = %err, "progress ack not sent");
                        }
                    }
                    Ok(Err(err)) => break format!("lease renewal refused: {err}"),
                    Err(_) => break "lease renewal timed out".to_owned(),
                }
            }
        }
    };
    running.kill().await;
    slot.process_exited(None);
    RunEnd::LeaseLost { reason: lost }
}

/// Why a build ended with the drone's silence.
fn silence(ctx: &Ctx) -> String {
    format!(
        "no heartbeat acknowledged for {} ms: the build's supervisor ends it, and the coordinator gives the package to another drone",
        ctx.liveness.deadline.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use async_nats::jetstream::{self, kv};
    use schemas::{Job, Lease, LeasePhase, SCHEMA_VERSION, fixtures};
    use tokio::sync::mpsc;

    use super::*;
    use crate::build::SlotEvent;
    use crate::builder::{self, BuildEnv, Builder};
    use crate::config::Settings;
    use crate::observer::Quiet;
    use crate::reporter::Reporter;

    const TTL: Duration = Duration::from_secs(2);

    async fn bucket(js: &jetstream::Context, name: &str) -> kv::Store {
        js.create_key_value(kv::Config {
            bucket: name.to_owned(),
            ..Default::default()
        })
        .await
        .expect("bucket")
    }

    /// A drone's build context on a real server, building with `sh -c SCRIPT`; renewals are
    /// an hour apart, so the lease deadline alone decides.
    async fn ctx(server: &testkit::NatsServer, script: &str) -> (Ctx, jetstream::Context) {
        let client = server.connect().await.expect("connect");
        let js = jetstream::new(client.clone());
        let name = fixtures::drone_name("d1");
        let ctx = Ctx {
            name: name.clone(),
            settings: Settings::default(),
            builder: Builder::Process {
                template: vec!["sh".into(), "-c".into(), script.into(), "{atom}".into()],
                env: Vec::new(),
                supervisor: None,
            },
            leases: bucket(&js, "leases").await,
            packages: bucket(&js, "packages").await,
            drones: bucket(&js, "drones").await,
            reporter: Reporter::new(client, name, 1),
            refused: runtime::throttle::Throttle::default(),
            lease_ttl: TTL,
            renew_every: Duration::from_secs(3_600),
            liveness: crate::liveness::Liveness::new(Duration::from_secs(3_600), TTL),
            observer: Arc::new(Quiet),
            pkgdir: None,
            artifacts: None,
            js: js.clone(),
            logs: None,
            abandon: tokio_util::sync::CancellationToken::new(),
        };
        (ctx, js)
    }

    fn job() -> Job {
        fixtures::job("a-b/c", 1)
    }

    /// A claim whose last good renewal was `ago`.
    fn claim(ctx: &Ctx, ago: Duration) -> Claim {
        let job = job();
        Claim {
            key: job.atom.key(),
            lease: Lease {
                v: SCHEMA_VERSION,
                drone: ctx.name.clone(),
                atom: job.atom,
                attempt: 1,
                submission: 1,
                stream_seq: 1,
                delivery: 1,
                phase: LeasePhase::Building,
            },
            revision: 1,
            renewed_at: Instant::now() - ago,
            delivery: 1,
        }
    }

    /// A job message; the run stage only uses it for progress acks, which never fire here.
    fn message(js: &jetstream::Context) -> jetstream::Message {
        jetstream::Message {
            message: async_nats::Message {
                subject: "swarm.build.amd64.x".into(),
                reply: None,
                payload: Default::default(),
                headers: None,
                status: None,
                description: None,
                length: 0,
            },
            context: js.clone(),
        }
    }

    /// Runs the stage on a build that is started now; what it returned and what it told the
    /// main loop about the slot.
    async fn run_stage(
        (ctx, js): &(Ctx, jetstream::Context),
        claim: Claim,
        settle: Duration,
    ) -> (RunEnd, SlotEvent) {
        let env = BuildEnv {
            atom: job().atom,
            attempt: 1,
            drone: "d1".into(),
            jobs: 1,
            estimate_secs: None,
            supervise: None,
        };
        let running =
            builder::start(&ctx.builder, &env, 256, None, None).expect("the build starts");
        // Let the build end before the stage looks at it, as for a drone that was frozen.
        tokio::time::sleep(settle).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut slot = SlotHandle::new(job().atom.key(), tx, None, (1, 1), Arc::new(Quiet));
        let end = watch(
            ctx,
            &message(js),
            &job(),
            claim,
            running,
            &Stops::default(),
            &mut slot,
        )
        .await;
        let event = rx.try_recv().expect("the slot's end is reported");
        (end, event)
    }

    /// A drone that wakes up (from SIGSTOP, or starved of CPU) past its lease deadline finds
    /// its builds ended: killed by their supervisors, or done. Either way the lease may be gone,
    /// so the end is a lost lease, with no outcome for the health verdict: counting such ends
    /// as failed builds grounded healthy drones. Several rounds, so a race between the
    /// deadline and the process's end cannot pass by luck.
    #[tokio::test]
    async fn a_build_seen_ending_after_the_lease_deadline_is_a_lost_lease_not_a_verdict() {
        let server = testkit::NatsServer::start().expect("server");
        let ctx = ctx(&server, "exit 1").await;
        for round in 0..8 {
            let late = claim(&ctx.0, TTL * 2);
            let (end, event) = run_stage(&ctx, late, Duration::from_millis(100)).await;
            assert!(matches!(end, RunEnd::LeaseLost { .. }), "round {round}");
            assert!(
                matches!(event, SlotEvent::Exited { outcome: None, .. }),
                "round {round}: {event:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_build_that_ends_within_its_lease_gives_its_outcome() {
        let server = testkit::NatsServer::start().expect("server");
        let ctx = ctx(&server, "exit 3").await;
        let (end, event) = run_stage(&ctx, claim(&ctx.0, Duration::ZERO), Duration::ZERO).await;
        match end {
            RunEnd::Exited { outcome, .. } => assert!(
                matches!(&outcome, BuildOutcome::Failed { exit, .. } if exit.code == Some(3)),
                "{outcome:?}"
            ),
            _ => panic!("the build ran to its end within the lease"),
        }
        assert!(
            matches!(
                event,
                SlotEvent::Exited {
                    outcome: Some(BuildOutcome::Failed { .. }),
                    ..
                }
            ),
            "{event:?}"
        );
    }

    #[tokio::test]
    async fn a_build_still_running_at_the_deadline_is_killed() {
        let server = testkit::NatsServer::start().expect("server");
        let ctx = ctx(&server, "sleep 30").await;
        // The deadline is 200 ms away.
        let claim = claim(&ctx.0, TTL - TTL / 10 - Duration::from_millis(200));
        let started = Instant::now();
        let (end, event) = run_stage(&ctx, claim, Duration::ZERO).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed, not waited for"
        );
        assert!(matches!(end, RunEnd::LeaseLost { .. }));
        assert!(matches!(event, SlotEvent::Exited { outcome: None, .. }));
    }
}
