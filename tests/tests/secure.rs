//! End-to-end against a nats-server running `deploy/nats-server.conf` (only its store folder
//! moved into a temp dir, and the ports chosen by the test): every component works with its own
//! credential, and no role can do what it has no business doing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, Event};
use schemas::names;
use swarm_tests::secured::{ROLES, credential, password, secured_server};
use swarm_tests::*;
use testkit::NatsServer;
use tokio::sync::mpsc;

fn server_log(nats: &NatsServer) -> String {
    std::fs::read_to_string(nats.log_file()).unwrap_or_default()
}

/// The coordinator, two drones, the dashboard and swarmctl, each with its own user: the queue
/// is built, read, and a drone answers a control request, with no permission violation logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_works_with_its_own_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = secured_server(dir.path());
    // Every component logs everything it can (trace), to show that no password reaches a log.
    let mut coordinator_env: Vec<(String, String)> = credential("coordinator");
    coordinator_env.push(("RUST_LOG".into(), "trace".into()));
    let coordinator_env: Vec<(&str, &str)> = coordinator_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut swarm = Swarm::start_on(
        nats,
        Some(("operator".to_owned(), password("operator"))),
        &coordinator_env,
    )
    .await;
    // drone-Izar has 16 cores and 4 slots, so it takes big builds: its credential must let it
    // pull the big queue too.
    for (name, cores, slots) in [("drone-Izar", 16, 4), ("drone-Tarn", 8, 2)] {
        let mut spec = DroneSpec::new(name, cores, slots).env("RUST_LOG", "trace");
        for (k, v) in credential(name) {
            spec = spec.env(&k, &v);
        }
        swarm.spawn_drone(&spec);
    }
    let port = testkit::free_port().expect("free port");
    let mut dashboard_env = credential("dashboard");
    dashboard_env.push(("RUST_LOG".into(), "trace".into()));
    let dashboard_env: Vec<(&str, &str)> = dashboard_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    swarm.spawn_dashboard_with(port, &dashboard_env);
    let binhost_port = testkit::free_port().expect("free port");
    let mut binhost_env = credential("binhost");
    binhost_env.push(("RUST_LOG".into(), "trace".into()));
    let binhost_env: Vec<(&str, &str)> = binhost_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    swarm.spawn_binhost_with(binhost_port, &binhost_env);

    // The coordinator queues a job apart only for a big drone it sees online.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let drones = swarm.swarmctl_json(&["drones"]);
        let idle = drones
            .as_array()
            .map(|a| a.iter().filter(|d| d["state"] == "idle").count())
            .unwrap_or(0);
        if idle == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "drones not online: {drones}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The operator submits through swarmctl, as a user would: twelve packages and, from an atom
    // list with a size class, one giant, which goes to the big queue.
    let atoms: Vec<String> = (0..12).map(|i| format!("=dev-test/secure-1.{i}")).collect();
    let list = dir.path().join("giant.tsv");
    std::fs::write(&list, "www-client/chromium\t\tgiant\n").expect("atom list");
    let list = list.display().to_string();
    let mut args = vec!["submit", "--file", list.as_str()];
    args.extend(atoms.iter().map(String::as_str));
    let submitted = swarm.swarmctl(&args);
    assert!(
        submitted.status.success(),
        "submit as operator: {}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let packages = swarm.wait_final(13, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let status = swarm.swarmctl_json(&["status"]);
    assert_eq!(status["packages"]["succeeded"], 13, "{status}");
    // The giant was pulled from the big queue by drone-Izar and given all 16 cores: what the
    // coordinator learned is its duration scaled by 16 / 8.
    let giant = &packages["www-client/chromium"];
    let build = giant.history.last().expect("a build");
    assert_eq!(build.drone.as_str(), "drone-Izar", "{giant:?}");
    let learned = giant.learned_secs.expect("learned");
    let duration = build.duration_ms as f64 / 1000.0;
    assert!(
        (learned - duration * 2.0).abs() < 1e-6,
        "learned {learned} from {duration} s: not all 16 cores"
    );
    let drones = swarm.swarmctl_json(&["drones"]);
    assert_eq!(drones.as_array().map(Vec::len), Some(2), "{drones}");
    // A control request reaches the drone and its answer comes back to the operator.
    let unground = swarm.swarmctl(&["unground", "drone-Izar"]);
    assert_eq!(
        unground.status.code(),
        Some(1),
        "unground answered: {}",
        String::from_utf8_lossy(&unground.stdout)
    );
    assert!(String::from_utf8_lossy(&unground.stdout).contains("not grounded"));
    // The operator pauses and resumes the swarm, and reads a package's build history.
    for command in ["pause", "resume"] {
        let (ok, text) = swarm.swarmctl_text(&[command]);
        assert!(ok, "{command} as operator: {text}");
    }
    let history = swarm.swarmctl_json(&["history", "www-client/chromium"]);
    assert_eq!(history[0]["drone"], "drone-Izar", "{history}");

    // The dashboard, with its read-only user, shows the swarm.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = testkit::http::get(addr, "/api/state", Duration::from_secs(5))
            .await
            .ok()
            .and_then(|r| r.json().ok());
        if let Some(state) = &state
            && state["summary"]["packages"]["succeeded"] == 13
            && state["drones"].as_array().map(Vec::len) == Some(2)
            && state["fold"]["caught_up"] == true
            && state["builds"]["succeeded"] == 13
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed the swarm: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The operator publishes the binhost (the command builder wrote no binary package, so the
    // revision is empty), and swarm-binhost, with its read-only user, serves it and staging.
    let published = swarm.swarmctl(&["binhost", "publish"]);
    assert!(
        published.status.success(),
        "publish as operator: {}",
        String::from_utf8_lossy(&published.stdout)
    );
    let binhost = swarm.swarmctl_json(&["binhost", "status"])["binhost"].clone();
    let published_index = format!(
        "/published/{}/Packages",
        binhost.as_str().expect("its name")
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], binhost_port));
    for path in [published_index.as_str(), "/staging/amd64/Packages"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = testkit::http::get(addr, path, Duration::from_secs(5)).await;
            if let Ok(response) = &response
                && response.status == 200
            {
                assert!(response.body.contains("PACKAGES: 0"), "{}", response.body);
                break;
            }
            assert!(Instant::now() < deadline, "{path}: {response:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_no_password_in_logs(swarm.dir.path());
    let log = server_log(&swarm.nats);
    assert!(
        !log.contains("Violation"),
        "a component needed a permission it does not have:\n{}",
        log.lines()
            .filter(|l| l.contains("Violation"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// No log file in `dir` contains any role's password.
fn assert_no_password_in_logs(dir: &std::path::Path) {
    let mut read = 0;
    for entry in std::fs::read_dir(dir).expect("logs").flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            read += text.len();
            for (role, _) in ROLES {
                assert!(
                    !text.contains(&password(role)),
                    "{}: contains the password of {role}",
                    entry.path().display()
                );
            }
        }
    }
    assert!(
        read > 10_000,
        "the trace logs are suspiciously short ({read} bytes)"
    );
}

/// A wrong password, at trace level: refused, and neither the daemon's log nor swarmctl's error
/// repeats it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_never_appears_in_a_log_or_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = secured_server(dir.path());
    let wrong = "not-the-password-5f3c";
    let log_path = dir.path().join("drone.log");
    let mut drone = std::process::Command::new(bin("swarm-drone"))
        .env_clear()
        .env("SWARM_NATS__URL", nats.client_url())
        .env("SWARM_NATS__USER", "drone-Izar")
        .env("SWARM_NATS__PASSWORD", wrong)
        .env("SWARM_DRONE__NAME", "drone-Izar")
        .env("SWARM_DRONE__BUILDER", "simulate")
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("the drone starts");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = drone.kill();
    let _ = drone.wait();
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        log.to_lowercase().contains("authorization"),
        "the refusal is not in the log:\n{log}"
    );
    assert!(!log.contains(wrong), "the drone logged its password");
    let swarmctl = std::process::Command::new(bin("swarmctl"))
        .env_clear()
        .env("SWARM_NATS__URL", nats.client_url())
        .env("SWARM_NATS__USER", "operator")
        .env("SWARM_NATS__PASSWORD", wrong)
        .env("RUST_LOG", "trace")
        .arg("status")
        .output()
        .expect("swarmctl runs");
    assert_eq!(swarmctl.status.code(), Some(2));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&swarmctl.stdout),
        String::from_utf8_lossy(&swarmctl.stderr)
    );
    assert!(output.contains("cannot connect"), "{output}");
    assert!(
        !output.contains(wrong),
        "swarmctl printed the password: {output}"
    );
}

/// A connection as `role`, with the server's asynchronous errors (permission violations) on a
/// channel.
async fn connect_as(
    nats: &NatsServer,
    role: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (errors, seen) = mpsc::unbounded_channel();
    let client = ConnectOptions::with_user_and_password(role.to_owned(), password(role))
        .custom_inbox_prefix(format!("_INBOX.{role}"))
        .event_callback(move |event| {
            let errors = errors.clone();
            async move {
                if let Event::ServerError(err) = event {
                    let _ = errors.send(err.to_string());
                }
            }
        })
        .connect(nats.client_url())
        .await
        .expect("connects with its own credential");
    (client, seen)
}

/// `subjects` and every endpoint of the control service, each of which changes the swarm.
fn with_control(subjects: &[&str]) -> Vec<String> {
    let control = names::CONTROL_ENDPOINTS.map(names::control_subject);
    subjects
        .iter()
        .map(|s| (*s).to_owned())
        .chain(control)
        .collect()
}

/// Publishes to `subject` and expects the server to refuse it as a permissions violation.
async fn refused(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
    role: &str,
    subject: &str,
) {
    client
        .publish(subject.to_owned(), "x".into())
        .await
        .expect("handed to the client");
    client.flush().await.expect("flushed");
    let error = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .unwrap_or_else(|_| panic!("{role} published to {subject} and the server allowed it"))
        .expect("an error");
    let lower = error.to_lowercase();
    assert!(
        lower.contains("permissions violation") && error.contains(subject),
        "{role} → {subject}: unexpected server error {error:?}"
    );
}

/// What each role must not do, tried for real: the server refuses every attempt and nothing
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_cannot_overstep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = secured_server(dir.path());
    let coordinator_env = credential("coordinator");
    let coordinator_env: Vec<(&str, &str)> = coordinator_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let swarm = Swarm::start_on(
        nats,
        Some(("coordinator".to_owned(), password("coordinator"))),
        &coordinator_env,
    )
    .await;

    // A drone cannot submit, publish jobs, speak for another drone, write another drone's
    // record or package state, or touch the streams.
    let (izar, mut izar_errors) = connect_as(&swarm.nats, "drone-Izar").await;
    for subject in with_control(&[
        names::SUBMIT_SUBJECT,
        "swarm.build.amd64.dev-test_2Fforged",
        "swarm.event.drone-Tarn",
        "$KV.swarm-drones.drone-Tarn",
        "$KV.swarm-packages.dev-test_2Fforged",
        "$JS.API.STREAM.DELETE.SWARM_BUILDS",
        "$JS.API.STREAM.DELETE.SWARM_EVENTS",
        "$JS.API.STREAM.PURGE.SWARM_BUILDS",
        "$JS.API.STREAM.UPDATE.SWARM_BUILDS",
        "$JS.API.CONSUMER.DELETE.SWARM_BUILDS.builders-amd64",
        "swarm.ctl.drone.drone-Tarn",
    ]) {
        refused(&izar, &mut izar_errors, "drone-Izar", &subject).await;
    }
    // Through the JetStream API as a program would do it: refused, and the stream is still there.
    let mut js = async_nats::jetstream::new(izar.clone());
    js.set_timeout(Duration::from_secs(2));
    assert!(js.delete_stream(names::BUILDS_STREAM).await.is_err());

    // The dashboard publishes nothing the swarm reads or keeps.
    let (dashboard, mut dashboard_errors) = connect_as(&swarm.nats, "dashboard").await;
    for subject in with_control(&[
        names::SUBMIT_SUBJECT,
        "swarm.build.amd64.dev-test_2Fforged",
        "swarm.event.drone-Izar",
        "swarm.ctl.drone.drone-Izar",
        "$KV.swarm-drones.drone-Izar",
        "$KV.swarm-packages.dev-test_2Fforged",
        "$KV.swarm-leases.dev-test_2Fforged",
        "$JS.API.STREAM.DELETE.SWARM_EVENTS",
        "$JS.API.STREAM.PURGE.SWARM_EVENTS",
        "$JS.API.CONSUMER.DELETE.SWARM_EVENTS.coordinator",
        "$JS.API.CONSUMER.CREATE.SWARM_EVENTS.coordinator",
        "$JS.API.CONSUMER.CREATE.SWARM_EVENTS.coordinator.swarm.event.>",
        "$JS.API.CONSUMER.MSG.NEXT.SWARM_EVENTS.coordinator",
        "$JS.ACK.SWARM_BUILDS.builders-amd64.1.1.1.1.0",
        "anything.else",
    ]) {
        refused(&dashboard, &mut dashboard_errors, "dashboard", &subject).await;
    }

    // swarm-binhost reads what is published; it publishes, writes and asks nothing.
    let (binhost, mut binhost_errors) = connect_as(&swarm.nats, "binhost").await;
    for subject in with_control(&[
        names::SUBMIT_SUBJECT,
        names::BINHOST_SUBJECT,
        "$KV.swarm-binhost.current.amd64",
        "$KV.swarm-packages.dev-test_2Fforged",
        "$O.swarm-artifacts.C.forged",
        "$O.swarm-artifacts.M.Zm9yZ2Vk",
        "$JS.API.STREAM.PURGE.OBJ_swarm-artifacts",
        "$JS.API.STREAM.MSG.DELETE.OBJ_swarm-artifacts",
        "$JS.API.STREAM.DELETE.KV_swarm-binhost",
        "swarm.ctl.drone.drone-Izar",
    ]) {
        refused(&binhost, &mut binhost_errors, "binhost", &subject).await;
    }

    // The operator calls the control service, but writes no state and no jobs or events.
    let (operator, mut operator_errors) = connect_as(&swarm.nats, "operator").await;
    for subject in [
        "swarm.build.amd64.dev-test_2Fforged",
        "swarm.event.drone-Izar",
        "$KV.swarm-binhost.current.amd64",
        "$O.swarm-artifacts.C.forged",
        "$KV.swarm-packages.dev-test_2Fforged",
        "$KV.swarm-leases.dev-test_2Fforged",
        "$JS.API.STREAM.DELETE.SWARM_BUILDS",
        // A drone is reached only through the coordinator's service.
        "swarm.ctl.drone.drone-Izar",
    ] {
        refused(&operator, &mut operator_errors, "operator", subject).await;
    }

    // The operator may look at the work stream and its consumer (what the README's `nats`
    // commands do), but not change them (above).
    let mut operator_js = async_nats::jetstream::new(operator.clone());
    operator_js.set_timeout(Duration::from_secs(5));
    let mut builds = operator_js
        .get_stream(names::BUILDS_STREAM)
        .await
        .expect("the operator reads the work stream's info");
    assert_eq!(builds.info().await.expect("info").state.messages, 0);
    builds
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("builders-amd64")
        .await
        .expect("the operator reads the builders consumer's info");

    // No role reads another's replies.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for errors in [&mut izar_errors, &mut dashboard_errors] {
        while errors.try_recv().is_ok() {}
    }
    for (client, errors, role) in [
        (&izar, &mut izar_errors, "drone-Izar"),
        (&dashboard, &mut dashboard_errors, "dashboard"),
    ] {
        let _subscription = client
            .subscribe("_INBOX.coordinator.>")
            .await
            .expect("handed to the client");
        client.flush().await.expect("flushed");
        let error = tokio::time::timeout(Duration::from_secs(5), errors.recv())
            .await
            .unwrap_or_else(|_| panic!("{role} may read the coordinator's replies"))
            .expect("an error");
        assert!(
            error
                .to_lowercase()
                .contains("permissions violation for subscription"),
            "{role}: {error}"
        );
    }

    // Nothing reached the swarm: no job, no package, every stream in place.
    let admin = swarm.client().await;
    let js = async_nats::jetstream::new(admin);
    let mut builds = js
        .get_stream(names::BUILDS_STREAM)
        .await
        .expect("work stream");
    assert_eq!(builds.info().await.expect("info").state.messages, 0);
    assert!(js.get_stream(names::EVENTS_STREAM).await.is_ok());
    assert!(swarm.packages().await.is_empty());
}
