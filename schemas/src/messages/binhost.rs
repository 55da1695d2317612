//! Binhost revisions and the operator's requests about them. The coordinator publishes a
//! revision (the binary packages of every succeeded package of one arch, frozen) and switches the
//! arch's current revision to it in one compare-and-set; `swarm-binhost` serves what the current
//! revision lists, so a client sees one revision or the next, never a mix.

use serde::{Deserialize, Serialize};

use super::{Artifact, PackageRecord, PackageState, version};
use crate::codec::Wire;
use crate::ids::Arch;

/// One published revision of an arch's binhost, in the binhost bucket under
/// `rev.<arch>.<number>`. Its packages are in the artifacts object store under `contents` (a
/// [`RevisionContents`]): a whole world's metadata is larger than one message may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinhostRevision {
    #[serde(default = "version")]
    pub v: u16,
    pub arch: Arch,
    /// 1, 2, 3, ... per arch.
    pub number: u64,
    /// The index's `TIMESTAMP` (seconds): strictly greater than every earlier revision's, since a
    /// client reads the package list only when it is newer than the one it cached.
    pub timestamp: u64,
    pub created_ms: u64,
    /// How many binary packages, and their total size.
    pub packages: u64,
    pub bytes: u64,
    /// The object holding the revision's [`RevisionContents`].
    pub contents: String,
    /// The fingerprint id its packages were built for (the arch's run target when it was
    /// published): a revision is one fingerprint's packages. `None`: no run targeted one.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl Wire for BinhostRevision {
    const KIND: &'static str = "binhost revision";
}

impl BinhostRevision {
    /// The name of the object holding a revision's contents.
    pub fn contents_object(arch: &Arch, number: u64) -> String {
        format!("revision-{arch}-{number:012}")
    }
}

/// Every binary package of one revision, by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionContents {
    #[serde(default = "version")]
    pub v: u16,
    pub arch: Arch,
    pub number: u64,
    pub packages: Vec<Artifact>,
}

impl Wire for RevisionContents {
    const KIND: &'static str = "binhost revision contents";
}

/// Which revision an arch's binhost serves, in the binhost bucket under `current.<arch>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinhostCurrent {
    #[serde(default = "version")]
    pub v: u16,
    pub arch: Arch,
    pub number: u64,
    /// The `TIMESTAMP` the served index carries: the revision's own when it was published, a
    /// newer one when a rollback serves it again (Portage's client reads an index only when its
    /// `TIMESTAMP` is newer than the copy it has). 0 in records written before it existed: the
    /// revision's own.
    #[serde(default)]
    pub timestamp: u64,
}

impl Wire for BinhostCurrent {
    const KIND: &'static str = "binhost current revision";
}

/// An operator's request about an arch's published binhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinhostRequest {
    #[serde(default = "version")]
    pub v: u16,
    /// The coordinator's default arch when absent.
    #[serde(default)]
    pub arch: Option<Arch>,
    pub command: BinhostCommand,
}

impl Wire for BinhostRequest {
    const KIND: &'static str = "binhost request";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BinhostCommand {
    /// Publish what is built now as a new revision (unless it equals the current one).
    Publish,
    /// Serve an earlier kept revision again: `to`, or the one before the current one.
    Rollback {
        #[serde(default)]
        to: Option<u64>,
    },
    /// The current revision and the kept ones.
    Status,
}

/// A kept revision, as the status lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionSummary {
    pub number: u64,
    pub timestamp: u64,
    pub created_ms: u64,
    pub packages: u64,
    pub bytes: u64,
    /// The fingerprint id its packages were built for, when a run targeted one.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinhostReply {
    #[serde(default = "version")]
    pub v: u16,
    pub result: BinhostResult,
}

impl Wire for BinhostReply {
    const KIND: &'static str = "binhost reply";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BinhostResult {
    /// The arch's binhost serves `current` (none before the first publication); `revisions` are
    /// the kept ones, newest first. `published` says whether this request published or rolled
    /// back anything.
    State {
        arch: Arch,
        current: Option<u64>,
        revisions: Vec<RevisionSummary>,
        changed: bool,
    },
    Error {
        message: String,
    },
}

/// The binary packages of every succeeded package of `arch` built for `fingerprint` (the arch's
/// run target; `None`: whatever built them), by path (one file per path: a later build of the
/// same version with the same `BUILD_ID` replaces an earlier one). What a new revision
/// publishes, and what the drones' staging view serves: one fingerprint's packages, never a mix.
pub fn staged_artifacts<'a>(
    records: impl IntoIterator<Item = &'a PackageRecord>,
    arch: &Arch,
    fingerprint: Option<&str>,
) -> Vec<Artifact> {
    let mut by_path = std::collections::BTreeMap::new();
    for record in records {
        let of_target = fingerprint.is_none_or(|id| record.fingerprint.as_deref() == Some(id));
        if record.arch == *arch
            && of_target
            && matches!(record.state, PackageState::Succeeded { .. })
        {
            for artifact in &record.artifacts {
                by_path.insert(artifact.path.clone(), artifact.clone());
            }
        }
    }
    by_path.into_values().collect()
}
