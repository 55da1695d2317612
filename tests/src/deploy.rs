//! What the deployment tests (`deploy.rs`, `services.rs`) share: the binaries the image ships,
//! the daemons with their sample configs, and the repository's files.

use std::path::PathBuf;

/// Every binary the image builds and installs.
pub const BINARIES: [&str; 5] = [
    "swarm-coordinator",
    "swarm-drone",
    "swarm-dashboard",
    "swarm-binhost",
    "swarmctl",
];

/// The long-running services and their sample configs under `config/`.
pub const DAEMONS: [(&str, &str); 4] = [
    ("swarm-coordinator", "coordinator.toml"),
    ("swarm-drone", "drone.toml"),
    ("swarm-dashboard", "dashboard.toml"),
    ("swarm-binhost", "binhost.toml"),
];

/// The most a daemon takes to stop after SIGTERM, in ms, as its `--check-config` prints it
/// (`stops within N ms of SIGTERM`): a service manager's stop timeout must leave more.
pub fn stop_bound_ms(check_output: &str) -> u64 {
    check_output
        .lines()
        .find_map(|line| {
            line.strip_prefix("stops within ")?
                .strip_suffix(" ms of SIGTERM")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no stop bound in {check_output:?}"))
}

/// The workspace's root folder.
pub fn root() -> PathBuf {
    testkit::workspace_root()
}

/// A file of the repository, by its path from the root.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}
