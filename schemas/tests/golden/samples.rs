//! The golden samples: representative values of every message kind (every `swarm_schemas::Wire`
//! type), filling every field and every enum variant worth having. `golden write` encodes them
//! into `tests/fixtures/golden/`, one file per sample; the tests read those files back with the
//! code of every later release.
//!
//! A new kind is one line in [`kinds`] (and a function giving its samples, in
//! `work_samples.rs`, the build's messages, or `request_samples.rs`, the rest). A sample is never
//! changed once its fixture is committed: a changed value is a new sample with a new name.
//!
//! The events, the queued package record and the plain job are also fed to a live swarm
//! (`tests/tests/upgrade.rs`), so they describe one coherent story: `dev-libs/openssl` built by
//! `drone-Izar`, `sys-libs/zlib` queued with its job.

use std::collections::BTreeMap;

use serde_json::Value;
use swarm_schemas::*;

use super::{request_samples as requests, work_samples as work};

/// One encoded sample.
pub struct Sample {
    /// Empty for a kind's only sample; otherwise `[a-z0-9-]+`.
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// The value as JSON: what decoding the bytes must give back.
    pub json: Value,
}

/// A message kind: its samples and how to read bytes as it.
pub struct Kind {
    /// `Wire::KIND`.
    pub kind: &'static str,
    /// The Rust type's name (`Job`), matched against the `impl Wire for` items in the source.
    pub type_name: &'static str,
    pub samples: Vec<Sample>,
    /// Decodes bytes as this kind, and gives the decoded value as JSON.
    pub read: fn(&[u8]) -> Result<Value, DecodeError>,
}

impl Kind {
    /// The kind's part of a fixture's file name: `binhost-revision-contents`.
    pub fn slug(&self) -> String {
        self.kind.replace(' ', "-")
    }
}

fn read<T: Wire>(bytes: &[u8]) -> Result<Value, DecodeError> {
    let value = decode::<T>(bytes)?;
    Ok(serde_json::to_value(&value).expect("a decoded message converts to JSON"))
}

fn kind<T: Wire>(samples: Vec<(&'static str, T)>) -> Kind {
    let type_name = std::any::type_name::<T>();
    Kind {
        kind: T::KIND,
        type_name: type_name.rsplit("::").next().unwrap_or(type_name),
        samples: samples
            .into_iter()
            .map(|(name, value)| Sample {
                name,
                bytes: encode(&value).expect("a sample encodes"),
                json: serde_json::to_value(&value).expect("a sample converts to JSON"),
            })
            .collect(),
        read: read::<T>,
    }
}

/// Every message kind, one line each.
pub fn kinds() -> Vec<Kind> {
    vec![
        kind(work::jobs()),
        kind(work::leases()),
        kind(work::drone_records()),
        kind(work::events()),
        kind(work::package_records()),
        kind(vec![("", requests::run_target())]),
        kind(vec![("", requests::history_entry())]),
        kind(vec![("", requests::submit_request())]),
        kind(requests::submit_replies()),
        kind(requests::drone_controls()),
        kind(vec![("", requests::drone_control_reply())]),
        kind(vec![("", requests::cancel_request())]),
        kind(vec![("", requests::retry_request())]),
        kind(vec![("", requests::pause_request())]),
        kind(vec![("", requests::drone_request())]),
        kind(vec![("", requests::control_reply())]),
        kind(vec![("", requests::binhost_revision())]),
        kind(vec![("", requests::revision_contents())]),
        kind(vec![("", requests::binhost_current())]),
        kind(requests::binhost_requests()),
        kind(requests::binhost_replies()),
        kind(vec![("", requests::leader_record())]),
    ]
}

pub const V: u16 = SCHEMA_VERSION;
/// 2025-06-01 12:00:00 UTC, and times after it.
pub const T0: u64 = 1_748_779_200_000;

pub fn atom(text: &str) -> Atom {
    Atom::parse(text).expect("valid atom")
}

pub fn drone(text: &str) -> DroneName {
    DroneName::parse(text).expect("valid drone name")
}

pub fn arch() -> Arch {
    Arch::parse("amd64").expect("valid arch")
}

pub fn run() -> RunName {
    RunName::parse("nightly-20250601").expect("valid run name")
}

/// The package the events are about.
pub const EVENTS_ATOM: &str = "=dev-libs/openssl-3.3.2";
/// The drone that sends them.
pub const EVENTS_DRONE: &str = "drone-Izar";
/// The package of the queued record and of the plain job.
pub const QUEUED_ATOM: &str = "sys-libs/zlib";

pub const FINGERPRINT_ID: &str = "3f2a9c1d0e4b";

pub fn fingerprint() -> Fingerprint {
    Fingerprint {
        id: FINGERPRINT_ID.into(),
        chost: "x86_64-pc-linux-gnu".into(),
        profile: "default/linux/amd64/23.0".into(),
        settings: "9b1c0ffee0d4".into(),
        tree_timestamp: Some(1_748_700_000),
    }
}

pub fn artifact() -> Artifact {
    let metadata: BTreeMap<String, String> = [
        ("BUILD_ID", "1"),
        ("BUILD_TIME", "1748779800"),
        ("CATEGORY", "dev-libs"),
        ("PF", "openssl-3.3.2"),
        ("SLOT", "0/3"),
        ("USE", "amd64 asm"),
        ("repository", "gentoo"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Artifact {
        object: "sha256-5e0b1d4a8f2c".into(),
        path: "dev-libs/openssl/openssl-3.3.2-1.gpkg.tar".into(),
        size: 7_340_032,
        md5: "0f343b0931126a20f133d67c2b018a3b".into(),
        sha1: "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12".into(),
        metadata,
    }
}

pub fn failed(class: FailureClass, signature: Option<&str>) -> BuildOutcome {
    BuildOutcome::Failed {
        exit: ExitInfo {
            code: Some(1),
            signal: None,
        },
        log_tail: "make: *** [Makefile:1] Error 1".into(),
        class,
        signature: signature.map(str::to_owned),
    }
}

pub fn killed() -> BuildOutcome {
    BuildOutcome::Failed {
        exit: ExitInfo {
            code: None,
            signal: Some(9),
        },
        log_tail: "No space left on device".into(),
        class: FailureClass::Infrastructure,
        signature: Some("No space left on device".into()),
    }
}
