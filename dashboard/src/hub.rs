//! The fold's owner: one task holds the picture, applies every input from the sources, answers
//! snapshot requests and, once per tick, publishes a snapshot when the picture changed — the
//! coalescing behind the WebSocket's pushes. Everything else reaches the picture through a
//! [`Hub`] handle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::fold::{Applied, Input, Swarm};
use crate::graph::ForecastCache;
use crate::view::{Delta, Snapshot};

/// Inputs taken in one go before the loop looks at its other branches, so a start-up replay of
/// many thousands of events is folded in batches rather than one select per event.
const BATCH: usize = 512;
/// A picture that did not change is still recomputed this often: drones age into `lost` and the
/// run's rate and estimate move with the clock.
const REFRESH: Duration = Duration::from_secs(1);

enum Command {
    Snapshot(oneshot::Sender<Arc<Snapshot>>),
}

/// The handle to the fold's task.
#[derive(Clone)]
pub struct Hub {
    commands: mpsc::Sender<Command>,
    latest: watch::Receiver<Arc<Snapshot>>,
}

impl Hub {
    /// A snapshot taken now. Falls back to the last one published if the fold's task is gone
    /// (shutting down).
    pub async fn snapshot(&self) -> Arc<Snapshot> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Snapshot(reply)).await.is_ok()
            && let Ok(snapshot) = answer.await
        {
            return snapshot;
        }
        self.latest.borrow().clone()
    }

    /// The snapshots published once per tick when the picture changed.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.latest.clone()
    }
}

/// Starts the fold's task on `tracker`; it ends when `shutdown` is cancelled. `connected` tells
/// whether the NATS connection is up, for the snapshot's status.
pub fn spawn(
    tracker: &TaskTracker,
    failures_kept: usize,
    tick: Duration,
    connected: impl Fn() -> bool + Send + 'static,
    mut inputs: mpsc::Receiver<Input>,
    shutdown: CancellationToken,
) -> Hub {
    let mut swarm = Swarm::new(failures_kept);
    let first = Arc::new(Snapshot::of(&swarm, runtime::now_ms(), connected()));
    let (publish, latest) = watch::channel(first);
    let (commands, mut requests) = mpsc::channel::<Command>(64);
    tracker.spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut computed_version = 0;
        let mut computed_at = Instant::now();
        let rejected = runtime::throttle::Throttle::default();
        let mut inputs_open = true;
        // The last forecast of the run's graph, reused while it serves.
        let mut forecasts = ForecastCache::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(command) = requests.recv() => match command {
                    Command::Snapshot(reply) => {
                        let snapshot = Snapshot::of_cached(&swarm, runtime::now_ms(), connected(), &mut forecasts);
                        let _ = reply.send(Arc::new(snapshot));
                    }
                },
                input = inputs.recv(), if inputs_open => {
                    let Some(input) = input else {
                        inputs_open = false;
                        continue;
                    };
                    let mut next = Some(input);
                    let mut taken = 0;
                    while let Some(input) = next.take() {
                        if let Applied::Rejected(reason) = swarm.apply(input)
                            && let Some(suppressed) = rejected.allow("input refused")
                        {
                            warn!(reason = %reason, suppressed, "input refused");
                        }
                        taken += 1;
                        if taken < BATCH {
                            next = inputs.try_recv().ok();
                        }
                    }
                }
                _ = ticker.tick() => {
                    let now = Instant::now();
                    if swarm.version == computed_version && now.duration_since(computed_at) < REFRESH {
                        continue;
                    }
                    computed_version = swarm.version;
                    computed_at = now;
                    let snapshot = Snapshot::of_cached(&swarm, runtime::now_ms(), connected(), &mut forecasts);
                    let changed = Delta::between(&publish.borrow(), &snapshot).is_some();
                    if changed {
                        publish.send_replace(Arc::new(snapshot));
                    }
                }
            }
        }
    });
    Hub { commands, latest }
}
