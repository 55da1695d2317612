//! The drone's own fitness to build: its build directory must be a writable directory with
//! enough free space. A drone that fails this grounds itself with the reason instead of taking
//! jobs that would all fail (and use up every package's attempts) for a fault of the machine.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the build directory cannot take builds; the message is the grounding reason, naming the
/// directory and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BuildDirError {
    #[error("build directory {} is not usable: {source}", dir.display())]
    Unusable {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("build directory {} is not a directory", dir.display())]
    NotADirectory { dir: PathBuf },
    #[error("build directory {} is not writable: {source}", dir.display())]
    NotWritable {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the free space of build directory {}: {source}", dir.display())]
    FreeSpace { dir: PathBuf, source: nix::Error },
    #[error(
        "build directory {} has {free_mb} MiB free, below drone.min_free_mb ({min_free_mb} MiB)",
        dir.display()
    )]
    Full {
        dir: PathBuf,
        free_mb: u64,
        min_free_mb: u64,
    },
}

/// Checks that `dir` is a writable directory with at least `min_free_mb` MiB free.
pub fn check_build_dir(dir: &Path, min_free_mb: u64) -> Result<(), BuildDirError> {
    let owned = || dir.to_path_buf();
    let meta = std::fs::metadata(dir).map_err(|source| BuildDirError::Unusable {
        dir: owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(BuildDirError::NotADirectory { dir: owned() });
    }
    // Writing is the only reliable test: permissions, read-only mounts and exhausted inodes
    // all show up here, and root passes permission bits anyway.
    let probe = dir.join(format!(".swarm-drone-probe-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|mut file| file.write_all(b"probe").and_then(|()| file.sync_all()));
    let _ = std::fs::remove_file(&probe);
    written.map_err(|source| BuildDirError::NotWritable {
        dir: owned(),
        source,
    })?;
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|source| BuildDirError::FreeSpace {
        dir: owned(),
        source,
    })?;
    let free_mb = stat.blocks_available().saturating_mul(stat.fragment_size()) / (1024 * 1024);
    if free_mb < min_free_mb {
        return Err(BuildDirError::Full {
            dir: owned(),
            free_mb,
            min_free_mb,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_directory_passes_and_faults_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_build_dir(dir.path(), 1).expect("a temp dir is fine");
        // No probe is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0);

        let missing = dir.path().join("missing");
        let err = check_build_dir(&missing, 1).expect_err("missing");
        assert!(matches!(err, BuildDirError::Unusable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("missing") && text.contains("not usable"),
            "{text}"
        );

        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let err = check_build_dir(&file, 1).expect_err("a file");
        assert!(
            matches!(err, BuildDirError::NotADirectory { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("not a directory"), "{err}");

        let err = check_build_dir(dir.path(), u64::MAX / 2).expect_err("too little space");
        assert!(matches!(err, BuildDirError::Full { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("MiB free, below drone.min_free_mb"),
            "{err}"
        );
    }
}
