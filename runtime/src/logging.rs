//! Logging setup: `RUST_LOG` (or the config's filter) chooses what is logged, the config chooses
//! human-readable text or JSON lines.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: default_filter(),
        }
    }
}

/// Our own crates at info, dependencies at warn: async-nats is chatty at info on reconnects.
fn default_filter() -> String {
    "warn,swarm_coordinator=info,swarm_drone=info,swarm_dashboard=info,swarm_binhost=info,swarmctl=info,swarm_runtime=info"
        .to_owned()
}

/// Installs the global subscriber, writing to stderr. Safe to call more than once (later calls
/// are ignored), which in-process tests rely on.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
