//! The drone's stop, in time. On SIGTERM its running builds get `shutdown_grace_ms` to finish
//! and be reported; then they are handed back (killed, leases released, jobs given back). After
//! the grace the drone has a wind-down of `min(grace, 10 s)` (at least 1 s): the first half for
//! its jobs to be handed back or reported, the second for its goodbye (the `offline` record and
//! event, the flush of what it published). Whatever still waits for NATS then (unreachable, or
//! not answering) is abandoned, its builds killed, and the drone exits: at most
//! [`Stop::exit_by`], `grace + wind-down` after the signal, NATS or not. With NATS there every
//! step takes milliseconds and nothing is abandoned.

use std::time::{Duration, Instant};

/// The shortest wind-down: enough for a hand-back and a goodbye with NATS there.
const MIN_WIND_DOWN: Duration = Duration::from_secs(1);
/// The longest wind-down: a deployment's stop timeout leaves this past the grace (and more).
const MAX_WIND_DOWN: Duration = Duration::from_secs(10);

/// How long after the grace the drone may take to exit.
pub fn wind_down(grace: Duration) -> Duration {
    grace.clamp(MIN_WIND_DOWN, MAX_WIND_DOWN)
}

/// The longest the drone takes to exit after the signal: the grace and the wind-down.
pub fn stop_within(grace: Duration) -> Duration {
    grace + wind_down(grace)
}

/// How long after the signal the drone's jobs still waiting for NATS are abandoned.
pub fn abandon_after(grace: Duration) -> Duration {
    grace + wind_down(grace) / 2
}

/// The instants of one stop, from the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub signalled: Instant,
    pub grace: Duration,
}

impl Stop {
    pub fn new(signalled: Instant, grace: Duration) -> Stop {
        Stop { signalled, grace }
    }

    /// Running builds are handed back from here.
    pub fn hand_back_at(&self) -> Instant {
        self.signalled + self.grace
    }

    /// Jobs still waiting (for NATS) are abandoned from here, their builds killed.
    pub fn abandon_at(&self) -> Instant {
        self.signalled + abandon_after(self.grace)
    }

    /// The drone has exited by here.
    pub fn exit_by(&self) -> Instant {
        self.signalled + stop_within(self.grace)
    }

    /// How long the goodbye begun at `now` may wait: half the wind-down, never past
    /// [`exit_by`](Self::exit_by). A drone whose jobs ended early does not wait for the whole
    /// grace to find NATS unreachable.
    pub fn goodbye_by(&self, now: Instant) -> Instant {
        (now + wind_down(self.grace) / 2).min(self.exit_by())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wind_down_follows_the_grace_within_its_bounds() {
        let ms = Duration::from_millis;
        // (grace, wind-down, abandoned after, exits within)
        let cases = [
            (ms(300_000), ms(10_000), ms(305_000), ms(310_000)),
            (ms(10_000), ms(10_000), ms(15_000), ms(20_000)),
            (ms(4_000), ms(4_000), ms(6_000), ms(8_000)),
            (ms(2_000), ms(2_000), ms(3_000), ms(4_000)),
            (ms(300), ms(1_000), ms(800), ms(1_300)),
            (ms(0), ms(1_000), ms(500), ms(1_000)),
        ];
        for (grace, wind, abandon, within) in cases {
            assert_eq!(wind_down(grace), wind, "{grace:?}");
            assert_eq!(abandon_after(grace), abandon, "{grace:?}");
            assert_eq!(stop_within(grace), within, "{grace:?}");
        }
    }

    #[test]
    fn a_stop_hands_back_then_abandons_then_exits() {
        let now = Instant::now();
        let stop = Stop::new(now, Duration::from_secs(2));
        assert_eq!(stop.hand_back_at(), now + Duration::from_secs(2));
        assert_eq!(stop.abandon_at(), now + Duration::from_secs(3));
        assert_eq!(stop.exit_by(), now + Duration::from_secs(4));
        // A goodbye begun early gets half the wind-down; one begun late, what is left.
        assert_eq!(stop.goodbye_by(now), now + Duration::from_secs(1));
        let late = now + Duration::from_millis(3_500);
        assert_eq!(stop.goodbye_by(late), stop.exit_by());
        // One begun past the end gets nothing more.
        let past = now + Duration::from_secs(5);
        assert_eq!(stop.goodbye_by(past), stop.exit_by());
    }
}
