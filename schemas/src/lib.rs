//! The wire contract of the build swarm: every message that crosses NATS, the names of subjects,
//! streams and buckets, and the validated identifiers (package atom, drone name, arch).
//!
//! This crate has no async runtime and no NATS client on purpose: it is what every component
//! agrees on, and it must be usable from a fuzzer or a pure unit test.

pub mod codec;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod fuzzing;
pub mod ids;
pub mod messages;
pub mod names;
pub mod paths;
pub mod summary;

pub use codec::{
    DecodeError, EncodeError, MAX_MESSAGE_BYTES, MAX_OBJECT_BYTES, SCHEMA_VERSION, Wire, decode,
    decode_object, encode,
};
pub use ids::{Arch, Atom, AtomError, DroneName, NameError, PackageKey, RunName, shorten};
pub use messages::*;
