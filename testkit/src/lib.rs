//! Test harness for the swarm: real nats-server processes, paths into the workspace, a headless
//! Chromium for the dashboard page and a minimal HTTP client.
//!
//! Every test starts its own [`NatsServer`] (ephemeral ports, temp store, killed on drop), so tests
//! run in parallel without sharing state and never mock NATS.

mod binary;
pub mod browser;
mod cluster;
mod error;
pub mod http;
mod paths;
pub mod portage;
pub mod proxy;
mod server;

pub use binary::{MIN_VERSION, nats_server_binary};
pub use cluster::{KeepLogs, NatsCluster, start_again_patiently};
pub use error::{TestkitError, TestkitErrorKind};
pub use paths::{cargo_bin, fixture, free_port, run_file_deps, workspace_root};
pub use server::{NatsServer, NatsServerBuilder};
