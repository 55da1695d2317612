//! Property tests of the package lifecycle: any sequence of events, in any order, with any
//! attempt numbers (late, repeated, from the future), never takes a package to an invalid state;
//! and from wherever such a sequence leaves it, a package whose drones keep working reaches a
//! final state within its attempts.

use proptest::prelude::*;
use schemas::{DroneName, ExitInfo, PackageState};
use swarm_coordinator::lifecycle::{PackageEvent, Policy, transition};

const DRONES: [&str; 3] = ["drone-a", "drone-b", "drone-c"];

fn drone(i: usize) -> DroneName {
    DroneName::parse(DRONES[i % DRONES.len()]).expect("valid")
}

/// Events with attempt numbers around the live ones: stale, current and ahead.
fn event(max_attempts: u32) -> impl Strategy<Value = PackageEvent> {
    let attempt = 0..=max_attempts + 1;
    prop_oneof![
        (attempt.clone(), 0..3usize).prop_map(|(attempt, d)| PackageEvent::Claimed {
            drone: drone(d),
            attempt
        }),
        (attempt.clone(), 0..3usize).prop_map(|(attempt, d)| PackageEvent::Succeeded {
            drone: drone(d),
            attempt
        }),
        (attempt.clone(), 0..3usize, 1..255i32).prop_map(|(attempt, d, code)| {
            PackageEvent::Failed {
                drone: drone(d),
                attempt,
                exit: ExitInfo::code(code),
            }
        }),
        attempt
            .clone()
            .prop_map(|attempt| PackageEvent::HandedBack { attempt }),
        Just(PackageEvent::RetryPublished),
        Just(PackageEvent::Requeued),
        (attempt, 1..30u64).prop_map(|(attempt, deliveries)| PackageEvent::DeadLettered {
            attempt,
            deliveries
        }),
    ]
}

fn policy(max_attempts: u32) -> Policy {
    Policy {
        max_attempts,
        backoff_ms: 100,
        backoff_max_ms: 1_000,
    }
}

/// What must hold of every state a package can be in.
fn valid(state: &PackageState, max_attempts: u32) -> Result<(), String> {
    let attempt = state.attempt();
    if attempt == 0 || attempt > max_attempts {
        return Err(format!(
            "attempt {attempt} outside 1..={max_attempts}: {state:?}"
        ));
    }
    match state {
        PackageState::RetryWait { attempt, .. } if *attempt < 2 => {
            return Err(format!("a retry of attempt {attempt}"));
        }
        PackageState::Failed { reason, .. } if reason.is_empty() => {
            return Err("failed without a reason".into());
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_event_sequence_reaches_an_invalid_state(
        max_attempts in 1..5u32,
        events in prop::collection::vec(event(5), 0..40),
    ) {
        let policy = policy(max_attempts);
        let mut state = PackageState::Queued { attempt: 1 };
        let mut now = 1_000u64;
        for event in &events {
            now += 7;
            let before = state.clone();
            if let Ok(next) = transition(&state, event, &policy, now) {
                {
                    prop_assert!(!before.is_final(), "a final state moved: {before:?} -> {next:?}");
                    prop_assert!(
                        next.attempt() >= before.attempt() || matches!(
                            (&before, &next),
                            (PackageState::RetryWait { .. }, PackageState::Succeeded { .. })
                        ),
                        "attempt went back: {before:?} -> {next:?} on {event:?}"
                    );
                    if let (PackageState::Succeeded { drone, .. }, PackageEvent::Succeeded { drone: by, .. }) = (&next, event) {
                        prop_assert_eq!(drone, by);
                    }
                    if let PackageState::Succeeded { .. } = next {
                        prop_assert!(matches!(event, PackageEvent::Succeeded { .. }), "succeeded by {event:?}");
                    }
                    if let PackageState::RetryWait { not_before_ms, .. } = next {
                        prop_assert!(not_before_ms >= now, "a retry due before it was made: {next:?}");
                    }
                    if let PackageState::Failed { attempt, .. } = next {
                        prop_assert!(
                            matches!(event, PackageEvent::DeadLettered { .. }) || attempt == max_attempts,
                            "failed at attempt {attempt} of {max_attempts} by {event:?}"
                        );
                    }
                    state = next;
                }
            }
            if let Err(why) = valid(&state, max_attempts) {
                prop_assert!(false, "{why} after {events:?}");
            }
        }
    }

    #[test]
    fn a_package_whose_drones_keep_working_ends_final(
        max_attempts in 1..5u32,
        events in prop::collection::vec(event(5), 0..30),
        outcomes in prop::collection::vec(any::<bool>(), 8),
    ) {
        let policy = policy(max_attempts);
        let mut state = PackageState::Queued { attempt: 1 };
        let mut now = 1_000u64;
        for event in &events {
            now += 7;
            if let Ok(next) = transition(&state, event, &policy, now) {
                state = next;
            }
        }
        // From here the world behaves: retries are published when due, a drone claims each
        // job and reports a result.
        let mut results = outcomes.iter().cycle();
        let mut steps = 0;
        while !state.is_final() {
            steps += 1;
            prop_assert!(steps <= 3 * max_attempts + 3, "not final after {steps} steps: {state:?}");
            now += 1_000;
            let next_event = match &state {
                PackageState::Queued { attempt } => PackageEvent::Claimed { drone: drone(0), attempt: *attempt },
                PackageState::Building { attempt, .. } => {
                    if *results.next().unwrap_or(&true) {
                        PackageEvent::Succeeded { drone: drone(1), attempt: *attempt }
                    } else {
                        PackageEvent::Failed { drone: drone(1), attempt: *attempt, exit: ExitInfo::code(1) }
                    }
                }
                PackageState::RetryWait { .. } => PackageEvent::RetryPublished,
                _ => unreachable!("final"),
            };
            state = transition(&state, &next_event, &policy, now)
                .map_err(|e| TestCaseError::fail(format!("{next_event:?} refused in {state:?}: {e}")))?;
        }
    }
}
