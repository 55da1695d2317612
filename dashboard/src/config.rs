//! The dashboard's configuration: `[nats]`, `[log]` and `[dashboard]` tables, loaded with
//! `runtime::config::load` and checked by `validate`.

use std::net::SocketAddr;
use std::time::Duration;

use runtime::config::ConfigError;
use serde::{Deserialize, Serialize};

runtime::daemon_config! {
    /// The dashboard's configuration: `[nats]`, `[log]` and `[dashboard]`.
    pub struct Config { dashboard: Settings }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: String,
    /// How often changes are pushed to the page, coalesced.
    pub tick_ms: u64,
    /// How often the event stream's position is polled, for the fold lag and `/healthz`.
    pub stream_poll_ms: u64,
    /// Build failures kept for the page's list of recent failures.
    pub failures_kept: usize,
    /// On SIGTERM, how long the dashboard may take to stop; what still waits then (for NATS,
    /// most likely) is abandoned.
    pub shutdown_grace_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: default_listen(),
            tick_ms: default_tick_ms(),
            stream_poll_ms: default_stream_poll_ms(),
            failures_kept: default_failures_kept(),
            shutdown_grace_ms: 5_000,
        }
    }
}

/// Loopback only: the dashboard has no authentication, so exposing it is a deliberate choice
/// (`0.0.0.0:8080`, or a reverse proxy in front).
fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

/// Four pushes a second: live to the eye, cheap for 50 drones.
fn default_tick_ms() -> u64 {
    250
}

/// Once a second: the lag is an operator's figure, not a control loop.
fn default_stream_poll_ms() -> u64 {
    1_000
}

/// A screenful of failures with their log tails.
fn default_failures_kept() -> usize {
    20
}

impl Settings {
    /// Checks every value of the `[dashboard]` table; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !(20..=10_000).contains(&self.tick_ms) {
            return Err(ConfigError::invalid(
                "dashboard.tick_ms",
                format!("must be between 20 and 10000, not {}", self.tick_ms),
            ));
        }
        if !(100..=60_000).contains(&self.stream_poll_ms) {
            return Err(ConfigError::invalid(
                "dashboard.stream_poll_ms",
                format!("must be between 100 and 60000, not {}", self.stream_poll_ms),
            ));
        }
        if !(1..=1_000).contains(&self.failures_kept) {
            return Err(ConfigError::invalid(
                "dashboard.failures_kept",
                format!("must be between 1 and 1000, not {}", self.failures_kept),
            ));
        }
        if self.shutdown_grace_ms < 100 {
            return Err(ConfigError::invalid(
                "dashboard.shutdown_grace_ms",
                "must be at least 100 ms",
            ));
        }
        Ok(())
    }

    /// The longest the dashboard takes to exit after SIGTERM: its shutdown grace.
    pub fn stop_within(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|err| {
            ConfigError::invalid(
                "dashboard.listen",
                format!(
                    "{:?} is not an address with a port like 127.0.0.1:8080: {err}",
                    schemas::shorten(&self.listen, 100)
                ),
            )
        })
    }
}

#[cfg(test)]
// figment's `Jail` closures return its large error type; that is fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;
    use std::path::Path;

    /// `config/dashboard.toml` names every key of this binary's configuration (set, or commented out
    /// at its default) and nothing else, and loads and validates as it is.
    #[test]
    fn the_sample_file_documents_every_key_and_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/dashboard.toml");
        if let Err(err) = runtime::daemon::check_sample::<Config>(&path) {
            panic!("{err}");
        }
    }

    #[test]
    fn defaults_validate() {
        let config = Config::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.dashboard.listen, "127.0.0.1:8080");
    }

    #[test]
    fn layers_file_then_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "d.toml",
                "[dashboard]\nlisten = \"0.0.0.0:9000\"\ntick_ms = 500\n[nats]\nurl = \"nats://file:1\"\n",
            )?;
            jail.set_env("SWARM_DASHBOARD__LISTEN", "127.0.0.1:9100");
            jail.set_env("SWARM_NATS__URL", "nats://env:2");
            // Another binary's variables in the same shell do not matter.
            jail.set_env("SWARM_DRONE__NAME", "drone-Izar");
            let config: Config =
                runtime::config::load(Some(Path::new("d.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.dashboard.listen, "127.0.0.1:9100");
            assert_eq!(config.dashboard.tick_ms, 500);
            assert_eq!(config.nats.url, "nats://env:2");
            assert!(config.validate().is_ok());
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("d.toml", "[dashboard]\nlisten_addr = \"x\"\n")?;
            let err = runtime::config::load::<Config>(Some(Path::new("d.toml")))
                .expect_err("unknown key");
            assert!(err.to_string().contains("listen_addr"), "{err}");
            jail.set_env("SWARM_DASHBOARD__LISTEN", "localhost");
            let config: Config = runtime::config::load(None).map_err(|e| e.to_string())?;
            let err = config.validate().expect_err("no port");
            assert!(
                matches!(err, ConfigError::Invalid { ref key, .. } if key == "dashboard.listen")
            );
            assert!(err.to_string().contains("\"localhost\""), "{err}");
            jail.set_env("SWARM_DASHBOARD__LISTEN", "127.0.0.1:1");
            jail.set_env("SWARM_DASHBOARD__TICK_MS", "5");
            let config: Config = runtime::config::load(None).map_err(|e| e.to_string())?;
            let err = config.validate().expect_err("tick too short");
            assert!(
                matches!(err, ConfigError::Invalid { ref key, .. } if key == "dashboard.tick_ms")
            );
            jail.set_env("SWARM_DASHBOARD__TICK_MS", "250");
            jail.set_env("SWARM_DASHBOARD__SHUTDOWN_GRACE_MS", "0");
            let config: Config = runtime::config::load(None).map_err(|e| e.to_string())?;
            let err = config.validate().expect_err("no grace");
            assert!(
                matches!(err, ConfigError::Invalid { ref key, .. } if key == "dashboard.shutdown_grace_ms")
            );
            Ok(())
        });
    }
}
