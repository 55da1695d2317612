//! The package lifecycle as a pure state machine: `transition(state, event)` is the only place
//! that decides what a package's next state is, from its submission to its end. The coordinator's
//! service applies it; nothing else writes package state.

use schemas::{Atom, DroneName, ExitInfo, PackageState};

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
    /// An operator submitted the package: a new one, or a finished one to be built again;
    /// `ready` when none of its build dependencies in the run is unfinished.
    Submitted { ready: bool },
    /// Every build dependency of a waiting package has succeeded: its job is published.
    Released,
    /// A build dependency of a waiting package failed for good, or is itself blocked.
    DependencyFailed { dependency: Atom },
    /// The dependency that blocked the package is being built again.
    Unblocked,
    /// An operator cancelled the package (`reason` says so): it is not built and not retried;
    /// a build under way is killed, and its late result changes nothing.
    Cancelled { reason: String },
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
        PackageEvent::Submitted { .. } => "submitted",
        PackageEvent::Released => "released",
        PackageEvent::DependencyFailed { .. } => "dependency_failed",
        PackageEvent::Unblocked => "unblocked",
        PackageEvent::Cancelled { .. } => "cancelled",
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
                E::Submitted { ready } => Ok(submitted(*ready)),
                _ => Err(TransitionError::Unknown {
                    event: event_name(event),
                }),
            };
        }
    };
    // A submission starts a finished package over at attempt 1, and a blocked one waits again
    // when its dependency is built again; nothing else moves a finished package.
    match (event, state) {
        (E::Submitted { ready }, _) if state.is_final() => return Ok(submitted(*ready)),
        (E::Unblocked, S::Blocked { .. }) => return Ok(S::Waiting),
        _ => {}
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
        E::Submitted { .. } => Err(TransitionError::Unfinished {
            state: state.label(),
        }),
        E::Released => match state {
            S::Waiting => Ok(S::Queued { attempt: 1 }),
            _ => Err(TransitionError::Invalid {
                event: event_name(event),
                state: state.label(),
            }),
        },
        E::DependencyFailed { dependency } => match state {
            S::Waiting => Ok(S::Blocked {
                dependency: dependency.clone(),
            }),
            _ => Err(TransitionError::Invalid {
                event: event_name(event),
                state: state.label(),
            }),
        },
        E::Unblocked => Err(TransitionError::Invalid {
            event: event_name(event),
            state: state.label(),
        }),
        E::Cancelled { reason } => Ok(S::Cancelled {
            attempt: state.attempt(),
            reason: reason.clone(),
        }),
    }
}

/// Where a submitted package starts: queued for attempt 1, or waiting for its dependencies.
fn submitted(ready: bool) -> PackageState {
    if ready {
        PackageState::Queued { attempt: 1 }
    } else {
        PackageState::Waiting
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
