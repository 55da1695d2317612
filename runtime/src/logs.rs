//! Reading a build's complete log, as its drone stored it in the logs object store
//! (`names::LOGS_BUCKET`, gzip): `swarmctl logs` and the dashboard's `/logs/...` both read it.

use std::io::Read;

use async_nats::jetstream;
use tokio::io::AsyncReadExt;

#[derive(Debug, thiserror::Error)]
pub enum StoredLogError {
    #[error("the stored log {name} cannot be read now: {reason}")]
    Read { name: String, reason: String },
    #[error("the stored log {name} is not gzip: {reason}")]
    NotGzip { name: String, reason: String },
}

/// The complete log stored as `name` (`names::log_object`), uncompressed; `None` when it is not
/// stored, or the swarm keeps no logs.
pub async fn read_stored(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<Vec<u8>>, StoredLogError> {
    let Ok(store) = js.get_object_store(schemas::names::LOGS_BUCKET).await else {
        return Ok(None);
    };
    let Ok(mut object) = store.get(name).await else {
        return Ok(None);
    };
    let mut compressed = Vec::new();
    object
        .read_to_end(&mut compressed)
        .await
        .map_err(|err| StoredLogError::Read {
            name: name.to_owned(),
            reason: err.to_string(),
        })?;
    let mut log = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut log)
        .map_err(|err| StoredLogError::NotGzip {
            name: name.to_owned(),
            reason: err.to_string(),
        })?;
    Ok(Some(log))
}
