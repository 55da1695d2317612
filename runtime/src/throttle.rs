//! Keeps hostile or broken input from flooding the log: each kind of refused input is logged at
//! most once per window, and the next line says how many were left unlogged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a kind of refusal stays quiet after it was logged.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Shared by everything that refuses input in one component (it is `Sync`).
#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    kinds: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(DEFAULT_WINDOW)
    }
}

impl Throttle {
    pub fn new(window: Duration) -> Throttle {
        Throttle {
            window,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed since the last line of this kind)` when this occurrence may be logged.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        self.allow_at(kind, Instant::now())
    }

    pub fn allow_at(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        match kinds.get_mut(kind) {
            Some((last, suppressed)) if now.duration_since(*last) < self.window => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                kinds.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_logged_once_per_window_with_the_count_of_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.allow_at("a", start), Some(0));
        assert_eq!(throttle.allow_at("a", start + Duration::from_secs(1)), None);
        assert_eq!(
            throttle.allow_at("b", start + Duration::from_secs(1)),
            Some(0)
        );
        assert_eq!(throttle.allow_at("a", start + Duration::from_secs(2)), None);
        assert_eq!(
            throttle.allow_at("a", start + Duration::from_secs(11)),
            Some(2)
        );
    }
}
