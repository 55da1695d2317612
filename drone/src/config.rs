//! The drone's configuration: `[nats]`, `[log]` and `[drone]` tables, loaded with
//! `runtime::config::load` and checked by `validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use runtime::config::ConfigError;
use schemas::{Arch, DroneName};
use serde::{Deserialize, Serialize};

runtime::daemon_config! {
    /// The drone's configuration: `[nats]`, `[log]` and `[drone]`.
    pub struct Config { drone: Settings }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderKind {
    /// `command` with `{atom}` replaced by the atom, as one argument.
    Command,
    /// `emerge --oneshot --buildpkg --usepkg --getbinpkg --usepkg-exclude <package> ...
    /// <emerge_args...> <atom>` (see `builder::emerge_template`).
    Emerge,
    /// No process: sleeps for a modelled time and fails with a set probability.
    Simulate,
}

/// Portage's binary package formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinpkgFormat {
    /// GLEP 78 (`.gpkg.tar`), Portage's default.
    Gpkg,
    /// The older XPAK format (`.tbz2`).
    Xpak,
}

impl BinpkgFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BinpkgFormat::Gpkg => "gpkg",
            BinpkgFormat::Xpak => "xpak",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Simulate {
    /// Multiplies every modelled duration: 0.01 runs a 100-second build in one second.
    pub time_scale: f64,
    /// Probability in [0, 1] that a build fails.
    pub failure_rate: f64,
    /// Modelled time on an 8-core slot for jobs that carry no estimate.
    pub default_estimate_secs: f64,
    /// A workload model: a TSV file of `atom<TAB>seconds on 8 cores` lines (`#` comments and
    /// further columns ignored), such as `world-152.tsv`. When set, a package listed there
    /// takes its modelled time whatever the job says, so the coordinator's estimates can be
    /// tested against a truth they do not know.
    pub model_file: Option<PathBuf>,
    /// Write a small, valid gpkg into `drone.pkgdir` for every successful simulated build, stored
    /// and published like a real one (the demo does, so it ends with a binhost).
    pub binpkgs: bool,
}

impl Default for Simulate {
    fn default() -> Self {
        Simulate {
            time_scale: 1.0,
            failure_rate: 0.0,
            default_estimate_secs: 60.0,
            model_file: None,
            binpkgs: false,
        }
    }
}

/// Where a drone's fingerprint comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FingerprintSource {
    /// Portage says: `portageq envvar` (CHOST and the settings that change packages), the
    /// `make.profile` link, the gentoo repository's `metadata/timestamp.chk`.
    Portage,
    /// The `[drone.fingerprint]` values below (drones that do not run Portage: demos, tests).
    Config,
}

/// The `[drone.fingerprint]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintSettings {
    /// Unset: `portage` for the `emerge` builder, `config` for the others.
    pub source: Option<FingerprintSource>,
    /// With `source = "config"`: the CHOST, profile and settings (make.conf names and values)
    /// the drone's builds use.
    pub chost: String,
    pub profile: String,
    pub settings: BTreeMap<String, String>,
    /// With `source = "config"`: a file holding the tree's timestamp as `timestamp.chk` does
    /// (`Mon, 02 Dec 2026 00:45:01 +0000`); unset: unknown.
    pub tree_timestamp_file: Option<PathBuf>,
    /// How often the fingerprint is taken again (a synced tree, a changed make.conf).
    pub refresh_ms: u64,
}

impl Default for FingerprintSettings {
    fn default() -> Self {
        FingerprintSettings {
            source: None,
            chost: "x86_64-pc-linux-gnu".to_owned(),
            profile: "default/linux/amd64/23.0".to_owned(),
            settings: BTreeMap::new(),
            tree_timestamp_file: None,
            refresh_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The drone's name: a subject token, so ASCII letters, digits and '-'. Defaults to the
    /// host name.
    pub name: String,
    /// Cores this drone gives to builds.
    pub cores: u32,
    /// Builds run at once; 0 means one per 4 cores. Each build gets `MAKEOPTS=-j<cores/slots>`.
    pub slots: u32,
    /// Whether this drone takes big builds: jobs the coordinator judged too long for one slot
    /// of any drone. A big build gets every slot and `MAKEOPTS=-j<cores>`; while one is queued
    /// the drone takes no other work until it is free to start it. Unset: yes when the drone
    /// has at least 16 cores and more than one slot.
    pub big_builds: Option<bool>,
    pub arch: Arch,
    pub builder: BuilderKind,
    /// The argv template of the `command` builder, e.g. `["/usr/local/bin/build", "{atom}"]`.
    pub command: Vec<String>,
    /// Extra arguments of the `emerge` builder, placed before the atom.
    pub emerge_args: Vec<String>,
    /// Where the `emerge` builder writes binary packages (its `PKGDIR`).
    pub pkgdir: PathBuf,
    /// The binary package format the `emerge` builder writes (its `BINPKG_FORMAT`).
    pub binpkg_format: BinpkgFormat,
    /// Portage features the `emerge` builder turns on (its `FEATURES`, added to make.conf's).
    pub features: Vec<String>,
    /// Binhosts the `emerge` builder installs dependencies from (its `PORTAGE_BINHOST`): the
    /// swarm's staging view, `http://<binhost>:8090/staging/<arch>`. Empty: make.conf's and
    /// binrepos.conf's own.
    pub binhost: Vec<String>,
    pub simulate: Simulate,
    /// What the drone's binary packages depend on (`[drone.fingerprint]`).
    pub fingerprint: FingerprintSettings,
    /// Heartbeat period: the drone record is rewritten this often.
    pub heartbeat_ms: u64,
    /// How long a running build outlives the drone's last acknowledged heartbeat: its supervisor
    /// kills it then, and the coordinator releases the package to the other drones soon after
    /// (this plus one heartbeat period). Unset: four heartbeat periods (8 s at the default),
    /// never longer than the lease allows.
    pub supervise_deadline_ms: Option<u64>,
    /// How long one pull request waits on the server for work.
    pub pull_expires_ms: u64,
    /// Consecutive failures of different packages after which the drone grounds itself.
    pub ground_after_failures: u32,
    /// On SIGTERM, how long running builds may take to finish before they are handed back;
    /// the drone exits at most `crate::stopping::wind_down` of it later, NATS reachable or not.
    pub shutdown_grace_ms: u64,
    /// Bytes of build output kept as the log tail reported with a failure.
    pub log_tail_bytes: usize,
    /// Each build's full output is written to `<log_dir>/<package-key>-<attempt>.log`. Unset:
    /// `/var/log/swarm` for the `emerge` builder, no log file for the others.
    pub log_dir: Option<PathBuf>,
    /// A drone that already failed a package leaves its retry this long to other drones.
    pub avoid_delay_ms: u64,
    /// After building a package of the run's critical path that the path goes on after (the
    /// job says so), a drone that takes big builds takes no normal work for up to this long,
    /// waiting for the next package of the path; 0 turns lingering off.
    pub critical_linger_ms: u64,
    /// A build whose source files would not download is given back and offered again after
    /// this long (to any drone); it spends no attempt of the package.
    pub fetch_retry_ms: u64,
    /// The directory builds write into (for emerge, Portage's build directory). Before taking a
    /// job the drone checks that it is a writable directory with at least `min_free_mb` free,
    /// and grounds itself otherwise. Unset: `/var/tmp/portage` for the emerge builder, no check
    /// for the others.
    pub build_dir: Option<PathBuf>,
    /// Free space the build directory needs, in MiB.
    pub min_free_mb: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: default_name(),
            cores: default_cores(),
            slots: 0,
            big_builds: None,
            arch: Arch::default(),
            builder: BuilderKind::Emerge,
            command: Vec::new(),
            emerge_args: Vec::new(),
            pkgdir: PathBuf::from("/var/cache/binpkgs"),
            binpkg_format: BinpkgFormat::Gpkg,
            features: vec!["binpkg-multi-instance".to_owned()],
            binhost: Vec::new(),
            simulate: Simulate::default(),
            fingerprint: FingerprintSettings::default(),
            heartbeat_ms: 2_000,
            supervise_deadline_ms: None,
            pull_expires_ms: 5_000,
            ground_after_failures: 3,
            shutdown_grace_ms: 300_000,
            log_tail_bytes: 4_096,
            log_dir: None,
            avoid_delay_ms: 2_000,
            critical_linger_ms: 5_000,
            fetch_retry_ms: 300_000,
            build_dir: None,
            min_free_mb: default_min_free_mb(),
        }
    }
}

/// The host name with anything that is not a letter, digit or '-' replaced, so that a default
/// drone name is always valid.
fn default_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "drone".to_owned());
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('-') {
        format!("drone{cleaned}")
    } else {
        cleaned
    }
}

/// A large package's build tree takes gigabytes; one is the least worth starting with.
fn default_min_free_mb() -> u64 {
    1_024
}

fn default_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

impl Settings {
    /// Checks every value of the `[drone]` table; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        DroneName::parse(&self.name)
            .map_err(|e| ConfigError::invalid("drone.name", e.to_string()))?;
        if self.cores == 0 {
            return Err(ConfigError::invalid("drone.cores", "must be at least 1"));
        }
        if self.slots > self.cores {
            return Err(ConfigError::invalid(
                "drone.slots",
                format!("must not exceed drone.cores ({})", self.cores),
            ));
        }
        if self.builder == BuilderKind::Command {
            if self.command.is_empty() {
                return Err(ConfigError::invalid(
                    "drone.command",
                    "the command builder needs an argv, e.g. [\"/usr/local/bin/build\", \"{atom}\"]",
                ));
            }
            if !self.command.iter().any(|a| a.contains("{atom}")) {
                return Err(ConfigError::invalid(
                    "drone.command",
                    "no argument contains {atom}",
                ));
            }
        }
        for uri in &self.binhost {
            let scheme_ok = ["http://", "https://", "file://"]
                .iter()
                .any(|scheme| uri.starts_with(scheme));
            if !scheme_ok || uri.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    "drone.binhost",
                    format!("{uri:?} is not an http://, https:// or file:// URL without spaces"),
                ));
            }
        }
        let fp = &self.fingerprint;
        if fp.refresh_ms < 100 {
            return Err(ConfigError::invalid(
                "drone.fingerprint.refresh_ms",
                "must be at least 100 ms",
            ));
        }
        if fp.chost.is_empty() || fp.chost.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "drone.fingerprint.chost",
                format!("{:?} is not a CHOST like x86_64-pc-linux-gnu", fp.chost),
            ));
        }
        if fp.profile.trim().is_empty() {
            return Err(ConfigError::invalid(
                "drone.fingerprint.profile",
                "must name a profile, like default/linux/amd64/23.0",
            ));
        }
        if let Some(key) = fp
            .settings
            .keys()
            .find(|key| !crate::fingerprint::SETTINGS.contains(&key.to_ascii_uppercase().as_str()))
        {
            return Err(ConfigError::invalid(
                &format!("drone.fingerprint.settings.{key}"),
                format!(
                    "is not a setting the fingerprint counts; those are {}",
                    crate::fingerprint::SETTINGS.join(", ")
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.simulate.failure_rate) {
            return Err(ConfigError::invalid(
                "drone.simulate.failure_rate",
                "must be between 0 and 1",
            ));
        }
        if let Some(path) = &self.simulate.model_file {
            crate::model::load(path).map_err(|err| {
                ConfigError::invalid("drone.simulate.model_file", err.to_string())
            })?;
        }
        if self.simulate.time_scale.is_nan() || self.simulate.time_scale < 0.0 {
            return Err(ConfigError::invalid(
                "drone.simulate.time_scale",
                "must be 0 or more",
            ));
        }
        if self.heartbeat_ms < 50 {
            return Err(ConfigError::invalid(
                "drone.heartbeat_ms",
                "must be at least 50 ms",
            ));
        }
        if let Some(deadline) = self.supervise_deadline_ms
            && deadline < 2 * self.heartbeat_ms
        {
            return Err(ConfigError::invalid(
                "drone.supervise_deadline_ms",
                format!(
                    "must be at least two heartbeat periods (2 × drone.heartbeat_ms = {} ms), or builds die between two heartbeats",
                    2 * self.heartbeat_ms
                ),
            ));
        }
        if self.pull_expires_ms < 100 {
            return Err(ConfigError::invalid(
                "drone.pull_expires_ms",
                "must be at least 100 ms",
            ));
        }
        if self.ground_after_failures == 0 {
            return Err(ConfigError::invalid(
                "drone.ground_after_failures",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The longest the drone takes to exit after SIGTERM: the grace and its wind-down.
    pub fn stop_within(&self) -> Duration {
        crate::stopping::stop_within(Duration::from_millis(self.shutdown_grace_ms))
    }

    pub fn slots(&self) -> u32 {
        if self.slots == 0 {
            (self.cores / 4).max(1)
        } else {
            self.slots
        }
    }

    /// Where the fingerprint comes from: `fingerprint.source`, else Portage for the `emerge`
    /// builder and the config for the others.
    pub fn fingerprint_source(&self) -> FingerprintSource {
        match (self.fingerprint.source, self.builder) {
            (Some(source), _) => source,
            (None, BuilderKind::Emerge) => FingerprintSource::Portage,
            (None, _) => FingerprintSource::Config,
        }
    }

    /// Where this drone's builds write binary packages, when they write any: the `emerge`
    /// builder always, the `simulate` builder with `simulate.binpkgs`.
    pub fn writes_binpkgs(&self) -> Option<PathBuf> {
        let writes = match self.builder {
            BuilderKind::Emerge => true,
            BuilderKind::Simulate => self.simulate.binpkgs,
            BuilderKind::Command => false,
        };
        writes.then(|| self.pkgdir.clone())
    }

    /// Where each attempt's whole output goes, if anywhere: `log_dir`, else `/var/log/swarm`
    /// for the `emerge` builder (a real build's log is what an operator asks for first).
    pub fn effective_log_dir(&self) -> Option<PathBuf> {
        match (&self.log_dir, self.builder) {
            (Some(dir), _) => Some(dir.clone()),
            (None, BuilderKind::Emerge) => Some(PathBuf::from("/var/log/swarm")),
            (None, _) => None,
        }
    }

    /// The build directory the drone checks before each job, if any.
    pub fn effective_build_dir(&self) -> Option<PathBuf> {
        match (&self.build_dir, self.builder) {
            (Some(dir), _) => Some(dir.clone()),
            (None, BuilderKind::Emerge) => Some(PathBuf::from("/var/tmp/portage")),
            (None, _) => None,
        }
    }

    /// Cores each build gets: MAKEOPTS=-j<this>.
    /// Whether this drone pulls big builds (see `big_builds`).
    pub fn takes_big_builds(&self) -> bool {
        self.big_builds
            .unwrap_or(self.cores >= 16 && self.slots() > 1)
    }

    pub fn cores_per_slot(&self) -> u32 {
        (self.cores / self.slots()).max(1)
    }
}

#[cfg(test)]
// figment's `Jail` closures return its large error type; that is fine in tests.
#[allow(clippy::result_large_err)]
#[path = "config_tests.rs"]
mod tests;
