//! What `swarmctl demo` prepares before it starts anything: its folder (never one it did not
//! make), the strings of the config files it writes, the ports it listens on and the nats-server
//! it runs.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::DemoError;

/// Marks a folder as the demo's own, so that `--dir` pointing anywhere else is never wiped.
pub(super) const MARKER: &str = ".swarm-demo-dir";

/// Where everything of one demo run lives.
pub(super) struct Layout {
    pub(super) dir: PathBuf,
    pub(super) logs: PathBuf,
    pub(super) pids: PathBuf,
}

impl Layout {
    pub(super) fn new(dir: &Path) -> Result<Layout, DemoError> {
        let dir = std::path::absolute(dir).map_err(|e| DemoError::Io {
            what: "cannot resolve",
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Layout {
            logs: dir.join("logs"),
            pids: dir.join("pids"),
            dir,
        })
    }

    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

pub(super) fn io_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DemoError + 'a {
    move |e| DemoError::Io {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Empties the demo's folder (only if it is the demo's own) and recreates its layout.
pub(super) fn prepare_dir(layout: &Layout) -> Result<(), DemoError> {
    let dir = &layout.dir;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io_error("cannot read", dir))?;
        let ours = dir.join(MARKER).exists();
        if !ours && entries.next().is_some() {
            return Err(DemoError::ForeignDir { path: dir.clone() });
        }
        std::fs::remove_dir_all(dir).map_err(io_error("cannot empty", dir))?;
    }
    std::fs::create_dir_all(&layout.logs).map_err(io_error("cannot create", &layout.logs))?;
    write_file(
        &dir.join(MARKER),
        "This folder belongs to `swarmctl demo`, which empties it at every start.\n",
    )
}

pub(super) fn write_file(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(io_error("cannot write", path))
}

/// A TOML (and nats-server config) basic string.
pub(super) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `wanted` if given; otherwise `default` if it is free on loopback, else any free port.
pub(super) fn choose_port(wanted: Option<u16>, default: u16) -> u16 {
    if let Some(port) = wanted {
        return port;
    }
    if TcpListener::bind((Ipv4Addr::LOCALHOST, default)).is_ok() {
        return default;
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(default)
}

/// The nats-server to run: the one given, `$NATS_SERVER_BIN`, or `nats-server` on `PATH`; it
/// must be 2.11 or newer.
pub(super) fn find_nats_server(given: Option<&Path>) -> Result<PathBuf, DemoError> {
    let mut searched = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = given {
        candidates.push(path.to_path_buf());
        searched.push(format!("--nats-server {}", path.display()));
    } else {
        if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
            searched.push(format!(
                "NATS_SERVER_BIN={}",
                PathBuf::from(&path).display()
            ));
            candidates.push(path.into());
        }
        if let Some(dirs) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&dirs).map(|d| d.join("nats-server")));
        }
        searched.push("nats-server on PATH".to_owned());
    }
    let Some(path) = candidates.into_iter().find(|p| p.is_file()) else {
        return Err(DemoError::NoNatsServer {
            searched: searched.join(", "),
        });
    };
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if version_at_least(&version, (2, 11)) {
        Ok(path)
    } else {
        Err(DemoError::NatsServerTooOld {
            path,
            found: version,
        })
    }
}

/// Whether `nats-server --version` output (`nats-server: v2.15.1`) is at least `minimum`.
fn version_at_least(output: &str, minimum: (u32, u32)) -> bool {
    let Some(at) = output.find('v') else {
        return false;
    };
    let mut parts = output[at + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => (major, minor) >= minimum,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_by_major_and_minor() {
        assert!(version_at_least("nats-server: v2.15.1", (2, 11)));
        assert!(version_at_least("nats-server: v2.11.0", (2, 11)));
        assert!(!version_at_least("nats-server: v2.9.10", (2, 11)));
        assert!(version_at_least("nats-server: v3.0.0", (2, 11)));
        assert!(!version_at_least("garbage", (2, 11)));
    }

    #[test]
    fn config_strings_are_quoted() {
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted("x\ny"), "\"x\\u000Ay\"");
    }

    #[test]
    fn a_folder_not_made_by_the_demo_is_never_emptied() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("precious.txt"), "keep me").expect("write");
        let layout = Layout::new(dir.path()).expect("layout");
        assert!(matches!(
            prepare_dir(&layout),
            Err(DemoError::ForeignDir { .. })
        ));
        assert!(dir.path().join("precious.txt").exists());
        // An empty folder is taken, marked, and emptied on the next run.
        let empty = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(empty.path()).expect("layout");
        prepare_dir(&layout).expect("an empty folder is fine");
        std::fs::write(empty.path().join("old.log"), "x").expect("write");
        prepare_dir(&layout).expect("the demo's own folder is emptied");
        assert!(!empty.path().join("old.log").exists());
        assert!(empty.path().join(MARKER).exists());
    }
}
