//! The requests and replies of request/reply: a submission to the coordinator and a control
//! command to one drone.

use serde::{Deserialize, Serialize};

use super::{Priority, SizeClass, version};
use crate::codec::Wire;
use crate::ids::{Arch, PackageKey, RunName};

/// One entry of a submission: an atom as the user typed it (validated by the coordinator) and an
/// optional build-time estimate on an 8-core drone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitItem {
    pub atom: String,
    #[serde(default)]
    pub estimate_secs: Option<f64>,
    /// Size class (`small`, `medium`, `heavy`, `giant`), used when there is no estimate.
    #[serde(default)]
    pub class: Option<SizeClass>,
    /// Its build dependencies, as atoms of the same run: it is built only after them. An atom
    /// that names no package of the run is provided from outside (the drones' system or the
    /// binhost) and ignored.
    #[serde(default)]
    pub deps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    #[serde(default = "version")]
    pub v: u16,
    pub items: Vec<SubmitItem>,
    /// Arch to build for; the coordinator's default when absent.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// The fingerprint id the run targets; when absent, the one the online drones of the arch
    /// share (or the arch's current target).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The run the submission belongs to (a `RunName`, checked by the coordinator); absent: a
    /// new run named after the submission's second, `run-YYYYMMDD-HHMMSS`.
    #[serde(default)]
    pub run: Option<String>,
    /// The packages' priority; absent: normal.
    #[serde(default)]
    pub priority: Option<Priority>,
}

impl Wire for SubmitRequest {
    const KIND: &'static str = "submit request";
}

/// Why one atom of a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtomRejection {
    pub input: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitReply {
    #[serde(default = "version")]
    pub v: u16,
    pub result: SubmitResult,
}

impl Wire for SubmitReply {
    const KIND: &'static str = "submit reply";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SubmitResult {
    /// Every atom was valid. `queued` were new or rebuilt, `already_queued` were still queued or
    /// building and left as they were.
    Accepted {
        queued: u32,
        already_queued: u32,
        /// The run the packages were queued in.
        #[serde(default)]
        run: Option<RunName>,
        /// What the operator may want to check: a build dependency that names no package of
        /// the run but one only slightly different (a typo?).
        #[serde(default)]
        notes: Vec<String>,
    },
    /// At least one atom was invalid; nothing was enqueued.
    Rejected { rejections: Vec<AtomRejection> },
    /// The request itself could not be handled.
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneControl {
    #[serde(default = "version")]
    pub v: u16,
    pub command: DroneCommand,
}

impl Wire for DroneControl {
    const KIND: &'static str = "drone control";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DroneCommand {
    /// Return a grounded or drained drone to work.
    Unground,
    /// Stop taking work until ungrounded; running builds finish.
    Ground { reason: String },
    /// Finish what it builds, take nothing new (shown as `draining`) until ungrounded.
    Drain,
    /// Kill the build of `attempt` of the package `key` (its whole process group), give its
    /// job up for good, and report it cancelled. Sent by the coordinator only.
    Cancel { key: PackageKey, attempt: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroneControlReply {
    #[serde(default = "version")]
    pub v: u16,
    pub ok: bool,
    pub message: String,
}

impl Wire for DroneControlReply {
    const KIND: &'static str = "drone control reply";
}
