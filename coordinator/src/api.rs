//! The coordinator's control API as a NATS micro service (`names::CONTROL_SERVICE`): it answers
//! the services protocol's `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (so `nats micro ls|info|stats`
//! find and measure it), and one endpoint per operator request on `swarm.ctl.<endpoint>`, each
//! with its own request type (MessagePack, `schemas`). A request the service cannot read or act
//! on gets a service error: `Nats-Service-Error-Code` (400 bad request, 404 unknown, 409 does not
//! apply, 503 not now) and `Nats-Service-Error` naming the input and the reason.
//!
//! Requests are handed to the coordinator's one task (`Api::next`), which owns package state;
//! only answers that wait on another component (a drone) are sent from tracked tasks.

use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use schemas::{Wire, codes, decode, encode, names};
use tracing::{debug, warn};

/// One endpoint of the control service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Submit,
    Binhost,
    Cancel,
    Retry,
    Pause,
    Resume,
    Ground,
    Unground,
    Drain,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Submit,
        Endpoint::Binhost,
        Endpoint::Cancel,
        Endpoint::Retry,
        Endpoint::Pause,
        Endpoint::Resume,
        Endpoint::Ground,
        Endpoint::Unground,
        Endpoint::Drain,
    ];

    /// Its name in `nats micro info`, and the last token of its subject.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Submit => "submit",
            Endpoint::Binhost => "binhost",
            Endpoint::Cancel => "cancel",
            Endpoint::Retry => "retry",
            Endpoint::Pause => "pause",
            Endpoint::Resume => "resume",
            Endpoint::Ground => "ground",
            Endpoint::Unground => "unground",
            Endpoint::Drain => "drain",
        }
    }

    pub fn subject(self) -> String {
        names::control_subject(self.name())
    }

    /// What it does, in `nats micro info`.
    fn description(self) -> &'static str {
        match self {
            Endpoint::Submit => "queue packages in a run (SubmitRequest -> SubmitReply)",
            Endpoint::Binhost => {
                "publish, roll back or show the binhost (BinhostRequest -> BinhostReply)"
            }
            Endpoint::Cancel => "withdraw packages or a run (CancelRequest -> ControlReply)",
            Endpoint::Retry => {
                "build failed, blocked or cancelled packages again (RetryRequest -> ControlReply)"
            }
            Endpoint::Pause => "start nothing new (PauseRequest -> ControlReply)",
            Endpoint::Resume => "start work again after a pause (PauseRequest -> ControlReply)",
            Endpoint::Ground => "stop a drone taking work (DroneRequest -> ControlReply)",
            Endpoint::Unground => "return a drone to work (DroneRequest -> ControlReply)",
            Endpoint::Drain => {
                "let a drone finish its builds and take nothing new (DroneRequest -> ControlReply)"
            }
        }
    }
}

/// A request the service refuses: its code (`schemas::codes`) and a message naming the input
/// and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct ApiError {
    pub code: usize,
    pub message: String,
}

impl ApiError {
    pub fn new(code: usize, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(codes::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(codes::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(codes::CONFLICT, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(codes::UNAVAILABLE, message)
    }
}

/// An endpoint's answer: the encoded reply, or the refusal.
pub type Reply = Result<Vec<u8>, ApiError>;

/// Reads an endpoint's request; a payload that is not one is a bad request naming the kind
/// expected and what is wrong. `empty_ok`: an empty payload is the request's default.
pub fn read<T: Wire + Default>(payload: &[u8], empty_ok: bool) -> Result<T, ApiError> {
    if empty_ok && payload.is_empty() {
        return Ok(T::default());
    }
    read_required(payload)
}

/// [`read`] for a request without a default.
pub fn read_required<T: Wire>(payload: &[u8]) -> Result<T, ApiError> {
    decode::<T>(payload).map_err(|err| ApiError::bad_request(err.to_string()))
}

/// Encodes an endpoint's reply.
pub fn write<T: Wire>(reply: &T) -> Reply {
    encode(reply).map_err(|err| ApiError::unavailable(err.to_string()))
}

/// Sends `reply` as the answer to `request`.
pub async fn respond(request: &service::Request, reply: Reply) {
    let response = reply.map(Bytes::from).map_err(|err| service::error::Error {
        status: err.message,
        code: err.code,
    });
    if let Err(err) = request.respond(response).await {
        debug!(subject = %request.message.subject, error = %err, "answer not sent");
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start the control service {service}: {reason}")]
pub struct StartError {
    service: &'static str,
    reason: String,
}

/// The running service and the requests of all its endpoints, merged.
pub struct Api {
    service: service::Service,
    requests: SelectAll<BoxStream<'static, (Endpoint, service::Request)>>,
}

impl Api {
    pub async fn start(client: &async_nats::Client) -> Result<Api, StartError> {
        let failed = |err: async_nats::Error| StartError {
            service: names::CONTROL_SERVICE,
            reason: err.to_string(),
        };
        let service = client
            .service_builder()
            .description("the build swarm's coordinator: submit, cancel, retry, pause, drones")
            .start(names::CONTROL_SERVICE, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(failed)?;
        let mut requests = SelectAll::new();
        for endpoint in Endpoint::ALL {
            let metadata = [("description".to_owned(), endpoint.description().to_owned())];
            let stream = service
                .endpoint_builder()
                .name(endpoint.name())
                .metadata(metadata.into_iter().collect())
                .add(endpoint.subject())
                .await
                .map_err(failed)?;
            requests.push(stream.map(move |request| (endpoint, request)).boxed());
        }
        Ok(Api { service, requests })
    }

    /// The next request of any endpoint; never ends while the service runs.
    pub async fn next(&mut self) -> Option<(Endpoint, service::Request)> {
        self.requests.next().await
    }

    /// Stops answering (unsubscribes every endpoint and the protocol's subjects).
    pub async fn stop(self) {
        if let Err(err) = self.service.stop().await {
            warn!(error = %err, "control service did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_have_distinct_names_and_control_subjects() {
        let mut seen = std::collections::HashSet::new();
        for endpoint in Endpoint::ALL {
            assert!(seen.insert(endpoint.name()), "{endpoint:?}");
            // Names the services protocol allows, one subject token each.
            assert!(
                endpoint
                    .name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-'),
                "{endpoint:?}"
            );
            assert_eq!(endpoint.subject(), format!("swarm.ctl.{}", endpoint.name()));
        }
        assert_eq!(Endpoint::Submit.subject(), names::SUBMIT_SUBJECT);
        // The list the permissions and their tests are written from.
        let listed: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(listed, names::CONTROL_ENDPOINTS);
        assert_eq!(Endpoint::Binhost.subject(), names::BINHOST_SUBJECT);
    }

    #[test]
    fn bad_payloads_are_bad_requests_naming_the_kind() {
        let err = read::<schemas::PauseRequest>(b"\xc1", true).expect_err("junk");
        assert_eq!(err.code, codes::BAD_REQUEST);
        assert!(err.message.contains("pause request"), "{}", err.message);
        let err = read_required::<schemas::CancelRequest>(b"").expect_err("empty");
        assert_eq!(err.code, codes::BAD_REQUEST);
        assert_eq!(
            read::<schemas::PauseRequest>(b"", true).expect("empty is default"),
            schemas::PauseRequest::default()
        );
    }
}
