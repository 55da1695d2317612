//! A real nats-server process per test: temp store, discovered ports, killed on drop.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::TestkitError;
use crate::binary::{check_version, explicit_binary, find_binary};

/// How long a server may take to start (JetStream recovery of a reused store included).
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often startup progress is polled; short, because tests start many servers.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many log lines an error carries.
const LOG_TAIL_LINES: usize = 30;

/// Options for a test server; obtained from [`NatsServer::builder`].
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    binary: Option<PathBuf>,
    port: Option<u16>,
    store_dir: Option<PathBuf>,
    sync_always: bool,
    max_payload: Option<u32>,
    extra_config: Vec<String>,
    config_file: Option<PathBuf>,
    env: Vec<(String, String)>,
    startup_timeout: Duration,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        Self {
            binary: None,
            port: None,
            store_dir: None,
            sync_always: false,
            max_payload: None,
            extra_config: Vec::new(),
            config_file: None,
            env: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

impl NatsServerBuilder {
    /// Uses this nats-server binary instead of looking one up. Tests use it rather than setting
    /// `NATS_SERVER_BIN`, because the environment is shared by all tests of a process.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Listens on this client port instead of an ephemeral one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Keeps JetStream data in this directory, which is neither created empty nor removed on drop,
    /// so a later server can reuse it.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// Sets `jetstream { sync_interval: always }`, the durability setting deployments use.
    pub fn sync_always(mut self, always: bool) -> Self {
        self.sync_always = always;
        self
    }

    /// Sets the server's `max_payload` in bytes.
    pub fn max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Appends text to the generated config file. Later settings override earlier ones in the
    /// nats-server config format, so this can also replace a generated setting. Repeated calls
    /// append in order.
    pub fn extra_config(mut self, config: impl Into<String>) -> Self {
        self.extra_config.push(config.into());
        self
    }

    /// Runs the server with this config file instead of a generated one; only the listen
    /// address, the ports (ephemeral unless [`port`](Self::port) is set) and the ports file are
    /// set on the command line, which overrides the file. The file must set its own JetStream
    /// `store_dir`; [`store_dir`](Self::store_dir), [`sync_always`](Self::sync_always),
    /// [`max_payload`](Self::max_payload) and [`extra_config`](Self::extra_config) do not apply.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Sets an environment variable of the server process (a config file can refer to it as
    /// `$NAME`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long to wait for the server to accept connections (default 15 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Checks the binary's version, then starts the server and waits until it accepts connections.
    pub fn start(self) -> Result<NatsServer, TestkitError> {
        let binary = match &self.binary {
            Some(path) => explicit_binary(path)?,
            None => find_binary()?,
        };
        check_version(&binary)?;
        let dir = tempfile::Builder::new()
            .prefix("swarm-nats-")
            .tempdir()
            .map_err(|source| TestkitError::io("creating a temp dir for nats-server", source))?;
        let store_dir = match &self.store_dir {
            Some(dir) => dir.clone(),
            None => dir.path().join("store"),
        };
        let mut server = NatsServer {
            binary,
            options: self,
            store_dir,
            dir,
            child: None,
            port: 0,
            monitor_port: 0,
        };
        server.launch(server.options.port, None)?;
        Ok(server)
    }
}

/// A running nats-server with JetStream, its config, log and (by default) store in a temp dir.
///
/// Dropping it kills the process (SIGKILL) and removes the temp dir; a store given with
/// [`NatsServerBuilder::store_dir`] is kept.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    options: NatsServerBuilder,
    store_dir: PathBuf,
    /// Holds the config, log, ports file and default store. `Drop` kills the child before the
    /// fields are dropped, so the directory is never removed under a running server.
    dir: TempDir,
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
}

impl NatsServer {
    /// Starts a server with default options: ephemeral ports, temp store.
    pub fn start() -> Result<Self, TestkitError> {
        Self::builder().start()
    }

    /// Options for a server.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>` of the monitoring endpoint (`/varz`, `/jsz`, ...).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The client port. It stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The monitoring port. It stays the same across [`restart`](Self::restart).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// The directory given to JetStream as `store_dir` (the server keeps its data in a `jetstream`
    /// subdirectory of it).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The server's log (stdout and stderr of every run, appended).
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The process id, or `None` after [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Connects a client to this server.
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::connect(self.client_url()).await
    }

    /// Kills the server with SIGKILL (no graceful shutdown, like a crash) and starts it again on
    /// the same ports and store, waiting until it accepts connections.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.kill()?;
        self.start_again()
    }

    /// Kills the server with SIGKILL and reaps it. Does nothing if it is not running.
    pub fn kill(&mut self) -> Result<(), TestkitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        // `kill` fails only if the process was already reaped, which `wait` below handles.
        let _ = child.kill();
        child.wait().map_err(|source| {
            TestkitError::io(format!("waiting for nats-server pid {pid}"), source)
        })?;
        Ok(())
    }

    /// Starts the server again on the same ports and store after [`kill`](Self::kill). A server
    /// that is still running is killed first, so two processes never share one store.
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        self.kill()?;
        self.launch(Some(self.port), Some(self.monitor_port))
    }

    /// Writes the config, spawns the server and waits for it to be ready. `None` ports are
    /// ephemeral and discovered from the ports file the server writes.
    fn launch(&mut self, port: Option<u16>, monitor_port: Option<u16>) -> Result<(), TestkitError> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        match &self.options.config_file {
            Some(file) => {
                args.push("-c".into());
                args.push(file.into());
                for (flag, value) in [
                    ("-a", "127.0.0.1".to_owned()),
                    (
                        "-p",
                        port.map_or_else(|| "-1".to_owned(), |p| p.to_string()),
                    ),
                    (
                        "-m",
                        monitor_port.map_or_else(|| "-1".to_owned(), |p| p.to_string()),
                    ),
                    ("--ports_file_dir", self.dir.path().display().to_string()),
                ] {
                    args.push(flag.into());
                    args.push(value.into());
                }
            }
            None => {
                let config_path = self.dir.path().join("nats-server.conf");
                let config = self.config_text(port, monitor_port);
                fs::write(&config_path, config).map_err(|source| {
                    TestkitError::io(format!("writing {}", config_path.display()), source)
                })?;
                args.push("-c".into());
                args.push(config_path.into());
            }
        }

        let log_path = self.log_file();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| {
                TestkitError::io(format!("opening {}", log_path.display()), source)
            })?;
        let log_for_stdout = log.try_clone().map_err(|source| {
            TestkitError::io(format!("cloning {}", log_path.display()), source)
        })?;

        let mut child = Command::new(&self.binary)
            .args(&args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_for_stdout))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|source| TestkitError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;

        match self.wait_ready(&mut child) {
            Ok((port, monitor_port)) => {
                self.port = port;
                self.monitor_port = monitor_port;
                self.child = Some(child);
                Ok(())
            }
            Err(err) => {
                // A half-started server must not outlive the failed start.
                let _ = child.kill();
                let _ = child.wait();
                Err(err)
            }
        }
    }

    /// The generated config. Paths are quoted because temp dirs may contain characters the
    /// config lexer treats specially.
    fn config_text(&self, port: Option<u16>, monitor_port: Option<u16>) -> String {
        let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let monitor_port = monitor_port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut text = String::new();
        // Writing to a String cannot fail, so the results of `writeln!` are ignored.
        let _ = writeln!(text, "listen: \"127.0.0.1:{port}\"");
        let _ = writeln!(text, "http: \"127.0.0.1:{monitor_port}\"");
        // The server writes its actual ports here, which is how ephemeral ports are discovered.
        let _ = writeln!(text, "ports_file_dir: {}", quote(self.dir.path()));
        if let Some(max_payload) = self.options.max_payload {
            let _ = writeln!(text, "max_payload: {max_payload}");
        }
        let _ = writeln!(text, "jetstream {{");
        let _ = writeln!(text, "  store_dir: {}", quote(&self.store_dir));
        if self.options.sync_always {
            let _ = writeln!(text, "  sync_interval: always");
        }
        let _ = writeln!(text, "}}");
        for extra in &self.options.extra_config {
            let _ = writeln!(text, "{extra}");
        }
        text
    }

    /// Waits for the ports file of this process, then for the client port to accept a TCP
    /// connection. Returns (client port, monitoring port).
    fn wait_ready(&self, child: &mut Child) -> Result<(u16, u16), TestkitError> {
        let timeout = self.options.startup_timeout;
        let deadline = Instant::now() + timeout;
        let ports_suffix = format!("_{}.ports", child.id());

        let (port, monitor_port) = loop {
            self.check_alive(child)?;
            if let Some(ports) = read_ports_file(self.dir.path(), &ports_suffix) {
                break ports;
            }
            if Instant::now() >= deadline {
                return Err(self.timeout("write its ports file", timeout));
            }
            thread::sleep(POLL_INTERVAL);
        };

        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            self.check_alive(child)?;
            if TcpStream::connect_timeout(&addr, POLL_INTERVAL * 10).is_ok() {
                return Ok((port, monitor_port));
            }
            if Instant::now() >= deadline {
                return Err(self.timeout("accept client connections", timeout));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn check_alive(&self, child: &mut Child) -> Result<(), TestkitError> {
        let status = child.try_wait().map_err(|source| {
            TestkitError::io(format!("polling nats-server pid {}", child.id()), source)
        })?;
        match status {
            Some(status) => Err(TestkitError::Exited {
                status,
                log_tail: log_tail(&self.log_file()),
            }),
            None => Ok(()),
        }
    }

    fn timeout(&self, waiting_for: &'static str, timeout: Duration) -> TestkitError {
        TestkitError::Timeout {
            waiting_for,
            timeout,
            log_tail: log_tail(&self.log_file()),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Errors cannot be reported from drop, and the temp dir is removed regardless.
        let _ = self.kill();
    }
}

/// Reads `<dir>/<anything><suffix>`, which the server writes as
/// `{"nats":["nats://127.0.0.1:P"],"monitoring":["http://127.0.0.1:M"]}`. The file name starts with
/// the executable's name, which varies, so only the pid suffix is matched. A missing or
/// half-written file yields `None` and is read again on the next poll.
fn read_ports_file(dir: &Path, suffix: &str) -> Option<(u16, u16)> {
    let entry = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().ends_with(suffix))?;
    let text = fs::read_to_string(entry.path()).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let port_of = |key: &str| -> Option<u16> {
        let url = value.get(key)?.as_array()?.first()?.as_str()?;
        url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
    };
    Some((port_of("nats")?, port_of("monitoring")?))
}

/// Quotes a path for the nats-server config format (a double-quoted string with backslash escapes).
fn quote(path: &Path) -> String {
    let raw = path.to_string_lossy();
    let mut quoted = String::with_capacity(raw.len() + 2);
    quoted.push('"');
    for c in raw.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_quotes_and_backslashes() {
        assert_eq!(quote(Path::new(r#"/tmp/a"b\c"#)), r#""/tmp/a\"b\\c""#);
    }

    #[test]
    fn ports_file_is_parsed() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("nats-server_42.ports"),
            r#"{"nats":["nats://127.0.0.1:4222"],"monitoring":["http://127.0.0.1:8222"]}"#,
        )
        .expect("write");
        assert_eq!(read_ports_file(dir.path(), "_42.ports"), Some((4222, 8222)));
        assert_eq!(read_ports_file(dir.path(), "_43.ports"), None);
    }
}
