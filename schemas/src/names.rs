//! Every subject, stream, consumer and bucket name in one place, so components and the
//! documentation cannot drift apart.

use crate::ids::{Arch, DroneName, PackageKey};
use crate::messages::BinhostName;

/// Work stream: one job per package subject, WorkQueue retention.
pub const BUILDS_STREAM: &str = "SWARM_BUILDS";
/// Every job subject starts with this prefix: `swarm.build.<arch>.<package-key>`.
pub const BUILD_SUBJECT_PREFIX: &str = "swarm.build";
/// Event log: every drone's status events, `swarm.event.<drone>`.
pub const EVENTS_STREAM: &str = "SWARM_EVENTS";
pub const EVENT_SUBJECT_PREFIX: &str = "swarm.event";
/// Build history: one entry per ended attempt, `swarm.history.<arch>.<package-key>`, kept
/// across runs and restarts.
pub const HISTORY_STREAM: &str = "SWARM_HISTORY";
pub const HISTORY_SUBJECT_PREFIX: &str = "swarm.history";

/// The subject of a package's history entries.
pub fn history_subject(arch: &Arch, key: &PackageKey) -> String {
    format!("{HISTORY_SUBJECT_PREFIX}.{arch}.{key}")
}

/// Every history entry of a package key, whatever its arch.
pub fn history_filter(key: &PackageKey) -> String {
    format!("{HISTORY_SUBJECT_PREFIX}.*.{key}")
}

/// Build logs as they are written: the drone's output in order, in chunks, under
/// `swarm.log.<drone>.<package-key>.<submission>.<attempt>`; the last chunk of a build carries
/// `HEADER_LOG_END`.
pub const LOGS_STREAM: &str = "SWARM_LOGS";
pub const LOG_SUBJECT_PREFIX: &str = "swarm.log";
/// Object store of complete build logs, gzip-compressed, one object per attempt
/// (`log_object`), kept for the coordinator's `log_retention_secs`.
pub const LOGS_BUCKET: &str = "swarm-logs";
/// On the last live chunk of a build's log: the build's output has ended.
pub const HEADER_LOG_END: &str = "Swarm-Log-End";

/// The subject of the live log of one attempt, written by `drone`.
pub fn log_subject(drone: &DroneName, key: &PackageKey, submission: u64, attempt: u32) -> String {
    format!("{LOG_SUBJECT_PREFIX}.{drone}.{key}.{submission}.{attempt}")
}

/// The live log of one attempt, whichever drone writes it.
pub fn log_filter(key: &PackageKey, submission: u64, attempt: u32) -> String {
    format!("{LOG_SUBJECT_PREFIX}.*.{key}.{submission}.{attempt}")
}

/// The name of one attempt's complete log in the logs object store.
pub fn log_object(key: &PackageKey, submission: u64, attempt: u32) -> String {
    format!("{key}.{submission}.{attempt}.log.gz")
}

/// Captures the server's max-deliveries advisories for the work stream, so a dead letter is not
/// lost while the coordinator is down.
pub const DEADLETTER_STREAM: &str = "SWARM_DEADLETTER";

/// KV bucket of drone registrations and heartbeats, keyed by drone name.
pub const DRONES_BUCKET: &str = "swarm-drones";
/// KV bucket of build leases, keyed by package key; the bucket's max age is the lease TTL.
pub const LEASES_BUCKET: &str = "swarm-leases";
/// KV bucket of package state, keyed by package key; written by the coordinator only.
pub const PACKAGES_BUCKET: &str = "swarm-packages";
/// The key of the packages bucket that holds the leading coordinator's term
/// (`messages::LeaderRecord`); every package write is fenced by its sequence. A package key holds
/// only letters, digits, `-` and `_` escapes (`PackageKey::of`), so keys starting with `=` are
/// not packages: readers of the bucket skip them ([`is_package_key`]).
pub const TERM_KEY: &str = "=term";
/// The bucket of the coordinators' leader lease (`messages::LeaderRecord`), under
/// [`LEADER_KEY`]; its max age is the lease's lifetime.
pub const LEADER_BUCKET: &str = "swarm-leader";
pub const LEADER_KEY: &str = "leader";

/// Whether a key of the packages bucket holds a package (and not, e.g., the leader's term).
pub fn is_package_key(key: &str) -> bool {
    !key.starts_with('=')
}

#[cfg(test)]
mod term_key_tests {
    use super::*;
    use crate::Atom;

    #[test]
    fn no_package_key_is_the_term_key() {
        assert!(!is_package_key(TERM_KEY));
        for atom in [
            "=dev-libs/a-1",
            "dev-libs/a",
            ">=x11-libs/gtk+-3:3",
            "~a/b-1::gentoo",
            "<=a/b-1.0_rc1-r2",
        ] {
            let key = Atom::parse(atom).expect("valid").key();
            assert!(is_package_key(key.as_str()), "{atom} -> {key}");
        }
    }
}
/// Object store of the binary packages drones built, each under the SHA-256 of its contents.
pub const ARTIFACTS_BUCKET: &str = "swarm-artifacts";
/// Published binhost revisions (`rev.<binhost>.<number>`) and which one each binhost serves
/// (`current.<binhost>`), a binhost being an arch and a fingerprint (`BinhostName::token`);
/// written by the coordinator only.
pub const BINHOST_BUCKET: &str = "swarm-binhost";
/// KV bucket of the fingerprint each arch's run targets (`RunTarget`), keyed by arch; written
/// by the coordinator only.
pub const TARGETS_BUCKET: &str = "swarm-targets";
/// The operator's binhost requests (publish, rollback, status), answered by the coordinator.
pub const BINHOST_SUBJECT: &str = "swarm.ctl.binhost";

/// The key of a published revision in the binhost bucket: `rev.<binhost token>.<number>`.
pub fn binhost_revision_key(binhost: &BinhostName, number: u64) -> String {
    format!("{}{number:012}", binhost_revision_prefix(binhost))
}

/// What every revision key of one binhost starts with.
pub fn binhost_revision_prefix(binhost: &BinhostName) -> String {
    format!("rev.{}.", binhost.token())
}

/// The key saying which revision a binhost serves: `current.<binhost token>`.
pub fn binhost_current_key(binhost: &BinhostName) -> String {
    format!("current.{}", binhost.token())
}

/// Durable consumer through which the coordinator applies drone events to package state.
pub const COORDINATOR_EVENTS_CONSUMER: &str = "coordinator";
/// Durable consumer through which the coordinator reads dead-letter advisories.
pub const COORDINATOR_DEADLETTER_CONSUMER: &str = "coordinator-deadletter";

/// The coordinator's control API, a NATS micro service under this name (`nats micro info
/// swarm-coordinator`): each endpoint answers on `swarm.ctl.<endpoint>`.
pub const CONTROL_SERVICE: &str = "swarm-coordinator";
/// Every control endpoint's subject starts with this prefix.
pub const CONTROL_SUBJECT_PREFIX: &str = "swarm.ctl";

/// Request/reply subject for submissions.
pub const SUBMIT_SUBJECT: &str = "swarm.ctl.submit";

/// Every endpoint of the control service; each changes the swarm, so only the operator's
/// credential may call them (`deploy/nats-server.conf`).
pub const CONTROL_ENDPOINTS: [&str; 9] = [
    "submit", "binhost", "cancel", "retry", "pause", "resume", "ground", "unground", "drain",
];

/// The subject of the control endpoint `endpoint` (`submit`, `cancel`, `pause`, ...).
pub fn control_subject(endpoint: &str) -> String {
    format!("{CONTROL_SUBJECT_PREFIX}.{endpoint}")
}

pub fn build_subject(arch: &Arch, key: &PackageKey) -> String {
    format!("{BUILD_SUBJECT_PREFIX}.{arch}.{key}")
}

/// Headers every job and event carries beside its MessagePack payload, for people reading the
/// streams with the NATS CLI: the message's kind (`job`, or an event's `type`), the package's
/// atom, the attempt, the run (jobs) and the drone and a finished build's outcome (events).
pub const HEADER_KIND: &str = "Swarm-Kind";
pub const HEADER_ATOM: &str = "Swarm-Atom";
pub const HEADER_ATTEMPT: &str = "Swarm-Attempt";
pub const HEADER_RUN: &str = "Swarm-Run";
pub const HEADER_DRONE: &str = "Swarm-Drone";
pub const HEADER_OUTCOME: &str = "Swarm-Outcome";

/// Subject of a big job: one that no normal slot finishes within the run's horizon, given the
/// whole of a big drone. Only drones that take big builds pull these.
pub fn big_build_subject(arch: &Arch, key: &PackageKey) -> String {
    format!("{BUILD_SUBJECT_PREFIX}.{arch}.{BIG_TOKEN}.{key}")
}

/// The subject token that marks a big job (never a package key: keys hold no dots and every
/// atom has a category, so a key is never this bare word).
pub const BIG_TOKEN: &str = "big";

/// Filter of one arch's normal jobs, for that arch's consumer (one token: the package key).
pub fn build_filter(arch: &Arch) -> String {
    format!("{BUILD_SUBJECT_PREFIX}.{arch}.*")
}

/// Filter of one arch's big jobs.
pub fn big_build_filter(arch: &Arch) -> String {
    format!("{BUILD_SUBJECT_PREFIX}.{arch}.{BIG_TOKEN}.*")
}

/// Name of the pull consumer of one arch's big jobs.
pub fn big_builders_consumer(arch: &Arch) -> String {
    format!("builders-{arch}-big")
}

/// Name of the pull consumer that every drone of one arch shares.
pub fn builders_consumer(arch: &Arch) -> String {
    format!("builders-{arch}")
}

pub fn event_subject(drone: &DroneName) -> String {
    format!("{EVENT_SUBJECT_PREFIX}.{drone}")
}

pub fn events_filter() -> String {
    format!("{EVENT_SUBJECT_PREFIX}.>")
}

/// Control requests addressed to one drone (unground, ...).
pub fn drone_control_subject(drone: &DroneName) -> String {
    format!("swarm.ctl.drone.{drone}")
}

/// Subject of the server's advisory when a job of the work stream exhausts its deliveries.
pub fn max_deliveries_advisory_filter() -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{BUILDS_STREAM}.>")
}

/// The drone name from an event subject; `None` when the subject is not an event subject.
pub fn drone_of_event_subject(subject: &str) -> Option<&str> {
    subject
        .strip_prefix(EVENT_SUBJECT_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
}

/// The package key from a job subject; `None` when the subject is not a job subject.
pub fn key_of_build_subject(subject: &str) -> Option<&str> {
    let rest = subject
        .strip_prefix(BUILD_SUBJECT_PREFIX)?
        .strip_prefix('.')?;
    let (_arch, key) = rest.split_once('.')?;
    let key = key
        .strip_prefix(BIG_TOKEN)
        .and_then(|k| k.strip_prefix('.'))
        .unwrap_or(key);
    (!key.is_empty() && !key.contains('.')).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Atom;

    #[test]
    fn subjects_are_well_formed() {
        let atom = Atom::parse("=dev-libs/foo-1.2::gentoo").expect("valid");
        let subject = build_subject(&Arch::default(), &atom.key());
        assert_eq!(subject.split('.').count(), 4, "{subject}");
        assert_eq!(key_of_build_subject(&subject), Some(atom.key().as_str()));
        let big = big_build_subject(&Arch::default(), &atom.key());
        assert_eq!(big.split('.').count(), 5, "{big}");
        assert_eq!(key_of_build_subject(&big), Some(atom.key().as_str()));
        assert_eq!(key_of_build_subject("swarm.build.amd64.a.b"), None);
        let drone = DroneName::parse("drone-Izar").expect("valid");
        assert_eq!(
            drone_of_event_subject(&event_subject(&drone)),
            Some("drone-Izar")
        );
    }
}
