//! Property tests of the drone's lifecycle: any sequence of build results, operator requests,
//! health faults and shutdowns keeps it in a valid state; shutting down is final; and a working
//! drone grounds itself exactly when `threshold` different packages failed in a row.

use proptest::prelude::*;
use schemas::Atom;
use swarm_drone::health::{HealthEvent, Lifecycle, LifecycleError, transition};

const PACKAGES: [&str; 5] = ["a-b/one", "a-b/two", "a-b/three", "a-b/four", "a-b/five"];

fn atom(i: usize) -> Atom {
    Atom::parse(PACKAGES[i % PACKAGES.len()]).expect("valid")
}

fn event() -> impl Strategy<Value = HealthEvent> {
    prop_oneof![
        4 => Just(HealthEvent::BuildSucceeded),
        6 => (0..5usize).prop_map(|i| HealthEvent::BuildFailed { atom: atom(i), why: "exit status 1".into() }),
        2 => Just(HealthEvent::Unground),
        1 => Just(HealthEvent::Unhealthy { reason: "build directory full".into() }),
        1 => Just(HealthEvent::Shutdown),
        1 => Just(HealthEvent::Ground { reason: "grounded by the operator".into() }),
        1 => Just(HealthEvent::Drain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_event_sequence_reaches_an_invalid_state(
        threshold in 1..5u32,
        events in prop::collection::vec(event(), 0..60),
    ) {
        let mut state = Lifecycle::start();
        for event in &events {
            let before = state.clone();
            match transition(&state, event, threshold) {
                Ok(next) => {
                    if matches!(before, Lifecycle::Draining) {
                        prop_assert_eq!(&next, &Lifecycle::Draining, "draining is final");
                    }
                    if matches!(event, HealthEvent::Shutdown) {
                        prop_assert_eq!(&next, &Lifecycle::Draining);
                    }
                    if let (Lifecycle::Grounded { .. } | Lifecycle::Drained, Lifecycle::Working { .. }) = (&before, &next) {
                        prop_assert!(matches!(event, HealthEvent::Unground), "left grounding or a drain by {event:?}");
                    }
                    if matches!(next, Lifecycle::Drained) {
                        prop_assert!(matches!(event, HealthEvent::Drain) || before == Lifecycle::Drained, "drained by {event:?}");
                    }
                    state = next;
                }
                Err(LifecycleError::NotGrounded) => {
                    prop_assert!(matches!(before, Lifecycle::Working { .. }), "refused in {:?}", before);
                    prop_assert!(matches!(event, HealthEvent::Unground), "refused {:?}", event);
                }
                Err(LifecycleError::Draining) => {
                    prop_assert!(matches!(before, Lifecycle::Draining), "refused in {:?}", before);
                }
            }
            match &state {
                Lifecycle::Working { failed_streak } => {
                    prop_assert!((failed_streak.len() as u32) < threshold, "streak {failed_streak:?} not grounded at {threshold}");
                    let mut distinct = failed_streak.clone();
                    distinct.sort();
                    distinct.dedup();
                    prop_assert_eq!(distinct.len(), failed_streak.len(), "a package counted twice");
                }
                Lifecycle::Grounded { reason } => prop_assert!(!reason.is_empty(), "no reason"),
                Lifecycle::Draining | Lifecycle::Drained => {}
            }
        }
    }

    #[test]
    fn threshold_different_failures_in_a_row_ground_a_working_drone(
        threshold in 1..5u32,
        repeats in prop::collection::vec(0..3usize, 5),
    ) {
        // Failures of `threshold` different packages, each possibly repeated (which counts once).
        let mut state = Lifecycle::start();
        for (i, times) in repeats.iter().take(threshold as usize).enumerate() {
            prop_assert!(matches!(state, Lifecycle::Working { .. }), "grounded too early: {state:?}");
            for _ in 0..=*times {
                state = transition(&state, &HealthEvent::BuildFailed { atom: atom(i), why: "x".into() }, threshold)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        prop_assert!(matches!(state, Lifecycle::Grounded { .. }), "not grounded: {state:?}");
    }
}
