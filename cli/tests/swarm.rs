//! swarmctl's commands through the library API against a real nats-server: the test creates the
//! buckets and writes the records the coordinator and drones would, and stands in for the
//! coordinator or a drone where a command needs someone to answer.

mod common;

use std::time::Duration;

use common::{Swarm, package, populate};
use schemas::fixtures::drone_name as name;
use schemas::names::{SUBMIT_SUBJECT, control_subject};
use schemas::{
    ControlReply, DroneRequest, PackageState, SCHEMA_VERSION, SubmitReply, SubmitRequest,
    SubmitResult,
};
use serde_json::Value;
use swarmctl::control::ControlCommand;
use swarmctl::{CliError, Command, Config, Outcome, StateFilter, SubmitArgs};

#[tokio::test]
async fn read_commands_show_the_swarm() {
    let swarm = Swarm::start().await;
    populate(&swarm).await;

    let status = swarm
        .json(Command::Status {
            json: true,
            graph: false,
            run: None,
        })
        .await;
    assert_eq!(status["queue"], 3, "{status}");
    assert_eq!(status["drones"]["active"], 1, "{status}");
    assert_eq!(status["drones"]["idle"], 1, "{status}");
    assert_eq!(status["drones"]["grounded"], 1, "{status}");
    assert_eq!(status["drones"]["lost"], 1, "{status}");
    assert_eq!(status["cores"]["active"], 16, "{status}");
    assert_eq!(status["cores"]["total"], 34, "{status}");
    assert_eq!(status["status"], "BUILDING", "{status}");
    assert_eq!(status["packages"]["queued"], 2, "{status}");
    assert_eq!(status["packages"]["building"], 1, "{status}");
    assert_eq!(status["packages"]["succeeded"], 1, "{status}");
    assert_eq!(status["packages"]["failed"], 1, "{status}");

    let (outcome, block, _) = swarm
        .exec(Command::Status {
            json: false,
            graph: false,
            run: None,
        })
        .await;
    assert_eq!(outcome.expect("succeeds"), Outcome::Success);
    assert_eq!(
        block,
        "Queue:     3 packages\nDrones:    1 active, 1 idle, 1 grounded\nCores:     16 active\nStatus:    BUILDING\n"
    );

    let packages = swarm
        .json(Command::Packages {
            state: None,
            json: true,
        })
        .await;
    let rows = packages.as_array().expect("a list");
    let summary: Vec<(&str, &str, u64, &Value)> = rows
        .iter()
        .map(|r| {
            (
                r["atom"].as_str().expect("atom"),
                r["state"].as_str().expect("state"),
                r["attempts"].as_u64().expect("attempts"),
                &r["drone"],
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "app-arch/xz-utils",
                "succeeded",
                1,
                &Value::from("drone-Tarn")
            ),
            ("dev-libs/broken", "failed", 3, &Value::Null),
            ("dev-libs/retrying", "retry_wait", 1, &Value::Null),
            ("sys-devel/gcc", "building", 2, &Value::from("drone-Izar")),
            ("sys-libs/zlib", "queued", 0, &Value::Null),
        ]
    );
    let broken = &rows[1];
    assert_eq!(broken["reason"], "exit status 2 on attempt 3");
    assert_eq!(broken["history"].as_array().map(Vec::len), Some(3));
    assert_eq!(broken["history"][2]["drone"], "drone-Izar");
    assert_eq!(broken["history"][2]["exit"]["code"], 2);
    assert!(
        broken["history"][0]["log_tail"]
            .as_str()
            .is_some_and(|t| t.contains("C compiler"))
    );
    assert!(
        rows[0].get("reason").is_none(),
        "reason only on failed: {}",
        rows[0]
    );

    let failed = swarm
        .json(Command::Packages {
            state: Some(StateFilter::Failed),
            json: true,
        })
        .await;
    assert_eq!(failed.as_array().map(Vec::len), Some(1));

    let (outcome, table, _) = swarm
        .exec(Command::Packages {
            state: None,
            json: false,
        })
        .await;
    assert_eq!(outcome.expect("succeeds"), Outcome::Success);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(lines[0].starts_with("ATOM"), "{table}");
    assert!(
        lines[4].starts_with("sys-devel/gcc") && lines[4].contains("  drone-Izar  "),
        "{table}"
    );
    // The last failure of a package that failed before, by class and line.
    assert!(lines[4].ends_with("package: exit status 2"), "{table}");
    // Packages not building say why, in a WHY column.
    assert!(lines[0].ends_with("WHY"), "{table}");
    assert!(
        lines[5].starts_with("sys-libs/zlib      queued      0")
            && lines[5].ends_with("in line: the next drone to ask for work takes it"),
        "{table}"
    );
    assert!(
        lines[3].contains("waiting out the backoff after attempt 2, until "),
        "{table}"
    );

    let drones = swarm.json(Command::Drones { json: true }).await;
    let rows = drones.as_array().expect("a list");
    let summary: Vec<(&str, u64, u64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().expect("name"),
                r["cores"].as_u64().expect("cores"),
                r["slots"].as_u64().expect("slots"),
                r["state"].as_str().expect("state"),
            )
        })
        .collect();
    // drone-garbage does not decode and is left out.
    assert_eq!(
        summary,
        [
            ("drone-Izar", 16, 2, "building"),
            ("drone-Meridian", 24, 2, "lost"),
            ("drone-Tarn", 10, 2, "idle"),
            ("drone-Tau-Beta", 8, 2, "grounded"),
        ]
    );
    assert_eq!(rows[0]["building"], serde_json::json!(["sys-devel/gcc"]));
    assert_eq!(rows[2]["building"], serde_json::json!([]));
    assert_eq!(rows[3]["reason"], "3 consecutive failures");
    assert!(
        rows[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no heartbeat"))
    );
    assert!(rows[0].get("reason").is_none());

    // The same through `run`, which connects by itself from the config.
    let mut out = Vec::new();
    let outcome = swarmctl::run(
        &swarm.config(),
        Command::Drones { json: false },
        &mut out,
        &mut std::io::sink(),
    )
    .await;
    assert_eq!(outcome.expect("succeeds"), Outcome::Success);
    let table = String::from_utf8(out).expect("utf-8");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("drone-Meridian  24     2      lost"),
        "{table}"
    );
}

#[tokio::test]
async fn missing_buckets_say_to_start_the_coordinator() {
    let server = testkit::NatsServer::start().expect("server starts");
    let client = server.connect().await.expect("connects");
    for command in [
        Command::Status {
            json: true,
            graph: false,
            run: None,
        },
        Command::Packages {
            state: None,
            json: false,
        },
        Command::Drones { json: true },
        Command::Wait {
            timeout: Some(Duration::from_secs(1)),
        },
    ] {
        let err = swarmctl::execute(&client, command.clone(), &mut Vec::new(), &mut Vec::new())
            .await
            .expect_err("no buckets");
        assert!(
            matches!(err, CliError::AssetsMissing { .. }),
            "{command:?}: {err:?}"
        );
        assert!(
            err.to_string().contains("start swarm-coordinator first"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
    }
}

#[tokio::test]
async fn drone_commands_go_to_the_coordinator_and_report_its_answer() {
    let swarm = Swarm::start().await;
    let unground = |drone: &str| Command::Control(ControlCommand::Unground { name: name(drone) });
    let err = swarm
        .exec(unground("drone-Absent"))
        .await
        .0
        .expect_err("nobody answers");
    assert_eq!(
        err.to_string(),
        "no coordinator is answering on swarm.ctl.unground; is swarm-coordinator running?"
    );

    // A stand-in coordinator passes the drone's answer on.
    let responder = swarm
        .stand_in::<DroneRequest, _>(
            control_subject("unground"),
            vec![ControlReply {
                v: SCHEMA_VERSION,
                message: "drone-Tarn ungrounded: pulling work again".into(),
                changed: vec!["drone-Tarn".into()],
                unchanged: Vec::new(),
            }],
        )
        .await;
    let (outcome, out, _) = swarm.exec(unground("drone-Tarn")).await;
    assert_eq!(outcome.expect("answered"), Outcome::Success);
    assert_eq!(out, "drone-Tarn ungrounded: pulling work again\n");
    let request = responder.await.expect("responder ran").remove(0);
    assert_eq!(request.drone, "drone-Tarn");
    assert_eq!(request.reason, None);
}

#[tokio::test]
async fn submit_needs_a_coordinator_and_validates_first() {
    let swarm = Swarm::start().await;
    let args = |atoms: &[&str]| {
        Command::Submit(SubmitArgs {
            atoms: atoms.iter().map(|a| a.to_string()).collect(),
            ..SubmitArgs::default()
        })
    };
    let err = swarm
        .exec(args(&["sys-libs/zlib"]))
        .await
        .0
        .expect_err("no coordinator");
    assert!(matches!(err, CliError::NoCoordinator { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "no coordinator is answering on swarm.ctl.submit; is swarm-coordinator running?"
    );

    // Invalid atoms are refused before connecting: the URL points nowhere.
    let mut config = Config::default();
    config.nats.url = "nats://127.0.0.1:1".into();
    let err = swarmctl::run(
        &config,
        args(&["sys-libs/zlib", "sys-libs/glibc; rm -rf /"]),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .expect_err("invalid atom");
    assert!(
        matches!(&err, CliError::InvalidAtoms(invalid) if invalid.len() == 1),
        "{err:?}"
    );

    // A stand-in coordinator: accepts the first submission, rejects the second.
    let replies = [
        SubmitResult::Accepted {
            queued: 1,
            already_queued: 1,
            run: None,
            notes: Vec::new(),
        },
        SubmitResult::Rejected {
            rejections: vec![schemas::AtomRejection {
                input: "sys-libs/zlib".into(),
                reason: "not in the tree".into(),
            }],
        },
    ]
    .map(|result| SubmitReply {
        v: SCHEMA_VERSION,
        result,
    });
    let responder = swarm
        .stand_in::<SubmitRequest, _>(SUBMIT_SUBJECT.to_owned(), replies.into())
        .await;
    let (outcome, out, _) = swarm
        .exec(args(&["sys-libs/zlib", "=dev-libs/openssl-3.3.2"]))
        .await;
    assert_eq!(outcome.expect("accepted"), Outcome::Success);
    assert_eq!(out, "queued 1 package (1 already queued)\n");
    let err = swarm
        .exec(args(&["sys-libs/zlib"]))
        .await
        .0
        .expect_err("rejected");
    assert!(
        matches!(&err, CliError::Rejected(r) if r.len() == 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("not in the tree"), "{err}");
    let seen = responder.await.expect("responder ran");
    let atoms: Vec<&str> = seen[0].items.iter().map(|i| i.atom.as_str()).collect();
    assert_eq!(atoms, ["sys-libs/zlib", "=dev-libs/openssl-3.3.2"]);
}

#[tokio::test]
async fn wait_ends_with_the_queue() {
    let swarm = Swarm::start().await;

    // Nothing submitted: nothing to wait for.
    let (outcome, out, _) = swarm.exec(Command::Wait { timeout: None }).await;
    assert_eq!(outcome.expect("done"), Outcome::Success);
    assert_eq!(out, "all 0 packages succeeded\n");

    let building = package(
        "sys-libs/zlib",
        PackageState::Building {
            attempt: 1,
            drone: name("drone-Izar"),
            since_ms: 1,
        },
        vec![],
    );
    swarm.put_package(&building).await;
    let err = swarm
        .exec(Command::Wait {
            timeout: Some(Duration::from_millis(700)),
        })
        .await
        .0
        .expect_err("times out");
    assert!(
        matches!(err, CliError::WaitTimedOut { unfinished: 1, .. }),
        "{err:?}"
    );

    // The package finishes while `wait` polls.
    let packages = swarm.packages.clone();
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let done = package(
            "sys-libs/zlib",
            PackageState::Succeeded {
                attempt: 1,
                drone: name("drone-Izar"),
            },
            vec![],
        );
        packages
            .put(
                done.atom.key().as_str(),
                schemas::encode(&done).expect("encodes").into(),
            )
            .await
            .expect("put");
    });
    let (outcome, out, progress) = swarm
        .exec(Command::Wait {
            timeout: Some(Duration::from_secs(20)),
        })
        .await;
    finisher.await.expect("finisher ran");
    assert_eq!(outcome.expect("done"), Outcome::Success);
    assert_eq!(out, "all 1 package succeeded\n");
    assert_eq!(
        progress.lines().count(),
        1,
        "one progress line in under 5 s: {progress}"
    );
    assert!(progress.contains("1 building"), "{progress}");

    swarm
        .put_package(&package(
            "dev-libs/broken",
            PackageState::Failed {
                attempt: 3,
                reason: "exit status 2".into(),
            },
            vec![],
        ))
        .await;
    let (outcome, out, _) = swarm.exec(Command::Wait { timeout: None }).await;
    assert_eq!(outcome.expect("done"), Outcome::Failure);
    assert_eq!(
        out,
        "1 package succeeded, 1 failed:\n  dev-libs/broken: exit status 2\n"
    );
}
