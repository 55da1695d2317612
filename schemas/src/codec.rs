//! MessagePack encoding with named fields and a schema version check on every decode.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The schema version every message carries in its `v` field. A reader rejects any other value
/// rather than guessing at a layout it does not know.
pub const SCHEMA_VERSION: u16 = 1;

/// Messages larger than this are rejected before decoding; nothing we send comes near it, so a
/// larger payload is either corrupt or hostile.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A message type that crosses the wire. `KIND` names it in errors and logs.
pub trait Wire: Serialize + DeserializeOwned {
    const KIND: &'static str;
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{kind} message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        kind: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{kind} message is not valid MessagePack with a schema version: {reason}")]
    Malformed { kind: &'static str, reason: String },
    #[error("{kind} message has schema version {found}, this build understands {SCHEMA_VERSION}")]
    UnsupportedVersion { kind: &'static str, found: u16 },
    #[error("{kind} message does not match its schema: {reason}")]
    Invalid { kind: &'static str, reason: String },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {kind} message: {reason}")]
pub struct EncodeError {
    pub kind: &'static str,
    pub reason: String,
}

/// Only the version field, read first so that a message of another schema version is reported
/// as such instead of as a confusing field mismatch.
#[derive(Deserialize)]
struct VersionProbe {
    v: u16,
}

pub fn encode<T: Wire>(message: &T) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(message).map_err(|err| EncodeError {
        kind: T::KIND,
        reason: err.to_string(),
    })
}

pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_within(bytes, MAX_MESSAGE_BYTES)
}

/// The most an object of the swarm's own writing (a binhost revision's contents, read from the
/// object store, which has no message limit) may hold.
pub const MAX_OBJECT_BYTES: usize = 256 * 1024 * 1024;

/// [`decode`] for what the swarm itself stored as an object, larger than a message may be.
pub fn decode_object<T: Wire>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_within(bytes, MAX_OBJECT_BYTES)
}

fn decode_within<T: Wire>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            kind: T::KIND,
            len: bytes.len(),
            limit,
        });
    }
    let probe: VersionProbe =
        rmp_serde::from_slice(bytes).map_err(|err| DecodeError::Malformed {
            kind: T::KIND,
            reason: err.to_string(),
        })?;
    if probe.v != SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            kind: T::KIND,
            found: probe.v,
        });
    }
    rmp_serde::from_slice(bytes).map_err(|err| DecodeError::Invalid {
        kind: T::KIND,
        reason: err.to_string(),
    })
}
