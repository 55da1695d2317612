//! `/metrics`: the snapshot in the Prometheus text exposition format (version 0.0.4), so the
//! numbers a scraper sees are the ones the page shows.

use std::fmt::Write as _;

use crate::view::Snapshot;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: its samples, each with at most one label.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(Option<(&'a str, &'a str)>, f64)>,
}

impl<'a> Family<'a> {
    /// A gauge of one value.
    fn gauge(name: &'a str, help: &'a str, value: f64) -> Family<'a> {
        Family {
            name,
            kind: "gauge",
            help,
            samples: vec![(None, value)],
        }
    }

    /// A counter of one value.
    fn counter(name: &'a str, help: &'a str, value: impl Into<u64>) -> Family<'a> {
        Family {
            kind: "counter",
            ..Family::gauge(name, help, value.into() as f64)
        }
    }

    /// A gauge with one value per state, labelled `state`.
    fn by_state<N: Into<u64> + Copy>(
        name: &'a str,
        help: &'a str,
        states: &[(&'a str, N)],
    ) -> Family<'a> {
        Family {
            name,
            kind: "gauge",
            help,
            samples: states
                .iter()
                .map(|&(state, value)| (Some(("state", state)), value.into() as f64))
                .collect(),
        }
    }
}

/// Renders every metric family of the snapshot.
pub fn render(s: &Snapshot) -> String {
    let p = &s.summary.packages;
    let d = &s.summary.drones;
    let flag = |set: bool| f64::from(u8::from(set));
    let families = [
        Family::gauge(
            "swarm_queue_packages",
            "Unfinished packages: queued, waiting to retry or building.",
            s.summary.queue as f64,
        ),
        Family::by_state(
            "swarm_packages",
            "Packages by state.",
            &[
                ("queued", p.queued.saturating_sub(p.retrying)),
                ("retry_wait", p.retrying),
                ("building", p.building),
                ("succeeded", p.succeeded),
                ("failed", p.failed),
            ],
        ),
        Family::by_state(
            "swarm_drones",
            "Drones by state (lost: silent for three heartbeat intervals).",
            &[
                ("building", d.active),
                ("idle", d.idle),
                ("grounded", d.grounded),
                ("draining", d.draining),
                ("lost", d.lost),
                ("offline", d.offline),
            ],
        ),
        Family::gauge(
            "swarm_cores_active",
            "Cores of drones that are building.",
            s.summary.cores.active as f64,
        ),
        Family::gauge(
            "swarm_cores_online",
            "Cores of drones that are online (building, idle, grounded or draining).",
            s.summary.cores.total as f64,
        ),
        Family::counter(
            "swarm_builds_started_total",
            "Build processes started, from the events folded.",
            s.builds.started,
        ),
        Family::counter(
            "swarm_builds_succeeded_total",
            "Builds that succeeded, from the events folded.",
            s.builds.succeeded,
        ),
        Family::counter(
            "swarm_builds_failed_total",
            "Builds that failed, from the events folded.",
            s.builds.failed,
        ),
        Family::counter(
            "swarm_dashboard_events_folded_total",
            "Drone events folded since the dashboard started, start-up replay included.",
            s.fold.events_folded,
        ),
        Family::counter(
            "swarm_dashboard_events_rejected_total",
            "Event stream messages refused: undecodable, or naming another drone.",
            s.fold.events_rejected,
        ),
        Family::gauge(
            "swarm_dashboard_event_fold_lag_events",
            "Events stored in the stream and not yet folded, by the last poll.",
            s.fold.lag_events as f64,
        ),
        Family::gauge(
            "swarm_dashboard_fold_caught_up",
            "1 when every event stored one poll interval ago is folded.",
            flag(s.fold.caught_up),
        ),
        Family::gauge(
            "swarm_dashboard_nats_connected",
            "1 while the dashboard is connected to NATS.",
            flag(s.fold.nats_connected),
        ),
    ];
    let mut out = String::new();
    for family in families {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (label, value) in family.samples {
            match label {
                Some((key, label_value)) => {
                    let _ = writeln!(out, "{}{{{key}=\"{label_value}\"}} {value}", family.name);
                }
                None => {
                    let _ = writeln!(out, "{} {value}", family.name);
                }
            }
        }
    }
    out
}

/// Parses the exposition text back into `(name with labels, value)` pairs. The tests use it to
/// check what a scraper would read; it understands what [`render`] writes, not the whole format.
pub fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::{Input, Swarm};
    use schemas::fixtures;
    use schemas::{DroneRecord, DroneState};

    #[test]
    fn every_family_has_help_type_and_the_snapshot_values() {
        let mut swarm = Swarm::new(1);
        swarm.apply(Input::DroneRecord {
            key: "a".into(),
            written_ms: 1_000,
            record: DroneRecord {
                slots: 6,
                boot_ms: 1,
                seq: 1,
                ..fixtures::drone_record("a", 24, DroneState::Idle)
            },
        });
        let text = render(&Snapshot::of(&swarm, 1_100, true));
        let samples = parse(&text);
        let get = |name: &str| {
            samples
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        };
        assert_eq!(get("swarm_drones{state=\"idle\"}"), 1.0);
        assert_eq!(get("swarm_cores_online"), 24.0);
        assert_eq!(get("swarm_cores_active"), 0.0);
        assert_eq!(get("swarm_dashboard_nats_connected"), 1.0);
        assert_eq!(get("swarm_queue_packages"), 0.0);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE line"
            );
        }
    }
}
