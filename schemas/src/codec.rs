//! MessagePack encoding with named fields and a schema version check on every decode.
//!
//! The reader rules, which let releases N and N-1 run side by side (docs/upgrades.md):
//!
//! - Every message is a map of named fields carrying `v`, the schema version. A reader ignores
//!   fields it does not know, so a release may add an optional field (`#[serde(default)]`)
//!   without changing `v`: older readers skip it, newer readers default it when it is absent.
//! - `v` changes only for a change older readers cannot take: a field removed, renamed, made
//!   required or given another type or meaning. A reader refuses a message of any other version
//!   than its own ([`DecodeError::UnsupportedVersion`]) rather than guess at its layout, and a
//!   message without `v` ([`DecodeError::MissingVersion`]): every message the swarm ever wrote
//!   carries one, so a map without it is not ours, and reading it as the current version would
//!   misread it the day the version changes.
//! - A new variant of an enum is a change older readers refuse as [`DecodeError::Invalid`], with
//!   the version unchanged: a release sends one only where its readers are already upgraded
//!   (coordinators before drones, see docs/upgrades.md), or it bumps `v`.
//! - A component never throws away a message it cannot read: it logs it and leaves it where a
//!   newer release (or the operator) can read it.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The schema version every message carries in its `v` field. A reader rejects any other value
/// rather than guessing at a layout it does not know. Bumping it breaks every reader of the
/// previous release: a release that bumps it must first be preceded by one that reads both
/// versions (docs/upgrades.md).
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
    /// A map without `v`: every message the swarm writes has one.
    #[error("{kind} message has no schema version (field `v`): not a message of the swarm's")]
    MissingVersion { kind: &'static str },
    #[error(
        "{kind} message has schema version {found}, this build reads version {SCHEMA_VERSION} only{}",
        newer_or_older(.found)
    )]
    UnsupportedVersion { kind: &'static str, found: u16 },
    #[error("{kind} message does not match its schema: {reason}")]
    Invalid { kind: &'static str, reason: String },
}

impl DecodeError {
    /// The schema version the message says it has, when it says one this build cannot read.
    pub fn unsupported_version(&self) -> Option<u16> {
        match self {
            DecodeError::UnsupportedVersion { found, .. } => Some(*found),
            _ => None,
        }
    }
}

fn newer_or_older(found: &u16) -> &'static str {
    if *found > SCHEMA_VERSION {
        " (written by a newer release: upgrade this component)"
    } else {
        " (written by a release too old to read)"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {kind} message: {reason}")]
pub struct EncodeError {
    pub kind: &'static str,
    pub reason: String,
}

/// Only the version field, read first so that a message of another schema version is reported
/// as such instead of as a confusing field mismatch. The messages' own `#[serde(default =
/// "version")]` on `v` never applies through [`decode`]: a message without `v` stops here.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    v: Option<u16>,
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
    match probe.v {
        Some(SCHEMA_VERSION) => {}
        Some(found) => {
            return Err(DecodeError::UnsupportedVersion {
                kind: T::KIND,
                found,
            });
        }
        None => return Err(DecodeError::MissingVersion { kind: T::KIND }),
    }
    rmp_serde::from_slice(bytes).map_err(|err| DecodeError::Invalid {
        kind: T::KIND,
        reason: err.to_string(),
    })
}
