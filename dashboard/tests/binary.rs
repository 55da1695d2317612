//! The `swarm-dashboard` binary's configuration as an operator meets it: `--check-config`
//! accepts a good configuration and names the key and the value of a bad one.

use std::process::Command;

/// Environment, arguments, and the words the error must contain.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);

fn dashboard(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_swarm-dashboard"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("swarm-dashboard runs")
}

#[test]
fn check_config_accepts_good_and_names_bad_settings() {
    let good = dashboard(
        &[("SWARM_DASHBOARD__LISTEN", "0.0.0.0:9090")],
        &["--check-config"],
    );
    assert!(good.status.success(), "{good:?}");
    assert_eq!(
        String::from_utf8_lossy(&good.stdout),
        "configuration is valid\nstops within 5000 ms of SIGTERM\n"
    );

    let cases: [Case; 4] = [
        (
            &[("SWARM_DASHBOARD__LISTEN", "nonsense")],
            &["--check-config"],
            &["dashboard.listen", "nonsense"],
        ),
        (
            &[("SWARM_DASHBOARD__LISTN", "127.0.0.1:1")],
            &["--check-config"],
            &["listn"],
        ),
        (
            &[("SWARM_DASHBOARD__TICK_MS", "0")],
            &["--check-config"],
            &["dashboard.tick_ms"],
        ),
        (
            &[],
            &["--check-config", "--config", "/nonexistent/dashboard.toml"],
            &["/nonexistent/dashboard.toml"],
        ),
    ];
    for (env, args, named) in cases {
        let bad = dashboard(env, args);
        assert!(!bad.status.success(), "{env:?} {args:?} was accepted");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        for word in named {
            assert!(stderr.contains(word), "{env:?}: {word:?} not in {stderr}");
        }
    }
}
