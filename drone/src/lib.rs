//! A drone: one build machine of the swarm. It pulls jobs by its free slots, claims each with a
//! lease, builds it as a child process group, and reports every step.
//!
//! `service` is the I/O shell around `state` (the drone's mode, slots and decisions, pure);
//! `build` takes one job through its stages; `reporter` publishes every event.

pub mod artifacts;
pub mod build;
pub mod builder;
pub mod classify;
pub mod config;
pub mod disk;
pub mod fingerprint;
pub mod fit;
pub mod health;
pub mod liveness;
pub mod model;
pub mod observer;
pub mod reporter;
pub mod service;
pub mod slots;
pub mod state;
pub mod stopping;
pub mod supervise;
pub mod topology;

pub use config::Config;
pub use observer::{BuildSpan, Observer, Quiet};
pub use service::{DroneError, run, run_observed};
