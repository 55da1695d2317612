//! Portage binary packages, as the swarm handles them: the metadata a drone reads from what a
//! build wrote (GLEP 78 `.gpkg.tar` and XPAK `.tbz2`/`.xpak`), the checksums a binhost's
//! `Packages` index carries, a small but valid gpkg for simulated builds, and the index itself.
//!
//! Portage's own code is the reference (`lib/portage/gpkg.py`, `lib/portage/xpak.py`,
//! `lib/portage/getbinpkg.py`); the tests check every format against it, run from the `portage`
//! package on PyPI. Compressed members are read through the system's decompressors, as Portage
//! itself does (`zstd`, `xz`, `bzip2`, `gzip`, `lz4`, `lzip`): a Gentoo drone has them.

pub mod checksums;
pub mod gpkg;
pub mod index;
pub mod xpak;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A binary package's metadata: `KEY` → value (`CATEGORY`, `PF`, `SLOT`, `USE`, `RDEPEND`, ...),
/// values without their trailing newline.
pub type Metadata = BTreeMap<String, String>;

/// The two formats Portage writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GLEP 78: an uncompressed tar of a marker, a metadata tar, an image tar and a Manifest.
    Gpkg,
    /// The older format: a compressed tar of the image with the XPAK metadata appended.
    Xpak,
}

impl Format {
    /// The format of a file by its name, if it is a binary package.
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?;
        if name.ends_with(".gpkg.tar") {
            Some(Format::Gpkg)
        } else if name.ends_with(".tbz2") || name.ends_with(".xpak") {
            Some(Format::Xpak)
        } else {
            None
        }
    }
}

/// Why a binary package could not be read or written; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BinpkgError {
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a gpkg (GLEP 78): {reason}", path.display())]
    NotGpkg { path: PathBuf, reason: &'static str },
    #[error("{} carries no XPAK metadata: {reason}", path.display())]
    NotXpak { path: PathBuf, reason: &'static str },
    #[error("{} is not a binary package by its name (.gpkg.tar, .tbz2 or .xpak)", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("cannot decompress {member} of {}: {reason}", path.display())]
    Decompress {
        path: PathBuf,
        member: String,
        reason: String,
    },
}

impl BinpkgError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BinpkgError + '_ {
        move |source| BinpkgError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Reads a binary package's metadata, by its format.
pub fn read_metadata(path: &Path) -> Result<(Format, Metadata), BinpkgError> {
    match Format::of(path) {
        Some(Format::Gpkg) => Ok((Format::Gpkg, gpkg::read_metadata(path)?)),
        Some(Format::Xpak) => Ok((Format::Xpak, xpak::read_metadata(path)?)),
        None => Err(BinpkgError::UnknownFormat {
            path: path.to_owned(),
        }),
    }
}

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}
