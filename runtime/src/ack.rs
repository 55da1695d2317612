//! Acknowledgements the server has confirmed.
//!
//! `async_nats`' `double_ack` takes any reply as a confirmation, including the "no responders"
//! status a cluster sends while a consumer has no leader: an acknowledgement that was never
//! applied would then be taken as done, and the job redelivered later. This one asks with a
//! request, which turns that status into an error.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;

/// Why an acknowledgement was not confirmed. Every kind leaves the message unacknowledged as far
/// as the sender can tell, so the caller may send it again.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The message has no reply subject, so it did not come from a JetStream consumer.
    #[error("cannot acknowledge a message on {subject}: no reply subject, not a JetStream message")]
    NoReply { subject: String },
    /// The request failed or was refused, e.g. with "no responders" while the consumer has no
    /// leader.
    #[error("acknowledgement on {reply} not confirmed: {source}")]
    NotConfirmed {
        reply: String,
        #[source]
        source: async_nats::RequestError,
    },
    /// No answer within the caller's timeout.
    #[error("acknowledgement on {reply} not confirmed within {} ms", timeout.as_millis())]
    TimedOut { reply: String, timeout: Duration },
}

/// Sends `+ACK` for `message` and waits up to `timeout` for the consumer to confirm it.
pub async fn double_ack(message: &jetstream::Message, timeout: Duration) -> Result<(), AckError> {
    let Some(reply) = message.reply.clone() else {
        return Err(AckError::NoReply {
            subject: message.subject.to_string(),
        });
    };
    let client = message.context.client();
    let request = client.request(reply.clone(), Bytes::from_static(b"+ACK"));
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(AckError::NotConfirmed {
            reply: reply.to_string(),
            source,
        }),
        Err(_) => Err(AckError::TimedOut {
            reply: reply.to_string(),
            timeout,
        }),
    }
}
