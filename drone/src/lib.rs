//! A drone: one build machine of the swarm. It pulls jobs by its free slots, claims each with a
//! lease, builds it as a child process group, and reports every step.

pub mod build;
pub mod builder;
pub mod config;
pub mod disk;
pub mod health;
pub mod model;
pub mod probe;
pub mod service;
pub mod supervise;

pub use config::Config;
pub use probe::Probe;
pub use service::{DroneError, run, run_with_probe};
