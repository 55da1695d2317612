//! The control service's handlers (the service's one task answers each request of `api`):
//! submission and the binhost have their own files; here are cancel, retry, pause and resume,
//! and the operator's drone commands, which the coordinator passes on to the drone.
//!
//! A cancel is recorded before anything else happens: the package's record says `cancelled`
//! first, so whatever the drone or the work stream does next (a late claim, a result, a
//! redelivered job) cannot move it again. Then the queued job is removed from the work stream,
//! and the drone building it is told to kill the build; a drone that claims a cancelled
//! package's job later (the job was already on its way) is told the same (`apply`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::service;
use schemas::{
    Arch, CancelRequest, ControlReply, DroneCommand, DroneControl, DroneControlReply, DroneName,
    DroneRequest, PackageKey, PackageState, PauseRequest, Priority, RetryRequest, SCHEMA_VERSION,
    SubmitItem, SubmitRequest, SubmitResult, decode, encode, names,
};
use tracing::{info, warn};

use crate::api::{self, ApiError, Endpoint, Reply};
use crate::lifecycle::PackageEvent;
use crate::select::{self, Action, Selection};
use crate::service::Service;
use crate::table::Change;

/// How long the coordinator waits for a drone to answer a command passed on to it.
const DRONE_ANSWER: Duration = Duration::from_secs(5);

/// How far ahead a pause reaches: until `resume`, in practice.
const PAUSE_FOR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Service {
    /// Answers one request of the control service.
    pub(crate) async fn handle_api(&mut self, endpoint: Endpoint, request: service::Request) {
        let payload = request.message.payload.clone();
        let reply = match endpoint {
            Endpoint::Submit => self.submit_request(&payload).await,
            Endpoint::Binhost => self.binhost_request(&payload).await,
            Endpoint::Cancel => self.cancel_request(&payload).await,
            Endpoint::Retry => self.retry_request(&payload).await,
            Endpoint::Pause => self.pause_request(&payload, true).await,
            Endpoint::Resume => self.pause_request(&payload, false).await,
            Endpoint::Ground | Endpoint::Unground | Endpoint::Drain => {
                // The drone's answer may take a while: it is awaited in a tracked task.
                match self.drone_command(endpoint, &payload) {
                    Ok((drone, command)) => {
                        let client = self.js.client();
                        self.tasks.spawn(async move {
                            let reply = pass_on(&client, &drone, command).await;
                            api::respond(&request, reply).await;
                        });
                    }
                    Err(err) => {
                        self.refused_request(endpoint, &err);
                        api::respond(&request, Err(err)).await;
                    }
                }
                return;
            }
        };
        if let Err(err) = &reply {
            self.refused_request(endpoint, err);
        }
        api::respond(&request, reply).await;
        if matches!(
            endpoint,
            Endpoint::Submit | Endpoint::Cancel | Endpoint::Retry
        ) {
            self.advance_graph().await;
        }
    }

    fn refused_request(&mut self, endpoint: Endpoint, err: &ApiError) {
        if let Some(suppressed) = self.refused.allow(endpoint.name()) {
            warn!(endpoint = endpoint.name(), code = err.code, error = %err.message, suppressed, "control request refused");
        }
    }

    async fn cancel_request(&mut self, payload: &[u8]) -> Reply {
        let request: CancelRequest = api::read_required(payload)?;
        let selection = select::select(
            &self.table,
            Action::Cancel,
            &select::Request {
                atoms: &request.atoms,
                run: request.run.as_deref(),
                failed: false,
            },
        )?;
        let reason = "cancelled by the operator".to_owned();
        let Selection {
            keys,
            mut unchanged,
        } = selection;
        let mut changed = Vec::new();
        for key in keys {
            let Some(before) = self.table.get(&key).map(|e| e.record.clone()) else {
                continue;
            };
            let change = Change::new(
                key.clone(),
                PackageEvent::Cancelled {
                    reason: reason.clone(),
                },
            );
            match self.apply(&change).await {
                Ok(Some(PackageState::Cancelled { .. })) => {
                    changed.push(before.atom.to_string());
                    info!(package = %before.atom, was = before.state.label(), "cancelled by the operator");
                    match &before.state {
                        PackageState::Building { drone, attempt, .. } => {
                            self.cancel_build(drone.clone(), key.clone(), *attempt);
                        }
                        PackageState::Queued { .. } => self.withdraw_job(&before.arch, &key).await,
                        _ => {}
                    }
                }
                Ok(_) => unchanged.push(schemas::Unchanged {
                    atom: before.atom.to_string(),
                    reason: "its state changed meanwhile; nothing cancelled".to_owned(),
                }),
                Err(err) => unchanged.push(schemas::Unchanged {
                    atom: before.atom.to_string(),
                    reason: format!("not cancelled: {err}"),
                }),
            }
        }
        api::write(&ControlReply {
            v: SCHEMA_VERSION,
            message: format!("{} cancelled", changed.len()),
            changed,
            unchanged,
        })
    }

    /// Tells `drone` to kill its build of `attempt` of `key`, from a tracked task; a drone that
    /// does not answer (gone, or partitioned) is covered by its lease: whatever it reports later
    /// cannot move a cancelled package.
    pub(crate) fn cancel_build(&self, drone: DroneName, key: PackageKey, attempt: u32) {
        let client = self.js.client();
        self.tasks.spawn(async move {
            let command = DroneCommand::Cancel {
                key: key.clone(),
                attempt,
            };
            match pass_on(&client, &drone, command).await {
                Ok(_) => info!(%drone, package = %key, attempt, "drone is killing the cancelled build"),
                Err(err) => warn!(%drone, package = %key, attempt, error = %err.message, "drone not told to kill a cancelled build"),
            }
        });
    }

    /// Removes a queued job from the work stream (normal or big queue).
    async fn withdraw_job(&self, arch: &Arch, key: &PackageKey) {
        for subject in [
            names::build_subject(arch, key),
            names::big_build_subject(arch, key),
        ] {
            if let Err(err) = self.topo.builds.purge().filter(subject.clone()).await {
                warn!(%subject, error = %err, "cancelled job not removed; a drone that claims it is told to cancel it");
            }
        }
    }

    async fn retry_request(&mut self, payload: &[u8]) -> Reply {
        let request: RetryRequest = api::read_required(payload)?;
        let Selection { keys, unchanged } = select::select(
            &self.table,
            Action::Retry,
            &select::Request {
                atoms: &request.atoms,
                run: request.run.as_deref(),
                failed: request.failed,
            },
        )?;
        // Submitted again in their own runs and arches, with their estimates and edges: a
        // finished package starts over at attempt 1, a fresh budget.
        let mut groups: BTreeMap<(Arch, Option<String>, Priority), Vec<SubmitItem>> =
            BTreeMap::new();
        for key in &keys {
            let Some(entry) = self.table.get(key) else {
                continue;
            };
            let record = &entry.record;
            let deps = record
                .deps
                .iter()
                .filter_map(|d| self.table.get(d).map(|e| e.record.atom.to_string()))
                .collect();
            let group = (
                record.arch.clone(),
                record.run.as_ref().map(|r| r.to_string()),
                record.priority,
            );
            groups.entry(group).or_default().push(SubmitItem {
                atom: record.atom.to_string(),
                estimate_secs: record.estimate_secs,
                class: record.class,
                deps,
            });
        }
        let mut changed = Vec::new();
        let mut errors = Vec::new();
        for ((arch, run, priority), items) in groups {
            let atoms: Vec<String> = items.iter().map(|i| i.atom.clone()).collect();
            let submit = SubmitRequest {
                v: SCHEMA_VERSION,
                items,
                arch: Some(arch),
                fingerprint: None,
                run,
                priority: Some(priority),
            };
            match self.submit(submit).await {
                SubmitResult::Accepted { .. } => changed.extend(atoms),
                SubmitResult::Rejected { rejections } => errors.extend(
                    rejections
                        .into_iter()
                        .map(|r| format!("{}: {}", r.input, r.reason)),
                ),
                SubmitResult::Error { message } => errors.push(message),
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::unavailable(format!(
                "{} queued again; not the others: {}",
                changed.len(),
                errors.join("; ")
            )));
        }
        info!(packages = changed.len(), "retried by the operator");
        api::write(&ControlReply {
            v: SCHEMA_VERSION,
            message: format!("{} queued again with a fresh attempt budget", changed.len()),
            changed,
            unchanged,
        })
    }

    /// Pauses (or resumes) every arch's build consumers: the server hands drones no job while
    /// they are paused, and running builds go on. The pause is the consumers' own, so it holds
    /// across restarts of the coordinator and of the drones.
    async fn pause_request(&mut self, payload: &[u8], pause: bool) -> Reply {
        let request: PauseRequest = api::read(payload, true)?;
        let until = async_nats::datetime::add_std_duration(async_nats::datetime::now(), PAUSE_FOR)
            .map_err(|err| ApiError::unavailable(err.to_string()))?;
        let mut done = Vec::new();
        for arch in &self.settings.arches {
            for consumer in [
                names::builders_consumer(arch),
                names::big_builders_consumer(arch),
            ] {
                let result = if pause {
                    self.topo.builds.pause_consumer(&consumer, until).await
                } else {
                    self.topo.builds.resume_consumer(&consumer).await
                };
                result.map_err(|err| {
                    ApiError::unavailable(format!(
                        "cannot {} consumer {consumer}: {err}",
                        if pause { "pause" } else { "resume" }
                    ))
                })?;
                done.push(consumer);
            }
        }
        let word = if pause { "paused" } else { "resumed" };
        info!(
            reason = request.reason.as_deref().unwrap_or(""),
            "swarm {word} by the operator"
        );
        api::write(&ControlReply {
            v: SCHEMA_VERSION,
            message: if pause {
                "paused: no new build starts; running builds finish".to_owned()
            } else {
                "resumed: drones take work again".to_owned()
            },
            changed: done,
            unchanged: Vec::new(),
        })
    }

    /// Reads a drone command's request and checks the drone is one the swarm knows.
    fn drone_command(
        &self,
        endpoint: Endpoint,
        payload: &[u8],
    ) -> Result<(DroneName, DroneCommand), ApiError> {
        let request: DroneRequest = api::read_required(payload)?;
        let drone = DroneName::parse(&request.drone).map_err(|err| {
            ApiError::bad_request(format!("invalid drone name {:?}: {err}", request.drone))
        })?;
        if self.drones.get(drone.as_str()).is_none() {
            return Err(ApiError::not_found(format!(
                "no drone named {drone} has registered"
            )));
        }
        let command = match endpoint {
            Endpoint::Ground => DroneCommand::Ground {
                reason: match request.reason {
                    Some(reason) if !reason.trim().is_empty() => {
                        format!("grounded by the operator: {}", reason.trim())
                    }
                    _ => "grounded by the operator".to_owned(),
                },
            },
            Endpoint::Drain => DroneCommand::Drain,
            _ => DroneCommand::Unground,
        };
        Ok((drone, command))
    }
}

/// Passes a command on to a drone and turns its answer into the operator's reply.
async fn pass_on(client: &async_nats::Client, drone: &DroneName, command: DroneCommand) -> Reply {
    let subject = names::drone_control_subject(drone);
    let payload = encode(&DroneControl {
        v: SCHEMA_VERSION,
        command,
    })
    .map_err(|err| ApiError::unavailable(err.to_string()))?;
    let request = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(DRONE_ANSWER));
    let answer = client
        .send_request(subject, request)
        .await
        .map_err(|err| match err.kind() {
            async_nats::RequestErrorKind::NoResponders => ApiError::unavailable(format!(
                "drone {drone} is not connected (nothing listens on its control subject)"
            )),
            async_nats::RequestErrorKind::TimedOut => ApiError::unavailable(format!(
                "drone {drone} did not answer within {} s",
                DRONE_ANSWER.as_secs()
            )),
            _ => ApiError::unavailable(format!("cannot reach drone {drone}: {err}")),
        })?;
    let reply = decode::<DroneControlReply>(&answer.payload).map_err(|err| {
        ApiError::unavailable(format!(
            "drone {drone} answered something unreadable: {err}"
        ))
    })?;
    if !reply.ok {
        return Err(ApiError::conflict(reply.message));
    }
    api::write(&ControlReply {
        v: SCHEMA_VERSION,
        message: reply.message,
        changed: vec![drone.to_string()],
        unchanged: Vec::new(),
    })
}
