//! `swarmctl completions SHELL`: the script a real bash loads completes swarmctl's commands and
//! their flags (zsh and fish are not installed here: their scripts are checked for content).

use std::process::Command;

fn script(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(["completions", shell])
        .output()
        .expect("run swarmctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// What bash offers after `words`, the last one being completed.
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("swarmctl.bash");
    std::fs::write(&path, script).expect("write the script");
    let words_array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source '{}'; COMP_WORDS=({words_array}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; _swarmctl swarmctl '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words
            .get(words.len().wrapping_sub(2))
            .copied()
            .unwrap_or("")
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_commands_and_their_flags() {
    let bash = script("bash");
    let commands = bash_completes(&bash, &["swarmctl", "st"]);
    assert!(commands.contains(&"status".to_owned()), "{commands:?}");
    let flags = bash_completes(&bash, &["swarmctl", "status", "--"]);
    for flag in ["--json", "--graph", "--run"] {
        assert!(flags.contains(&flag.to_owned()), "{flag}: {flags:?}");
    }
    let states = bash_completes(&bash, &["swarmctl", "packages", "--state", ""]);
    for state in ["queued", "waiting", "blocked"] {
        assert!(states.contains(&state.to_owned()), "{state}: {states:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let zsh = script("zsh");
    assert!(zsh.starts_with("#compdef swarmctl"), "{}", &zsh[..80]);
    let fish = script("fish");
    for command in [
        "submit", "status", "packages", "drones", "plan", "binhost", "wait",
    ] {
        assert!(zsh.contains(&format!("'{command}:")), "zsh: {command}");
        assert!(
            fish.contains(&format!("-a \"{command}\"")),
            "fish: {command}"
        );
    }
    // An unknown shell is refused by name.
    let out = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(["completions", "tcsh"])
        .output()
        .expect("run swarmctl");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}
