//! Every variant of every enum on the wire has a golden sample. Each enum's variants are named
//! by an exhaustive `match` beside the list of all of them: a new variant does not compile here
//! until it is named, and the test fails until a sample has it.

use std::collections::BTreeSet;

use swarm_schemas::*;

use super::request_samples as requests;
use super::work_samples as work;

fn event_kind(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Online { .. } => "online",
        EventKind::Claimed { .. } => "claimed",
        EventKind::Started { .. } => "started",
        EventKind::Finished { .. } => "finished",
        EventKind::HandedBack { .. } => "handed_back",
        EventKind::LeaseLost { .. } => "lease_lost",
        EventKind::Cancelled { .. } => "cancelled",
        EventKind::Grounded { .. } => "grounded",
        EventKind::Ungrounded => "ungrounded",
        EventKind::Draining => "draining",
        EventKind::Offline => "offline",
    }
}
const EVENT_KINDS: &[&str] = &[
    "online",
    "claimed",
    "started",
    "finished",
    "handed_back",
    "lease_lost",
    "cancelled",
    "grounded",
    "ungrounded",
    "draining",
    "offline",
];

fn package_state(state: &PackageState) -> &'static str {
    match state {
        PackageState::Queued { .. } => "queued",
        PackageState::Building { .. } => "building",
        PackageState::RetryWait { .. } => "retry_wait",
        PackageState::Succeeded { .. } => "succeeded",
        PackageState::Failed { .. } => "failed",
        PackageState::Waiting => "waiting",
        PackageState::Blocked { .. } => "blocked",
        PackageState::Cancelled { .. } => "cancelled",
    }
}
const PACKAGE_STATES: &[&str] = &[
    "queued",
    "building",
    "retry_wait",
    "succeeded",
    "failed",
    "waiting",
    "blocked",
    "cancelled",
];

fn drone_state(state: &DroneState) -> &'static str {
    match state {
        DroneState::Idle => "idle",
        DroneState::Building => "building",
        DroneState::Grounded { .. } => "grounded",
        DroneState::Draining => "draining",
        DroneState::Offline => "offline",
        DroneState::Lost { .. } => "lost",
        DroneState::Excluded { .. } => "excluded",
    }
}
const DRONE_STATES: &[&str] = &[
    "idle", "building", "grounded", "draining", "offline", "lost", "excluded",
];

fn lease_phase(phase: &LeasePhase) -> &'static str {
    match phase {
        LeasePhase::Building => "building",
        LeasePhase::Finished { .. } => "finished",
    }
}
const LEASE_PHASES: &[&str] = &["building", "finished"];

fn outcome(outcome: &BuildOutcome) -> &'static str {
    match outcome {
        BuildOutcome::Succeeded => "succeeded",
        BuildOutcome::Failed { .. } => "failed",
    }
}
const OUTCOMES: &[&str] = &["succeeded", "failed"];

fn failure_class(class: FailureClass) -> &'static str {
    match class {
        FailureClass::Package => "package",
        FailureClass::Fetch => "fetch",
        FailureClass::Infrastructure => "infrastructure",
    }
}
const FAILURE_CLASSES: &[&str] = &["package", "fetch", "infrastructure"];

fn drone_command(command: &DroneCommand) -> &'static str {
    match command {
        DroneCommand::Unground => "unground",
        DroneCommand::Ground { .. } => "ground",
        DroneCommand::Drain => "drain",
        DroneCommand::Cancel { .. } => "cancel",
    }
}
const DRONE_COMMANDS: &[&str] = &["unground", "ground", "drain", "cancel"];

fn submit_result(result: &SubmitResult) -> &'static str {
    match result {
        SubmitResult::Accepted { .. } => "accepted",
        SubmitResult::Rejected { .. } => "rejected",
        SubmitResult::Error { .. } => "error",
    }
}
const SUBMIT_RESULTS: &[&str] = &["accepted", "rejected", "error"];

fn binhost_command(command: &BinhostCommand) -> &'static str {
    match command {
        BinhostCommand::Publish { .. } => "publish",
        BinhostCommand::Rollback { .. } => "rollback",
        BinhostCommand::Status => "status",
    }
}
const BINHOST_COMMANDS: &[&str] = &["publish", "rollback", "status"];

fn binhost_result(result: &BinhostResult) -> &'static str {
    match result {
        BinhostResult::State { .. } => "state",
        BinhostResult::Error { .. } => "error",
    }
}
const BINHOST_RESULTS: &[&str] = &["state", "error"];

/// Every build outcome in the samples: leases, events, package histories.
fn outcomes() -> Vec<BuildOutcome> {
    let mut found = Vec::new();
    for (_, lease) in work::leases() {
        if let LeasePhase::Finished { outcome } = lease.phase {
            found.push(outcome);
        }
    }
    for (_, event) in work::events() {
        match event.kind {
            EventKind::Finished { outcome, .. } => found.push(outcome),
            EventKind::HandedBack {
                outcome: Some(outcome),
                ..
            } => found.push(outcome),
            _ => {}
        }
    }
    for (_, record) in work::package_records() {
        found.extend(record.history.into_iter().map(|a| a.outcome));
    }
    found
}

fn check(
    what: &str,
    seen: impl IntoIterator<Item = &'static str>,
    all: &[&str],
    out: &mut Vec<String>,
) {
    let seen: BTreeSet<&str> = seen.into_iter().collect();
    let all: BTreeSet<&str> = all.iter().copied().collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    let unlisted: Vec<_> = seen.difference(&all).collect();
    if !missing.is_empty() || !unlisted.is_empty() {
        out.push(format!(
            "{what}: no sample of {missing:?}; not in the list of all variants: {unlisted:?}"
        ));
    }
}

#[test]
fn every_variant_of_every_enum_has_a_sample() {
    let mut out = Vec::new();
    let events = work::events();
    check(
        "EventKind",
        events.iter().map(|(_, e)| event_kind(&e.kind)),
        EVENT_KINDS,
        &mut out,
    );
    let records = work::package_records();
    check(
        "PackageState",
        records.iter().map(|(_, r)| package_state(&r.state)),
        PACKAGE_STATES,
        &mut out,
    );
    let submitted = requests::submit_request();
    let priorities = records
        .iter()
        .map(|(_, r)| r.priority)
        .chain(submitted.priority);
    check(
        "Priority",
        priorities.map(Priority::name),
        &Priority::ALL.map(Priority::name),
        &mut out,
    );
    let classes = records
        .iter()
        .filter_map(|(_, r)| r.class)
        .chain(submitted.items.iter().filter_map(|i| i.class));
    check(
        "SizeClass",
        classes.map(SizeClass::name),
        &SizeClass::ALL.map(SizeClass::name),
        &mut out,
    );
    check(
        "DroneState",
        work::drone_records()
            .iter()
            .map(|(_, r)| drone_state(&r.state)),
        DRONE_STATES,
        &mut out,
    );
    check(
        "LeasePhase",
        work::leases().iter().map(|(_, l)| lease_phase(&l.phase)),
        LEASE_PHASES,
        &mut out,
    );
    let outcomes = outcomes();
    check(
        "BuildOutcome",
        outcomes.iter().map(outcome),
        OUTCOMES,
        &mut out,
    );
    let classes = outcomes.iter().filter_map(|o| match o {
        BuildOutcome::Failed { class, .. } => Some(failure_class(*class)),
        BuildOutcome::Succeeded => None,
    });
    check("FailureClass", classes, FAILURE_CLASSES, &mut out);
    check(
        "DroneCommand",
        requests::drone_controls()
            .iter()
            .map(|(_, c)| drone_command(&c.command)),
        DRONE_COMMANDS,
        &mut out,
    );
    check(
        "SubmitResult",
        requests::submit_replies()
            .iter()
            .map(|(_, r)| submit_result(&r.result)),
        SUBMIT_RESULTS,
        &mut out,
    );
    check(
        "BinhostCommand",
        requests::binhost_requests()
            .iter()
            .map(|(_, r)| binhost_command(&r.command)),
        BINHOST_COMMANDS,
        &mut out,
    );
    check(
        "BinhostResult",
        requests::binhost_replies()
            .iter()
            .map(|(_, r)| binhost_result(&r.result)),
        BINHOST_RESULTS,
        &mut out,
    );
    assert!(out.is_empty(), "{}", out.join("\n"));
}
