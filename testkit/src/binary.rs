//! Which nats-server the tests run: found through `NATS_SERVER_BIN`, the path the install script
//! recorded or `PATH`, and refused when it is older than the swarm supports.

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use crate::server::POLL_INTERVAL;
use crate::{TestkitError, workspace_root};

/// The oldest nats-server the swarm supports: 2.9 cannot host the KV buckets async-nats 0.51
/// creates and silently ignores newer stream options.
pub const MIN_VERSION: (u32, u32) = (2, 11);
pub(crate) const MIN_VERSION_TEXT: &str = "v2.11";

/// An explicitly chosen binary: a bare name is looked up on `PATH`, a path must exist.
pub(crate) fn explicit_binary(path: &Path) -> Result<PathBuf, TestkitError> {
    let found = if path.components().count() == 1 {
        search_path(path)
    } else {
        path.is_file().then(|| path.to_path_buf())
    };
    found.ok_or_else(|| TestkitError::BinaryNotFound {
        searched: path.display().to_string(),
    })
}

/// The nats-server binary tests use (`NATS_SERVER_BIN`, `.tools/nats-server-path`, or `PATH`),
/// checked to be 2.11 or newer; for tests that hand it to a program they run.
pub fn nats_server_binary() -> Result<PathBuf, TestkitError> {
    let binary = find_binary()?;
    check_version(&binary)?;
    Ok(binary)
}

/// Finds the binary: `NATS_SERVER_BIN`, then the path recorded by `scripts/install-deps.sh`, then
/// `nats-server` on `PATH`.
pub(crate) fn find_binary() -> Result<PathBuf, TestkitError> {
    if let Some(path) = env::var_os("NATS_SERVER_BIN").filter(|value| !value.is_empty()) {
        // An explicit setting that is wrong is an error rather than a reason to fall back: the
        // user asked for that binary.
        return explicit_binary(Path::new(&path)).map_err(|_| TestkitError::BinaryNotFound {
            searched: format!("NATS_SERVER_BIN={}", Path::new(&path).display()),
        });
    }
    let recorded = workspace_root().join(".tools").join("nats-server-path");
    if let Ok(text) = fs::read_to_string(&recorded) {
        let path = PathBuf::from(text.trim());
        if path.is_file() {
            return Ok(path);
        }
    }
    search_path(Path::new("nats-server")).ok_or_else(|| TestkitError::BinaryNotFound {
        searched: format!("NATS_SERVER_BIN, {}, PATH", recorded.display()),
    })
}

fn search_path(name: &Path) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `<binary> --version` and rejects versions below [`MIN_VERSION`].
pub(crate) fn check_version(binary: &Path) -> Result<(), TestkitError> {
    let output = run_version(binary)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let found = text.trim();
    match parse_version(found) {
        Some(version) if output.status.success() && version >= MIN_VERSION => Ok(()),
        _ => Err(TestkitError::TooOld {
            binary: binary.to_path_buf(),
            found: found.to_owned(),
        }),
    }
}

fn run_version(binary: &Path) -> Result<std::process::Output, TestkitError> {
    let mut attempts = 0;
    loop {
        match Command::new(binary)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        {
            // A script written by a test can be briefly "busy" while another test thread forks
            // with the file still open for writing; it clears as soon as that child execs.
            Err(err) if err.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                attempts += 1;
                thread::sleep(POLL_INTERVAL * 5);
            }
            Err(source) => {
                return Err(TestkitError::Spawn {
                    binary: binary.to_path_buf(),
                    source,
                });
            }
            Ok(output) => return Ok(output),
        }
    }
}

/// Extracts (major, minor) from output such as `nats-server: v2.15.1`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    text.split_whitespace().find_map(|word| {
        let digits = word.strip_prefix('v').unwrap_or(word);
        let mut parts = digits.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_text = parts.next()?;
        // A pre-release such as `2.11.0-RC.1` keeps the minor intact; only digits are taken.
        let end = minor_text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(minor_text.len());
        let minor = minor_text[..end].parse().ok()?;
        Some((major, minor))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_version_table() {
        let cases: &[(&str, Option<(u32, u32)>)] = &[
            ("nats-server: v2.15.1", Some((2, 15))),
            ("nats-server: v2.9.10", Some((2, 9))),
            ("nats-server: v2.11.0-RC.1", Some((2, 11))),
            ("nats-server version 2.12.3", Some((2, 12))),
            ("v3.0.0", Some((3, 0))),
            ("", None),
            ("nats-server: unknown", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_version(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn version_ordering_is_by_major_then_minor() {
        assert!((2, 9) < MIN_VERSION);
        assert!((2, 11) >= MIN_VERSION);
        assert!((3, 0) >= MIN_VERSION);
    }
}
