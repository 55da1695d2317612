//! Layered configuration: a binary's defaults, then a TOML file, then environment variables with
//! the `SWARM_` prefix where `__` separates nesting levels (`SWARM_NATS__URL`,
//! `SWARM_DRONE__CORES`). Unknown keys are refused by each config type's
//! `#[serde(deny_unknown_fields)]`, and the error names the key.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Serialize, de::DeserializeOwned};

pub const ENV_PREFIX: &str = "SWARM_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist")]
    FileMissing { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The figment for a config type: defaults < file < environment. Exposed so tests (and
/// `--check-config`) can inspect the layers.
pub fn figment<T: Serialize + Default>(file: Option<&Path>) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment.merge(Env::prefixed(ENV_PREFIX).split("__"))
}

/// Loads a config type from its layers. A named file that does not exist is an error: a typo in
/// `--config` must not silently fall back to defaults.
pub fn load<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
) -> Result<T, ConfigError> {
    if let Some(path) = file
        && !path.exists()
    {
        return Err(ConfigError::FileMissing {
            path: path.to_owned(),
        });
    }
    figment::<T>(file)
        .extract()
        .map_err(|err| ConfigError::Load(Box::new(err)))
}
