//! How a measurement hooks into a running drone without the drone knowing what measures it: the
//! build path calls an [`Observer`] at two moments (a build starts in a freed slot; a build's
//! process ends), and a drone started with [`crate::run`] has the [`Quiet`] one, which does
//! nothing. The benchmark implements the trait for its own probe and starts drones with
//! [`crate::run_observed`].

use std::time::{Duration, Instant};

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

/// Receives what the drone's slots did. Both methods are called from build tasks, so they must
/// be cheap and must not block.
pub trait Observer: Send + Sync {
    /// A build has just started in a slot that had been free for `gap`.
    fn slot_filled(&self, gap: Duration) {
        let _ = gap;
    }

    /// A build's process has ended.
    fn build_ended(&self, span: BuildSpan) {
        let _ = span;
    }
}

/// The production drone's observer: measures nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {}
