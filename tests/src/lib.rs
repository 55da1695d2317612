//! Harness of the end-to-end suite: a real nats-server, the coordinator, drones and swarmctl as
//! the built binaries, started the way an operator starts them (config through `SWARM_`
//! environment variables), plus readers for the build records the test build script writes.
//!
//! The binaries must be built first (`cargo build --workspace --bins`); the test command in
//! the README does that.
//!
//! `swarm.rs` has the harness itself (`Swarm`, `DroneSpec`), `records.rs` reads the build records,
//! `invariants.rs` checks the reliability invariants from them, `binhost.rs` starts `swarm-binhost`
//! and reads it as Portage's client does; this file has the processes,
//! the workload and submission that they share.

pub mod binhost;
pub mod chaos;
mod coordinators;
pub mod deploy;
pub mod invariants;
mod records;
pub mod secured;
mod swarm;
mod waits;
pub use waits::test_atoms;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use schemas::{PackageRecord, PackageState, names};
use testkit::NatsServer;

pub use records::{Build, Record, builds, overlaps, read_records, successes};
pub use swarm::{DroneSpec, Swarm};

/// Timings small enough for tests, large enough for a loaded 2-core machine.
pub const LEASE_TTL_MS: u64 = 1_500;
pub const ACK_WAIT_MS: u64 = 2_000;

pub fn bin(name: &str) -> PathBuf {
    let path = testkit::cargo_bin(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end suite",
        path.display()
    );
    path
}

/// A child process killed (SIGKILL) on drop, so a failing test leaves nothing running.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(self.pid(), signal);
    }

    /// Waits for the process to exit by itself, up to `timeout` (looks once with zero).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn all_succeeded(packages: &HashMap<String, PackageRecord>) -> bool {
    packages
        .values()
        .all(|p| matches!(p.state, PackageState::Succeeded { .. }))
}

/// Runs a nats-py script of `tests/fixtures` with the test tools' Python (a third-party NATS
/// client, as an operator's own tools would be) against `swarm`'s server with `args`, and reads
/// the JSON it prints.
pub fn nats_py(swarm: &Swarm, script: &str, args: &[&str]) -> serde_json::Value {
    let python = testkit::portage::python().expect("the test tools' Python");
    let out = std::process::Command::new(python)
        .arg(testkit::fixture(script))
        .arg(swarm.nats.client_url())
        .args(args)
        .output()
        .expect("run the nats-py script");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The atoms of the world-152 workload with their estimates.
pub fn world() -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(testkit::fixture("world-152.tsv")).expect("fixture");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// Submits atoms straight to the coordinator (as swarmctl does) and returns the reply.
pub async fn submit(nats: &NatsServer, atoms: &[(String, Option<f64>)]) -> schemas::SubmitResult {
    let client = nats.connect().await.expect("connect");
    submit_with(&client, atoms).await
}

async fn submit_with(
    client: &async_nats::Client,
    atoms: &[(String, Option<f64>)],
) -> schemas::SubmitResult {
    let request = schemas::SubmitRequest {
        v: schemas::SCHEMA_VERSION,
        items: atoms
            .iter()
            .map(|(a, e)| schemas::SubmitItem {
                class: None,
                atom: a.clone(),
                estimate_secs: *e,
                deps: Vec::new(),
            })
            .collect(),
        arch: None,
        fingerprint: None,
        run: None,
        priority: None,
    };
    let bytes: bytes::Bytes = schemas::encode(&request).expect("encode").into();
    // In a cluster the coordinator's subscription reaches the other nodes a moment after it
    // subscribed; until then a request through another node finds no responder.
    let deadline = Instant::now() + Duration::from_secs(15);
    let reply = loop {
        match client.request(names::SUBMIT_SUBJECT, bytes.clone()).await {
            Ok(reply) => break reply,
            Err(err)
                if err.kind() == async_nats::RequestErrorKind::NoResponders
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("the coordinator does not answer: {err}"),
        }
    };
    schemas::decode::<schemas::SubmitReply>(&reply.payload)
        .expect("reply")
        .result
}
