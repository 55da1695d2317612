//! The drone's way out, after its main loop: its tasks are joined, or abandoned if they still
//! wait (for NATS) at the stop's time to abandon them (their builds killed with their process
//! groups); then its goodbye: the `offline` record and event, and a flush of what it published.
//! Every wait is bounded by the stop (`crate::stopping`), and what could not be done is logged.

use std::time::Instant;

use schemas::{DroneState, EventKind};
use tokio::time::timeout_at;
use tracing::{info, warn};

use super::Shell;
use crate::stopping::Stop;

impl Shell {
    pub(super) async fn wind_down(&mut self, stop: Stop) {
        let at = tokio::time::Instant::from_std;
        self.helpers.cancel();
        self.tracker.close();
        if timeout_at(at(stop.abandon_at()), self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                jobs = self.drone.slots.len(),
                "shutdown: jobs still waiting for NATS; abandoning them and killing their builds"
            );
            self.ctx.abandon.cancel();
            if timeout_at(at(stop.exit_by()), self.tracker.wait())
                .await
                .is_err()
            {
                warn!(
                    tasks = self.tracker.len(),
                    "shutdown: tasks still running at the end of the stop; exiting without them"
                );
            }
        }
        let by = at(stop.goodbye_by(Instant::now()));
        let mut offline = false;
        // Written after the record writer has stopped: no older record can land after it.
        if let Some(bytes) = self.record(DroneState::Offline) {
            match timeout_at(by, self.drones.put(self.ctx.name.as_str(), bytes)).await {
                Ok(Ok(_)) => offline = true,
                Ok(Err(err)) => {
                    warn!(error = %err, "offline record not written: NATS unreachable; the drone is marked lost when its heartbeats stop");
                }
                Err(_) => {
                    warn!(
                        "offline record not written: NATS unreachable (no answer in time); the drone is marked lost when its heartbeats stop"
                    );
                }
            }
        }
        if timeout_at(by, self.ctx.reporter.note(EventKind::Offline))
            .await
            .is_err()
        {
            warn!("offline event not sent: NATS unreachable");
        }
        // What the drone published without waiting for an answer (events) leaves with a flush,
        // which waits for the server without end: it is bounded too.
        match timeout_at(by, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                warn!(error = %err, "events not flushed: NATS unreachable; the last ones may be lost")
            }
            Err(_) => warn!(
                "events not flushed: NATS unreachable (no answer in time); the last ones may be lost"
            ),
        }
        match offline {
            true => info!(drone = %self.ctx.name, "drone offline"),
            false => info!(drone = %self.ctx.name, "drone stopped"),
        }
    }
}
