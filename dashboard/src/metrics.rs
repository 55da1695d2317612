//! `/metrics`: the snapshot in the Prometheus text exposition format (version 0.0.4), so the
//! numbers a scraper sees are the ones the page shows.

use std::fmt::Write as _;

use crate::view::Snapshot;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(Option<(&'a str, &'a str)>, f64)>,
}

/// Renders every metric family of the snapshot.
pub fn render(s: &Snapshot) -> String {
    let p = &s.summary.packages;
    let d = &s.summary.drones;
    let families = [
        Family {
            name: "swarm_queue_packages",
            kind: "gauge",
            help: "Unfinished packages: queued, waiting to retry or building.",
            samples: vec![(None, s.summary.queue as f64)],
        },
        Family {
            name: "swarm_packages",
            kind: "gauge",
            help: "Packages by state.",
            samples: vec![
                (
                    Some(("state", "queued")),
                    p.queued.saturating_sub(p.retrying) as f64,
                ),
                (Some(("state", "retry_wait")), p.retrying as f64),
                (Some(("state", "building")), p.building as f64),
                (Some(("state", "succeeded")), p.succeeded as f64),
                (Some(("state", "failed")), p.failed as f64),
            ],
        },
        Family {
            name: "swarm_drones",
            kind: "gauge",
            help: "Drones by state (lost: silent for three heartbeat intervals).",
            samples: vec![
                (Some(("state", "building")), d.active as f64),
                (Some(("state", "idle")), d.idle as f64),
                (Some(("state", "grounded")), d.grounded as f64),
                (Some(("state", "draining")), d.draining as f64),
                (Some(("state", "lost")), d.lost as f64),
                (Some(("state", "offline")), d.offline as f64),
            ],
        },
        Family {
            name: "swarm_cores_active",
            kind: "gauge",
            help: "Cores of drones that are building.",
            samples: vec![(None, s.summary.cores.active as f64)],
        },
        Family {
            name: "swarm_cores_online",
            kind: "gauge",
            help: "Cores of drones that are online (building, idle, grounded or draining).",
            samples: vec![(None, s.summary.cores.total as f64)],
        },
        Family {
            name: "swarm_builds_started_total",
            kind: "counter",
            help: "Build processes started, from the events folded.",
            samples: vec![(None, s.builds.started as f64)],
        },
        Family {
            name: "swarm_builds_succeeded_total",
            kind: "counter",
            help: "Builds that succeeded, from the events folded.",
            samples: vec![(None, s.builds.succeeded as f64)],
        },
        Family {
            name: "swarm_builds_failed_total",
            kind: "counter",
            help: "Builds that failed, from the events folded.",
            samples: vec![(None, s.builds.failed as f64)],
        },
        Family {
            name: "swarm_dashboard_events_folded_total",
            kind: "counter",
            help: "Drone events folded since the dashboard started, start-up replay included.",
            samples: vec![(None, s.fold.events_folded as f64)],
        },
        Family {
            name: "swarm_dashboard_events_rejected_total",
            kind: "counter",
            help: "Event stream messages refused: undecodable, or naming another drone.",
            samples: vec![(None, s.fold.events_rejected as f64)],
        },
        Family {
            name: "swarm_dashboard_event_fold_lag_events",
            kind: "gauge",
            help: "Events stored in the stream and not yet folded, by the last poll.",
            samples: vec![(None, s.fold.lag_events as f64)],
        },
        Family {
            name: "swarm_dashboard_fold_caught_up",
            kind: "gauge",
            help: "1 when every event stored one poll interval ago is folded.",
            samples: vec![(None, f64::from(u8::from(s.fold.caught_up)))],
        },
        Family {
            name: "swarm_dashboard_nats_connected",
            kind: "gauge",
            help: "1 while the dashboard is connected to NATS.",
            samples: vec![(None, f64::from(u8::from(s.fold.nats_connected)))],
        },
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
