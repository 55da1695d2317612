//! What the benchmark measures in the drones it runs in its own process: how long each slot
//! stayed free between one build's end and the next build's start, and when each build ran and
//! how many slots it took. The drone knows it only as an `Observer`.

use std::sync::Mutex;
use std::time::Duration;

use drone::{BuildSpan, Observer};

#[derive(Debug, Default)]
pub struct Probe {
    slot_gaps: Mutex<Vec<Duration>>,
    spans: Mutex<Vec<BuildSpan>>,
}

impl Probe {
    pub fn new() -> Probe {
        Probe::default()
    }

    /// Every build span recorded since the last call.
    pub fn take_builds(&self) -> Vec<BuildSpan> {
        self.spans
            .lock()
            .map(|mut spans| std::mem::take(&mut *spans))
            .unwrap_or_default()
    }

    /// Every gap recorded since the last call.
    pub fn take_slot_gaps(&self) -> Vec<Duration> {
        self.slot_gaps
            .lock()
            .map(|mut gaps| std::mem::take(&mut *gaps))
            .unwrap_or_default()
    }
}

impl Observer for Probe {
    fn slot_filled(&self, gap: Duration) {
        if let Ok(mut gaps) = self.slot_gaps.lock() {
            gaps.push(gap);
        }
    }

    fn build_ended(&self, span: BuildSpan) {
        if let Ok(mut spans) = self.spans.lock() {
            spans.push(span);
        }
    }
}
