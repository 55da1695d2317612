//! A binary package a build wrote, as the swarm stores and serves it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One binary package (a `.gpkg.tar`, or a `.tbz2`/`.xpak`) of a successful build: stored in the
/// artifacts object store under `object`, served by a binhost at `path`, described in its
/// `Packages` index by `metadata` and the checksums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The object's name in the artifacts bucket: `sha256-<hex digest of its contents>`, so the
    /// same file is stored once however often it is uploaded.
    pub object: String,
    /// Where the file sits below a binhost's root, as Portage lays out a `PKGDIR` and names it
    /// in the index's `PATH` (`app-misc/hello/hello-1.0-1.gpkg.tar`).
    pub path: String,
    pub size: u64,
    pub md5: String,
    pub sha1: String,
    /// The package's metadata, as read from the file: `CATEGORY`, `PF`, `SLOT`, `USE`,
    /// `RDEPEND`, `BUILD_ID`, `BUILD_TIME`, `repository`, ...
    pub metadata: BTreeMap<String, String>,
}

impl Artifact {
    /// The object name of contents with this SHA-256 (lowercase hex).
    pub fn object_name(sha256: &str) -> String {
        format!("sha256-{sha256}")
    }

    /// `category/PF` (`app-misc/hello-1.0-r1`), when the metadata says.
    pub fn cpv(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.metadata.get("CATEGORY")?,
            self.metadata.get("PF")?
        ))
    }
}
