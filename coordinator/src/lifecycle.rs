//! The package lifecycle as a pure state machine: `transition(state, event)` is the only place
//! that decides what a package's next state is, from its submission to its end. The coordinator's
//! service applies it; nothing else writes package state.

use schemas::{DroneName, ExitInfo, PackageState};

/// Something that happened to a package.
#[derive(Debug, Clone, PartialEq)]
pub enum PackageEvent {
    /// A drone holds the lease for `attempt` and starts building.
    Claimed { drone: DroneName, attempt: u32 },
    /// A drone committed a successful build of `attempt`.
    Succeeded { drone: DroneName, attempt: u32 },
    /// A drone committed a failed build of `attempt`.
    Failed {
        drone: DroneName,
        attempt: u32,
        exit: ExitInfo,
    },
    /// A drone gave `attempt` back unbuilt; the attempt is not consumed.
    HandedBack { attempt: u32 },
    /// The backoff of a pending retry is over and its job was published.
    RetryPublished,
    /// The reconciler found neither a job nor a live lease for the package and re-published it.
    Requeued,
    /// The server gave up delivering the job for `attempt`.
    DeadLettered { attempt: u32, deliveries: u64 },
    /// An operator submitted the package: a new one, or a finished one to be built again.
    Submitted,
}

/// Where a package stands before an event: unknown to the coordinator (no record yet), or known
/// in a state. Only a submission moves an unknown package.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Current<'a> {
    Unknown,
    Known(&'a PackageState),
}

impl<'a> From<&'a PackageState> for Current<'a> {
    fn from(state: &'a PackageState) -> Self {
        Current::Known(state)
    }
}

impl<'a> From<Option<&'a PackageState>> for Current<'a> {
    fn from(state: Option<&'a PackageState>) -> Self {
        state.map_or(Current::Unknown, Current::Known)
    }
}

/// Policy the transition needs: how many attempts, and when a retry may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
}

impl Policy {
    /// Exponential backoff: the base after attempt 1, doubled after each further attempt.
    pub fn backoff_after(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(20);
        self.backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.backoff_max_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The event is about an attempt or phase the package has already left: a late or repeated
    /// message, safe to drop.
    #[error("stale event: package is {state}, event is about attempt {attempt}")]
    Stale { state: &'static str, attempt: u32 },
    /// The package is finished; only a new submission moves it.
    #[error("package already finished ({state})")]
    Finished { state: &'static str },
    /// The event does not apply to this state.
    #[error("event {event} does not apply to a package that is {state}")]
    Invalid {
        event: &'static str,
        state: &'static str,
    },
    /// The event is about a package the coordinator has no record of; only a submission
    /// creates one.
    #[error("event {event} is about a package that was never submitted")]
    Unknown { event: &'static str },
    /// A submission of a package that is still queued, building or waiting for its retry: it
    /// is left as it is (the submission counts it as already queued).
    #[error("package is still {state}; a new submission leaves it as it is")]
    Unfinished { state: &'static str },
}

fn event_name(event: &PackageEvent) -> &'static str {
    match event {
        PackageEvent::Claimed { .. } => "claimed",
        PackageEvent::Succeeded { .. } => "succeeded",
        PackageEvent::Failed { .. } => "failed",
        PackageEvent::HandedBack { .. } => "handed_back",
        PackageEvent::RetryPublished => "retry_published",
        PackageEvent::Requeued => "requeued",
        PackageEvent::DeadLettered { .. } => "dead_lettered",
        PackageEvent::Submitted => "submitted",
    }
}

/// The next state of a package, or why the event does not move it. `now_ms` dates a retry.
/// `current` is a package's state (`&PackageState`) or, for a package without a record,
/// `Current::Unknown` (`Option<&PackageState>` converts to either).
pub fn transition<'a>(
    current: impl Into<Current<'a>>,
    event: &PackageEvent,
    policy: &Policy,
    now_ms: u64,
) -> Result<PackageState, TransitionError> {
    use PackageEvent as E;
    use PackageState as S;
    let state = match current.into() {
        Current::Known(state) => state,
        Current::Unknown => {
            return match event {
                E::Submitted => Ok(S::Queued { attempt: 1 }),
                _ => Err(TransitionError::Unknown {
                    event: event_name(event),
                }),
            };
        }
    };
    // A submission starts a finished package over at attempt 1; nothing else moves a finished
    // package.
    if *event == E::Submitted && state.is_final() {
        return Ok(S::Queued { attempt: 1 });
    }
    let stale = |attempt: u32| TransitionError::Stale {
        state: state.label(),
        attempt,
    };
    // The attempt a job for this package may currently carry.
    let live_attempt = match state {
        S::Queued { attempt } | S::Building { attempt, .. } => Some(*attempt),
        _ => None,
    };
    if state.is_final() {
        return Err(TransitionError::Finished {
            state: state.label(),
        });
    }
    match event {
        E::Claimed { drone, attempt } => match live_attempt {
            Some(live) if live == *attempt => Ok(S::Building {
                attempt: *attempt,
                drone: drone.clone(),
                since_ms: now_ms,
            }),
            _ => Err(stale(*attempt)),
        },
        E::Succeeded { drone, attempt } => match (state, live_attempt) {
            (_, Some(live)) if live == *attempt => Ok(S::Succeeded {
                attempt: *attempt,
                drone: drone.clone(),
            }),
            // A success of the previous attempt that arrives while its retry waits (a
            // redelivered job that another drone built): the package is built, keep it.
            (S::RetryWait { attempt: next, .. }, _) if *attempt + 1 == *next => Ok(S::Succeeded {
                attempt: *attempt,
                drone: drone.clone(),
            }),
            _ => Err(stale(*attempt)),
        },
        E::Failed { attempt, exit, .. } => match live_attempt {
            Some(live) if live == *attempt => {
                if *attempt >= policy.max_attempts {
                    Ok(S::Failed {
                        attempt: *attempt,
                        reason: format!(
                            "attempt {attempt} of {} failed: {exit}",
                            policy.max_attempts
                        ),
                    })
                } else {
                    Ok(S::RetryWait {
                        attempt: attempt + 1,
                        not_before_ms: now_ms.saturating_add(policy.backoff_after(*attempt)),
                    })
                }
            }
            _ => Err(stale(*attempt)),
        },
        E::HandedBack { attempt } => match state {
            S::Building { attempt: live, .. } | S::Queued { attempt: live } if live == attempt => {
                Ok(S::Queued { attempt: *attempt })
            }
            _ => Err(stale(*attempt)),
        },
        E::RetryPublished => match state {
            S::RetryWait { attempt, .. } => Ok(S::Queued { attempt: *attempt }),
            _ => Err(TransitionError::Invalid {
                event: event_name(event),
                state: state.label(),
            }),
        },
        E::Requeued => match state {
            S::Building { attempt, .. } | S::Queued { attempt } => {
                Ok(S::Queued { attempt: *attempt })
            }
            _ => Err(TransitionError::Invalid {
                event: event_name(event),
                state: state.label(),
            }),
        },
        E::DeadLettered {
            attempt,
            deliveries,
        } => match live_attempt {
            Some(live) if live == *attempt => Ok(S::Failed {
                attempt: *attempt,
                reason: format!(
                    "dead-lettered: the job of attempt {attempt} was delivered {deliveries} times without a result"
                ),
            }),
            _ => Err(stale(*attempt)),
        },
        // An unfinished package is left alone: its job (or its retry) is still on the way.
        E::Submitted => Err(TransitionError::Unfinished {
            state: state.label(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str) -> DroneName {
        DroneName::parse(name).expect("valid")
    }

    const POLICY: Policy = Policy {
        max_attempts: 3,
        backoff_ms: 100,
        backoff_max_ms: 1_000,
    };

    fn building(attempt: u32, drone: &str) -> PackageState {
        PackageState::Building {
            attempt,
            drone: d(drone),
            // The clock the table runs at, so an expected Building state matches.
            since_ms: 1_000,
        }
    }

    #[test]
    fn transitions_table() {
        use PackageEvent as E;
        use PackageState as S;
        let fail = |drone: &str, attempt| E::Failed {
            drone: d(drone),
            attempt,
            exit: ExitInfo::code(1),
        };
        let ok = |drone: &str, attempt| E::Succeeded {
            drone: d(drone),
            attempt,
        };
        let claim = |drone: &str, attempt| E::Claimed {
            drone: d(drone),
            attempt,
        };
        // (from, event, expected) — `Err` holds the expected error's variant name.
        let cases: Vec<(S, E, Result<S, &str>)> = vec![
            (S::Queued { attempt: 1 }, claim("a", 1), Ok(building(1, "a"))),
            (S::Queued { attempt: 2 }, claim("a", 1), Err("stale")),
            // Takeover after the first drone's lease expired.
            (building(1, "a"), claim("b", 1), Ok(building(1, "b"))),
            (building(1, "a"), ok("a", 1), Ok(S::Succeeded { attempt: 1, drone: d("a") })),
            // A success can arrive before the claim is applied.
            (S::Queued { attempt: 1 }, ok("a", 1), Ok(S::Succeeded { attempt: 1, drone: d("a") })),
            (building(1, "a"), fail("a", 1), Ok(S::RetryWait { attempt: 2, not_before_ms: 1_100 })),
            (building(2, "b"), fail("b", 2), Ok(S::RetryWait { attempt: 3, not_before_ms: 1_200 })),
            (
                building(3, "c"),
                fail("c", 3),
                Ok(S::Failed {
                    attempt: 3,
                    reason: "attempt 3 of 3 failed: exit status 1".into(),
                }),
            ),
            // Fail then succeed: the retry's success finishes the package.
            (S::RetryWait { attempt: 2, not_before_ms: 5 }, E::RetryPublished, Ok(S::Queued { attempt: 2 })),
            (building(2, "b"), ok("b", 2), Ok(S::Succeeded { attempt: 2, drone: d("b") })),
            // Success of the redelivered previous attempt while its retry waits.
            (
                S::RetryWait { attempt: 2, not_before_ms: 5 },
                ok("b", 1),
                Ok(S::Succeeded { attempt: 1, drone: d("b") }),
            ),
            (S::RetryWait { attempt: 2, not_before_ms: 5 }, fail("b", 1), Err("stale")),
            (S::RetryWait { attempt: 2, not_before_ms: 5 }, claim("b", 1), Err("stale")),
            // A late failure of an old attempt does not undo a newer one.
            (building(2, "b"), fail("a", 1), Err("stale")),
            (building(1, "a"), E::HandedBack { attempt: 1 }, Ok(S::Queued { attempt: 1 })),
            (building(2, "a"), E::HandedBack { attempt: 1 }, Err("stale")),
            (building(1, "a"), E::Requeued, Ok(S::Queued { attempt: 1 })),
            (S::Queued { attempt: 1 }, E::Requeued, Ok(S::Queued { attempt: 1 })),
            (S::RetryWait { attempt: 2, not_before_ms: 0 }, E::Requeued, Err("invalid")),
            (S::Queued { attempt: 1 }, E::RetryPublished, Err("invalid")),
            (
                S::Queued { attempt: 2 },
                E::DeadLettered { attempt: 2, deliveries: 10 },
                Ok(S::Failed {
                    attempt: 2,
                    reason: "dead-lettered: the job of attempt 2 was delivered 10 times without a result".into(),
                }),
            ),
            (S::Queued { attempt: 2 }, E::DeadLettered { attempt: 1, deliveries: 10 }, Err("stale")),
            // Finished packages never move on an event, whatever it is.
            (S::Succeeded { attempt: 1, drone: d("a") }, ok("a", 1), Err("finished")),
            (S::Succeeded { attempt: 1, drone: d("a") }, fail("b", 1), Err("finished")),
            (S::Succeeded { attempt: 1, drone: d("a") }, claim("b", 1), Err("finished")),
            (S::Failed { attempt: 3, reason: "x".into() }, ok("a", 3), Err("finished")),
            (S::Failed { attempt: 3, reason: "x".into() }, E::Requeued, Err("finished")),
        ];
        for (from, event, expected) in cases {
            let got = transition(&from, &event, &POLICY, 1_000);
            match (&got, &expected) {
                (Ok(state), Ok(want)) => assert_eq!(state, want, "{from:?} + {event:?}"),
                (Err(err), Err(kind)) => {
                    let got_kind = match err {
                        TransitionError::Stale { .. } => "stale",
                        TransitionError::Finished { .. } => "finished",
                        TransitionError::Invalid { .. } => "invalid",
                        TransitionError::Unknown { .. } => "unknown",
                        TransitionError::Unfinished { .. } => "unfinished",
                    };
                    assert_eq!(got_kind, *kind, "{from:?} + {event:?}");
                }
                _ => panic!("{from:?} + {event:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    /// A result in one word or three, so the matrix below reads as a table.
    fn outcome(result: &Result<PackageState, TransitionError>) -> String {
        use PackageState as S;
        match result {
            Ok(S::Building { attempt, drone, .. } | S::Succeeded { attempt, drone }) => {
                format!("{} {attempt} {drone}", result.as_ref().map_or("", S::label))
            }
            Ok(S::RetryWait {
                attempt,
                not_before_ms,
            }) => format!("retry_wait {attempt} {not_before_ms}"),
            Ok(state) => format!("{} {}", state.label(), state.attempt()),
            Err(TransitionError::Stale { .. }) => "stale".into(),
            Err(TransitionError::Finished { .. }) => "finished".into(),
            Err(TransitionError::Invalid { .. }) => "invalid".into(),
            Err(TransitionError::Unknown { .. }) => "unknown".into(),
            Err(TransitionError::Unfinished { .. }) => "unfinished".into(),
        }
    }

    /// Every state (and "no record") against every event, each event with an attempt number
    /// one behind, equal to and one ahead of the package's. The drone of every event is `e`.
    #[test]
    fn every_state_against_every_event() {
        use PackageEvent as E;
        use PackageState as S;
        type Make = fn(u32) -> PackageEvent;
        let with_attempt: [(&str, Make); 5] = [
            ("claimed", |attempt| E::Claimed {
                drone: d("e"),
                attempt,
            }),
            ("succeeded", |attempt| E::Succeeded {
                drone: d("e"),
                attempt,
            }),
            ("failed", |attempt| E::Failed {
                drone: d("e"),
                attempt,
                exit: ExitInfo::code(2),
            }),
            ("handed_back", |attempt| E::HandedBack { attempt }),
            ("dead_lettered", |attempt| E::DeadLettered {
                attempt,
                deliveries: 5,
            }),
        ];
        let without: [(&str, E); 3] = [
            ("retry_published", E::RetryPublished),
            ("requeued", E::Requeued),
            ("submitted", E::Submitted),
        ];
        let unknown = None;
        let queued = Some(S::Queued { attempt: 2 });
        let in_build = Some(building(2, "a"));
        let last = Some(building(3, "a"));
        let waiting = Some(S::RetryWait {
            attempt: 3,
            not_before_ms: 5,
        });
        let succeeded = Some(S::Succeeded {
            attempt: 2,
            drone: d("a"),
        });
        let failed = Some(S::Failed {
            attempt: 2,
            reason: "x".into(),
        });
        // (state, event, with attempt live-1, live, live+1); an event without an attempt has
        // one expectation, repeated.
        #[rustfmt::skip]
        let mut cases: Vec<(&Option<S>, &str, [&str; 3])> = vec![
            (&unknown, "claimed", ["unknown", "unknown", "unknown"]),
            (&unknown, "succeeded", ["unknown", "unknown", "unknown"]),
            (&unknown, "failed", ["unknown", "unknown", "unknown"]),
            (&unknown, "handed_back", ["unknown", "unknown", "unknown"]),
            (&unknown, "dead_lettered", ["unknown", "unknown", "unknown"]),
            (&unknown, "retry_published", ["unknown"; 3]),
            (&unknown, "requeued", ["unknown"; 3]),
            (&unknown, "submitted", ["queued 1"; 3]),
            (&queued, "claimed", ["stale", "building 2 e", "stale"]),
            (&queued, "succeeded", ["stale", "succeeded 2 e", "stale"]),
            (&queued, "failed", ["stale", "retry_wait 3 1200", "stale"]),
            (&queued, "handed_back", ["stale", "queued 2", "stale"]),
            (&queued, "dead_lettered", ["stale", "failed 2", "stale"]),
            (&queued, "retry_published", ["invalid"; 3]),
            (&queued, "requeued", ["queued 2"; 3]),
            (&queued, "submitted", ["unfinished"; 3]),
            (&in_build, "claimed", ["stale", "building 2 e", "stale"]),
            (&in_build, "succeeded", ["stale", "succeeded 2 e", "stale"]),
            (&in_build, "failed", ["stale", "retry_wait 3 1200", "stale"]),
            (&in_build, "handed_back", ["stale", "queued 2", "stale"]),
            (&in_build, "dead_lettered", ["stale", "failed 2", "stale"]),
            (&in_build, "retry_published", ["invalid"; 3]),
            (&in_build, "requeued", ["queued 2"; 3]),
            (&in_build, "submitted", ["unfinished"; 3]),
            // The last attempt: a failure fails the package instead of scheduling a retry.
            (&last, "failed", ["stale", "failed 3", "stale"]),
            (&waiting, "claimed", ["stale", "stale", "stale"]),
            // Only a success of the attempt before the awaited retry counts.
            (&waiting, "succeeded", ["succeeded 2 e", "stale", "stale"]),
            (&waiting, "failed", ["stale", "stale", "stale"]),
            (&waiting, "handed_back", ["stale", "stale", "stale"]),
            (&waiting, "dead_lettered", ["stale", "stale", "stale"]),
            (&waiting, "retry_published", ["queued 3"; 3]),
            (&waiting, "requeued", ["invalid"; 3]),
            (&waiting, "submitted", ["unfinished"; 3]),
        ];
        // A finished package refuses everything but a new submission, which starts it over.
        for finished in [&succeeded, &failed] {
            for (name, _) in &with_attempt {
                cases.push((finished, name, ["finished"; 3]));
            }
            cases.push((finished, "retry_published", ["finished"; 3]));
            cases.push((finished, "requeued", ["finished"; 3]));
            cases.push((finished, "submitted", ["queued 1"; 3]));
        }
        let states = [&unknown, &queued, &in_build, &waiting, &succeeded, &failed];
        for state in states {
            for name in with_attempt
                .iter()
                .map(|e| e.0)
                .chain(without.iter().map(|e| e.0))
            {
                assert!(
                    cases.iter().any(|(s, n, _)| s == &state && *n == name),
                    "no case for {state:?} + {name}"
                );
            }
        }
        for (state, name, expected) in cases {
            // The live attempt: the queued or building one, or the one a retry waits for.
            let live = state.as_ref().map_or(1, PackageState::attempt);
            for (i, want) in expected.iter().enumerate() {
                let attempt = live + i as u32 - 1;
                let event = match with_attempt.iter().find(|e| e.0 == name) {
                    Some((_, make)) => make(attempt),
                    None => without
                        .iter()
                        .find(|e| e.0 == name)
                        .map(|e| e.1.clone())
                        .expect("event"),
                };
                let got = transition(state.as_ref(), &event, &POLICY, 1_000);
                assert_eq!(outcome(&got), *want, "{state:?} + {event:?}");
            }
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(POLICY.backoff_after(1), 100);
        assert_eq!(POLICY.backoff_after(2), 200);
        assert_eq!(POLICY.backoff_after(5), 1_000);
        assert_eq!(POLICY.backoff_after(u32::MAX), 1_000);
    }
}
