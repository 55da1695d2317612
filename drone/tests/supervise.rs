//! The build supervisor as the drone runs it (`swarm-drone supervise -- ARGV`): the build lives
//! while the drone keeps writing to the supervisor's stdin within the deadline, and dies when it
//! stops (a frozen drone) or goes away (a dead drone).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn supervise(deadline_ms: Option<u64>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarm-drone"));
    command
        .args(["supervise", "--", "sh", "-c", "sleep 30", "{atom}"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some(ms) = deadline_ms {
        command.env("SWARM_SUPERVISE_DEADLINE_MS", ms.to_string());
    }
    command.spawn().expect("the supervisor starts")
}

use std::os::unix::process::CommandExt;

/// Waits up to `limit` for the process to exit; how long it took, or `None`.
fn exits_within(child: &mut Child, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn a_build_that_hears_from_its_drone_lives_and_one_that_does_not_dies() {
    let mut child = supervise(Some(400));
    let mut lifeline = child.stdin.take().expect("stdin");
    // Heartbeats every 100 ms for a second: alive all along.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        lifeline.write_all(b"\n").expect("written");
    }
    assert_eq!(
        exits_within(&mut child, Duration::from_millis(50)),
        None,
        "killed while its drone kept writing"
    );
    // The drone freezes: the build is killed after the deadline, not long after.
    let took = exits_within(&mut child, Duration::from_secs(5)).expect("killed once silent");
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(lifeline);
}

#[test]
fn without_a_deadline_only_the_drone_going_away_ends_the_build() {
    let mut child = supervise(None);
    let lifeline = child.stdin.take().expect("stdin");
    assert_eq!(exits_within(&mut child, Duration::from_millis(800)), None);
    drop(lifeline);
    assert!(exits_within(&mut child, Duration::from_secs(5)).is_some());
}
