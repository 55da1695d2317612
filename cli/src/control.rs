//! The operator's commands that change the swarm: `cancel`, `retry`, `pause`, `resume`,
//! `ground`, `unground` and `drain`, each one request to the coordinator's control service
//! (`swarm.ctl.<command>`). The coordinator answers what it changed and what it left alone with
//! why; a request that does not apply to the state it names (code 409: ungrounding a working
//! drone) ends with exit status 1 and the reason; any other refusal is an error (exit status 2).

use std::io::Write;

use clap::Subcommand;
use schemas::{
    CancelRequest, ControlReply, DroneName, DroneRequest, PauseRequest, RetryRequest, RunName,
    SCHEMA_VERSION, Unchanged, codes, names,
};
use serde::Serialize;

use crate::{CliError, Outcome, rpc, write_json};

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum ControlCommand {
    /// Withdraw packages: a queued one leaves the queue, a building one has its build's process
    /// group killed; either ends `cancelled` and is not retried (`retry` builds it again)
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["atoms", "run"])))]
    Cancel {
        /// Packages, as submitted: sys-libs/zlib, =dev-libs/openssl-3.3.2
        #[arg(value_name = "ATOM")]
        atoms: Vec<String>,
        /// Every unfinished package of this run
        #[arg(long, value_name = "NAME", value_parser = RunName::parse)]
        run: Option<RunName>,
        /// Print JSON: {message, changed: [atom], unchanged: [{atom, reason}]}
        #[arg(long)]
        json: bool,
    },
    /// Build failed, blocked or cancelled packages again, with a fresh attempt budget; the
    /// packages a failed one blocked wait for it again
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["atoms", "failed"])))]
    Retry {
        #[arg(value_name = "ATOM")]
        atoms: Vec<String>,
        /// Every package that failed for good
        #[arg(long)]
        failed: bool,
        /// With --failed: only this run's
        #[arg(long, value_name = "NAME", value_parser = RunName::parse, requires = "failed")]
        run: Option<RunName>,
        /// Print JSON, as `cancel --json`
        #[arg(long)]
        json: bool,
    },
    /// Start nothing new anywhere: running builds finish; `status` says PAUSED until `resume`
    Pause {
        /// Why, for the coordinator's log
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Let the drones take work again after `pause`
    Resume,
    /// Stop a drone taking work until `unground`; its running builds finish
    Ground {
        #[arg(value_name = "NAME")]
        name: DroneName,
        /// Shown with the drone's state (`drones`, the dashboard)
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Return a grounded or drained drone to work
    Unground {
        #[arg(value_name = "NAME")]
        name: DroneName,
    },
    /// Let a drone finish what it builds and take nothing new (shown as `draining`) until
    /// `unground`
    Drain {
        #[arg(value_name = "NAME")]
        name: DroneName,
    },
}

/// The reply as `--json` prints it.
#[derive(Debug, Serialize)]
struct ReplyJson<'a> {
    message: &'a str,
    changed: &'a [String],
    unchanged: &'a [Unchanged],
}

/// Sends the command and prints the coordinator's answer. Exit status 1 when it changed nothing
/// of what was named.
pub async fn run(
    client: &async_nats::Client,
    command: ControlCommand,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let (endpoint, payload, json) = request(command)?;
    let reply: ControlReply = match rpc::call(client, &names::control_subject(endpoint), payload)
        .await
    {
        Ok(reply) => reply,
        // The request does not apply to what it names (a drone that is not grounded): the
        // command ran and found a failure, exit status 1, as the message says.
        Err(CliError::Refused { code, message, .. }) if usize::from(code) == codes::CONFLICT => {
            writeln!(out, "{message}")?;
            return Ok(Outcome::Failure);
        }
        Err(err) => return Err(err),
    };
    if json {
        write_json(
            out,
            &ReplyJson {
                message: &reply.message,
                changed: &reply.changed,
                unchanged: &reply.unchanged,
            },
        )?;
    } else {
        write!(out, "{}", text(endpoint, &reply))?;
    }
    Ok(if reply.changed.is_empty() && !reply.unchanged.is_empty() {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// The endpoint, the encoded request, and whether to print JSON.
fn request(command: ControlCommand) -> Result<(&'static str, Vec<u8>, bool), CliError> {
    let drone = |name: DroneName, reason: Option<String>| DroneRequest {
        v: SCHEMA_VERSION,
        drone: name.to_string(),
        reason,
    };
    let pause = |reason| PauseRequest {
        v: SCHEMA_VERSION,
        reason,
    };
    Ok(match command {
        ControlCommand::Cancel { atoms, run, json } => (
            "cancel",
            schemas::encode(&CancelRequest {
                v: SCHEMA_VERSION,
                atoms,
                run: run.map(|r| r.to_string()),
            })?,
            json,
        ),
        ControlCommand::Retry {
            atoms,
            failed,
            run,
            json,
        } => (
            "retry",
            schemas::encode(&RetryRequest {
                v: SCHEMA_VERSION,
                atoms,
                failed,
                run: run.map(|r| r.to_string()),
            })?,
            json,
        ),
        ControlCommand::Pause { reason } => ("pause", schemas::encode(&pause(reason))?, false),
        ControlCommand::Resume => ("resume", schemas::encode(&pause(None))?, false),
        ControlCommand::Ground { name, reason } => {
            ("ground", schemas::encode(&drone(name, reason))?, false)
        }
        ControlCommand::Unground { name } => {
            ("unground", schemas::encode(&drone(name, None))?, false)
        }
        ControlCommand::Drain { name } => ("drain", schemas::encode(&drone(name, None))?, false),
    })
}

/// The answer as a person reads it: the message, the packages acted on, and each one left
/// alone with the reason.
fn text(endpoint: &str, reply: &ControlReply) -> String {
    let mut out = format!("{}\n", reply.message);
    if matches!(endpoint, "cancel" | "retry") {
        for atom in &reply.changed {
            out.push_str(&format!("  {atom}\n"));
        }
    }
    for left in &reply.unchanged {
        out.push_str(&format!("left as it is: {}: {}\n", left.atom, left.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_a_person_would() {
        let reply = ControlReply {
            v: SCHEMA_VERSION,
            message: "1 cancelled".into(),
            changed: vec!["dev-libs/a".into()],
            unchanged: vec![Unchanged {
                atom: "dev-libs/b".into(),
                reason: "already succeeded".into(),
            }],
        };
        assert_eq!(
            text("cancel", &reply),
            "1 cancelled\n  dev-libs/a\nleft as it is: dev-libs/b: already succeeded\n"
        );
    }
}
