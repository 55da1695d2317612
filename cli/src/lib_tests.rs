//! Tests of the command line's arguments (`lib.rs`).

use clap::CommandFactory;

use super::*;
use crate::control::ControlCommand;

fn drone(name: &str) -> schemas::DroneName {
    schemas::DroneName::parse(name).expect("valid")
}

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn arguments_parse() {
    // (argv, expected command, or None when clap must refuse it)
    let cases: Vec<(&[&str], Option<Command>)> = vec![
        (
            &["swarmctl", "status"],
            Some(Command::Status {
                json: false,
                graph: false,
                run: None,
            }),
        ),
        (
            &["swarmctl", "status", "--json"],
            Some(Command::Status {
                json: true,
                graph: false,
                run: None,
            }),
        ),
        (
            &["swarmctl", "status", "--graph", "--run", "nightly-1"],
            Some(Command::Status {
                json: false,
                graph: true,
                run: Some(RunName::parse("nightly-1").expect("name")),
            }),
        ),
        (
            &["swarmctl", "status", "--run", "nightly-1"],
            Some(Command::Status {
                json: false,
                graph: false,
                run: Some(RunName::parse("nightly-1").expect("name")),
            }),
        ),
        (
            &["swarmctl", "runs", "--json"],
            Some(Command::Runs { json: true }),
        ),
        // A run name is checked.
        (&["swarmctl", "status", "--graph", "--run", "a b"], None),
        (
            &["swarmctl", "packages", "--state", "retry_wait", "--json"],
            Some(Command::Packages {
                state: Some(StateFilter::RetryWait),
                json: true,
            }),
        ),
        (&["swarmctl", "packages", "--state", "lost"], None),
        (
            &["swarmctl", "wait", "--timeout", "1.5"],
            Some(Command::Wait {
                timeout: Some(Duration::from_millis(1500)),
            }),
        ),
        (&["swarmctl", "wait", "--timeout", "-1"], None),
        (&["swarmctl", "wait", "--timeout", "soon"], None),
        (
            &["swarmctl", "unground", "drone-Izar"],
            Some(Command::Control(ControlCommand::Unground {
                name: drone("drone-Izar"),
            })),
        ),
        (&["swarmctl", "unground", "drone;reboot"], None),
        (&["swarmctl", "unground"], None),
        (
            &["swarmctl", "ground", "drone-Izar", "--reason", "disk swap"],
            Some(Command::Control(ControlCommand::Ground {
                name: drone("drone-Izar"),
                reason: Some("disk swap".into()),
            })),
        ),
        (
            &["swarmctl", "drain", "drone-Izar"],
            Some(Command::Control(ControlCommand::Drain {
                name: drone("drone-Izar"),
            })),
        ),
        (
            &["swarmctl", "cancel", "sys-libs/zlib", "--json"],
            Some(Command::Control(ControlCommand::Cancel {
                atoms: vec!["sys-libs/zlib".into()],
                run: None,
                json: true,
            })),
        ),
        (
            &["swarmctl", "cancel", "--run", "nightly"],
            Some(Command::Control(ControlCommand::Cancel {
                atoms: Vec::new(),
                run: Some(RunName::parse("nightly").expect("valid")),
                json: false,
            })),
        ),
        // Cancel what? Nothing named is refused before connecting.
        (&["swarmctl", "cancel"], None),
        (
            &["swarmctl", "retry", "--failed", "--run", "nightly"],
            Some(Command::Control(ControlCommand::Retry {
                atoms: Vec::new(),
                failed: true,
                run: Some(RunName::parse("nightly").expect("valid")),
                json: false,
            })),
        ),
        (&["swarmctl", "retry"], None),
        (&["swarmctl", "retry", "--run", "nightly"], None),
        (
            &["swarmctl", "pause"],
            Some(Command::Control(ControlCommand::Pause { reason: None })),
        ),
        (
            &["swarmctl", "resume"],
            Some(Command::Control(ControlCommand::Resume)),
        ),
        (&["swarmctl", "submit"], None),
        (
            &["swarmctl", "submit", "--arch", "AMD64", "sys-libs/zlib"],
            None,
        ),
        (
            &[
                "swarmctl",
                "submit",
                "--file",
                "a.txt",
                "--pretend",
                "-",
                "--arch",
                "arm64",
                "sys-libs/zlib",
            ],
            Some(Command::Submit(SubmitArgs {
                atoms: vec!["sys-libs/zlib".into()],
                file: vec!["a.txt".into()],
                pretend: vec!["-".into()],
                arch: Some(Arch::parse("arm64").expect("valid")),
                estimates: None,
                fingerprint: None,
                run: None,
                priority: None,
            })),
        ),
        (
            &["swarmctl", "submit", "--priority", "high", "sys-libs/zlib"],
            Some(Command::Submit(SubmitArgs {
                atoms: vec!["sys-libs/zlib".into()],
                priority: Some(PriorityArg::High),
                ..SubmitArgs::default()
            })),
        ),
        (
            &[
                "swarmctl",
                "submit",
                "--priority",
                "urgent",
                "sys-libs/zlib",
            ],
            None,
        ),
        (
            &["swarmctl", "submit", "--run", "nightly-3", "sys-libs/zlib"],
            Some(Command::Submit(SubmitArgs {
                atoms: vec!["sys-libs/zlib".into()],
                run: RunName::parse("nightly-3").ok(),
                ..SubmitArgs::default()
            })),
        ),
        (
            &["swarmctl", "submit", "--run", "a b", "sys-libs/zlib"],
            None,
        ),
        (
            &["swarmctl", "binhost", "publish", "nightly-3"],
            Some(Command::Binhost(BinhostArgs::Publish {
                run: RunName::parse("nightly-3").ok(),
                target: BinhostTarget::default(),
            })),
        ),
        (
            &["swarmctl", "binhost", "publish"],
            Some(Command::Binhost(BinhostArgs::Publish {
                run: None,
                target: BinhostTarget::default(),
            })),
        ),
        (&["swarmctl", "binhost", "publish", "../x"], None),
        (
            &[
                "swarmctl",
                "plan",
                "--show",
                "--output",
                "run.tsv",
                "@world",
                "dev-libs/a",
            ],
            Some(Command::Plan(PlanArgs {
                atoms: vec!["@world".into(), "dev-libs/a".into()],
                show: true,
                keep_installed: false,
                python: "python3".into(),
                output: Some("run.tsv".into()),
                estimates: None,
            })),
        ),
    ];
    for (argv, expected) in cases {
        let parsed = Cli::try_parse_from(argv).map(|cli| cli.command);
        match (parsed, expected) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{argv:?}"),
            (Err(_), None) => {}
            (got, want) => panic!("{argv:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn timeouts_are_positive_seconds() {
    assert_eq!(parse_timeout("0.25"), Ok(Duration::from_millis(250)));
    for input in ["0", "-1", "soon", "inf", "NaN", "1e12"] {
        assert_eq!(
            parse_timeout(input),
            Err(ArgError::NotSeconds {
                input: input.to_owned()
            }),
            "{input}"
        );
    }
}

#[test]
fn the_config_option_is_global() {
    let cli = Cli::try_parse_from(["swarmctl", "status", "--config", "x.toml"]).expect("parses");
    assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
}

#[test]
fn plan_says_which_python_it_could_not_run() {
    let args = PlanArgs {
        python: "/nonexistent/python-with-portage".into(),
        ..PlanArgs::default()
    };
    let err = plan::plan(&args, &mut Vec::new()).expect_err("no such python");
    assert_eq!(
        err.to_string(),
        "cannot run /nonexistent/python-with-portage (a Python with Portage; --python names another): No such file or directory (os error 2)"
    );
}
