//! A nats-server running `deploy/nats-server.conf` as it is (its store folder moved into a temp
//! folder), every role's password in its environment, and the credentials components get.

use std::path::PathBuf;

use testkit::NatsServer;

/// The roles of the deploy config and the environment variable each password is read from.
pub const ROLES: [(&str, &str); 9] = [
    ("coordinator", "NATS_PASSWORD_COORDINATOR"),
    ("dashboard", "NATS_PASSWORD_DASHBOARD"),
    ("binhost", "NATS_PASSWORD_BINHOST"),
    ("operator", "NATS_PASSWORD_OPERATOR"),
    ("drone-Izar", "NATS_PASSWORD_DRONE_IZAR"),
    ("drone-Tarn", "NATS_PASSWORD_DRONE_TARN"),
    ("drone-Meridian", "NATS_PASSWORD_DRONE_MERIDIAN"),
    ("drone-Tau-Beta", "NATS_PASSWORD_DRONE_TAU_BETA"),
    ("drone-gentoo", "NATS_PASSWORD_DRONE_GENTOO"),
];

pub fn password(role: &str) -> String {
    format!("pw-{role}-for-tests")
}

/// `deploy/nats-server.conf` with its JetStream folder in `dir`, every role's password in the
/// server's environment.
pub fn secured_server(dir: &std::path::Path) -> NatsServer {
    let deploy = testkit::workspace_root().join("deploy/nats-server.conf");
    let text = std::fs::read_to_string(&deploy).expect("deploy/nats-server.conf");
    let store_line = "store_dir: \"/var/lib/nats\"";
    assert_eq!(
        text.matches(store_line).count(),
        1,
        "the deploy config names its store folder once"
    );
    let store = dir.join("store");
    let config: PathBuf = dir.join("nats-server.conf");
    std::fs::write(
        &config,
        text.replace(
            store_line,
            &format!("store_dir: {:?}", store.display().to_string()),
        ),
    )
    .expect("config written");
    let mut builder = NatsServer::builder().config_file(&config);
    for (role, var) in ROLES {
        builder = builder.env(var, password(role));
    }
    builder.start().expect("nats-server runs the deploy config")
}

pub fn credential(role: &str) -> Vec<(String, String)> {
    vec![
        ("SWARM_NATS__USER".to_owned(), role.to_owned()),
        ("SWARM_NATS__PASSWORD".to_owned(), password(role)),
    ]
}
