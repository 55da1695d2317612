//! `swarmctl`'s configuration: the `[nats]` and `[log]` tables, from defaults < the `--config`
//! TOML file < `SWARM_` environment variables (`SWARM_NATS__URL`, `SWARM_LOG__FORMAT`).

use std::path::Path;

use runtime::logging::LogConfig;
use runtime::nats::NatsConfig;
use serde::{Deserialize, Serialize};

use crate::CliError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub nats: NatsConfig,
    pub log: LogConfig,
}

impl Config {
    /// Loads and validates the layers; a named file that does not exist is an error.
    pub fn load(file: Option<&Path>) -> Result<Config, CliError> {
        let config: Config = runtime::config::load(file)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), CliError> {
        self.nats.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::Jail;

    use super::*;

    /// `config/swarmctl.toml` names every key of this binary's configuration (set, or commented out
    /// at its default) and nothing else, and loads and validates as it is.
    #[test]
    fn the_sample_file_documents_every_key_and_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/swarmctl.toml");
        let config: Config = runtime::config::load_sample(&path).unwrap_or_else(|e| panic!("{e}"));
        config.nats.validate().expect("the sample is valid");
    }

    // figment's `Jail` closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    #[test]
    fn layers_and_unknown_keys() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "swarmctl.toml",
                "[nats]\nurl = \"nats://file:4222\"\n[log]\nformat = \"json\"\n",
            )?;
            let config =
                Config::load(Some(Path::new("swarmctl.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.nats.url, "nats://file:4222");
            assert_eq!(config.log.format, runtime::logging::LogFormat::Json);

            jail.set_env("SWARM_NATS__URL", "nats://env:4222");
            let config =
                Config::load(Some(Path::new("swarmctl.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.nats.url, "nats://env:4222");

            jail.create_file("typo.toml", "[nats]\nulr = \"nats://x:4222\"\n")?;
            let err = Config::load(Some(Path::new("typo.toml"))).expect_err("unknown key");
            assert!(matches!(err, CliError::Config(_)), "{err:?}");
            assert!(err.to_string().contains("ulr"), "{err}");

            jail.create_file("drone.toml", "[drone]\nname = \"x\"\n")?;
            let err = Config::load(Some(Path::new("drone.toml"))).expect_err("unknown table");
            assert!(matches!(err, CliError::Config(_)), "{err:?}");

            let err = Config::load(Some(Path::new("absent.toml"))).expect_err("missing file");
            assert!(matches!(
                err,
                CliError::Config(runtime::config::ConfigError::FileMissing { .. })
            ));

            jail.set_env("SWARM_NATS__URL", " ");
            let err = Config::load(None).expect_err("empty url");
            assert!(matches!(
                err,
                CliError::Config(runtime::config::ConfigError::Invalid { .. })
            ));
            Ok(())
        });
    }
}
