//! The drone's lifecycle as a pure state machine: working (with its current streak of failed
//! packages), grounded (by its own health or by the operator), drained by the operator, or
//! draining for shutdown.

use schemas::Atom;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Pulling work. `failed_streak` holds the distinct packages that failed in a row since the
    /// last success.
    Working { failed_streak: Vec<Atom> },
    /// Not pulling until an operator ungrounds it.
    Grounded { reason: String },
    /// Shutting down: pulls nothing, finishes or hands back what runs.
    Draining,
    /// Drained by the operator (`swarmctl drain`): finishes what it builds, pulls nothing new,
    /// and stays online until ungrounded.
    Drained,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    BuildSucceeded,
    /// A build failed, or the builder could not even start (`why` says which).
    BuildFailed {
        atom: Atom,
        why: String,
    },
    Unground,
    Shutdown,
    /// The machine cannot build at all (its build directory is unwritable or full): grounded at
    /// once with `reason`, whatever the streak.
    Unhealthy {
        reason: String,
    },
    /// The operator grounds the drone (`swarmctl ground`).
    Ground {
        reason: String,
    },
    /// The operator drains the drone (`swarmctl drain`).
    Drain,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("drone is not grounded or drained")]
    NotGrounded,
    #[error("drone is shutting down")]
    Draining,
}

impl Lifecycle {
    pub fn start() -> Lifecycle {
        Lifecycle::Working {
            failed_streak: Vec::new(),
        }
    }

    pub fn pulls(&self) -> bool {
        matches!(self, Lifecycle::Working { .. })
    }
}

/// The next lifecycle state; `threshold` failures of different packages in a row ground the
/// drone. The same package failing twice counts once: that is the package's fault, not ours.
pub fn transition(
    state: &Lifecycle,
    event: &HealthEvent,
    threshold: u32,
) -> Result<Lifecycle, LifecycleError> {
    use HealthEvent as E;
    use Lifecycle as L;
    match (state, event) {
        (_, E::Shutdown) => Ok(L::Draining),
        (L::Draining, E::Unground | E::Ground { .. } | E::Drain) => Err(LifecycleError::Draining),
        (L::Draining, _) => Ok(L::Draining),
        // The operator's word: grounded or drained whatever it was doing; running builds end.
        (L::Working { .. } | L::Drained, E::Ground { reason }) => Ok(L::Grounded {
            reason: reason.clone(),
        }),
        (L::Grounded { .. }, E::Ground { .. }) => Ok(state.clone()),
        (L::Working { .. } | L::Grounded { .. } | L::Drained, E::Drain) => Ok(L::Drained),
        (L::Drained, E::Unground) => Ok(L::start()),
        (L::Drained, E::Unhealthy { reason }) => Ok(L::Grounded {
            reason: reason.clone(),
        }),
        (L::Drained, E::BuildSucceeded | E::BuildFailed { .. }) => Ok(L::Drained),
        (L::Working { .. }, E::BuildSucceeded) => Ok(L::start()),
        (L::Working { failed_streak }, E::BuildFailed { atom, why }) => {
            let mut streak = failed_streak.clone();
            if !streak.contains(atom) {
                streak.push(atom.clone());
            }
            if streak.len() as u32 >= threshold {
                let names: Vec<&str> = streak.iter().map(Atom::as_str).collect();
                Ok(L::Grounded {
                    reason: format!(
                        "{} builds of different packages failed in a row ({}); last: {why}",
                        streak.len(),
                        names.join(", ")
                    ),
                })
            } else {
                Ok(L::Working {
                    failed_streak: streak,
                })
            }
        }
        (L::Working { .. }, E::Unground) => Err(LifecycleError::NotGrounded),
        (L::Working { .. }, E::Unhealthy { reason }) => Ok(L::Grounded {
            reason: reason.clone(),
        }),
        // Already grounded: the first reason stays, the operator sees what grounded it.
        (L::Grounded { .. }, E::Unhealthy { .. }) => Ok(state.clone()),
        // Builds that were running when the drone grounded still end; they change nothing.
        (L::Grounded { .. }, E::BuildSucceeded | E::BuildFailed { .. }) => Ok(state.clone()),
        (L::Grounded { .. }, E::Unground) => Ok(L::start()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Atom {
        Atom::parse(s).expect("valid")
    }

    fn fail(s: &str) -> HealthEvent {
        HealthEvent::BuildFailed {
            atom: a(s),
            why: "exit status 1".into(),
        }
    }

    #[test]
    fn table() {
        use HealthEvent as E;
        use Lifecycle as L;
        let streak = |atoms: &[&str]| L::Working {
            failed_streak: atoms.iter().map(|s| a(s)).collect(),
        };
        let grounded = || L::Grounded { reason: "x".into() };
        let op_ground = || E::Ground {
            reason: "by the operator".into(),
        };
        let cases: Vec<(Lifecycle, HealthEvent, Result<&str, LifecycleError>)> = vec![
            (L::start(), fail("a-a/x"), Ok("working:1")),
            (streak(&["a-a/x"]), fail("a-a/x"), Ok("working:1")),
            (streak(&["a-a/x"]), fail("a-a/y"), Ok("working:2")),
            (streak(&["a-a/x", "a-a/y"]), fail("a-a/z"), Ok("grounded")),
            (
                streak(&["a-a/x", "a-a/y"]),
                E::BuildSucceeded,
                Ok("working:0"),
            ),
            (grounded(), E::BuildSucceeded, Ok("grounded")),
            (grounded(), fail("a-a/q"), Ok("grounded")),
            (grounded(), E::Unground, Ok("working:0")),
            (L::start(), E::Unground, Err(LifecycleError::NotGrounded)),
            (grounded(), E::Shutdown, Ok("draining")),
            (L::start(), E::Shutdown, Ok("draining")),
            (L::Draining, E::Unground, Err(LifecycleError::Draining)),
            (L::Draining, fail("a-a/x"), Ok("draining")),
            (
                streak(&[]),
                E::Unhealthy {
                    reason: "disk".into(),
                },
                Ok("grounded"),
            ),
            (
                grounded(),
                E::Unhealthy {
                    reason: "disk".into(),
                },
                Ok("grounded"),
            ),
            (
                L::Draining,
                E::Unhealthy {
                    reason: "disk".into(),
                },
                Ok("draining"),
            ),
            // The operator's ground and drain.
            (streak(&["a-a/x"]), op_ground(), Ok("grounded")),
            (grounded(), op_ground(), Ok("grounded")),
            (L::Drained, op_ground(), Ok("grounded")),
            (L::Draining, op_ground(), Err(LifecycleError::Draining)),
            (streak(&["a-a/x"]), E::Drain, Ok("drained")),
            (grounded(), E::Drain, Ok("drained")),
            (L::Drained, E::Drain, Ok("drained")),
            (L::Draining, E::Drain, Err(LifecycleError::Draining)),
            (L::Drained, E::Unground, Ok("working:0")),
            (L::Drained, fail("a-a/x"), Ok("drained")),
            (L::Drained, E::BuildSucceeded, Ok("drained")),
            (
                L::Drained,
                E::Unhealthy {
                    reason: "disk".into(),
                },
                Ok("grounded"),
            ),
            (L::Drained, E::Shutdown, Ok("draining")),
        ];
        for (from, event, expected) in cases {
            let got = transition(&from, &event, 3).map(|s| match s {
                L::Working { failed_streak } => format!("working:{}", failed_streak.len()),
                L::Grounded { .. } => "grounded".to_owned(),
                L::Draining => "draining".to_owned(),
                L::Drained => "drained".to_owned(),
            });
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                expected,
                "{from:?} + {event:?}"
            );
        }
    }

    #[test]
    fn grounding_reason_names_the_packages() {
        let mut state = Lifecycle::start();
        for atom in ["a-a/x", "a-a/y", "a-a/z"] {
            state = transition(&state, &fail(atom), 3).expect("moves");
        }
        match state {
            Lifecycle::Grounded { reason } => {
                assert!(reason.contains("a-a/x, a-a/y, a-a/z"), "{reason}")
            }
            other => panic!("not grounded: {other:?}"),
        }
    }
}
