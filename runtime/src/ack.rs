//! Acknowledgements the server has confirmed.
//!
//! `async_nats`' `double_ack` takes any reply as a confirmation, including the "no responders"
//! status a cluster sends while a consumer has no leader: an acknowledgement that was never
//! applied would then be taken as done, and the job redelivered later. This one asks with a
//! request, which turns that status into an error.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;

/// Sends `+ACK` for `message` and waits up to `timeout` for the consumer to confirm it.
pub async fn double_ack(message: &jetstream::Message, timeout: Duration) -> Result<(), String> {
    let Some(reply) = message.reply.clone() else {
        return Err("not a JetStream message: no reply subject".to_owned());
    };
    let client = message.context.client();
    match tokio::time::timeout(timeout, client.request(reply, Bytes::from_static(b"+ACK"))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(format!("acknowledgement not confirmed: {err}")),
        Err(_) => Err(format!(
            "acknowledgement not confirmed within {} ms",
            timeout.as_millis()
        )),
    }
}
