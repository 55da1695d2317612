//! Package records in the packages bucket: the compare-and-set write and the re-read after a
//! conflict. The caller updates its table only with what these return, so memory never runs
//! ahead of the bucket.

use async_nats::jetstream::kv;
use schemas::{DecodeError, EncodeError, PackageKey, PackageRecord, decode, encode};

/// Package writes in flight at once.
pub const WRITE_CONCURRENCY: usize = 128;

/// Why a package write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Someone else wrote the key since the revision the write was based on (or created it,
    /// for a create).
    #[error("package record changed underneath")]
    Conflict,
    #[error(transparent)]
    Update(kv::UpdateError),
    #[error(transparent)]
    Create(kv::CreateError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a package record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Entry(#[from] kv::EntryError),
    #[error(transparent)]
    Undecodable(#[from] DecodeError),
}

/// Writes a package record by compare-and-set: an update of `revision`, or a create when the
/// coordinator knows no record for the key. Returns the new revision.
pub async fn write_record(
    bucket: &kv::Store,
    key: &PackageKey,
    revision: Option<u64>,
    record: &PackageRecord,
) -> Result<u64, WriteError> {
    let bytes = encode(record)?;
    match revision {
        Some(revision) => bucket
            .update(key.as_str(), bytes.into(), revision)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => WriteError::Conflict,
                _ => WriteError::Update(e),
            }),
        None => bucket
            .create(key.as_str(), bytes.into())
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => WriteError::Conflict,
                _ => WriteError::Create(e),
            }),
    }
}

/// Reads a package record and its revision; `None` when the key holds none (never written,
/// deleted or purged).
pub async fn read_record(
    bucket: &kv::Store,
    key: &PackageKey,
) -> Result<Option<(PackageRecord, u64)>, ReadError> {
    match bucket.entry(key.as_str()).await? {
        Some(entry) if entry.operation == kv::Operation::Put => Ok(Some((
            decode::<PackageRecord>(&entry.value)?,
            entry.revision,
        ))),
        _ => Ok(None),
    }
}
