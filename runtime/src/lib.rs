//! Glue every swarm binary shares: the NATS connection settings and `connect`, layered config
//! loading (defaults < TOML file < `SWARM_` environment), logging setup and the shutdown signal.
//!
//! It exists so that credentials, TLS and config precedence are implemented once; the wire
//! contract stays in `schemas`, which must not depend on an async runtime.

pub mod ack;
pub mod config;
pub mod daemon;
pub mod dates;
pub mod kv;
pub mod logging;
pub mod logs;
pub mod nats;
pub mod service;
pub mod shutdown;
pub mod throttle;

/// Unix time in milliseconds by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
