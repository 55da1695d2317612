//! The coordinator's configuration: `[nats]`, `[log]` and `[coordinator]` tables, loaded with
//! `runtime::config::load` and checked by `validate`.

use std::time::Duration;

use runtime::config::ConfigError;
use schemas::Arch;
use serde::{Deserialize, Serialize};

runtime::daemon_config! {
    /// The coordinator's configuration: `[nats]`, `[log]` and `[coordinator]`.
    pub struct Config { coordinator: Settings }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    File,
    Memory,
}

/// The order in which queued packages are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// `LongestFirst`, and for a run with build dependencies, by its graph: a job's priority is
    /// its critical path (its own estimate and the longest chain of work waiting on it), and
    /// the critical path goes to the largest drone that takes big builds (`schedule::place`).
    CriticalPath,
    /// Each submission's jobs in order of their estimates, longest first, with jobs too long for
    /// any drone's slot queued apart for the drones that take big builds; a graph only releases
    /// jobs, their order is their own estimates'.
    LongestFirst,
    /// Submission order, nothing queued apart.
    Fifo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// This coordinator's name, shown as the leader (`swarmctl status`, the dashboard). Unset:
    /// the host name and the process id.
    pub name: Option<String>,
    /// Lifetime of the leader's lease: a standby coordinator takes the lead at most this long
    /// (and a tenth) after the leader's last renewal, which happens every third of it.
    pub leader_ttl_ms: u64,
    /// Arches the swarm builds for; one consumer is created per arch. The first is the default
    /// for submissions that name none.
    pub arches: Vec<Arch>,
    /// Builds of one package before it ends `failed`.
    pub max_attempts: u32,
    /// Wait before the first retry of a failed package; doubled for each further retry.
    pub retry_backoff_ms: u64,
    /// Upper bound of the retry wait.
    pub retry_backoff_max_ms: u64,
    /// Lifetime of an unrenewed build lease (the leases bucket's max age). Drones renew every
    /// third of it.
    pub lease_ttl_ms: u64,
    /// JetStream AckWait of the builders' consumer: a job whose drone went silent for this long
    /// is delivered again. Must be at least the lease TTL.
    pub ack_wait_ms: u64,
    /// Deliveries of one job before it is dead-lettered.
    pub max_deliver: i64,
    /// How often the reconciler compares package state with the work stream and the leases.
    pub reconcile_interval_ms: u64,
    /// JetStream storage of every stream and bucket: `file` (durable) or `memory`.
    pub storage: Storage,
    /// Replicas of every stream and bucket (1, or 3 on a NATS cluster).
    pub replicas: usize,
    /// How long status events are kept.
    pub events_max_age_secs: u64,
    /// How long the build history (`swarmctl history`) is kept.
    pub history_max_age_secs: u64,
    /// Build history entries kept per package (its newest ones).
    pub history_per_package: i64,
    /// How long build logs are kept: the complete logs (`swarmctl logs`) and the live ones.
    pub log_retention_secs: u64,
    /// Window in which a re-published job with the same message id is dropped as a duplicate.
    pub duplicate_window_ms: u64,
    /// Order of the queue: `longest-first` or `fifo`.
    pub schedule: Schedule,
    /// Publish an arch's binhost by itself when its run has ended with no new failure.
    pub binhost_auto_publish: bool,
    /// Published revisions kept per binhost (arch and fingerprint, for rollback); older ones
    /// are dropped, and the binary packages only they referenced are deleted.
    pub binhost_keep_revisions: usize,
    /// A stored binary package referenced by nothing is deleted only once it is this old: a
    /// build that just stored it may not have reported it yet.
    pub binhost_gc_grace_secs: u64,
    /// On SIGTERM, how long the coordinator may take to stop: a step still waiting for NATS
    /// then is abandoned (a later coordinator redoes it from the streams and buckets).
    pub shutdown_grace_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: None,
            leader_ttl_ms: 5_000,
            arches: vec![Arch::default()],
            max_attempts: 3,
            retry_backoff_ms: 30_000,
            retry_backoff_max_ms: 600_000,
            lease_ttl_ms: 30_000,
            ack_wait_ms: 60_000,
            max_deliver: 10,
            reconcile_interval_ms: 5_000,
            storage: Storage::File,
            replicas: 1,
            events_max_age_secs: 7 * 24 * 3600,
            history_max_age_secs: 365 * 24 * 3600,
            history_per_package: 1_000,
            log_retention_secs: 14 * 24 * 3600,
            duplicate_window_ms: 120_000,
            schedule: Schedule::CriticalPath,
            binhost_auto_publish: true,
            binhost_keep_revisions: 5,
            binhost_gc_grace_secs: 3_600,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Settings {
    /// Checks every value of the `[coordinator]` table; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.leader_ttl_ms < 300 {
            return Err(ConfigError::invalid(
                "coordinator.leader_ttl_ms",
                "must be at least 300 ms",
            ));
        }
        if let Some(name) = &self.name
            && (name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(ConfigError::invalid(
                "coordinator.name",
                format!("{name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
            ));
        }
        if self.arches.is_empty() {
            return Err(ConfigError::invalid(
                "coordinator.arches",
                "name at least one arch",
            ));
        }
        if self.history_per_package < 1 {
            return Err(ConfigError::invalid(
                "coordinator.history_per_package",
                "must be at least 1",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "coordinator.max_attempts",
                "must be at least 1",
            ));
        }
        if self.lease_ttl_ms < 100 {
            return Err(ConfigError::invalid(
                "coordinator.lease_ttl_ms",
                "must be at least 100 ms",
            ));
        }
        if self.ack_wait_ms < self.lease_ttl_ms {
            return Err(ConfigError::invalid(
                "coordinator.ack_wait_ms",
                format!(
                    "must be at least coordinator.lease_ttl_ms ({} ms), or jobs are re-delivered while their lease is alive",
                    self.lease_ttl_ms
                ),
            ));
        }
        if self.max_deliver < 2 {
            return Err(ConfigError::invalid(
                "coordinator.max_deliver",
                "must be at least 2 so a job survives one lost drone",
            ));
        }
        if self.retry_backoff_max_ms < self.retry_backoff_ms {
            return Err(ConfigError::invalid(
                "coordinator.retry_backoff_max_ms",
                "must be at least coordinator.retry_backoff_ms",
            ));
        }
        if self.reconcile_interval_ms < 50 {
            return Err(ConfigError::invalid(
                "coordinator.reconcile_interval_ms",
                "must be at least 50 ms",
            ));
        }
        if self.binhost_keep_revisions == 0 {
            return Err(ConfigError::invalid(
                "coordinator.binhost_keep_revisions",
                "must be at least 1: the current revision is always kept",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::invalid(
                "coordinator.replicas",
                "must be between 1 and 5",
            ));
        }
        if self.duplicate_window_ms < 100 {
            return Err(ConfigError::invalid(
                "coordinator.duplicate_window_ms",
                "must be at least 100 ms",
            ));
        }
        if self.shutdown_grace_ms < 100 {
            return Err(ConfigError::invalid(
                "coordinator.shutdown_grace_ms",
                "must be at least 100 ms",
            ));
        }
        Ok(())
    }

    pub fn leader_ttl(&self) -> Duration {
        Duration::from_millis(self.leader_ttl_ms)
    }

    /// The configured name, or `<host>-<pid>`.
    pub fn effective_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "coordinator".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    /// The longest the coordinator takes to exit after SIGTERM: its shutdown grace.
    pub fn stop_within(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
// figment's `Jail` closures return its large error type; that is fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    /// `config/coordinator.toml` names every key of this binary's configuration (set, or commented out
    /// at its default) and nothing else, and loads and validates as it is.
    #[test]
    fn the_sample_file_documents_every_key_and_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/coordinator.toml");
        if let Err(err) = runtime::daemon::check_sample::<Config>(&path) {
            panic!("{err}");
        }
    }

    #[test]
    fn defaults_validate() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn layers_file_then_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[coordinator]\nmax_attempts = 5\nlease_ttl_ms = 900\nack_wait_ms = 1000\n[nats]\nurl = \"nats://file:1\"\n",
            )?;
            jail.set_env("SWARM_NATS__URL", "nats://env:2");
            jail.set_env("SWARM_COORDINATOR__RETRY_BACKOFF_MS", "250");
            let config: Config = runtime::config::load(Some(std::path::Path::new("c.toml")))
                .map_err(|e| e.to_string())?;
            assert_eq!(config.coordinator.max_attempts, 5);
            assert_eq!(config.coordinator.lease_ttl_ms, 900);
            assert_eq!(config.coordinator.retry_backoff_ms, 250);
            assert_eq!(config.nats.url, "nats://env:2");
            assert!(config.validate().is_ok());
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[coordinator]\nmax_atempts = 5\n")?;
            let err = runtime::config::load::<Config>(Some(std::path::Path::new("c.toml")))
                .expect_err("unknown key");
            assert!(err.to_string().contains("max_atempts"), "{err}");
            jail.create_file(
                "d.toml",
                "[coordinator]\nlease_ttl_ms = 5000\nack_wait_ms = 1000\n",
            )?;
            let config: Config = runtime::config::load(Some(std::path::Path::new("d.toml")))
                .map_err(|e| e.to_string())?;
            let err = config.validate().expect_err("ack wait below ttl");
            assert!(err.to_string().contains("coordinator.ack_wait_ms"), "{err}");
            jail.create_file("e.toml", "[coordinator]\nshutdown_grace_ms = 50\n")?;
            let config: Config = runtime::config::load(Some(std::path::Path::new("e.toml")))
                .map_err(|e| e.to_string())?;
            let err = config.validate().expect_err("grace too short");
            assert!(
                err.to_string().contains("coordinator.shutdown_grace_ms"),
                "{err}"
            );
            Ok(())
        });
    }
}
