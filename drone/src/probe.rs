//! Measurements a benchmark (or a test) can take from a drone running in its process: how long
//! each slot stayed free between one build's end and the next build's start, and when each build
//! ran and how many slots it took. A drone started with [`crate::run`] has no probe and records
//! nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Probe {
    slot_gaps: Mutex<Vec<Duration>>,
    spans: Mutex<Vec<BuildSpan>>,
}

/// One build's process, from its start to its exit.
#[derive(Debug, Clone)]
pub struct BuildSpan {
    pub atom: String,
    pub start: Instant,
    pub end: Instant,
    /// Slots the build took.
    pub slots: usize,
    /// Cores it was given.
    pub jobs: u32,
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

    pub fn record_build(&self, span: BuildSpan) {
        if let Ok(mut spans) = self.spans.lock() {
            spans.push(span);
        }
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
