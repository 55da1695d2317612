//! The operator's requests to the coordinator's control service beyond submission: cancel,
//! retry, pause and resume the swarm, and ground, unground or drain one drone. Each endpoint
//! takes its own request type and answers a [`ControlReply`]; a request the service cannot read
//! or act on is answered with a NATS service error (a code and a message naming the input).

use serde::{Deserialize, Serialize};

use super::version;
use crate::codec::Wire;

/// Withdraw packages: named by atom, or every unfinished package of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    #[serde(default = "version")]
    pub v: u16,
    #[serde(default)]
    pub atoms: Vec<String>,
    /// Every unfinished package of this run (with `atoms`, both).
    #[serde(default)]
    pub run: Option<String>,
}

impl Wire for CancelRequest {
    const KIND: &'static str = "cancel request";
}

/// Build packages again with a fresh attempt budget: named by atom (failed, blocked or
/// cancelled), or with `failed` every package that failed for good (of `run` only, when given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRequest {
    #[serde(default = "version")]
    pub v: u16,
    #[serde(default)]
    pub atoms: Vec<String>,
    #[serde(default)]
    pub failed: bool,
    #[serde(default)]
    pub run: Option<String>,
}

impl Wire for RetryRequest {
    const KIND: &'static str = "retry request";
}

/// Pause or resume the whole swarm (the endpoint says which); an empty payload is read as this
/// request with no reason.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PauseRequest {
    #[serde(default = "version")]
    pub v: u16,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Wire for PauseRequest {
    const KIND: &'static str = "pause request";
}

/// Ground, unground or drain one drone (the endpoint says which); the coordinator passes it on
/// to the drone and answers with the drone's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroneRequest {
    #[serde(default = "version")]
    pub v: u16,
    pub drone: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Wire for DroneRequest {
    const KIND: &'static str = "drone request";
}

/// What a control request changed: the atoms it acted on, and those it left alone with why.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ControlReply {
    #[serde(default = "version")]
    pub v: u16,
    /// One line saying what was done.
    pub message: String,
    #[serde(default)]
    pub changed: Vec<String>,
    /// Atoms named in the request and left as they were, each with the reason.
    #[serde(default)]
    pub unchanged: Vec<Unchanged>,
}

impl Wire for ControlReply {
    const KIND: &'static str = "control reply";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unchanged {
    pub atom: String,
    pub reason: String,
}

/// The codes of the control service's errors (`Nats-Service-Error-Code`), as HTTP uses them.
pub mod codes {
    /// The request cannot be read, or names something invalid.
    pub const BAD_REQUEST: usize = 400;
    /// The request names a package, run or drone the swarm does not know.
    pub const NOT_FOUND: usize = 404;
    /// The request does not apply to the state it names (e.g. ungrounding a working drone).
    pub const CONFLICT: usize = 409;
    /// The swarm could not do it now (state not writable, drone not answering); nothing changed
    /// unless the message says so.
    pub const UNAVAILABLE: usize = 503;
}
