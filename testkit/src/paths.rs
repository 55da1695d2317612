//! Locating things tests need: the workspace root, fixtures, built binaries and free ports.

use std::env;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use crate::TestkitError;

/// The workspace root: the nearest ancestor whose `Cargo.toml` has a `[workspace]` table.
///
/// The search starts from the running crate's `CARGO_MANIFEST_DIR` (cargo sets it for tests of any
/// member), then the current directory, then the directory this crate was compiled from, so it also
/// works for binaries started outside cargo.
pub fn workspace_root() -> PathBuf {
    let starts = [
        env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.into_iter().flatten() {
        if let Some(root) = find_workspace_root(&start) {
            return root;
        }
    }
    // The testkit lives directly under the root, so its parent is the best remaining guess.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The nearest ancestor of `start` (inclusive) that is a workspace root.
fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| is_workspace_manifest(&dir.join("Cargo.toml")))
        .map(Path::to_path_buf)
}

/// Member manifests say `version.workspace = true`, never `[workspace]` on a line of its own.
fn is_workspace_manifest(manifest: &Path) -> bool {
    fs::read_to_string(manifest)
        .map(|text| text.lines().any(|line| line.trim() == "[workspace]"))
        .unwrap_or(false)
}

/// The path of a test fixture: `<root>/tests/fixtures/<name>`. It is not checked for existence.
pub fn fixture(name: impl AsRef<Path>) -> PathBuf {
    workspace_root().join("tests").join("fixtures").join(name)
}

/// The packages of a run file (`atom<TAB>seconds<TAB>class<TAB>deps`, `#` lines skipped) and
/// each one's build dependencies, from its fourth column (comma-separated; `-` or empty for
/// none): the graph the tests and the benchmark check a run against.
pub fn run_file_deps(text: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let columns: Vec<&str> = l.split('\t').collect();
            let deps = columns
                .get(3)
                .copied()
                .unwrap_or("-")
                .split(',')
                .filter(|d| !d.is_empty() && *d != "-")
                .map(str::to_owned)
                .collect();
            (columns[0].to_owned(), deps)
        })
        .collect()
}

/// The path of a workspace binary in the shared target directory, `<target>/debug/<name>`, where
/// `<target>` is `CARGO_TARGET_DIR` (relative values are taken from the workspace root) or
/// `<root>/target`.
///
/// Nothing is built: the caller (or `cargo build --workspace` before the tests) must have built it.
pub fn cargo_bin(name: &str) -> PathBuf {
    let root = workspace_root();
    let target = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target
        .join("debug")
        .join(format!("{name}{}", env::consts::EXE_SUFFIX))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before returning, so another process may take it; use it only where the
/// server must be told a port in advance (the ephemeral `-1` port is safer otherwise).
pub fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|source| TestkitError::io("binding 127.0.0.1:0 to find a free port", source))?;
    let addr = listener
        .local_addr()
        .map_err(|source| TestkitError::io("reading the address of 127.0.0.1:0", source))?;
    Ok(addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_has_workspace_manifest() {
        let root = workspace_root();
        assert!(is_workspace_manifest(&root.join("Cargo.toml")), "{root:?}");
        assert!(root.join("testkit").is_dir());
    }

    #[test]
    fn member_manifest_is_not_a_workspace() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert!(!is_workspace_manifest(&manifest));
    }

    #[test]
    fn fixture_and_cargo_bin_live_under_the_root() {
        let root = workspace_root();
        assert_eq!(fixture("a.toml"), root.join("tests/fixtures/a.toml"));
        let bin = cargo_bin("swarmctl");
        assert!(bin.ends_with(format!("debug/swarmctl{}", env::consts::EXE_SUFFIX)));
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("free port");
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free");
    }
}
