//! `swarmctl unground NAME`: a control request to one drone, which answers for itself.

use schemas::{DroneCommand, DroneControl, DroneControlReply, DroneName, SCHEMA_VERSION};

use crate::CliError;
use crate::rpc::{self, RequestFailure};

/// Asks the drone to return to work. The reply's `ok` is false when the drone refused (for
/// instance because it was not grounded); its `message` says why.
pub async fn unground(
    client: &async_nats::Client,
    name: &DroneName,
) -> Result<DroneControlReply, CliError> {
    let subject = schemas::names::drone_control_subject(name);
    let payload = schemas::encode(&DroneControl {
        v: SCHEMA_VERSION,
        command: DroneCommand::Unground,
    })?;
    let reply = rpc::request(client, &subject, payload)
        .await
        .map_err(|failure| match failure {
            RequestFailure::NoResponders => CliError::DroneNotOnline {
                name: name.to_string(),
            },
            RequestFailure::Other(err) => err,
        })?;
    schemas::decode(&reply.payload).map_err(|source| CliError::BadReply { subject, source })
}
