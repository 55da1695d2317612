//! What every daemon (coordinator, drone, dashboard, binhost) shares around its library's `run`:
//! the `[nats]` and `[log]` tables of its configuration, the `--config` and `--check-config`
//! arguments, the start (load and validate the configuration, answer `--check-config`, set up
//! logging and turn SIGTERM/Ctrl-C into the root cancellation token) and the end: a daemon exits
//! within its stop bound ([`DaemonConfig::stop_within`]) after the signal whatever it waits for,
//! and its runtime does not wait for blocking work on the way out.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, SampleError};
use crate::logging::LogConfig;

/// A daemon's configuration: loadable in layers, checkable, with a `[log]` table. Defined with
/// [`daemon_config!`](crate::daemon_config).
pub trait DaemonConfig: Serialize + DeserializeOwned + Default {
    /// Checks every value; the error names the key.
    fn check(&self) -> Result<(), ConfigError>;
    fn log(&self) -> &LogConfig;
    /// The longest the daemon takes to exit after SIGTERM or Ctrl-C, NATS reachable or not.
    fn stop_within(&self) -> Duration;
}

/// Defines a daemon's `Config`: the `[nats]` and `[log]` tables every daemon has, and the
/// daemon's own table, whose type has `validate(&self) -> Result<(), ConfigError>` naming the
/// key and `stop_within(&self) -> Duration` (see [`DaemonConfig::stop_within`]).
/// `Config::validate` checks the connection settings, then the own table; the type is a
/// [`DaemonConfig`].
///
/// ```
/// use swarm_runtime::config::ConfigError;
///
/// #[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
/// #[serde(deny_unknown_fields, default)]
/// pub struct Settings {
///     pub slots: u32,
/// }
///
/// impl Settings {
///     pub fn validate(&self) -> Result<(), ConfigError> {
///         match self.slots {
///             0 => Err(ConfigError::invalid("probe.slots", "must be at least 1")),
///             _ => Ok(()),
///         }
///     }
///
///     pub fn stop_within(&self) -> std::time::Duration {
///         std::time::Duration::from_secs(5)
///     }
/// }
///
/// swarm_runtime::daemon_config! {
///     /// A daemon whose own table is `[probe]`.
///     pub struct Config { probe: Settings }
/// }
///
/// let config = Config::default();
/// assert!(config.validate().is_err());
/// ```
///
/// The three daemons' configurations differ only in the name and type of that table, which a
/// generic struct cannot express: the table's name is the key in the TOML file and in the
/// `SWARM_` variables, so it must be the field's name. The serde derives expand in the calling
/// crate, which therefore depends on `serde`.
#[macro_export]
macro_rules! daemon_config {
    ($(#[$meta:meta])* pub struct $name:ident { $table:ident: $settings:ty }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            pub nats: $crate::nats::NatsConfig,
            pub log: $crate::logging::LogConfig,
            pub $table: $settings,
        }

        impl $name {
            /// Checks every value: the connection settings, then this daemon's own table. The
            /// error names the key.
            pub fn validate(&self) -> Result<(), $crate::config::ConfigError> {
                self.nats.validate()?;
                self.$table.validate()
            }
        }

        impl $crate::daemon::DaemonConfig for $name {
            fn check(&self) -> Result<(), $crate::config::ConfigError> {
                self.validate()
            }

            fn log(&self) -> &$crate::logging::LogConfig {
                &self.log
            }

            fn stop_within(&self) -> std::time::Duration {
                self.$table.stop_within()
            }
        }
    };
}

/// For a test of a daemon's sample config file: it names every key and nothing else
/// ([`load_sample`](crate::config::load_sample)), and passes the daemon's check as it is.
pub fn check_sample<C: DaemonConfig>(path: &Path) -> Result<C, SampleError> {
    let config: C = crate::config::load_sample(path)?;
    config.check().map_err(|source| SampleError::Load {
        path: path.to_owned(),
        source,
    })?;
    Ok(config)
}

// The arguments every daemon takes, added to the binary's own command (its name, version and
// description) by `run`. A plain comment, not a doc comment: clap would take a doc comment for
// the binary's description.
#[derive(Debug, Clone, Default, clap::Args)]
struct DaemonArgs {
    /// TOML config file; `SWARM_` environment variables override it.
    #[arg(long, env = "SWARM_CONFIG")]
    config: Option<PathBuf>,
    /// Load and validate the configuration, then exit.
    #[arg(long)]
    check_config: bool,
}

/// Why a daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError<E> {
    /// The configuration does not load or is invalid; nothing was started. The message is a
    /// headline: what is wrong, naming the key, is the source that follows it.
    #[error("configuration")]
    Config(#[source] ConfigError),
    /// The daemon's library returned an error.
    #[error(transparent)]
    Run(E),
    /// The daemon did not stop within its bound after the signal (something on its way out
    /// ignored the bound): it exits anyway.
    #[error("did not stop within {} ms of the signal", .0.as_millis())]
    Overdue(Duration),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// How long past its stop bound a daemon is given before its last resort: the bound is kept by
/// the daemon's own shutdown path, which logs what it abandoned; this is for a wait it missed.
const LAST_RESORT_SLACK: Duration = Duration::from_secs(1);
/// How long the runtime waits, once the daemon has returned, for blocking work it left behind
/// (a host name lookup that hangs on an unreachable DNS server, a file being hashed).
const BLOCKING_WAIT: Duration = Duration::from_millis(500);

/// Loads and checks the configuration. With `check_only` it prints that the configuration is
/// valid and how long the daemon takes to stop, and returns `None`; otherwise it installs
/// logging and the signal handler (so it must run inside the tokio runtime) and returns the
/// configuration with the root token.
fn start<C: DaemonConfig>(
    config_path: Option<&Path>,
    check_only: bool,
) -> Result<Option<(C, CancellationToken)>, ConfigError> {
    let config: C = crate::config::load(config_path)?;
    config.check()?;
    if check_only {
        // The bound a service manager's stop timeout must leave (the tests check deploy/'s).
        println!("configuration is valid");
        println!(
            "stops within {} ms of SIGTERM",
            config.stop_within().as_millis()
        );
        return Ok(None);
    }
    crate::logging::init(config.log());
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signal(shutdown.clone());
    Ok(Some((config, shutdown)))
}

/// A daemon's process: [`run`] on a multi-threaded runtime, which is then shut down without
/// waiting more than a moment for blocking work left behind (a runtime dropped the usual way
/// waits for it without end).
pub fn main<C, F, Fut, E>(command: clap::Command, run: F) -> Result<(), DaemonError<E>>
where
    C: DaemonConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let result = runtime.block_on(self::run(command, run));
    runtime.shutdown_timeout(BLOCKING_WAIT);
    result
}

/// A daemon's whole life: parses the process's arguments for `command` (made by the binary
/// with `clap::command!()`, so that `--help` and `--version` are its own) with `--config` and
/// `--check-config` added, then [`start`]s, then runs the daemon's library with the
/// configuration and the root token until that returns. A usage error ends the process the way
/// clap does (the message, and exit status 2). As a last resort, a library still running a
/// second past its [`stop_within`](DaemonConfig::stop_within) after the signal is abandoned
/// ([`DaemonError::Overdue`]).
pub async fn run<C, F, Fut, E>(command: clap::Command, run: F) -> Result<(), DaemonError<E>>
where
    C: DaemonConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    use clap::{Args, FromArgMatches};
    let matches = DaemonArgs::augment_args(command).get_matches();
    let args = DaemonArgs::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let started =
        start::<C>(args.config.as_deref(), args.check_config).map_err(DaemonError::Config)?;
    let Some((config, shutdown)) = started else {
        return Ok(());
    };
    let bound = config.stop_within();
    let last_resort = bound + LAST_RESORT_SLACK;
    match crate::shutdown::within_grace(&shutdown, last_resort, run(config, shutdown.clone())).await
    {
        Some(result) => result.map_err(DaemonError::Run),
        None => {
            tracing::error!(
                stop_within_ms = bound.as_millis() as u64,
                "did not stop within {} ms of the signal: exiting, abandoning whatever it still waited for",
                last_resort.as_millis()
            );
            Err(DaemonError::Overdue(last_resort))
        }
    }
}

#[cfg(test)]
// figment's `Jail` closures return its large error type; that is fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use clap::FromArgMatches;
    use serde::Deserialize;

    use super::*;

    crate::daemon_config! {
        /// A daemon whose own table is `[probe]`.
        pub struct ProbeConfig { probe: Probe }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Probe {
        slots: u32,
    }

    impl Default for Probe {
        fn default() -> Self {
            Probe { slots: 1 }
        }
    }

    impl Probe {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.slots == 0 {
                return Err(ConfigError::invalid("probe.slots", "must be at least 1"));
            }
            Ok(())
        }

        fn stop_within(&self) -> Duration {
            Duration::from_millis(u64::from(self.slots))
        }
    }

    #[test]
    fn a_daemon_config_checks_the_connection_then_its_own_table() {
        let mut config = ProbeConfig::default();
        assert!(config.check().is_ok());
        config.probe.slots = 0;
        let err = config.check().expect_err("no slots");
        assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "probe.slots"));
        config.nats.url = " ".into();
        let err = config.validate().expect_err("no url");
        assert!(matches!(&err, ConfigError::Invalid { key, .. } if key.starts_with("nats")));
    }

    #[test]
    fn a_sample_must_also_pass_the_daemon_s_check() {
        figment::Jail::expect_with(|jail| {
            // Every key commented out under its table, but the one each file sets.
            let mut keys = String::new();
            let mut table = String::new();
            for key in crate::config::config_keys::<ProbeConfig>() {
                let (key_table, name) = key.rsplit_once('.').expect("a table");
                if key_table != table {
                    table = key_table.to_owned();
                    keys.push_str(&format!("[{table}]\n"));
                }
                if key != "probe.slots" {
                    keys.push_str(&format!("# {name} = 0\n"));
                }
            }
            jail.create_file("good.toml", &format!("{keys}slots = 2\n"))?;
            jail.create_file("bad.toml", &format!("{keys}slots = 0\n"))?;
            let config: ProbeConfig =
                check_sample(Path::new("good.toml")).map_err(|e| e.to_string())?;
            assert_eq!(config.probe.slots, 2);
            let err = check_sample::<ProbeConfig>(Path::new("bad.toml")).expect_err("invalid");
            assert!(
                matches!(&err, SampleError::Load { source: ConfigError::Invalid { key, .. }, .. }
                    if key == "probe.slots"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn the_daemon_arguments_keep_the_binary_s_description() {
        use clap::Args;
        let command = DaemonArgs::augment_args(clap::Command::new("daemon").about("a daemon"));
        command.clone().debug_assert();
        assert_eq!(
            command.get_about().map(|about| about.to_string()),
            Some("a daemon".to_owned())
        );
        let matches = command
            .try_get_matches_from(["daemon", "--config", "d.toml", "--check-config"])
            .expect("parses");
        let args = DaemonArgs::from_arg_matches(&matches).expect("arguments");
        assert_eq!(args.config, Some(PathBuf::from("d.toml")));
        assert!(args.check_config);
    }
}
