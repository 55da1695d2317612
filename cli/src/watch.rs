//! `swarmctl watch [--run NAME]`: a live progress bar of the swarm's packages (or one run's):
//! done of total, failures, building, the rate and the time left, until nothing is unfinished;
//! then the same report as `wait`, and the same exit status. It follows `wait`'s loop
//! (`wait::follow`), so it rides out a NATS outage the same way. The bar is drawn on stderr when
//! it is a terminal; otherwise a line is written every few seconds instead.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use schemas::RunName;
use schemas::summary::PackageCounts;

use crate::CliError;
use crate::wait::{Progress, WaitReport, follow};

/// The bar's layout: elapsed, bar, done/total, what the message says, rate and time left.
const TEMPLATE: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} done · {msg} · {per_sec} · ETA {eta}";

/// Finished packages: succeeded, failed for good, blocked or cancelled.
pub fn done(counts: &PackageCounts) -> u64 {
    counts.succeeded + counts.failed + counts.blocked + counts.cancelled
}

/// What the bar says beside the counts.
pub fn message(counts: &PackageCounts) -> String {
    let mut parts = vec![format!("{} failed", counts.failed + counts.blocked)];
    parts.push(format!("{} building", counts.building));
    if counts.waiting > 0 {
        parts.push(format!("{} waiting for dependencies", counts.waiting));
    }
    if counts.retrying > 0 {
        parts.push(format!("{} retrying", counts.retrying));
    }
    parts.join(", ")
}

struct Bar {
    bar: ProgressBar,
    /// Without a terminal: where progress lines go, and when the last one went.
    lines: Option<(Box<dyn Write + Send>, Option<std::time::Instant>)>,
}

impl Progress for Bar {
    fn counts(&mut self, counts: &PackageCounts, total: u64) -> std::io::Result<()> {
        self.bar.set_length(total);
        self.bar.set_position(done(counts));
        self.bar.set_message(message(counts));
        if let Some((out, last)) = &mut self.lines
            && last.is_none_or(|at| at.elapsed() >= Duration::from_secs(5))
        {
            *last = Some(std::time::Instant::now());
            writeln!(out, "{}/{} done, {}", done(counts), total, message(counts))?;
        }
        Ok(())
    }

    fn outage(&mut self, why: &str) -> std::io::Result<()> {
        match &mut self.lines {
            Some((out, _)) => writeln!(out, "{why}"),
            None => {
                self.bar.println(why);
                Ok(())
            }
        }
    }

    fn back(&mut self) -> std::io::Result<()> {
        self.outage("the server answers again")
    }
}

/// Follows the packages with a bar until none is unfinished.
pub async fn watch(
    client: &async_nats::Client,
    timeout: Option<Duration>,
    run: Option<&RunName>,
) -> Result<WaitReport, CliError> {
    let terminal = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        None,
        if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut progress = Bar {
        bar,
        lines: (!terminal).then(|| (Box::new(std::io::stderr()) as Box<dyn Write + Send>, None)),
    };
    let report = follow(client, timeout, run, &mut progress).await;
    progress.bar.finish_and_clear();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_counts_every_finished_package_and_names_what_is_not() {
        let counts = PackageCounts {
            queued: 4,
            building: 2,
            succeeded: 10,
            failed: 1,
            retrying: 1,
            waiting: 3,
            blocked: 2,
            cancelled: 1,
        };
        assert_eq!(done(&counts), 14);
        assert_eq!(
            message(&counts),
            "3 failed, 2 building, 3 waiting for dependencies, 1 retrying"
        );
    }
}
