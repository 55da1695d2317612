//! The systemd units and OpenRC scripts under `deploy/`, checked against the binaries they start
//! (no service manager runs here): systemd's own parser reads every unit, the shell reads every
//! script, and both stop a drone only after its grace period.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use swarm_tests::bin;
use swarm_tests::deploy::{DAEMONS, read, root};

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

fn default_grace_secs() -> u64 {
    drone::config::Settings::default().shutdown_grace_ms / 1000
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
    }
    let drone = unit("deploy/systemd/swarm-drone.service");
    // SIGTERM to the drone alone (builds run in their own process groups and must not get it),
    // and SIGKILL only after the drone's grace period.
    assert_eq!(drone["KillMode"], "mixed");
    assert_eq!(drone["KillSignal"], "SIGTERM");
    let timeout: u64 = drone["TimeoutStopSec"].parse().expect("seconds");
    assert!(
        timeout > default_grace_secs(),
        "TimeoutStopSec={timeout} cuts the drone's {} s grace",
        default_grace_secs()
    );
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
        if binary == "swarm-drone" {
            let wait: u64 = retry[1].parse().expect("seconds");
            assert!(
                wait > default_grace_secs(),
                "the drone is killed after {wait} s, within its {} s grace",
                default_grace_secs()
            );
        }
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
