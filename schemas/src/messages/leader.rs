//! The coordinators' leadership: the lease one coordinator holds in the leader bucket
//! (`names::LEADER_BUCKET`), and the same record written as its term into the packages bucket
//! (`names::TERM_KEY`), whose sequence fences every package write of that coordinator.

use serde::{Deserialize, Serialize};

use super::version;
use crate::codec::Wire;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    #[serde(default = "version")]
    pub v: u16,
    /// The coordinator's name (`coordinator.name`: by default host name and process id).
    pub coordinator: String,
    /// Its software version.
    pub version: String,
    /// Unix milliseconds when it took the lead.
    pub since_ms: u64,
    /// Unix milliseconds of its last renewal of the lease (the term's copy keeps `since_ms`).
    pub renewed_ms: u64,
    /// The lease's lifetime: a leader silent this long has lost the lead.
    pub ttl_ms: u64,
}

impl Wire for LeaderRecord {
    const KIND: &'static str = "leader record";
}
