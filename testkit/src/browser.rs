//! A real headless Chromium driven over the DevTools protocol, for tests of the dashboard page:
//! open a page, evaluate JavaScript in it, take a screenshot. Only the handful of protocol
//! methods the tests use are spoken here; the browser is Debian's `chromium`, installed by
//! `scripts/install-deps.sh --chromium`.
//!
//! Chromium runs in its own process group with a temporary profile and every background service
//! switched off (the test machines have no network beyond loopback); dropping the [`Browser`]
//! kills the whole group.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long Chromium may take to start and open its DevTools port.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "no chromium found ({searched}); run scripts/install-deps.sh --chromium or set CHROMIUM_BIN"
    )]
    NotFound { searched: String },
    #[error("cannot start {binary}: {reason}", binary = binary.display())]
    Launch { binary: PathBuf, reason: String },
    #[error("chromium did not open its DevTools port within {0:?}")]
    Timeout(Duration),
    #[error("DevTools {method}: {reason}")]
    Protocol { method: String, reason: String },
    #[error("the page threw: {0}")]
    Script(String),
    #[error("cannot write {path}: {reason}", path = path.display())]
    Write { path: PathBuf, reason: String },
}

/// The chromium binary: `$CHROMIUM_BIN`, then `/usr/bin/chromium`, then `chromium` on `PATH`.
pub fn find_chromium() -> Result<PathBuf, BrowserError> {
    let mut searched = Vec::new();
    if let Some(path) = std::env::var_os("CHROMIUM_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(format!("CHROMIUM_BIN={}", path.display()));
    }
    let debian = Path::new("/usr/bin/chromium");
    if debian.is_file() {
        return Ok(debian.to_path_buf());
    }
    searched.push(debian.display().to_string());
    if let Some(dirs) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&dirs) {
            let candidate = dir.join("chromium");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    searched.push("chromium on PATH".to_owned());
    Err(BrowserError::NotFound {
        searched: searched.join(", "),
    })
}

/// A headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium and opens `url` in a page of `width` × `height` CSS pixels.
    pub async fn open(url: &str, width: u32, height: u32) -> Result<Browser, BrowserError> {
        let binary = find_chromium()?;
        let profile = tempfile::Builder::new()
            .prefix("swarm-chromium-")
            .tempdir()
            .map_err(|e| BrowserError::Launch {
                binary: binary.clone(),
                reason: format!("no temp dir for the profile: {e}"),
            })?;
        let mut command = Command::new(&binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|e| BrowserError::Launch {
            binary: binary.clone(),
            reason: e.to_string(),
        })?;
        // Chromium writes the port it chose, and the browser endpoint's path, into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
                }
            }
            if Instant::now() > deadline {
                kill_group(&child);
                return Err(BrowserError::Timeout(LAUNCH_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .map_err(|e| BrowserError::Launch {
                binary: binary.clone(),
                reason: format!("cannot connect to {endpoint}: {e}"),
            })?;
        let mut browser = Browser {
            child,
            _profile: profile,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = browser
            .command("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = browser
            .command(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        browser
            .command(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await?;
        browser.command("Page.enable", json!({})).await?;
        browser
            .command("Page.navigate", json!({ "url": url }))
            .await?;
        Ok(browser)
    }

    /// Sends one protocol command (to the page once attached) and returns its result.
    pub async fn command(&mut self, method: &str, params: Value) -> Result<Value, BrowserError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = Value::String(self.session.clone());
        }
        let fail = |reason: String| BrowserError::Protocol {
            method: method.to_owned(),
            reason,
        };
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| fail(format!("no answer within {COMMAND_TIMEOUT:?}")))?;
            let frame = match next {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(fail(e.to_string())),
                None => return Err(fail("the browser closed the connection".to_owned())),
            };
            let Message::Text(text) = frame else { continue };
            let Ok(reply) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            // Events (no id) and answers to other commands are not ours.
            if reply["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(fail(error.to_string()));
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Evaluates a JavaScript expression in the page (promises are awaited) and returns its
    /// value as JSON.
    pub async fn eval(&mut self, expression: &str) -> Result<Value, BrowserError> {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("unknown exception");
            return Err(BrowserError::Script(text.to_owned()));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Evaluates `expression` until it returns `true`, up to `timeout`; returns whether it did.
    /// Script errors (the page still loading, say) count as not yet.
    pub async fn wait_for(&mut self, expression: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Value::Bool(true)) = self.eval(expression).await {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes a PNG screenshot of the page to `path`, creating its directory.
    pub async fn screenshot(&mut self, path: &Path) -> Result<(), BrowserError> {
        let shot = self
            .command("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = shot["data"].as_str().unwrap_or_default();
        let bytes = base64_decode(data).ok_or_else(|| BrowserError::Protocol {
            method: "Page.captureScreenshot".to_owned(),
            reason: "the screenshot is not base64".to_owned(),
        })?;
        let write = |e: std::io::Error| BrowserError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        std::fs::write(path, bytes).map_err(write)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&self.child);
        let _ = self.child.wait();
    }
}

/// Kills Chromium and every process it started (renderers, zygote), which share its group.
fn kill_group(child: &Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
}

/// Standard base64 (the protocol's encoding of binary data), without a dependency for it.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let group = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&group[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode("aGlt").as_deref(), Some(&b"him"[..]));
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode("a$=="), None);
        assert_eq!(base64_decode("abc"), None);
    }
}
