//! Tests of the builders: argv identity, process groups, logs and tails, simulated builds.
use super::*;

/// Settings of the simulate builder that never fails.
fn simulating(
    time_scale: f64,
    default_estimate_secs: f64,
    model_file: Option<PathBuf>,
) -> Settings {
    Settings {
        builder: crate::config::BuilderKind::Simulate,
        simulate: crate::config::Simulate {
            time_scale,
            failure_rate: 0.0,
            default_estimate_secs,
            model_file,
            binpkgs: false,
        },
        ..Settings::default()
    }
}

fn env(atom: &str) -> BuildEnv {
    BuildEnv {
        atom: Atom::parse(atom).expect("valid"),
        attempt: 2,
        drone: "d1".into(),
        jobs: 4,
        estimate_secs: None,
        supervise: None,
    }
}

#[test]
fn atom_is_one_argument_and_argv_never_changes() {
    let builder = Builder::Process {
        template: vec!["build".into(), "--pkg={atom}".into(), "{atom}".into()],
        env: Vec::new(),
        supervisor: None,
    };
    let atom = Atom::parse(">=dev-libs/foo-1.0:0::gentoo").expect("valid");
    let argv = builder.argv(&atom);
    assert_eq!(
        argv,
        vec![
            "build",
            "--pkg=>=dev-libs/foo-1.0:0::gentoo",
            ">=dev-libs/foo-1.0:0::gentoo"
        ]
    );
    assert_eq!(builder.argv(&atom), argv);
}

#[test]
fn emerge_preset() {
    let settings = Settings {
        builder: BuilderKind::Emerge,
        emerge_args: vec!["--usepkg=n".into()],
        ..Settings::default()
    };
    let atom = Atom::parse("sys-libs/zlib").expect("valid");
    assert_eq!(
        Builder::from_settings(&settings)
            .expect("valid settings")
            .argv(&atom),
        vec![
            "emerge",
            "--oneshot",
            "--buildpkg",
            "--usepkg",
            "--getbinpkg",
            "--usepkg-exclude",
            "sys-libs/zlib",
            "--quiet-build=y",
            "--nospinner",
            "--color=n",
            "--usepkg=n",
            "sys-libs/zlib"
        ]
    );
}

#[tokio::test]
async fn runs_with_env_and_captures_tail() {
    let builder = Builder::Process {
        template: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo \"$SWARM_ATOM $SWARM_ATTEMPT $SWARM_DRONE $MAKEOPTS\"; echo oops >&2; exit 3"
                .into(),
            "{atom}".into(),
        ],
        env: Vec::new(),
        supervisor: None,
    };
    let mut running = start(&builder, &env("sys-libs/zlib"), 4096, None, None).expect("starts");
    match running.wait().await {
        BuildOutcome::Failed { exit, log_tail, .. } => {
            assert_eq!(exit.code, Some(3));
            assert!(log_tail.contains("sys-libs/zlib 2 d1 -j4"), "{log_tail}");
            assert!(log_tail.contains("oops"), "{log_tail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_simulated_build_ends_on_time_however_often_it_is_waited_for() {
    let settings = simulating(1.0, 0.3, None);
    let builder = Builder::from_settings(&settings).expect("valid settings");
    let env = BuildEnv {
        atom: Atom::parse("sys-libs/zlib").expect("valid"),
        attempt: 1,
        drone: "d".into(),
        jobs: 8,
        estimate_secs: None,
        supervise: None,
    };
    let mut running = start(&builder, &env, 100, None, None).expect("starts");
    let started = std::time::Instant::now();
    // The build loop waits beside a renewal timer; each tick drops the wait and starts it
    // again. The build must still end after 0.3 s, not 0.3 s after the last tick.
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tokio::select! {
                outcome = running.wait() => break outcome,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await
    .expect("the simulated build ends within 5 s");
    assert_eq!(outcome, BuildOutcome::Succeeded);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn kill_takes_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("grandchild-alive");
    let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
    let builder = Builder::Process {
        template: vec!["/bin/sh".into(), "-c".into(), script, "{atom}".into()],
        env: Vec::new(),
        supervisor: None,
    };
    let mut running = start(&builder, &env("sys-libs/zlib"), 64, None, None).expect("starts");
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.kill().await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!marker.exists(), "a process of the killed build survived");
}

/// A build whose job is abandoned (dropped where it waits) at the drone's stop takes its whole
/// process group with it, not only its first process.
#[tokio::test]
async fn a_build_dropped_while_it_runs_takes_its_process_group_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("grandchild-alive");
    let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
    let builder = Builder::Process {
        template: vec!["/bin/sh".into(), "-c".into(), script, "{atom}".into()],
        env: Vec::new(),
        supervisor: None,
    };
    let running = start(&builder, &env("sys-libs/zlib"), 64, None, None).expect("starts");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(running);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!marker.exists(), "a process of the dropped build survived");
}

#[tokio::test]
async fn missing_program_is_a_start_error() {
    let builder = Builder::Process {
        template: vec!["/nonexistent/builder".into(), "{atom}".into()],
        env: Vec::new(),
        supervisor: None,
    };
    match start(&builder, &env("sys-libs/zlib"), 64, None, None) {
        Err(StartError::NotFound { program }) => assert_eq!(program, "/nonexistent/builder"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a missing program started"),
    }
}

#[test]
fn tail_keeps_the_last_bytes() {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    {
        let mut t = tail.lock().expect("lock");
        t.extend(b"0123456789");
        let excess = t.len().saturating_sub(4);
        t.drain(..excess);
    }
    assert_eq!(tail_text(&tail), "6789");
}

#[tokio::test(start_paused = true)]
async fn the_model_decides_a_simulated_build_time_over_the_jobs_estimate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.tsv");
    std::fs::write(&path, "a-b/slow\t100\n").expect("write model");
    let settings = simulating(0.01, 1.0, Some(path));
    let builder = Builder::from_settings(&settings).expect("valid settings");
    let env = |atom: &str, jobs: u32| BuildEnv {
        atom: Atom::parse(atom).expect("valid atom"),
        attempt: 1,
        drone: "d".to_owned(),
        jobs,
        estimate_secs: Some(1.0),
        supervise: None,
    };
    // 100 s on 8 cores, at 0.01: 1 s on 8 cores, 0.5 s on 16; unlisted: the job's 1 s → 10 ms.
    for (atom, jobs, expected_ms) in [
        ("a-b/slow", 8, 1_000),
        ("a-b/slow", 16, 500),
        ("a-b/other", 8, 10),
    ] {
        let started = tokio::time::Instant::now();
        let mut running = start(&builder, &env(atom, jobs), 64, None, None).expect("starts");
        assert_eq!(running.wait().await, BuildOutcome::Succeeded);
        assert_eq!(
            started.elapsed().as_millis(),
            expected_ms,
            "{atom} on {jobs} cores"
        );
    }
}

/// The emerge builder builds the package itself from source and takes its dependencies as
/// binaries; everything that differs between drones is in the environment, so the argv is the
/// same byte for byte on every drone and every attempt.
#[tokio::test]
async fn the_emerge_builder_keeps_drone_settings_out_of_the_argv() {
    let settings = Settings {
        builder: crate::config::BuilderKind::Emerge,
        emerge_args: vec!["--keep-going=n".into()],
        pkgdir: PathBuf::from("/var/cache/binpkgs/d1"),
        binpkg_format: crate::config::BinpkgFormat::Xpak,
        features: vec!["binpkg-multi-instance".into(), "-test".into()],
        ..Settings::default()
    };
    let builder = Builder::from_settings(&settings).expect("valid settings");
    let atom = Atom::parse(">=dev-libs/openssl-3.3:0/3::gentoo").expect("atom");
    assert_eq!(
        builder.argv(&atom),
        [
            "emerge",
            "--oneshot",
            "--buildpkg",
            "--usepkg",
            "--getbinpkg",
            "--usepkg-exclude",
            "dev-libs/openssl",
            "--quiet-build=y",
            "--nospinner",
            "--color=n",
            "--keep-going=n",
            ">=dev-libs/openssl-3.3:0/3::gentoo",
        ]
    );
    let other = Builder::from_settings(&Settings {
        pkgdir: PathBuf::from("/elsewhere"),
        ..settings.clone()
    })
    .expect("valid settings");
    assert_eq!(
        builder.argv(&atom),
        other.argv(&atom),
        "the drone's settings are not argv"
    );
    let Builder::Process { env, .. } = &builder else {
        panic!("emerge runs a process");
    };
    assert_eq!(
        env,
        &[
            ("PKGDIR".to_owned(), "/var/cache/binpkgs/d1".to_owned()),
            ("BINPKG_FORMAT".to_owned(), "xpak".to_owned()),
            (
                "FEATURES".to_owned(),
                "binpkg-multi-instance -test".to_owned()
            ),
        ]
    );
    // The swarm's staging binhost, for the dependencies: also environment, never argv.
    let staged = Builder::from_settings(&Settings {
        binhost: vec!["http://binhost.example.net:8090/staging/amd64".into()],
        ..settings.clone()
    })
    .expect("valid settings");
    assert_eq!(staged.argv(&atom), builder.argv(&atom));
    let Builder::Process { env, .. } = &staged else {
        panic!("emerge runs a process");
    };
    assert_eq!(
        env.last(),
        Some(&(
            "PORTAGE_BINHOST".to_owned(),
            "http://binhost.example.net:8090/staging/amd64".to_owned()
        ))
    );
}

/// The build sees the emerge builder's environment, and its log goes to a file per attempt in
/// a folder made on demand.
#[tokio::test]
async fn a_build_sees_its_environment_and_logs_to_its_own_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let builder = Builder::Process {
        template: vec![
            "sh".into(),
            "-c".into(),
            "echo \"$PKGDIR $BINPKG_FORMAT $FEATURES $MAKEOPTS\"".into(),
            "{atom}".into(),
        ],
        env: vec![
            ("PKGDIR".into(), "/pkgs".into()),
            ("BINPKG_FORMAT".into(), "gpkg".into()),
            ("FEATURES".into(), "binpkg-multi-instance".into()),
        ],
        supervisor: None,
    };
    let log = dir.path().join("logs/not-yet/a-b_2Fc-2.log");
    let mut running = start(&builder, &env("a-b/c"), 256, Some(log.clone()), None).expect("starts");
    assert_eq!(running.wait().await, BuildOutcome::Succeeded);
    let text = std::fs::read_to_string(&log).expect("the attempt's log file");
    assert_eq!(text, "/pkgs gpkg binpkg-multi-instance -j4\n");
}
