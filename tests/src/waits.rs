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
