//! End-to-end: the README's first command, `scripts/demo.sh`, run the way a newcomer runs it —
//! from a clean copy of the repository, with nothing running — reaches a dashboard that shows the
//! seed's four drones and 58 cores, builds all 152 packages, publishes them as a binhost that
//! Portage's client reads and downloads from, and after Ctrl-C leaves no process behind. A second
//! run in the same copy works too.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;

/// The first run builds the clone's workspace crates (dependencies are shared through the
/// target folder), so it gets minutes.
const FIRST_START: Duration = Duration::from_secs(900);
const START: Duration = Duration::from_secs(120);

/// A copy of the repository as a clone of it would be: the files git tracks, plus new files not
/// yet committed (so the test checks the working tree), and nothing ignored (no `target/`, no
/// `.tools/`, no `.swarm-demo/`).
fn clean_copy(into: &Path) {
    let root = testkit::workspace_root();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .expect("git runs");
    assert!(listed.status.success(), "git ls-files failed");
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let from = root.join(&name);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = into.join(&name);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(&from, &to).expect("copy keeps the mode");
    }
}

/// Processes whose command line names `path`: everything the demo started names its folder.
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

struct Demo {
    child: Child,
    output: PathBuf,
}

impl Demo {
    /// `scripts/demo.sh ARGS` in `clone`, in its own process group like a terminal's foreground
    /// job, its output in `output`.
    fn start(clone: &Path, output: PathBuf, args: &[String]) -> Demo {
        let log = std::fs::File::create(&output).expect("output file");
        let mut command = Command::new("bash");
        command
            .arg("scripts/demo.sh")
            .args(args)
            .current_dir(clone)
            .env("CARGO_TARGET_DIR", testkit::workspace_root().join("target"))
            .env(
                "NATS_SERVER_BIN",
                testkit::nats_server_binary().expect("a nats-server for the demo"),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log);
        // Whatever SWARM_ settings the test runner has must not matter to the demo.
        command.env("SWARM_NATS__URL", "nats://127.0.0.1:1");
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        Demo {
            child: command.spawn().expect("demo starts"),
            output,
        }
    }

    fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.output) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Waits until the output contains `text`; panics with the output if the demo exits or the
    /// time runs out.
    async fn wait_output(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(text) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the demo exited ({status}) before printing {text:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} within {timeout:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ctrl-C, as a terminal sends it to its foreground process group; then the exit status.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not stop within 60 s of Ctrl-C:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

async fn api_state(addr: SocketAddr) -> Option<Value> {
    let response = testkit::http::get(addr, "/api/state", Duration::from_secs(5))
        .await
        .ok()?;
    (response.status == 200).then(|| response.json().ok())?
}

async fn wait_state(
    addr: SocketAddr,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(state) = api_state(addr).await {
            if done(&state) {
                return;
            }
            last = Some(state);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; last state: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn four_drones_58_cores(state: &Value) -> bool {
    state["drones"].as_array().map(Vec::len) == Some(4) && state["summary"]["cores"]["total"] == 58
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_builds_the_world_and_ctrl_c_leaves_nothing_running() {
    let work = tempfile::tempdir().expect("tempdir");
    let clone = work.path().join("build-swarm");
    clean_copy(&clone);
    let demo_dir = clone.join(".swarm-demo");
    let nats_port = testkit::free_port().expect("free port");
    let dashboard_port = testkit::free_port().expect("free port");
    let binhost_port = testkit::free_port().expect("free port");
    let addr = SocketAddr::from(([127, 0, 0, 1], dashboard_port));
    let args: Vec<String> = [
        "--time-scale",
        "0.0003",
        "--nats-port",
        &nats_port.to_string(),
        "--dashboard-port",
        &dashboard_port.to_string(),
        "--binhost-port",
        &binhost_port.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let mut demo = Demo::start(&clone, work.path().join("demo-1.log"), &args);
    demo.wait_output(&format!("dashboard  http://{addr}/"), FIRST_START)
        .await;
    wait_state(
        addr,
        Duration::from_secs(30),
        "4 drones, 58 cores",
        four_drones_58_cores,
    )
    .await;
    wait_state(addr, Duration::from_secs(180), "all 152 succeeded", |s| {
        s["summary"]["packages"]["succeeded"] == 152 && s["summary"]["queue"] == 0
    })
    .await;
    demo.wait_output("All 152 packages finished", Duration::from_secs(30))
        .await;
    // The run published itself; the demo says how a Gentoo machine uses it, and Portage's own
    // client lists the 152 packages there and downloads and verifies every one.
    // The demo's drones share one fingerprint: its binhost is `amd64@<that fingerprint>`.
    let prefix = format!("sync-uri = http://127.0.0.1:{binhost_port}/published/amd64@");
    demo.wait_output(&prefix, Duration::from_secs(30)).await;
    let output = demo.output();
    let sync_uri = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("sync-uri = "))
        .expect("the sync-uri line")
        .to_owned();
    // The README shows the demo's binhost as it is.
    let binhost = sync_uri.rsplit('/').next().expect("the binhost name");
    let readme =
        std::fs::read_to_string(testkit::workspace_root().join("README.md")).expect("README");
    assert!(
        readme.contains(&format!(
            "sync-uri = http://127.0.0.1:8090/published/{binhost}\n"
        )),
        "the README's demo output names another binhost than {binhost}"
    );
    let client_root = work.path().join("gentoo-client");
    std::fs::create_dir_all(&client_root).expect("client root");
    let client = testkit::portage::oracle(&[
        "binhost-client",
        &sync_uri,
        &client_root.display().to_string(),
        "download",
    ])
    .expect("Portage reads the demo's binhost");
    let packages = client["packages"].as_object().expect("packages");
    assert_eq!(packages.len(), 152, "{}", client["messages"]);
    for (cpv, entry) in packages {
        assert_eq!(entry["downloaded"]["verified"], true, "{cpv}: {entry}");
    }
    let status = demo.interrupt();
    let output = demo.output();
    assert!(
        status.success(),
        "exit status {status} after Ctrl-C:\n{output}"
    );
    for expected in [
        "Drones:    ",
        "Status:    BUILDING",
        "152 succeeded, 0 failed",
        "Published: amd64@",
        ": revision 1",
        "152 packages",
        "[swarm]",
        "stopped all 8 processes the demo started",
    ] {
        assert!(output.contains(expected), "{expected:?} missing:\n{output}");
    }
    let left = processes_naming(&demo_dir);
    assert!(left.is_empty(), "left running after Ctrl-C: {left:#?}");
    drop(demo);

    // Again, in the same copy: it starts afresh and stops cleanly.
    let mut again = Demo::start(&clone, work.path().join("demo-2.log"), &args);
    again
        .wait_output(&format!("dashboard  http://{addr}/"), START)
        .await;
    wait_state(
        addr,
        Duration::from_secs(30),
        "second run: 4 drones, 58 cores",
        |s| four_drones_58_cores(s) && s["progress"]["total"] == 152,
    )
    .await;
    let status = again.interrupt();
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        again.output()
    );
    let left = processes_naming(&demo_dir);
    assert!(
        left.is_empty(),
        "left running after the second run: {left:#?}"
    );
}
