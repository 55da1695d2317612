//! Reading the answers of a NATS micro service (the services protocol's error headers).

/// The code and message of a service error reply (`Nats-Service-Error-Code`,
/// `Nats-Service-Error`); `None` for an answer.
pub fn error_of(reply: &async_nats::Message) -> Option<(u16, String)> {
    let headers = reply.headers.as_ref()?;
    let code = headers
        .get("Nats-Service-Error-Code")?
        .as_str()
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("Nats-Service-Error")
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    Some((code, message))
}
