//! Table tests of the package lifecycle (`lifecycle.rs`): every state against every event.

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
        (
            S::Queued { attempt: 1 },
            claim("a", 1),
            Ok(building(1, "a")),
        ),
        (S::Queued { attempt: 2 }, claim("a", 1), Err("stale")),
        // Takeover after the first drone's lease expired.
        (building(1, "a"), claim("b", 1), Ok(building(1, "b"))),
        (
            building(1, "a"),
            ok("a", 1),
            Ok(S::Succeeded {
                attempt: 1,
                drone: d("a"),
            }),
        ),
        // A success can arrive before the claim is applied.
        (
            S::Queued { attempt: 1 },
            ok("a", 1),
            Ok(S::Succeeded {
                attempt: 1,
                drone: d("a"),
            }),
        ),
        (
            building(1, "a"),
            fail("a", 1),
            Ok(S::RetryWait {
                attempt: 2,
                not_before_ms: 1_100,
            }),
        ),
        (
            building(2, "b"),
            fail("b", 2),
            Ok(S::RetryWait {
                attempt: 3,
                not_before_ms: 1_200,
            }),
        ),
        (
            building(3, "c"),
            fail("c", 3),
            Ok(S::Failed {
                attempt: 3,
                reason: "attempt 3 of 3 failed: exit status 1".into(),
            }),
        ),
        // Fail then succeed: the retry's success finishes the package.
        (
            S::RetryWait {
                attempt: 2,
                not_before_ms: 5,
            },
            E::RetryPublished,
            Ok(S::Queued { attempt: 2 }),
        ),
        (
            building(2, "b"),
            ok("b", 2),
            Ok(S::Succeeded {
                attempt: 2,
                drone: d("b"),
            }),
        ),
        // Success of the redelivered previous attempt while its retry waits.
        (
            S::RetryWait {
                attempt: 2,
                not_before_ms: 5,
            },
            ok("b", 1),
            Ok(S::Succeeded {
                attempt: 1,
                drone: d("b"),
            }),
        ),
        (
            S::RetryWait {
                attempt: 2,
                not_before_ms: 5,
            },
            fail("b", 1),
            Err("stale"),
        ),
        (
            S::RetryWait {
                attempt: 2,
                not_before_ms: 5,
            },
            claim("b", 1),
            Err("stale"),
        ),
        // A late failure of an old attempt does not undo a newer one.
        (building(2, "b"), fail("a", 1), Err("stale")),
        (
            building(1, "a"),
            E::HandedBack { attempt: 1 },
            Ok(S::Queued { attempt: 1 }),
        ),
        (building(2, "a"), E::HandedBack { attempt: 1 }, Err("stale")),
        (building(1, "a"), E::Requeued, Ok(S::Queued { attempt: 1 })),
        (
            S::Queued { attempt: 1 },
            E::Requeued,
            Ok(S::Queued { attempt: 1 }),
        ),
        (
            S::RetryWait {
                attempt: 2,
                not_before_ms: 0,
            },
            E::Requeued,
            Err("invalid"),
        ),
        (S::Queued { attempt: 1 }, E::RetryPublished, Err("invalid")),
        (
            S::Queued { attempt: 2 },
            E::DeadLettered {
                attempt: 2,
                deliveries: 10,
            },
            Ok(S::Failed {
                attempt: 2,
                reason:
                    "dead-lettered: the job of attempt 2 was delivered 10 times without a result"
                        .into(),
            }),
        ),
        (
            S::Queued { attempt: 2 },
            E::DeadLettered {
                attempt: 1,
                deliveries: 10,
            },
            Err("stale"),
        ),
        // Finished packages never move on an event, whatever it is.
        (
            S::Succeeded {
                attempt: 1,
                drone: d("a"),
            },
            ok("a", 1),
            Err("finished"),
        ),
        (
            S::Succeeded {
                attempt: 1,
                drone: d("a"),
            },
            fail("b", 1),
            Err("finished"),
        ),
        (
            S::Succeeded {
                attempt: 1,
                drone: d("a"),
            },
            claim("b", 1),
            Err("finished"),
        ),
        (
            S::Failed {
                attempt: 3,
                reason: "x".into(),
            },
            ok("a", 3),
            Err("finished"),
        ),
        (
            S::Failed {
                attempt: 3,
                reason: "x".into(),
            },
            E::Requeued,
            Err("finished"),
        ),
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
    let dependency = schemas::fixtures::atom("a-b/dep");
    let without: [(&str, E); 8] = [
        ("retry_published", E::RetryPublished),
        ("requeued", E::Requeued),
        ("submitted", E::Submitted { ready: true }),
        ("submitted_later", E::Submitted { ready: false }),
        ("released", E::Released),
        (
            "dependency_failed",
            E::DependencyFailed {
                dependency: dependency.clone(),
            },
        ),
        ("unblocked", E::Unblocked),
        (
            "cancelled",
            E::Cancelled {
                reason: "by operator".into(),
            },
        ),
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
    let on_deps = Some(S::Waiting);
    let blocked = Some(S::Blocked { dependency });
    let cancelled = Some(S::Cancelled {
        attempt: 2,
        reason: "by operator".into(),
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
        (&unknown, "submitted_later", ["waiting 0"; 3]),
        (&unknown, "released", ["unknown"; 3]),
        (&unknown, "dependency_failed", ["unknown"; 3]),
        (&unknown, "unblocked", ["unknown"; 3]),
        (&unknown, "cancelled", ["unknown"; 3]),
        // A cancel ends every unfinished package where it stands, keeping its attempt.
        (&queued, "cancelled", ["cancelled 2"; 3]),
        (&in_build, "cancelled", ["cancelled 2"; 3]),
        (&waiting, "cancelled", ["cancelled 3"; 3]),
        (&on_deps, "cancelled", ["cancelled 0"; 3]),
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
        // Waiting for its build dependencies: no job, so nothing of a build moves it; they
        // release it or block it.
        (&on_deps, "claimed", ["stale"; 3]),
        (&on_deps, "succeeded", ["stale"; 3]),
        (&on_deps, "failed", ["stale"; 3]),
        (&on_deps, "handed_back", ["stale"; 3]),
        (&on_deps, "dead_lettered", ["stale"; 3]),
        (&on_deps, "retry_published", ["invalid"; 3]),
        (&on_deps, "requeued", ["invalid"; 3]),
        (&on_deps, "submitted", ["unfinished"; 3]),
        (&on_deps, "submitted_later", ["unfinished"; 3]),
        (&on_deps, "released", ["queued 1"; 3]),
        (&on_deps, "dependency_failed", ["blocked 0"; 3]),
        (&on_deps, "unblocked", ["invalid"; 3]),
    ];
    // What neither builds nor waits for dependencies is not released, blocked or unblocked.
    for unfinished in [&queued, &in_build, &waiting] {
        cases.push((unfinished, "submitted_later", ["unfinished"; 3]));
        for name in ["released", "dependency_failed", "unblocked"] {
            cases.push((unfinished, name, ["invalid"; 3]));
        }
    }
    // A finished package refuses everything but a new submission, which starts it over.
    // A blocked one also waits again when its dependency is built again.
    for finished in [&succeeded, &failed, &blocked, &cancelled] {
        for (name, _) in &with_attempt {
            cases.push((finished, name, ["finished"; 3]));
        }
        for name in [
            "retry_published",
            "requeued",
            "released",
            "dependency_failed",
            "cancelled",
        ] {
            cases.push((finished, name, ["finished"; 3]));
        }
        cases.push((finished, "submitted", ["queued 1"; 3]));
        cases.push((finished, "submitted_later", ["waiting 0"; 3]));
        let unblocked = if finished == &blocked {
            "waiting 0"
        } else {
            "finished"
        };
        cases.push((finished, "unblocked", [unblocked; 3]));
    }
    let states = [
        &unknown, &queued, &in_build, &waiting, &succeeded, &failed, &on_deps, &blocked, &cancelled,
    ];
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
        let live = state.as_ref().map_or(1, PackageState::attempt).max(1);
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
