//! The start every daemon's `main` shares: load and validate the configuration, answer
//! `--check-config`, set up logging and turn SIGTERM/Ctrl-C into the root cancellation token.

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::logging::LogConfig;

/// A daemon's configuration: loadable in layers, checkable, with a `[log]` table.
pub trait DaemonConfig: Serialize + DeserializeOwned + Default {
    /// Checks every value; the error names the key.
    fn check(&self) -> Result<(), ConfigError>;
    fn log(&self) -> &LogConfig;
}

/// Loads and checks the configuration. With `check_only` it prints that the configuration is
/// valid and returns `None`; otherwise it installs logging and the signal handler (so it must run
/// inside the tokio runtime) and returns the configuration with the root token.
pub fn start<C: DaemonConfig>(
    config_path: Option<&Path>,
    check_only: bool,
) -> Result<Option<(C, CancellationToken)>, ConfigError> {
    let config: C = crate::config::load(config_path)?;
    config.check()?;
    if check_only {
        println!("configuration is valid");
        return Ok(None);
    }
    crate::logging::init(config.log());
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signal(shutdown.clone());
    Ok(Some((config, shutdown)))
}
