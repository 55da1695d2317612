//! Proof of life. The coordinator judges a drone by its heartbeats alone, and releases a silent
//! drone's builds to the others (`takeover_after_ms` in `schemas::summary`). A drone's builds must
//! therefore be dead by then whatever happened to the drone (killed, frozen, cut off): each build's
//! supervisor, a separate process, kills it after [`Liveness::deadline`] without a word, and the
//! drone gives its supervisors a word only when a heartbeat was acknowledged quickly
//! ([`Liveness::heard`]). So the last word a supervisor got is at most half a heartbeat period
//! after the last heartbeat the coordinator heard, and the build dies at most
//! `deadline + period / 2` after it: the coordinator waits `deadline + period`.

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The supervisors' deadline by default: this many heartbeat periods without an acknowledged
/// heartbeat.
pub const DEFAULT_PERIODS: u32 = 4;

/// The drone's proof of life, shared by the record writer (which proves it) and every build
/// (whose supervisor hears of it).
#[derive(Debug)]
pub struct Liveness {
    last: watch::Sender<Instant>,
    /// How long a build outlives the last proof.
    pub deadline: Duration,
    /// The longest a heartbeat's acknowledgement may take to count as a proof.
    quick: Duration,
}

impl Liveness {
    pub fn new(deadline: Duration, heartbeat: Duration) -> Liveness {
        Liveness {
            last: watch::Sender::new(Instant::now()),
            deadline,
            quick: heartbeat / 2,
        }
    }

    /// A record written at `sent` was acknowledged now. Counts as a proof only when the answer
    /// came back within half a period: a drone frozen between the write and its answer must not
    /// take the answer, seconds later, as proof that it is alive now.
    pub fn heard(&self, sent: Instant) {
        let now = Instant::now();
        if now.saturating_duration_since(sent) <= self.quick {
            self.last.send_replace(now);
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Instant> {
        self.last.subscribe()
    }

    /// The last proof.
    pub fn last(&self) -> Instant {
        *self.last.borrow()
    }

    /// What is left of the deadline now (zero when it has passed): a build started now is given
    /// this long before its first word, not a whole deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.last().elapsed())
    }
}

/// The supervisors' deadline: `configured` (or [`DEFAULT_PERIODS`] heartbeats), but never so
/// long that a frozen drone's build outlives its lease: the lease may expire `lease_ttl` after
/// the last renewal, which is at most `renew_every` before the last word.
pub fn deadline(
    configured: Option<Duration>,
    heartbeat: Duration,
    lease_ttl: Duration,
    renew_every: Duration,
) -> Duration {
    let wanted = configured.unwrap_or(heartbeat * DEFAULT_PERIODS);
    let lease_bound = lease_ttl
        .saturating_sub(lease_ttl / 10)
        .saturating_sub(renew_every);
    wanted.min(lease_bound).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_configured_one_unless_the_lease_is_shorter() {
        let ms = Duration::from_millis;
        let cases = [
            // (configured, heartbeat, ttl, renew) -> deadline
            (None, ms(2_000), ms(30_000), ms(10_000), ms(8_000)),
            (
                Some(ms(5_000)),
                ms(2_000),
                ms(30_000),
                ms(10_000),
                ms(5_000),
            ),
            // 30 s lease renewed every 10 s: 27 s - 10 s bounds it.
            (
                Some(ms(60_000)),
                ms(2_000),
                ms(30_000),
                ms(10_000),
                ms(17_000),
            ),
            // The fault tests' 1.5 s lease renewed every 0.5 s.
            (None, ms(300), ms(1_500), ms(500), ms(850)),
            (None, ms(2_000), ms(100), ms(100), ms(1)),
        ];
        for (configured, heartbeat, ttl, renew, expected) in cases {
            assert_eq!(
                deadline(configured, heartbeat, ttl, renew),
                expected,
                "{configured:?} {heartbeat:?} {ttl:?} {renew:?}"
            );
        }
    }

    #[test]
    fn only_a_quick_answer_is_a_proof() {
        let liveness = Liveness::new(Duration::from_secs(8), Duration::from_secs(2));
        let before = liveness.last();
        // Answered after 5 s (a freeze between the write and its answer): no proof.
        liveness.heard(Instant::now() - Duration::from_secs(5));
        assert_eq!(liveness.last(), before);
        std::thread::sleep(Duration::from_millis(5));
        liveness.heard(Instant::now());
        assert!(liveness.last() > before);
        assert!(liveness.remaining() > Duration::from_millis(7_900));
    }
}
