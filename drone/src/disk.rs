//! The drone's own fitness to build: its build directory must be a writable directory with
//! enough free space. A drone that fails this grounds itself with the reason instead of taking
//! jobs that would all fail (and use up every package's attempts) for a fault of the machine.

use std::io::Write;
use std::path::Path;

/// Checks `dir`; `Err` is the grounding reason, naming the directory and what is wrong.
pub fn check_build_dir(dir: &Path, min_free_mb: u64) -> Result<(), String> {
    let shown = dir.display();
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("build directory {shown} is not usable: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("build directory {shown} is not a directory"));
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
    written.map_err(|e| format!("build directory {shown} is not writable: {e}"))?;
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| format!("cannot read the free space of build directory {shown}: {e}"))?;
    let free_mb = stat.blocks_available().saturating_mul(stat.fragment_size()) / (1024 * 1024);
    if free_mb < min_free_mb {
        return Err(format!(
            "build directory {shown} has {free_mb} MiB free, below drone.min_free_mb ({min_free_mb} MiB)"
        ));
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
        assert!(
            err.contains("missing") && err.contains("not usable"),
            "{err}"
        );

        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let err = check_build_dir(&file, 1).expect_err("a file");
        assert!(err.contains("not a directory"), "{err}");

        let err = check_build_dir(dir.path(), u64::MAX / 2).expect_err("too little space");
        assert!(err.contains("MiB free, below drone.min_free_mb"), "{err}");
    }
}
