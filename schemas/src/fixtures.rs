//! Test fixtures shared by every crate's tests: well-formed records with the fields a test does
//! not care about set to plain values. A test changes what it cares about with struct update
//! syntax (`DroneRecord { slots: 4, ..fixtures::drone_record("a", 8, DroneState::Idle) }`).
//!
//! Compiled for this crate's own tests and, through the `fixtures` feature, for other crates'
//! tests and benchmarks (their `[dev-dependencies]` turn it on); product code never uses it.

use crate::codec::SCHEMA_VERSION;
use crate::ids::{Arch, Atom, DroneName};
use crate::messages::{
    DroneRecord, DroneState, Event, EventKind, PackageRecord, PackageState, RunningBuild,
};

/// A valid atom; panics on an invalid one (a fixture is the test's own input).
pub fn atom(text: &str) -> Atom {
    Atom::parse(text).unwrap_or_else(|err| panic!("fixture atom {text:?}: {err}"))
}

/// A valid drone name; panics on an invalid one.
pub fn drone_name(text: &str) -> DroneName {
    DroneName::parse(text).unwrap_or_else(|err| panic!("fixture drone name {text:?}: {err}"))
}

/// The builds a drone reports as running: attempt 1 of each atom, started at `started_ms`.
pub fn running(atoms: &[&str], started_ms: u64) -> Vec<RunningBuild> {
    atoms
        .iter()
        .map(|text| RunningBuild {
            atom: atom(text),
            attempt: 1,
            started_ms,
        })
        .collect()
}

/// A drone record of the default arch with one slot, building nothing, heartbeating every
/// second, at sequence 0 of boot 0.
pub fn drone_record(name: &str, cores: u32, state: DroneState) -> DroneRecord {
    DroneRecord {
        v: SCHEMA_VERSION,
        name: drone_name(name),
        cores,
        slots: 1,
        arch: Arch::default(),
        version: "test".into(),
        state,
        building: Vec::new(),
        consecutive_failures: 0,
        heartbeat_ms: 0,
        heartbeat_interval_ms: 1_000,
        supervise_deadline_ms: None,
        big_builds: false,
        boot_ms: 0,
        seq: 0,
        fingerprint: None,
    }
}

/// The job of `attempt` of `atom_text`'s first submission, on the normal queue, avoiding no
/// drone.
pub fn job(atom_text: &str, attempt: u32) -> crate::Job {
    crate::Job {
        v: SCHEMA_VERSION,
        atom: atom(atom_text),
        attempt,
        submission: 1,
        avoid: Vec::new(),
        estimate_secs: None,
        fingerprint: None,
        min_cores: None,
        linger: false,
    }
}

/// A package record of the default arch, first submission, no history and nothing known of
/// its build time.
pub fn package_record(atom_text: &str, state: PackageState) -> PackageRecord {
    PackageRecord {
        v: SCHEMA_VERSION,
        atom: atom(atom_text),
        arch: Arch::default(),
        submission: 1,
        state,
        history: Vec::new(),
        estimate_secs: None,
        class: None,
        learned_secs: None,
        submitted_ms: 0,
        updated_ms: 0,
        artifacts: Vec::new(),
        fingerprint: None,
        run: None,
        deps: Vec::new(),
        priority: crate::Priority::Normal,
    }
}

/// An event of `drone`'s process started at `boot_ms`, its report number `seq`, made at
/// `boot_ms + seq` by the drone's clock.
pub fn event(drone: &str, boot_ms: u64, seq: u64, kind: EventKind) -> Event {
    Event {
        v: SCHEMA_VERSION,
        drone: drone_name(drone),
        boot_ms,
        seq,
        at_ms: boot_ms + seq,
        kind,
    }
}

/// The claim of attempt `attempt` of an atom: the first delivery of stream message 1, under
/// lease revision 1.
pub fn claimed(atom_text: &str, attempt: u32) -> EventKind {
    EventKind::Claimed {
        atom: atom(atom_text),
        attempt,
        stream_seq: 1,
        delivery: 1,
        lease_rev: 1,
    }
}
