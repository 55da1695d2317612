//! The systemd units and OpenRC scripts under `deploy/`, checked against the binaries they start
//! (no service manager runs here): systemd's own parser reads every unit, the shell reads every
//! script, and both kill a daemon only after the longest it takes to stop (for a drone, its grace
//! period and the wind-down after it; `--check-config` prints the bound).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use swarm_tests::bin;
use swarm_tests::deploy::{DAEMONS, read, root, stop_bound_ms};

/// The `[Service]` settings of a systemd unit.
fn unit(path: &str) -> BTreeMap<String, String> {
    let mut section = String::new();
    let mut settings = BTreeMap::new();
    for line in read(path).lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Service]"
            && let Some((key, value)) = line.split_once('=')
            && !line.starts_with('#')
        {
            settings.insert(key.to_owned(), value.to_owned());
        }
    }
    settings
}

/// The most `binary` takes to stop with its sample config, in ms.
fn stop_bound(binary: &str, sample: &str) -> u64 {
    let output = Command::new(bin(binary))
        .env_clear()
        .arg("--config")
        .arg(root().join("config").join(sample))
        .arg("--check-config")
        .output()
        .expect("runs");
    assert!(output.status.success(), "{binary}: {output:?}");
    stop_bound_ms(&String::from_utf8_lossy(&output.stdout))
}

#[test]
fn systemd_units_start_our_binaries_and_stop_drones_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (binary, sample) in DAEMONS {
        let path = format!("deploy/systemd/{binary}.service");
        let settings = unit(&path);
        let exec = &settings["ExecStart"];
        assert_eq!(
            exec,
            &format!("/usr/local/bin/{binary} --config /etc/swarm/{sample}"),
            "{path}"
        );
        assert!(root().join("config").join(sample).is_file());
        assert_eq!(
            settings["ExecStartPre"],
            format!("{exec} --check-config"),
            "{path} checks the config before starting"
        );
        // systemd's own parser, with the binaries where the unit expects them here.
        let local = read(&path).replace(
            "/usr/local/bin/",
            &format!("{}/", bin(binary).parent().expect("dir").display()),
        );
        let copy = dir.path().join(format!("{binary}.service"));
        std::fs::write(&copy, local).expect("written");
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output();
        match verify {
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(
                    output.status.success() && stderr.trim().is_empty(),
                    "{path}: systemd-analyze verify: {stderr}"
                );
            }
            Err(err) => panic!("systemd-analyze (Debian's systemd package) is needed: {err}"),
        }
        // SIGKILL only after the longest the daemon takes to stop, NATS reachable or not.
        let timeout: u64 = settings["TimeoutStopSec"].parse().expect("seconds");
        let bound = stop_bound(binary, sample);
        assert!(
            timeout * 1000 > bound,
            "{path}: TimeoutStopSec={timeout} cuts its stop, up to {bound} ms"
        );
    }
    let drone = unit("deploy/systemd/swarm-drone.service");
    // SIGTERM to the drone alone (builds run in their own process groups and must not get it).
    assert_eq!(drone["KillMode"], "mixed");
    assert_eq!(drone["KillSignal"], "SIGTERM");
}

#[test]
fn openrc_scripts_start_our_binaries_and_stop_drones_gracefully() {
    for (binary, sample) in DAEMONS {
        let path = root().join(format!("deploy/openrc/{binary}"));
        let syntax = Command::new("sh")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("sh");
        assert!(
            syntax.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&syntax.stderr)
        );
        assert!(read(&format!("deploy/openrc/{binary}")).starts_with("#!/sbin/openrc-run\n"));
        // What openrc-run reads from the script, as the shell evaluates it.
        let script = format!(
            "RC_SVCNAME={binary}; . '{}'; printf '%s\\n' \"$command\" \"$command_args\" \"$retry\" \"$command_background\"",
            path.display()
        );
        let output = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh");
        let text = String::from_utf8_lossy(&output.stdout);
        let values: Vec<&str> = text.lines().collect();
        assert_eq!(values.len(), 4, "{}: {text}", path.display());
        assert_eq!(values[0], format!("/usr/local/bin/{binary}"));
        assert_eq!(values[1], format!("--config /etc/swarm/{sample}"));
        assert_eq!(values[3], "yes");
        let retry: Vec<&str> = values[2].split('/').collect();
        assert_eq!(retry[0], "TERM", "{binary} is stopped with SIGTERM first");
        assert_eq!(retry[2], "KILL");
        let wait: u64 = retry[1].parse().expect("seconds");
        let bound = stop_bound(binary, sample);
        assert!(
            wait * 1000 > bound,
            "{binary} is killed after {wait} s, before it has stopped (up to {bound} ms)"
        );
    }
    let confd = root().join("deploy/openrc/swarm-drone.confd");
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(&confd)
        .output()
        .expect("sh");
    assert!(syntax.status.success());
}

#[test]
fn service_files_exist_for_every_daemon() {
    let listed = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(root().join(dir))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let systemd = listed("deploy/systemd");
    let openrc = listed("deploy/openrc");
    for (daemon, _) in DAEMONS {
        assert!(
            systemd.contains(&format!("{daemon}.service")),
            "{systemd:?}"
        );
        assert!(openrc.contains(daemon), "{openrc:?}");
    }
}
