//! Binhost revisions and the operator's requests about them. Each published binhost is one
//! arch's packages built for one fingerprint (`BinhostName`). The coordinator publishes a
//! revision (the binary packages of every succeeded package of it, frozen) and switches the
//! binhost's current revision to it in one compare-and-set; `swarm-binhost` serves what the
//! current revision lists, so a client sees one revision or the next, never a mix.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Artifact, PackageRecord, version};
use crate::codec::Wire;
use crate::ids::{Arch, RunName};

/// One published binhost: an arch's packages built for one fingerprint, written
/// `amd64@3f2a9c1d0e4b` (its URL is `/published/amd64@3f2a9c1d0e4b`), or, when no run targeted
/// a fingerprint, the arch's alone (`amd64`). Machines of one profile and settings install from
/// their fingerprint's binhost only, so packages of different settings are never mixed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BinhostName {
    pub arch: Arch,
    pub fingerprint: Option<String>,
}

/// Why a binhost name cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a binhost name (ARCH or ARCH@FINGERPRINT, e.g. amd64@3f2a9c1d0e4b): {reason}"
)]
pub struct BinhostNameError {
    pub input: String,
    pub reason: String,
}

impl BinhostName {
    pub fn new(arch: Arch, fingerprint: Option<&str>) -> BinhostName {
        BinhostName {
            arch,
            fingerprint: fingerprint.map(str::to_owned),
        }
    }

    pub fn parse(input: &str) -> Result<BinhostName, BinhostNameError> {
        let error = |reason: String| BinhostNameError {
            input: input.to_owned(),
            reason,
        };
        let (arch, fingerprint) = match input.split_once('@') {
            Some((arch, fingerprint)) => (arch, Some(fingerprint)),
            None => (input, None),
        };
        let arch = Arch::parse(arch).map_err(|e| error(e.to_string()))?;
        if let Some(id) = fingerprint
            && !is_fingerprint_id(id)
        {
            return Err(error(format!(
                "{id:?} is not a fingerprint id (1 to 64 lower-case hex digits)"
            )));
        }
        Ok(BinhostName::new(arch, fingerprint))
    }

    /// The name in KV keys and object names, where `@` may not appear: `amd64_3f2a9c1d0e4b`
    /// (an arch has no `_`, so it reads back one way).
    pub fn token(&self) -> String {
        match &self.fingerprint {
            Some(id) => format!("{}_{id}", self.arch),
            None => self.arch.to_string(),
        }
    }
}

/// A fingerprint id as drones show it: lower-case hex digits.
pub fn is_fingerprint_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for BinhostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fingerprint {
            Some(id) => write!(f, "{}@{id}", self.arch),
            None => write!(f, "{}", self.arch),
        }
    }
}

/// One published revision of an arch's binhost, in the binhost bucket under
/// `rev.<arch>.<number>`. Its packages are in the artifacts object store under `contents` (a
/// [`RevisionContents`]): a whole world's metadata is larger than one message may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinhostRevision {
    #[serde(default = "version")]
    pub v: u16,
    pub arch: Arch,
    /// 1, 2, 3, ... per binhost.
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
    /// The run it was published for (`swarmctl binhost publish RUN`, or the run that ended and
    /// published itself); `None` for a publication of whatever was built.
    #[serde(default)]
    pub run: Option<RunName>,
}

impl Wire for BinhostRevision {
    const KIND: &'static str = "binhost revision";
}

impl BinhostRevision {
    /// The name of the object holding a revision's contents.
    pub fn contents_object(binhost: &BinhostName, number: u64) -> String {
        format!("revision-{}-{number:012}", binhost.token())
    }

    /// The binhost this revision belongs to.
    pub fn binhost(&self) -> BinhostName {
        BinhostName::new(self.arch.clone(), self.fingerprint.as_deref())
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
    /// The binhost of this fingerprint of the arch; absent: of the arch's current run target.
    #[serde(default)]
    pub fingerprint: Option<String>,
    pub command: BinhostCommand,
}

impl Wire for BinhostRequest {
    const KIND: &'static str = "binhost request";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BinhostCommand {
    /// Publish what is built now as a new revision (unless it equals the current one); with a
    /// `run`, once that run has ended, to the binhost of its fingerprint, leaving out what runs
    /// still under way have built.
    Publish {
        #[serde(default)]
        run: Option<String>,
    },
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
    /// The run it was published for, if any.
    #[serde(default)]
    pub run: Option<RunName>,
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
        /// The binhost's fingerprint (`arch@fingerprint`); `None`: the arch's own.
        #[serde(default)]
        fingerprint: Option<String>,
        current: Option<u64>,
        revisions: Vec<RevisionSummary>,
        changed: bool,
    },
    Error {
        message: String,
    },
}

/// The binary packages of every package of `arch` built for `fingerprint` (the arch's run
/// target; `None`: whatever built them), by path (one file per path: a later build of the same
/// version with the same `BUILD_ID` replaces an earlier one). A package keeps its last
/// success's files while it is built again and when that build fails (its record holds them
/// until a new success replaces them). What a new revision publishes, and, of the packages
/// that just succeeded, what the drones' staging view serves: one fingerprint's packages,
/// never a mix.
pub fn staged_artifacts<'a>(
    records: impl IntoIterator<Item = &'a PackageRecord>,
    arch: &Arch,
    fingerprint: Option<&str>,
) -> Vec<Artifact> {
    let mut by_path = std::collections::BTreeMap::new();
    for record in records {
        let of_target = fingerprint.is_none_or(|id| record.fingerprint.as_deref() == Some(id));
        if record.arch == *arch && of_target {
            for artifact in &record.artifacts {
                by_path.insert(artifact.path.clone(), artifact.clone());
            }
        }
    }
    by_path.into_values().collect()
}
