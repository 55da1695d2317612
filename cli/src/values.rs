//! The values `swarmctl`'s arguments take beyond plain strings: a priority, a package state,
//! an arch, a timeout.

use std::time::Duration;

use clap::ValueEnum;
use schemas::{Arch, NameError};

use crate::ArgError;

/// A priority as `submit --priority` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    High,
    Normal,
    Low,
}

impl From<PriorityArg> for schemas::Priority {
    fn from(arg: PriorityArg) -> schemas::Priority {
        match arg {
            PriorityArg::High => schemas::Priority::High,
            PriorityArg::Normal => schemas::Priority::Normal,
            PriorityArg::Low => schemas::Priority::Low,
        }
    }
}

/// A package state as `packages --state` takes it; the names are the `state` labels of the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    Queued,
    #[value(name = "retry_wait", alias = "retry-wait")]
    RetryWait,
    Building,
    Succeeded,
    Failed,
    Waiting,
    Blocked,
    Cancelled,
}

impl StateFilter {
    pub fn label(self) -> &'static str {
        match self {
            StateFilter::Queued => "queued",
            StateFilter::RetryWait => "retry_wait",
            StateFilter::Building => "building",
            StateFilter::Succeeded => "succeeded",
            StateFilter::Failed => "failed",
            StateFilter::Waiting => "waiting",
            StateFilter::Blocked => "blocked",
            StateFilter::Cancelled => "cancelled",
        }
    }
}

pub(crate) fn parse_arch(input: &str) -> Result<Arch, NameError> {
    Arch::parse(input)
}

pub(crate) fn parse_timeout(input: &str) -> Result<Duration, ArgError> {
    match input.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(ArgError::NotSeconds {
            input: input.to_owned(),
        }),
    }
}
