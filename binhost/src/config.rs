//! The binhost's configuration: `[nats]`, `[log]` and `[binhost]` tables, loaded with
//! `runtime::config::load` and checked by `validate`.

use std::net::SocketAddr;
use std::time::Duration;

use runtime::config::ConfigError;
use serde::{Deserialize, Serialize};

runtime::daemon_config! {
    /// The binhost's configuration: `[nats]`, `[log]` and `[binhost]`.
    pub struct Config { binhost: Settings }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server listens on. The fleet's machines fetch from it: listen where they
    /// can reach it (`0.0.0.0:8090`, or behind a reverse proxy).
    pub listen: String,
    /// On SIGTERM, how long the binhost may take to stop (downloads under way finishing); what
    /// still waits then (for NATS, most likely) is abandoned.
    pub shutdown_grace_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: default_listen(),
            shutdown_grace_ms: 5_000,
        }
    }
}

/// Loopback until told otherwise: which network a binhost serves is the operator's choice.
fn default_listen() -> String {
    "127.0.0.1:8090".to_owned()
}

impl Settings {
    /// Checks every value of the `[binhost]` table; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.shutdown_grace_ms < 100 {
            return Err(ConfigError::invalid(
                "binhost.shutdown_grace_ms",
                "must be at least 100 ms",
            ));
        }
        Ok(())
    }

    /// The longest the binhost takes to exit after SIGTERM: its shutdown grace.
    pub fn stop_within(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|err| {
            ConfigError::invalid(
                "binhost.listen",
                format!(
                    "{:?} is not an address with a port like 127.0.0.1:8090: {err}",
                    self.listen
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_file_documents_every_key_and_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/binhost.toml");
        if let Err(err) = runtime::daemon::check_sample::<Config>(&path) {
            panic!("{err}");
        }
    }

    #[test]
    fn a_listen_address_without_a_port_is_refused_by_name() {
        let settings = Settings {
            listen: "localhost".into(),
            ..Settings::default()
        };
        let err = settings.validate().expect_err("no port");
        assert!(err.to_string().contains("binhost.listen"), "{err}");
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn a_shutdown_grace_too_short_to_stop_cleanly_is_refused_by_name() {
        let settings = Settings {
            shutdown_grace_ms: 99,
            ..Settings::default()
        };
        let err = settings.validate().expect_err("too short");
        assert!(
            err.to_string().contains("binhost.shutdown_grace_ms"),
            "{err}"
        );
        assert_eq!(Settings::default().stop_within().as_millis(), 5_000);
    }
}
