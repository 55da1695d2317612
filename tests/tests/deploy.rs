//! The deployment files, checked against the code they deploy (no Docker engine or service
//! manager runs here): `docker-compose.yml` and the `Dockerfile`, the sample configs under
//! `config/`, and the systemd and OpenRC service files under `deploy/`. Every command must be one
//! of the swarm's binaries and every setting must be accepted by that binary's own config
//! loader, so the files cannot drift from the code. The service files are checked in
//! `services.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_yaml::Value;
use swarm_tests::bin;
use swarm_tests::deploy::{BINARIES, DAEMONS, read, root, stop_bound_ms};

/// Runs a built binary with exactly `env` and `args`; (success, stdout + stderr).
fn run(binary: &str, env: &BTreeMap<String, String>, args: &[&str]) -> (bool, String) {
    let output = Command::new(bin(binary))
        .env_clear()
        .envs(env)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{binary} runs: {e}"));
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Compose's `${NAME:-default}` and `${NAME}` with nothing set in the environment, as a fresh
/// `docker compose up` sees them.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .expect("closed ${");
        let inner = &rest[start + 2..end];
        if let Some((_, default)) = inner.split_once(":-") {
            out.push_str(default);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => interpolate(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .map(|m| m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect())
        .unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| s.iter().map(scalar).collect())
        .unwrap_or_default()
}

/// The password variables the deploy config reads from nats-server's environment.
fn password_variables() -> BTreeSet<String> {
    let text = read("deploy/nats-server.conf");
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')))
        .filter_map(|word| word.strip_prefix("$NATS_PASSWORD_"))
        .filter(|rest| !rest.is_empty())
        .map(|rest| format!("NATS_PASSWORD_{rest}"))
        .collect()
}

/// The users of the deploy config.
fn deploy_users() -> BTreeSet<String> {
    read("deploy/nats-server.conf")
        .lines()
        .filter_map(|line| {
            let at = line.find("user: ")?;
            let rest = &line[at + 6..];
            Some(rest.split([',', ' ']).next()?.to_owned())
        })
        .collect()
}

#[test]
fn compose_services_run_our_binaries_with_settings_their_loaders_accept() {
    let compose: Value = serde_yaml::from_str(&read("docker-compose.yml")).expect("YAML");
    let services = compose["services"].as_mapping().expect("services");
    let readme = read("README.md");

    // NATS: the official image, pinned to a version the swarm supports, running our config with
    // its data on a volume and every password the config reads.
    let nats = &compose["services"]["nats"];
    let image = scalar(&nats["image"]);
    let version = image
        .strip_prefix("nats:")
        .expect("the official nats image");
    let mut parts = version
        .split('.')
        .map(|p| p.parse::<u32>().expect("a pinned x.y.z"));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!((major, minor) >= (2, 11), "{image} is older than 2.11");
    assert_eq!(parts.count(), 1, "{image}: pin a full version");
    assert!(
        readme.contains(&format!("`{image}`")),
        "README does not name {image}"
    );
    assert_eq!(
        strings(&nats["command"]),
        ["-c", "/etc/nats/nats-server.conf"]
    );
    let volumes = strings(&nats["volumes"]);
    assert!(volumes.contains(&"./deploy/nats-server.conf:/etc/nats/nats-server.conf:ro".into()));
    assert!(
        volumes.iter().any(|v| v.ends_with(":/var/lib/nats")),
        "JetStream data on a volume: {volumes:?}"
    );
    assert!(read("deploy/nats-server.conf").contains("store_dir: \"/var/lib/nats\""));
    let nats_env: BTreeSet<String> = environment(nats).into_keys().collect();
    assert_eq!(nats_env, password_variables());

    // Every other service: our image, one of our binaries, and an environment its loader takes.
    let users = deploy_users();
    let mut drones = BTreeMap::new();
    let mut dashboard_port = None;
    let mut binhost_port = None;
    for (name, service) in services {
        let name = scalar(name);
        // Services of a profile are not started by `docker compose up` (checked below).
        if name == "nats" || !service["profiles"].is_null() {
            continue;
        }
        assert_eq!(scalar(&service["image"]), "build-swarm:latest", "{name}");
        assert_eq!(scalar(&service["build"]), ".", "{name}");
        let command = strings(&service["command"]);
        let binary = command
            .first()
            .unwrap_or_else(|| panic!("{name}: no command"));
        assert!(
            BINARIES.contains(&binary.as_str()),
            "{name}: {binary} is not ours"
        );
        assert!(
            read("Dockerfile").contains(&format!("/usr/local/bin/{binary}")),
            "{name}: the image has no {binary}"
        );
        let env = environment(service);
        let mut args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
        args.push("--check-config");
        let (ok, output) = run(binary, &env, &args);
        assert!(
            ok,
            "{name}: {binary} refuses its compose settings:\n{output}"
        );
        assert!(
            output.contains("configuration is valid"),
            "{name}: {output}"
        );
        // Docker kills it only after the longest it takes to stop (10 s unless set).
        let stop_secs: u64 = match service["stop_grace_period"].is_null() {
            true => 10,
            false => scalar(&service["stop_grace_period"])
                .trim_end_matches('s')
                .parse()
                .expect("seconds"),
        };
        let bound = stop_bound_ms(&output);
        assert!(
            stop_secs * 1000 > bound,
            "{name}: stop_grace_period {stop_secs}s cuts its stop, up to {bound} ms"
        );
        // Its NATS user exists in the deploy config, and drones connect as themselves.
        let user = env.get("SWARM_NATS__USER").expect("a NATS user");
        assert!(
            users.contains(user),
            "{name}: user {user} is not in the deploy config"
        );
        if binary == "swarm-drone" {
            let drone = env.get("SWARM_DRONE__NAME").expect("a drone name");
            assert_eq!(user, drone, "{name}: a drone's user is its name");
            drones.insert(drone.clone(), env["SWARM_DRONE__CORES"].clone());
        }
        if binary == "swarm-dashboard" {
            dashboard_port = Some(strings(&service["ports"]));
        }
        if binary == "swarm-binhost" {
            binhost_port = Some(strings(&service["ports"]));
        }
    }
    // The seed's swarm, and the dashboard where the README says.
    let seed: BTreeMap<String, String> = [
        ("drone-Izar", "16"),
        ("drone-Tarn", "10"),
        ("drone-Meridian", "24"),
        ("drone-Tau-Beta", "8"),
    ]
    .iter()
    .map(|(n, c)| (n.to_string(), c.to_string()))
    .collect();
    assert_eq!(drones, seed);
    assert_eq!(dashboard_port, Some(vec!["127.0.0.1:8080:8080".to_owned()]));
    assert!(readme.contains("http://localhost:8080/"));
    // The binhost where the README's binrepos.conf lines point.
    assert_eq!(binhost_port, Some(vec!["127.0.0.1:8090:8090".to_owned()]));
    assert!(readme.contains("sync-uri = http://localhost:8090/published/amd64@"));
}

/// The `gentoo` profile: one real build machine, a Gentoo stage3 running the emerge builder,
/// documented for users with Docker (no Docker engine runs here, so its content is checked).
#[test]
fn the_gentoo_profile_runs_the_emerge_builder_in_a_stage3() {
    let compose: Value = serde_yaml::from_str(&read("docker-compose.yml")).expect("YAML");
    let drone = &compose["services"]["drone-gentoo"];
    assert_eq!(strings(&drone["profiles"]), ["gentoo"]);
    let dockerfile_path = scalar(&drone["build"]["dockerfile"]);
    assert_eq!(scalar(&drone["build"]["context"]), ".");
    let dockerfile = read(&dockerfile_path);
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].starts_with("FROM rust:"), "{}", stages[0]);
    assert!(stages[1].starts_with("FROM gentoo/stage3"), "{}", stages[1]);
    assert!(
        dockerfile.contains(
            "COPY --from=build /src/target/release/swarm-drone /usr/local/bin/swarm-drone"
        )
    );
    assert_eq!(strings(&drone["command"]), ["swarm-drone"]);
    let env = environment(drone);
    assert_eq!(env["SWARM_DRONE__BUILDER"], "emerge");
    assert_eq!(env["SWARM_NATS__USER"], env["SWARM_DRONE__NAME"]);
    assert!(deploy_users().contains(&env["SWARM_NATS__USER"]));
    assert!(
        env["SWARM_DRONE__BINHOST"].contains("http://binhost:8090/staging/amd64"),
        "its dependencies come from the swarm's staging view"
    );
    let (ok, output) = run("swarm-drone", &env, &["--check-config"]);
    assert!(ok && output.contains("configuration is valid"), "{output}");
    let volumes = strings(&drone["volumes"]);
    for mount in [
        ":/var/db/repos/gentoo",
        ":/var/cache/distfiles",
        ":/var/cache/binpkgs",
    ] {
        assert!(
            volumes.iter().any(|v| v.ends_with(mount)),
            "{mount}: {volumes:?}"
        );
    }
    // Stopping it lets running builds finish within the drone's grace, and the drone stop.
    let stop: u64 = scalar(&drone["stop_grace_period"])
        .trim_end_matches('s')
        .parse()
        .expect("seconds");
    let bound = stop_bound_ms(&output);
    assert!(
        stop * 1000 > bound,
        "stop_grace_period {stop}s cuts the drone's stop, up to {bound} ms"
    );
    let readme = read("README.md");
    for documented in [
        "docker compose --profile gentoo run --rm drone-gentoo emerge-webrsync",
        "docker compose --profile gentoo up --build",
    ] {
        assert!(readme.contains(documented), "README lacks {documented:?}");
    }
}

#[test]
fn compose_settings_that_drift_are_caught() {
    // The check above is only worth something if a wrong key fails it.
    let env: BTreeMap<String, String> = [("SWARM_DRONE__CORSE".to_owned(), "8".to_owned())].into();
    let (ok, output) = run("swarm-drone", &env, &["--check-config"]);
    assert!(!ok);
    assert!(output.contains("corse"), "{output}");
}

#[test]
fn the_image_builds_every_binary_with_the_workspace_toolchain() {
    let dockerfile = read("Dockerfile");
    let manifest = read("Cargo.toml");
    let required = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("rust-version");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert!(
        stages[0].starts_with(&format!("FROM rust:{required}")),
        "the build stage uses Rust {required}: {}",
        stages[0]
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
    for binary in BINARIES {
        assert!(
            dockerfile.contains(&format!(
                "COPY --from=build /src/target/release/{binary} /usr/local/bin/{binary}"
            )),
            "{binary} is not copied into the image"
        );
    }
    assert!(
        dockerfile.contains("USER swarm"),
        "the image runs unprivileged"
    );
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l == "target/"));
}

#[test]
fn the_sample_configs_pass_their_binaries_check() {
    for (binary, sample) in DAEMONS {
        let path = root().join("config").join(sample);
        let (ok, output) = run(
            binary,
            &BTreeMap::new(),
            &["--config", &path.display().to_string(), "--check-config"],
        );
        assert!(
            ok && output.contains("configuration is valid"),
            "{sample}: {output}"
        );
    }
    // swarmctl has no --check-config; it loads its config before any command, so a bad one is
    // refused before it would connect anywhere.
    let path = root().join("config/swarmctl.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("swarmctl.toml");
    std::fs::write(
        &bad,
        read("config/swarmctl.toml").replace("[log]", "[log]\nformt = \"json\""),
    )
    .expect("written");
    let (ok, output) = run(
        "swarmctl",
        &BTreeMap::new(),
        &["--config", &bad.display().to_string(), "status"],
    );
    assert!(!ok && output.contains("formt"), "{output}");
    let good = std::fs::read_to_string(&path).expect("sample");
    assert!(good.contains("user = \"operator\""));
}
