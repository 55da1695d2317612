//! What a drone's binary packages depend on besides the atom, and the fingerprint a run targets.
//! A binary package built with other compiler flags, USE flags, profile or CHOST is a different
//! package: a binhost mixes only what one fingerprint built.

use serde::{Deserialize, Serialize};

use super::version;
use crate::codec::Wire;
use crate::ids::Arch;

/// A drone's fingerprint: its CHOST, profile and the settings that change binary packages, and
/// how fresh its ebuild tree is. `id` names the first three (and the arch); drones with one id
/// build interchangeable packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Short hex digest of arch, CHOST, profile and `settings`: what drones are matched on.
    pub id: String,
    pub chost: String,
    /// The profile, as below the repository's `profiles/`: `default/linux/amd64/23.0`.
    pub profile: String,
    /// Hex digest of the make.conf settings that change binary packages (CFLAGS, CXXFLAGS,
    /// LDFLAGS, USE, ...), normalised.
    pub settings: String,
    /// The ebuild tree's `metadata/timestamp.chk`, Unix seconds; `None` when unknown.
    #[serde(default)]
    pub tree_timestamp: Option<u64>,
}

/// The fingerprint an arch's run targets, in the targets bucket under the arch: only drones of
/// this `fingerprint.id` whose tree is at least `fingerprint.tree_timestamp` take its jobs.
/// Written by the coordinator when a submission chooses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTarget {
    #[serde(default = "version")]
    pub v: u16,
    pub arch: Arch,
    pub fingerprint: Fingerprint,
    pub set_ms: u64,
}

impl Wire for RunTarget {
    const KIND: &'static str = "run target";
}
