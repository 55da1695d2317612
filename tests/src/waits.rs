//! What tests wait for and look at while a swarm runs: one package's record reaching a state,
//! the builds started so far.

use std::time::{Duration, Instant};

use schemas::PackageRecord;

use crate::Swarm;

impl Swarm {
    /// Waits (up to a minute) until `ready` holds for the package's record; panics naming
    /// `what` on timeout.
    pub async fn wait_for_package(
        &self,
        atom: &str,
        what: &str,
        ready: impl Fn(&PackageRecord) -> bool,
    ) -> PackageRecord {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(record) = self.packages().await.remove(atom)
                && ready(&record)
            {
                return record;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The builds started so far, in order: (atom, pid of the build script).
    pub fn starts(&self) -> Vec<(String, u32)> {
        self.records()
            .into_iter()
            .filter(|r| r.phase == "start")
            .map(|r| (r.atom, r.pid))
            .collect()
    }
}

/// `count` test atoms named after `prefix`: `=dev-test/<prefix>-1.<i>`.
pub fn test_atoms(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("=dev-test/{prefix}-1.{i}"))
        .collect()
}

impl crate::Swarm {
    /// Submits `atoms` (no estimates) and panics unless every one was queued.
    pub async fn submit_all(&self, atoms: &[String]) {
        let items: Vec<(String, Option<f64>)> = atoms.iter().map(|a| (a.clone(), None)).collect();
        match self.submit(&items).await {
            schemas::SubmitResult::Accepted { queued, .. } if queued as usize == atoms.len() => {}
            other => panic!("submission refused: {other:?}"),
        }
    }
}

impl crate::Swarm {
    /// Waits until `f` holds for the builds recorded so far, up to `timeout`; panics naming
    /// `what` on timeout. Returns those builds.
    pub async fn wait_for_builds<F: Fn(&[crate::Build]) -> bool>(
        &self,
        what: &str,
        timeout: Duration,
        f: F,
    ) -> Vec<crate::Build> {
        let deadline = Instant::now() + timeout;
        loop {
            let b = crate::builds(&self.records());
            if f(&b) {
                return b;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
