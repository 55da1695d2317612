//! What the drone hears about itself: its build tasks' slot events (and the health verdicts
//! they carry) and the operator's control requests.

use std::time::{Duration, Instant};

use schemas::{
    BuildOutcome, DroneCommand, DroneControl, DroneControlReply, EventKind, SCHEMA_VERSION, decode,
    encode,
};
use tracing::{debug, info, warn};

use super::Shell;
use crate::build::{self, SlotEvent};
use crate::health::HealthEvent;
use crate::state::verdict;

impl Shell {
    /// A build task's news about its slots. True when the drone grounded itself.
    pub(super) async fn slot_event(&mut self, event: SlotEvent) -> bool {
        self.drone.touch();
        match event {
            SlotEvent::Exited { key, at, outcome } => {
                // The verdict on the machine is taken as the build ends, before its slot is
                // filled again: a drone that grounds itself takes nothing more.
                let event = self
                    .drone
                    .slots
                    .exited(&key, at)
                    .and_then(|slot| verdict(&slot.atom, outcome.as_ref()));
                let linger = Duration::from_millis(self.ctx.settings.critical_linger_ms);
                self.drone.build_exited(Instant::now(), linger);
                match event {
                    Some(event) => self.health(event).await,
                    None => false,
                }
            }
            SlotEvent::Done {
                key,
                report,
                unused,
            } => {
                let Some(slot) = self.drone.slots.done(&key, unused) else {
                    return false;
                };
                debug!(package = %slot.atom, ?report, "job done");
                let succeeded = matches!(
                    report,
                    build::BuildReport::Finished {
                        outcome: BuildOutcome::Succeeded,
                        ..
                    }
                );
                self.drone.build_done(succeeded);
                match report {
                    // The machine's faults found after the build's process ended.
                    build::BuildReport::BuilderBroken { atom, reason } => {
                        self.health(HealthEvent::BuildFailed { atom, why: reason })
                            .await
                    }
                    build::BuildReport::NotStored { reason } => {
                        let atom = slot.atom.clone();
                        self.health(HealthEvent::BuildFailed { atom, why: reason })
                            .await
                    }
                    _ => false,
                }
            }
        }
    }

    /// Applies a build's verdict; true when the drone has just grounded itself.
    async fn health(&mut self, event: HealthEvent) -> bool {
        let Some(reason) = self.drone.health(&event) else {
            return false;
        };
        warn!(drone = %self.ctx.name, reason = %reason, "grounded: no more pulls until `swarmctl unground`");
        self.ctx.reporter.note(EventKind::Grounded { reason }).await;
        true
    }

    /// Grounds the drone because the machine cannot build (`reason` names the build directory
    /// and the fault), and says so in the log and the event stream.
    pub(super) async fn ground_unhealthy(&mut self, reason: String) {
        if let Some(reason) = self.drone.health(&HealthEvent::Unhealthy { reason }) {
            warn!(drone = %self.ctx.name, %reason, "grounded: this machine cannot build; no more pulls until `swarmctl unground`");
            self.ctx.reporter.note(EventKind::Grounded { reason }).await;
        }
    }

    /// An operator's request (passed on by the coordinator). True when the drone's own state
    /// changed.
    pub(super) async fn control(&mut self, request: async_nats::Message) -> bool {
        let (ok, message, changed) = match decode::<DroneControl>(&request.payload) {
            Ok(DroneControl { command, .. }) => self.command(command).await,
            Err(err) => {
                if let Some(suppressed) = self.ctx.refused.allow("malformed control request") {
                    warn!(error = %err, suppressed, "malformed control request discarded");
                }
                (false, err.to_string(), false)
            }
        };
        let reply = DroneControlReply {
            v: SCHEMA_VERSION,
            ok,
            message,
        };
        if let (Some(to), Ok(bytes)) = (request.reply, encode(&reply)) {
            let _ = self.client.publish(to, bytes.into()).await;
        }
        changed
    }

    /// Carries out one command: whether it was done, what to answer, and whether the drone's
    /// own state changed.
    async fn command(&mut self, command: DroneCommand) -> (bool, String, bool) {
        let name = self.ctx.name.clone();
        let (event, kind, done) = match command {
            DroneCommand::Cancel { key, attempt } => {
                return if self.drone.slots.cancel(&key, attempt) {
                    info!(drone = %name, package = %key, attempt, "cancel: killing the build");
                    (
                        true,
                        format!("{name}: killing the build of {key} (attempt {attempt})"),
                        false,
                    )
                } else {
                    (
                        false,
                        format!("{name} builds no attempt {attempt} of {key}"),
                        false,
                    )
                };
            }
            DroneCommand::Unground => (
                HealthEvent::Unground,
                EventKind::Ungrounded,
                "ungrounded: pulling work again",
            ),
            DroneCommand::Ground { reason } => (
                HealthEvent::Ground {
                    reason: reason.clone(),
                },
                EventKind::Grounded { reason },
                "grounded: running builds finish, nothing new is taken until `swarmctl unground`",
            ),
            DroneCommand::Drain => (
                HealthEvent::Drain,
                EventKind::Draining,
                "draining: running builds finish, nothing new is taken until `swarmctl unground`",
            ),
        };
        match self.drone.operator(&event) {
            Ok(()) => {
                info!(drone = %name, command = kind.label(), "by the operator");
                self.ctx.reporter.note(kind).await;
                (true, format!("{name} {done}"), true)
            }
            Err(err) => (false, format!("{name}: {err}"), false),
        }
    }
}
