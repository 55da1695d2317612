//! What comes in and goes out as work: pull requests (normal and big), the jobs and statuses
//! they bring, the looks at the queues a big drone takes, starting a build task, and giving back
//! what this drone does not build.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull::BatchConfig};
use async_nats::{HeaderMap, StatusCode};
use futures::StreamExt;
use schemas::{DecodeError, Job, decode, names};
use tracing::{debug, info, warn};

use super::{BigEvent, LOOK_TIMEOUT, PULL_RETRY, Shell};
use crate::build::{self, SlotHandle};
use crate::slots::{Phase, Slot};
use crate::state::{Admit, BigJob, Held, Look, PullStatus};

impl Shell {
    /// A held big job starts once the builds it displaced have stopped.
    pub(super) async fn start_held(&mut self) {
        match self.drone.take_held() {
            Some(Held::Start(message)) => {
                let linger = decode::<Job>(&message.payload).is_ok_and(|job| job.linger);
                self.drone.big_started(linger);
                let (slots, cores) = (self.drone.slots.capacity(), self.ctx.settings.cores);
                self.start(*message, slots, cores);
                self.drone.touch();
            }
            Some(Held::GiveBack(message)) => nak(&message).await,
            None => {}
        }
    }

    /// An idle drone that takes big builds waits on the big queue.
    pub(super) fn pull_big(&mut self) {
        let Some(big) = self.big.clone() else { return };
        if !self.drone.begin_big_pull() {
            return;
        }
        let (tx, expires, stop) = (self.big_tx.clone(), self.pull_expires, self.helpers.clone());
        self.tracker.spawn(async move {
            let pull = async {
                match big
                    .batch()
                    .max_messages(1)
                    .expires(expires)
                    .messages()
                    .await
                {
                    Ok(mut batch) => batch.next().await.and_then(Result::ok).map(Box::new),
                    Err(_) => None,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                message = pull => { let _ = tx.send(BigEvent::Job(message)); }
            }
        });
    }

    /// Asks for exactly the free slots not already asked for.
    pub(super) async fn pull_normal(&mut self) {
        let Some(free) = self.drone.normal_pull(Instant::now()) else {
            return;
        };
        let request = BatchConfig {
            batch: free,
            expires: Some(self.normal_expires),
            idle_heartbeat: self.idle_heartbeat,
            ..Default::default()
        };
        match self
            .consumer
            .request_batch(request, self.inbox.clone())
            .await
        {
            Ok(()) => self.drone.asked(free, Instant::now()),
            Err(err) => {
                warn!(error = %err, "pull request not sent");
                tokio::time::sleep(PULL_RETRY).await;
            }
        }
    }

    /// A message on the pull inbox: a status of a pull, or a job. True when the drone's own
    /// state changed (the record is written at once).
    pub(super) async fn pulled(&mut self, message: async_nats::Message) -> bool {
        let now = Instant::now();
        if let Some(status) = message.status {
            let status = pull_status(status, message.headers.as_ref());
            if status == PullStatus::Error {
                debug!(
                    "pull status; pausing pulls for {} ms",
                    crate::state::PULL_PAUSE.as_millis()
                );
            }
            self.drone.pull_status(status, now);
            return false;
        }
        let message = jetstream::Message {
            message,
            context: self.js.clone(),
        };
        if let Err(err) = decode::<Job>(&message.payload) {
            self.drone.refuse(now);
            self.leave_unreadable(message, &err);
            return false;
        }
        if self.foreign(&message) {
            self.drone.refuse(now);
            self.give_back_later(&message).await;
            return false;
        }
        let unfit = match &self.build_dir {
            Some(dir) if self.drone.pulls() => {
                crate::disk::check_build_dir(dir, self.ctx.settings.min_free_mb)
                    .err()
                    .map(|err| err.to_string())
            }
            _ => None,
        };
        match self.drone.admit(unfit, now) {
            Admit::Start => {
                let (weight, cores) = (1, self.ctx.settings.cores_per_slot());
                self.start(message, weight, cores);
                self.drone.touch();
                false
            }
            // Given back at once, no attempt used: the package is fine, this machine is not.
            Admit::Unfit { reason } => {
                nak(&message).await;
                self.ground_unhealthy(reason).await;
                true
            }
            // A big job waits for this drone to be free, or the job came from a pull the drone
            // had given up on: it goes back.
            Admit::Reserved | Admit::Unwanted => {
                nak(&message).await;
                false
            }
        }
    }

    /// Hands a job to a build task in `weight` slots with `jobs` cores.
    fn start(&mut self, message: jetstream::Message, weight: usize, jobs: u32) {
        let job = match decode::<Job>(&message.payload) {
            Ok(job) => job,
            Err(err) => {
                self.leave_unreadable(message, &err);
                return;
            }
        };
        let key = job.atom.key();
        if names::key_of_build_subject(&message.subject) != Some(key.as_str()) {
            if let Some(suppressed) = self.ctx.refused.allow("job under another subject") {
                warn!(subject = %message.subject, package = %job.atom, suppressed, "job published under another package's subject; terminated");
            }
            self.give_back(message, AckKind::Term);
            return;
        }
        if self.drone.slots.holds(&key) {
            // The same job delivered twice to this drone (a redelivery racing its own build).
            self.give_back(message, AckKind::Nak(Some(Duration::from_secs(1))));
            return;
        }
        let stops = build::Stops::default();
        let freed_at = self.drone.slots.start(
            key.clone(),
            Slot {
                atom: job.atom.clone(),
                attempt: job.attempt,
                started_ms: runtime::now_ms(),
                handback: stops.handback.clone(),
                cancel: stops.cancel.clone(),
                weight,
                phase: Phase::Building,
            },
        );
        let ctx = self.ctx.clone();
        let mut slot = SlotHandle::new(
            key,
            self.done_tx.clone(),
            freed_at,
            (weight, jobs),
            ctx.observer.clone(),
        );
        self.tracker.spawn(async move {
            let report = build::run(ctx, message, job, stops, &mut slot, jobs).await;
            slot.done(report);
        });
    }

    /// Leaves a job this drone cannot read (a newer release's, or junk) in the work stream,
    /// unbuilt: it is given back with a long delay, never acknowledged or terminated, so that a
    /// drone that can read it builds it. If none does within the consumer's `max_deliver`
    /// deliveries, the coordinator's dead-letter handling reports it (docs/upgrades.md).
    fn leave_unreadable(&self, message: jetstream::Message, err: &DecodeError) {
        if let Some(suppressed) = self.ctx.refused.allow("unreadable job") {
            let (stream_seq, delivery) = message
                .info()
                .map(|i| (i.stream_sequence, i.delivered))
                .unwrap_or_default();
            warn!(
                subject = %message.subject,
                stream_seq,
                delivery,
                version = ?err.unsupported_version(),
                error = %err,
                suppressed,
                "unreadable job left in the work stream for a drone that can read it; not built"
            );
        }
        self.give_back(message, AckKind::Nak(Some(UNREADABLE_JOB_DELAY)));
    }

    /// Answers a job this drone does not build, in a tracked task (the loop does not wait).
    fn give_back(&self, message: jetstream::Message, kind: AckKind) {
        self.tracker.spawn(async move {
            if let Err(err) = message.ack_with(kind).await {
                debug!(error = %err, "job not answered; it is redelivered after its ack wait");
            }
        });
    }

    /// Looks at the normal queue (idle) or the big queue (building), in a tracked task.
    pub(super) fn look(&mut self) {
        let Some(look) = self.drone.begin_look() else {
            return;
        };
        let mut queue = match (look, &self.big) {
            (Look::Normal, _) => self.consumer.clone(),
            (Look::Big, Some(big)) => big.clone(),
            (Look::Big, None) => return,
        };
        let (tx, stop) = (self.big_tx.clone(), self.helpers.clone());
        self.tracker.spawn(async move {
            let asked = tokio::time::timeout(LOOK_TIMEOUT, queue.info());
            tokio::select! {
                _ = stop.cancelled() => {}
                info = asked => {
                    let pending = matches!(info, Ok(Ok(info)) if info.num_pending > 0);
                    let _ = tx.send(BigEvent::Looked(look, pending));
                }
            }
        });
    }

    /// Whether a job belongs to a run of another fingerprint than this drone's (its target
    /// changed a moment ago, before this drone read it).
    fn foreign(&self, message: &jetstream::Message) -> bool {
        let wanted = decode::<Job>(&message.payload)
            .ok()
            .and_then(|job| job.fingerprint);
        let mine = self.fingerprint.as_ref().map(|f| f.id.as_str());
        match wanted {
            Some(wanted) if mine != Some(wanted.as_str()) => {
                debug!(subject = %message.subject, %wanted, ?mine, "job of another fingerprint given back");
                true
            }
            _ => false,
        }
    }

    /// Gives a job back to be offered again after `avoid_delay_ms` (to drones that fit it).
    async fn give_back_later(&self, message: &jetstream::Message) {
        let delay = Duration::from_millis(self.ctx.settings.avoid_delay_ms);
        if let Err(err) = message.ack_with(AckKind::Nak(Some(delay))).await {
            debug!(error = %err, "nak not sent; the job is redelivered after its ack wait");
        }
    }

    pub(super) async fn big_event(&mut self, event: BigEvent) {
        match event {
            BigEvent::Looked(look, pending) => self.drone.looked(look, pending),
            BigEvent::Job(None) => self.drone.big_pull_empty(),
            BigEvent::Job(Some(message)) if decode::<Job>(&message.payload).is_err() => {
                self.drone.big_pull_empty();
                if let Err(err) = decode::<Job>(&message.payload) {
                    self.leave_unreadable(*message, &err);
                }
            }
            BigEvent::Job(Some(message)) if self.foreign(&message) => {
                self.drone.big_pull_empty();
                self.give_back_later(&message).await;
            }
            // Kept free for the critical path: a big job not placed by the graph (published
            // before the path's next package, so ahead of it in the stream) goes back for a
            // moment, and the next pull finds the path's package.
            BigEvent::Job(Some(message)) if self.drone.lingering() && !by_graph(&message) => {
                self.drone.big_pull_empty();
                if let Err(err) = message.ack_with(AckKind::Nak(Some(LINGER_PASS))).await {
                    debug!(error = %err, "nak not sent; the job is redelivered after its ack wait");
                }
            }
            BigEvent::Job(Some(message)) => match self.drone.big_job(message, runtime::now_ms()) {
                BigJob::GiveBack(message) => nak(&message).await,
                BigJob::Hold { hand_back } => {
                    self.drone.slots.hand_back_building();
                    if hand_back > 0 {
                        info!(
                            handed_back = hand_back,
                            "big build taken: handing back the builds started just now"
                        );
                    }
                }
            },
        }
    }
}

/// How long a job this drone cannot read stays away from every drone: long enough that drones
/// of an older release do not spin on it (nor spend the job's deliveries fast), short enough
/// that a drone of a newer release takes it soon.
const UNREADABLE_JOB_DELAY: Duration = Duration::from_secs(30);

/// How long a big job a lingering drone passes over stays away from it.
const LINGER_PASS: Duration = Duration::from_millis(100);

/// Whether the coordinator placed the job by the run's graph (it asks for cores).
fn by_graph(message: &jetstream::Message) -> bool {
    decode::<Job>(&message.payload).is_ok_and(|job| job.min_cores.is_some())
}

/// What a status message on the pull inbox says.
fn pull_status(status: StatusCode, headers: Option<&HeaderMap>) -> PullStatus {
    if status == StatusCode::IDLE_HEARTBEAT {
        PullStatus::Heartbeat
    } else if status == StatusCode::TIMEOUT
        || status == StatusCode::REQUEST_TERMINATED
        || status == StatusCode::NOT_FOUND
    {
        let unfilled = headers
            .and_then(|h| h.get("Nats-Pending-Messages"))
            .and_then(|v| v.as_str().parse::<usize>().ok());
        PullStatus::Ended { unfilled }
    } else {
        PullStatus::Error
    }
}

/// Gives a job back at once, waiting for the send.
async fn nak(message: &jetstream::Message) {
    if let Err(err) = message.ack_with(AckKind::Nak(None)).await {
        debug!(error = %err, "nak not sent; the job is redelivered after its ack wait");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_statuses_are_read_by_code() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Pending-Messages", "3");
        let cases = [
            (StatusCode::IDLE_HEARTBEAT, None, PullStatus::Heartbeat),
            (
                StatusCode::TIMEOUT,
                Some(&headers),
                PullStatus::Ended { unfilled: Some(3) },
            ),
            (
                StatusCode::REQUEST_TERMINATED,
                None,
                PullStatus::Ended { unfilled: None },
            ),
            (
                StatusCode::NOT_FOUND,
                Some(&headers),
                PullStatus::Ended { unfilled: Some(3) },
            ),
            (StatusCode::NO_RESPONDERS, None, PullStatus::Error),
        ];
        for (status, headers, expected) in cases {
            assert_eq!(pull_status(status, headers), expected, "{status}");
        }
    }
}
