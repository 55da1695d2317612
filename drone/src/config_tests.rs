//! Tests of `config.rs`: the sample file, the environment, and every refusal by name.

use super::*;
use figment::Jail;

/// `config/drone.toml` names every key of this binary's configuration (set, or commented out
/// at its default) and nothing else, and loads and validates as it is.
#[test]
fn the_sample_file_documents_every_key_and_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/drone.toml");
    if let Err(err) = runtime::daemon::check_sample::<Config>(&path) {
        panic!("{err}");
    }
}

#[test]
fn env_overrides_file_and_command_is_a_toml_array() {
    Jail::expect_with(|jail| {
        jail.create_file("d.toml", "[drone]\nname = \"from-file\"\ncores = 8\n")?;
        jail.set_env("SWARM_DRONE__NAME", "drone-Izar");
        jail.set_env("SWARM_DRONE__CORES", "16");
        jail.set_env("SWARM_DRONE__SLOTS", "4");
        jail.set_env("SWARM_DRONE__BUILDER", "command");
        jail.set_env("SWARM_DRONE__COMMAND", "[\"/bin/echo\", \"{atom}\"]");
        jail.set_env("SWARM_NATS__URL", "nats://127.0.0.1:4333");
        let config: Config = runtime::config::load(Some(std::path::Path::new("d.toml")))
            .map_err(|e| e.to_string())?;
        assert_eq!(config.drone.name, "drone-Izar");
        assert_eq!(config.drone.cores, 16);
        assert_eq!(config.drone.slots(), 4);
        assert_eq!(config.drone.cores_per_slot(), 4);
        assert_eq!(config.drone.builder, BuilderKind::Command);
        assert_eq!(config.drone.command, vec!["/bin/echo", "{atom}"]);
        assert_eq!(config.nats.url, "nats://127.0.0.1:4333");
        assert!(config.validate().is_ok());
        Ok(())
    });
}

#[test]
fn invalid_values_name_their_key() {
    type Mutate = fn(&mut Settings);
    let cases: Vec<(Mutate, &str)> = vec![
        (|s| s.name = "bad name".into(), "drone.name"),
        (|s| s.cores = 0, "drone.cores"),
        (|s| s.slots = 999, "drone.slots"),
        (
            |s| {
                s.builder = BuilderKind::Command;
                s.command = vec![];
            },
            "drone.command",
        ),
        (
            |s| {
                s.builder = BuilderKind::Command;
                s.command = vec!["x".into()];
            },
            "drone.command",
        ),
        (
            |s| s.simulate.failure_rate = 2.0,
            "drone.simulate.failure_rate",
        ),
        (|s| s.heartbeat_ms = 1, "drone.heartbeat_ms"),
        (
            |s| s.fingerprint.chost = "x86_64 pc".into(),
            "drone.fingerprint.chost",
        ),
        (
            |s| s.fingerprint.profile = " ".into(),
            "drone.fingerprint.profile",
        ),
        (
            |s| s.fingerprint.refresh_ms = 1,
            "drone.fingerprint.refresh_ms",
        ),
        (
            |s| {
                s.fingerprint.settings.insert("CFLAG".into(), "-O2".into());
            },
            "drone.fingerprint.settings.CFLAG",
        ),
        (|s| s.binhost = vec!["binhost:8090".into()], "drone.binhost"),
        (
            |s| s.binhost = vec!["http://a http://b".into()],
            "drone.binhost",
        ),
        (
            |s| s.ground_after_failures = 0,
            "drone.ground_after_failures",
        ),
    ];
    for (mutate, key) in cases {
        let mut config = Config::default();
        config.drone.name = "ok".into();
        config.drone.cores = 8;
        mutate(&mut config.drone);
        let err = config.validate().expect_err(key);
        assert!(err.to_string().contains(key), "{err} should name {key}");
    }
}

#[test]
fn fingerprint_settings_come_from_the_environment_too() {
    Jail::expect_with(|jail| {
        jail.set_env("SWARM_DRONE__FINGERPRINT__SETTINGS__CFLAGS", "-O2 -pipe");
        jail.set_env("SWARM_DRONE__FINGERPRINT__SOURCE", "config");
        let config = runtime::config::load::<Config>(None).expect("loads");
        config.validate().expect("valid");
        let values: Vec<(String, String)> = config
            .drone
            .fingerprint
            .settings
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect();
        assert_eq!(values, [("CFLAGS".to_owned(), "-O2 -pipe".to_owned())]);
        Ok(())
    });
}

#[test]
fn unknown_key_is_rejected_by_name() {
    Jail::expect_with(|jail| {
        jail.create_file("d.toml", "[drone]\ncorez = 8\n")?;
        let err = runtime::config::load::<Config>(Some(std::path::Path::new("d.toml")))
            .expect_err("unknown key");
        assert!(err.to_string().contains("corez"), "{err}");
        Ok(())
    });
}

#[test]
fn default_name_is_valid() {
    assert!(
        DroneName::parse(&default_name()).is_ok(),
        "{}",
        default_name()
    );
}
