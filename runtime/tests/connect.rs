//! Every way a swarm binary can authenticate to NATS, against real servers configured for it:
//! user and password, token, nkey seed, a `.creds` file (JWT and seed, decentralised auth), and
//! TLS with a client certificate. A wrong credential is refused, and no error ever repeats the
//! secret.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use swarm_runtime::nats::NatsConfig;
use testkit::NatsServer;

fn config(server: &NatsServer) -> NatsConfig {
    NatsConfig {
        url: server.client_url(),
        connect_timeout_ms: 2_000,
        ..Default::default()
    }
}

/// Connects and proves the connection works with a round trip to the server.
async fn works(config: &NatsConfig) -> Result<(), String> {
    let client = config
        .connect_once("swarm-test")
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), client.flush())
        .await
        .map_err(|_| "no flush within 5 s".to_owned())?
        .map_err(|e| e.to_string())
}

/// A wrong credential is refused, and the error does not contain `secret`.
async fn refused_without_leaking(config: &NatsConfig, secret: &str) {
    let err = works(config)
        .await
        .expect_err("a wrong credential is refused");
    assert!(!err.contains(secret), "the error repeats the secret: {err}");
}

/// A server started with `server_config` accepts the credential `right` and refuses `wrong`,
/// each put into the client's configuration by `set`, without repeating `wrong` in the error.
async fn accepts_only(
    server_config: String,
    set: impl Fn(&mut NatsConfig, String),
    right: String,
    right_works: &str,
    wrong: String,
) {
    let server = NatsServer::builder()
        .extra_config(server_config)
        .start()
        .expect("nats-server");
    let mut c = config(&server);
    set(&mut c, right);
    works(&c).await.expect(right_works);
    set(&mut c, wrong.clone());
    refused_without_leaking(&c, &wrong).await;
}

#[tokio::test]
async fn user_and_password() {
    accepts_only(
        "authorization { users = [ { user: swarm, password: \"right-pw\" } ] }".into(),
        |c, password| {
            c.user = Some("swarm".into());
            c.password = Some(password);
        },
        "right-pw".into(),
        "the right password works",
        "wrong-pw-123".into(),
    )
    .await;
}

#[tokio::test]
async fn token() {
    accepts_only(
        "authorization { token: \"right-token\" }".into(),
        |c, token| c.token = Some(token),
        "right-token".into(),
        "the right token works",
        "wrong-token-456".into(),
    )
    .await;
}

#[tokio::test]
async fn nkey_seed() {
    let user = nkeys::KeyPair::new_user();
    accepts_only(
        format!(
            "authorization {{ users = [ {{ nkey: {} }} ] }}",
            user.public_key()
        ),
        |c, seed| c.nkey_seed = Some(seed),
        user.seed().expect("seed"),
        "the user's seed works",
        nkeys::KeyPair::new_user().seed().expect("seed"),
    )
    .await;
}

/// Base64url without padding, as JWTs use it.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A JWT of NATS decentralised auth: `claims` about `subject`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = serde_json::json!({ "typ": "JWT", "alg": "ed25519-nkey" });
    let claims = serde_json::json!({
        "jti": format!("{name}-{subject}"),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signing_input.as_bytes()).expect("signs");
    format!("{signing_input}.{}", b64url(&signature))
}

/// The text of a `.creds` file: a user's JWT and nkey seed.
fn creds_text(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

#[tokio::test]
async fn creds_file() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "swarm-operator",
        serde_json::json!({ "type": "operator", "version": 2 }),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "swarm",
        serde_json::json!({ "type": "account", "version": 2, "limits": unlimited }),
    );
    // JetStream needs a system account in operator mode.
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({ "type": "account", "version": 2, "limits": unlimited }),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "drone-Izar",
        serde_json::json!({ "type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1 }),
    );
    let server = NatsServer::builder()
        .extra_config(format!(
            "operator: {operator_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {account_jwt}\n  {}: {system_jwt}\n}}",
            system.public_key(),
            account.public_key(),
            system.public_key()
        ))
        .start()
        .expect("nats-server in operator mode");
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("drone.creds");
    let seed = user.seed().expect("seed");
    std::fs::write(&creds, creds_text(&user_jwt, &seed)).expect("creds written");
    let mut c = config(&server);
    c.creds_file = Some(creds.clone());
    works(&c).await.expect("the creds file works");

    // A creds file of a user the account never signed is refused, and its seed stays secret.
    let stranger = nkeys::KeyPair::new_user();
    let other_account = nkeys::KeyPair::new_account();
    let forged = jwt(
        &other_account,
        &stranger.public_key(),
        "intruder",
        serde_json::json!({ "type": "user", "version": 2 }),
    );
    let stranger_seed = stranger.seed().expect("seed");
    std::fs::write(&creds, creds_text(&forged, &stranger_seed)).expect("creds written");
    refused_without_leaking(&c, &stranger_seed).await;
    // A creds file that does not exist is named in the error.
    c.creds_file = Some(dir.path().join("missing.creds"));
    let err = works(&c).await.expect_err("missing file");
    assert!(err.contains("missing.creds"), "{err}");
}

/// Runs openssl with `args` in `dir`; the test needs the openssl command (Debian's `openssl`).
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (package openssl) makes the test certificates");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A self-signed CA named `subject`: `<name>-key.pem` and `<name>.pem`.
fn ca(dir: &Path, subject: &str, name: &str) {
    let (key, pem) = (format!("{name}-key.pem"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
            "-keyout", &key, "-out", &pem,
        ],
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn certificates(dir: &Path) {
    ca(dir, "/CN=swarm test CA", "ca");
    // Extensions make the certificates X.509 v3, the only version rustls accepts.
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        let (key, csr, pem) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let subject = format!("/CN={name}");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key, "-out",
                &csr,
            ],
        );
        let args = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            ext,
        ];
        openssl(dir, &args);
    }
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let path = |name: &str| dir.path().join(name);
    let server = NatsServer::builder()
        .extra_config(format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}",
            path("server.pem").display().to_string(),
            path("server-key.pem").display().to_string(),
            path("ca.pem").display().to_string(),
        ))
        .start()
        .expect("nats-server with TLS");
    let mut c = config(&server);
    c.tls_ca = Some(path("ca.pem"));
    c.tls_cert = Some(path("client.pem"));
    c.tls_key = Some(path("client-key.pem"));
    works(&c)
        .await
        .expect("TLS with the client certificate works");
    // The server requires a client certificate.
    c.tls_cert = None;
    c.tls_key = None;
    works(&c)
        .await
        .expect_err("no client certificate, no connection");
    // A client that does not trust the server's CA refuses it.
    ca(dir.path(), "/CN=another CA", "other-ca");
    c.tls_ca = Some(path("other-ca.pem"));
    c.tls_cert = Some(path("client.pem"));
    c.tls_key = Some(path("client-key.pem"));
    works(&c)
        .await
        .expect_err("a server signed by another CA is refused");
}
