//! Measurements a benchmark (or a test) can take from a drone running in its process: how long
//! each slot stayed free between one build's end and the next build's start. A drone started
//! with [`crate::run`] has no probe and records nothing.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Probe {
    slot_gaps: Mutex<Vec<Duration>>,
}

impl Probe {
    pub fn new() -> Probe {
        Probe::default()
    }

    /// A slot freed `gap` ago and a build has just started in it.
    pub fn record_slot_gap(&self, gap: Duration) {
        if let Ok(mut gaps) = self.slot_gaps.lock() {
            gaps.push(gap);
        }
    }

    /// Every gap recorded since the last call.
    pub fn take_slot_gaps(&self) -> Vec<Duration> {
        self.slot_gaps
            .lock()
            .map(|mut gaps| std::mem::take(&mut *gaps))
            .unwrap_or_default()
    }
}
