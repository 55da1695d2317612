//! `swarmctl binhost publish|rollback|revisions|status`: the operator's requests about the
//! published binhost, answered by the coordinator, which alone writes revisions.

use std::fmt;

use schemas::{
    Arch, BinhostCommand, BinhostName, BinhostReply, BinhostRequest, BinhostResult,
    RevisionSummary, SCHEMA_VERSION, names,
};
use serde::Serialize;

use crate::rpc;
use crate::{BinhostTarget, CliError};

/// What the coordinator answered: which binhost, its current revision and the kept ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinhostState {
    pub arch: Arch,
    /// The fingerprint whose binhost it is; `None`: the arch's own (no run targeted one).
    pub fingerprint: Option<String>,
    /// Its name, `arch@fingerprint`, and so its URL path: `/published/<binhost>`.
    pub binhost: String,
    pub current: Option<u64>,
    pub revisions: Vec<RevisionSummary>,
    /// Whether the request published or rolled back anything.
    pub changed: bool,
}

/// A request the coordinator could not carry out, in its words (an unknown run, a run under
/// way, no revision to roll back to, ...): the command fails with exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Sends one binhost request to the coordinator.
pub async fn binhost(
    client: &async_nats::Client,
    target: BinhostTarget,
    command: BinhostCommand,
) -> Result<Result<BinhostState, Refused>, CliError> {
    let payload = schemas::encode(&BinhostRequest {
        v: SCHEMA_VERSION,
        arch: target.arch,
        fingerprint: target.fingerprint,
        command,
    })?;
    let subject = names::BINHOST_SUBJECT;
    let reply: BinhostReply = rpc::call(client, subject, payload).await?;
    Ok(match reply.result {
        BinhostResult::State {
            arch,
            fingerprint,
            current,
            revisions,
            changed,
        } => Ok(BinhostState {
            binhost: BinhostName::new(arch.clone(), fingerprint.as_deref()).to_string(),
            arch,
            fingerprint,
            current,
            revisions,
            changed,
        }),
        BinhostResult::Error { message } => Err(Refused(message)),
    })
}

impl BinhostState {
    /// The current revision's summary, if one is published.
    pub fn current_revision(&self) -> Option<&RevisionSummary> {
        let current = self.current?;
        self.revisions.iter().find(|r| r.number == current)
    }

    /// One line on what the arch's binhost serves.
    pub fn status_line(&self) -> String {
        match self.current_revision() {
            Some(r) => format!(
                "{}: revision {} (TIMESTAMP {}), {} packages, {}; served at /published/{}",
                self.binhost,
                r.number,
                r.timestamp,
                r.packages,
                bytes(r.bytes),
                self.binhost
            ),
            None => format!("{}: nothing published yet", self.binhost),
        }
    }

    /// The kept revisions, newest first, the current one marked.
    pub fn revisions_table(&self) -> String {
        let mut out = format!(
            "{}\n  REVISION  TIMESTAMP   PACKAGES  SIZE       RUN\n",
            self.binhost
        );
        for r in &self.revisions {
            let mark = if Some(r.number) == self.current {
                '*'
            } else {
                ' '
            };
            let run = r.run.as_ref().map_or("-", |run| run.as_str());
            out.push_str(&format!(
                "{mark} {:<8}  {:<10}  {:<8}  {:<9}  {run}\n",
                r.number,
                r.timestamp,
                r.packages,
                bytes(r.bytes)
            ));
        }
        out
    }
}

impl fmt::Display for BinhostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status_line())
    }
}

/// A size for people: bytes, KiB, MiB or GiB with one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_revisions_read_as_a_person_would() {
        let revision = |number, packages, bytes, run: Option<&str>| RevisionSummary {
            number,
            timestamp: 1_796_000_000 + number,
            created_ms: 0,
            packages,
            bytes,
            fingerprint: Some("3f2a9c1d0e4b".to_owned()),
            run: run.map(|r| schemas::RunName::parse(r).expect("run")),
        };
        let state = BinhostState {
            arch: Arch::default(),
            fingerprint: Some("3f2a9c1d0e4b".to_owned()),
            binhost: "amd64@3f2a9c1d0e4b".to_owned(),
            current: Some(2),
            revisions: vec![
                revision(3, 5, 5 * 1024 * 1024, Some("nightly-2")),
                revision(2, 4, 900, None),
            ],
            changed: false,
        };
        assert_eq!(
            state.status_line(),
            "amd64@3f2a9c1d0e4b: revision 2 (TIMESTAMP 1796000002), 4 packages, 900 B; served at /published/amd64@3f2a9c1d0e4b"
        );
        assert_eq!(
            state.revisions_table(),
            "amd64@3f2a9c1d0e4b\n  REVISION  TIMESTAMP   PACKAGES  SIZE       RUN\n  3         1796000003  5         5.0 MiB    nightly-2\n* 2         1796000002  4         900 B      -\n"
        );
        let empty = BinhostState {
            current: None,
            revisions: vec![],
            ..state
        };
        assert_eq!(
            empty.status_line(),
            "amd64@3f2a9c1d0e4b: nothing published yet"
        );
    }
}
