//! The size and digests of a file, in one pass: what a `Packages` index states (`SIZE`, `MD5`,
//! `SHA1`, and the stronger `SHA256`/`SHA512`/`BLAKE2B` Portage's verifier also knows), and the
//! SHA-256 that names the file in the object store.

use std::io::Read;
use std::path::Path;

use blake2::Blake2b512;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::{BinpkgError, hex};

/// A file's size and digests, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    pub size: u64,
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
    pub sha512: String,
    pub blake2b: String,
}

/// Computes every digest of `data`.
pub fn of_bytes(data: &[u8]) -> Checksums {
    let mut all = Digests::default();
    all.update(data);
    all.finish(data.len() as u64)
}

/// Computes every digest of the file at `path`, reading it once.
pub fn of_file(path: &Path) -> Result<Checksums, BinpkgError> {
    let mut file = std::fs::File::open(path).map_err(BinpkgError::io(path))?;
    let mut all = Digests::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(BinpkgError::io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        all.update(&buf[..n]);
    }
    Ok(all.finish(size))
}

#[derive(Default)]
struct Digests {
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    sha512: Sha512,
    blake2b: Blake2b512,
}

impl Digests {
    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.sha1.update(data);
        self.sha256.update(data);
        self.sha512.update(data);
        self.blake2b.update(data);
    }

    fn finish(self, size: u64) -> Checksums {
        Checksums {
            size,
            md5: hex(&self.md5.finalize()),
            sha1: hex(&self.sha1.finalize()),
            sha256: hex(&self.sha256.finalize()),
            sha512: hex(&self.sha512.finalize()),
            blake2b: hex(&self.blake2b.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digests of "abc" from their standards (RFC 1321, FIPS 180, RFC 7693).
    #[test]
    fn known_answers() {
        let c = of_bytes(b"abc");
        assert_eq!(c.size, 3);
        assert_eq!(c.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(c.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            c.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(c.sha512.starts_with("ddaf35a193617aba"), "{}", c.sha512);
        assert!(c.blake2b.starts_with("ba80a53f981c4d0d"), "{}", c.blake2b);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").expect("write");
        assert_eq!(of_file(&path).expect("read"), c);
    }
}
