//! The build supervisor: `swarm-drone supervise -- ARGV...` runs the build as its child inside
//! its own process group and kills the whole group the moment the drone that started it goes
//! away (its stdin, a pipe held by the drone, reaches end-of-file). Without it, a drone killed
//! with `kill -9` would leave its builds running as orphans while another drone builds the same
//! packages.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::getpgrp;

/// Runs `argv` and returns the exit code to exit with: the child's own, 128 + signal when it
/// was killed by one, 127 when it could not start.
pub fn run(argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("swarm-drone supervise: no command given");
        return 127;
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            eprintln!("swarm-drone supervise: cannot start {program:?}: {err}");
            return 127;
        }
    };
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        // The drone is gone (or closed the pipe to cancel): take the whole build down.
        let _ = killpg(getpgrp(), Signal::SIGKILL);
    });
    match child.wait() {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(err) => {
            eprintln!("swarm-drone supervise: cannot wait for the build: {err}");
            1
        }
    }
}
