//! The build supervisor: `swarm-drone supervise -- ARGV...` runs the build as its child inside
//! its own process group and kills the whole group the moment the drone that started it goes
//! away (its stdin, a pipe held by the drone, reaches end-of-file). Without it, a drone killed
//! with `kill -9` would leave its builds running as orphans while another drone builds the same
//! packages.
//!
//! It also holds the build to the drone's proof of life (`crate::liveness`): with
//! `SWARM_SUPERVISE_DEADLINE_MS` set, the drone writes to the pipe after every quickly acknowledged
//! heartbeat, and a build that hears nothing for that long (for the first word,
//! `SWARM_SUPERVISE_FIRST_DEADLINE_MS`) is killed. A drone that is frozen (`SIGSTOP`, a stuck
//! machine) or cut off cannot kill its build; the supervisor, a separate process, kills it before
//! the coordinator releases the package to another drone.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// Milliseconds the build may go without a word from the drone; unset or 0: no deadline.
pub const DEADLINE_ENV: &str = "SWARM_SUPERVISE_DEADLINE_MS";
/// Milliseconds the build may go without the drone's first word; unset: the deadline.
pub const FIRST_DEADLINE_ENV: &str = "SWARM_SUPERVISE_FIRST_DEADLINE_MS";

use nix::sys::signal::{Signal, killpg};
use nix::unistd::getpgrp;

/// Runs `argv` and returns the exit code to exit with: the child's own, 128 + signal when it
/// was killed by one, 127 when it could not start.
pub fn run(argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("swarm-drone supervise: no command given");
        return 127;
    };
    let millis = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    };
    let deadline = millis(DEADLINE_ENV);
    let first = millis(FIRST_DEADLINE_ENV).or(deadline);
    let mut child = match Command::new(program)
        .args(args)
        .env_remove(DEADLINE_ENV)
        .env_remove(FIRST_DEADLINE_ENV)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            eprintln!("swarm-drone supervise: cannot start {program:?}: {err}");
            return 127;
        }
    };
    let (word, heard) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || word.send(()).is_err() {
                break;
            }
        }
        // Dropping `word` tells the watcher the drone is gone.
    });
    std::thread::spawn(move || {
        let mut wait = first;
        loop {
            let next = match wait {
                Some(wait) => heard.recv_timeout(wait),
                None => heard.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(()) => wait = deadline,
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!(
                        "swarm-drone supervise: no word from the drone for {} ms (no acknowledged heartbeat); killing the build",
                        wait.map_or(0, |d| d.as_millis())
                    );
                    break;
                }
                // The drone is gone (or closed the pipe to cancel).
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
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
