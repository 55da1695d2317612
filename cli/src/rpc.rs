//! One NATS request with the command timeout, telling "nobody listens" apart from other failures
//! so each command can say who is missing.

use crate::{CliError, REQUEST_TIMEOUT};

pub(crate) enum RequestFailure {
    /// Nobody subscribes to the subject: the service is not running (or not connected).
    NoResponders,
    Other(CliError),
}

pub(crate) async fn request(
    client: &async_nats::Client,
    subject: &str,
    payload: Vec<u8>,
) -> Result<async_nats::Message, RequestFailure> {
    let request = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(REQUEST_TIMEOUT));
    client
        .send_request(subject.to_owned(), request)
        .await
        .map_err(|err| match err.kind() {
            async_nats::RequestErrorKind::NoResponders => RequestFailure::NoResponders,
            async_nats::RequestErrorKind::TimedOut => RequestFailure::Other(CliError::NoReply {
                subject: subject.to_owned(),
                timeout: REQUEST_TIMEOUT,
            }),
            _ => RequestFailure::Other(CliError::Request {
                subject: subject.to_owned(),
                reason: err.to_string(),
            }),
        })
}

/// One request to the coordinator's control service and its decoded reply: nobody listening
/// is "no coordinator"; a service error is the coordinator's refusal, with its code and message.
pub(crate) async fn call<T: schemas::Wire>(
    client: &async_nats::Client,
    subject: &str,
    payload: Vec<u8>,
) -> Result<T, CliError> {
    let reply = request(client, subject, payload)
        .await
        .map_err(|failure| match failure {
            RequestFailure::NoResponders => CliError::NoCoordinator {
                subject: subject.to_owned(),
            },
            RequestFailure::Other(err) => err,
        })?;
    if let Some((code, message)) = runtime::service::error_of(&reply) {
        return Err(CliError::Refused {
            subject: subject.to_owned(),
            code,
            message,
        });
    }
    schemas::decode(&reply.payload).map_err(|source| CliError::BadReply {
        subject: subject.to_owned(),
        source,
    })
}
