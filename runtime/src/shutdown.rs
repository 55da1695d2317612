//! Turns Ctrl-C and SIGTERM into the cancellation of the root token, and bounds a component's
//! way out: from the signal on, nothing it waits for (NATS above all, which may be unreachable)
//! may keep it running past its grace.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first Ctrl-C or SIGTERM. The caller awaits its own shutdown path.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("interrupt received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
        token.cancel();
    });
}

/// Resolves `after` the cancellation of `token` (never when it is not cancelled), with the
/// instant it saw the cancellation.
pub async fn after_cancel(token: &CancellationToken, after: Duration) -> Instant {
    token.cancelled().await;
    let cancelled = Instant::now();
    tokio::time::sleep_until(cancelled + after).await;
    cancelled
}

/// Runs `work` to its end, unless `grace` passes after the cancellation of `token` first: then
/// `work` is dropped where it waits and `None` is returned. The caller logs what it abandoned.
pub async fn within_grace<F: Future>(
    token: &CancellationToken,
    grace: Duration,
    work: F,
) -> Option<F::Output> {
    tokio::select! {
        done = work => Some(done),
        _ = after_cancel(token, grace) => None,
    }
}

/// What a component is doing on its way out, named in the line it logs when its grace runs out.
#[derive(Debug, Clone)]
pub struct Step(std::sync::Arc<std::sync::Mutex<&'static str>>);

impl Step {
    pub fn new(what: &'static str) -> Step {
        Step(std::sync::Arc::new(std::sync::Mutex::new(what)))
    }

    pub fn set(&self, what: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }

    pub fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_ends_unless_the_grace_after_the_cancellation_passes_first() {
        let token = CancellationToken::new();
        let grace = Duration::from_secs(2);
        // Not cancelled: the work runs for as long as it takes.
        let slow = tokio::time::sleep(Duration::from_secs(3600));
        assert_eq!(within_grace(&token, grace, slow).await, Some(()));
        // Cancelled: work that ends within the grace ends.
        token.cancel();
        let quick = tokio::time::sleep(Duration::from_secs(1));
        assert_eq!(within_grace(&token, grace, quick).await, Some(()));
        // Work that never ends is dropped when the grace is over.
        let start = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(within_grace(&token, grace, never).await, None);
        assert_eq!(start.elapsed(), grace);
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_counts_from_the_cancellation() {
        let token = CancellationToken::new();
        let start = Instant::now();
        let canceller = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            canceller.cancel();
        });
        let cancelled = after_cancel(&token, Duration::from_secs(2)).await;
        assert_eq!(cancelled - start, Duration::from_secs(5));
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[test]
    fn a_step_is_what_was_set_last() {
        let step = Step::new("starting");
        let seen = step.clone();
        step.set("closing the NATS connection");
        assert_eq!(seen.get(), "closing the NATS connection");
    }
}
