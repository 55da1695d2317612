//! Package records in the packages bucket: the write, fenced by the leader's term
//! (`leader::Fence`). The caller updates its table only with what these return, so
//! memory never runs ahead of the bucket.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use schemas::{EncodeError, PackageKey, PackageRecord, encode, names};

use crate::leader::Fence;

/// Package writes in flight at once.
pub const WRITE_CONCURRENCY: usize = 128;

/// Why a package write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A newer coordinator's term exists: this one no longer leads, and wrote nothing.
    #[error(
        "package write refused: another coordinator leads now (this one's term {term_seq} is over)"
    )]
    Fenced { term_seq: u64 },
    #[error(transparent)]
    Publish(#[from] jetstream::context::PublishError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// The writer of package records: the bucket, the JetStream context that publishes to it, and
/// the fence of the leader's term.
#[derive(Clone)]
pub struct Writer {
    pub js: jetstream::Context,
    pub bucket: kv::Store,
    pub fence: Fence,
}

/// Writes a package record, fenced by the leader's term: the write lands only while the term
/// record (`names::TERM_KEY`, in the same bucket) is still the one this coordinator wrote
/// (`Nats-Expected-Last-Subject-Sequence` checked against that key's subject). Only the leader
/// writes package records, and it loaded them after its term began, so the compare-and-set on
/// each record's own revision that this replaces is implied. Returns the new revision.
pub async fn write_record(
    writer: &Writer,
    key: &PackageKey,
    record: &PackageRecord,
) -> Result<u64, WriteError> {
    let bytes = encode(record)?;
    let prefix = writer
        .bucket
        .put_prefix
        .as_ref()
        .unwrap_or(&writer.bucket.prefix);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        writer.fence.term_seq.to_string().as_str(),
    );
    headers.insert(
        EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
        format!("{prefix}{}", names::TERM_KEY).as_str(),
    );
    let subject = format!("{prefix}{key}");
    let bytes = bytes::Bytes::from(bytes);
    let mut pause = Duration::from_millis(1);
    let give_up = tokio::time::Instant::now() + BUSY_RETRY_FOR;
    loop {
        let result = match writer
            .js
            .publish_with_headers(subject.clone(), headers.clone(), bytes.clone())
            .await
        {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        };
        match result {
            Ok(ack) => return Ok(ack.sequence),
            Err(err) if err.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                return Err(WriteError::Fenced {
                    term_seq: writer.fence.term_seq,
                });
            }
            // A clustered stream checks one write against the term key at a time and refuses
            // the others meanwhile: a moment later the check is free again.
            Err(err) if is_busy(&err) && tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(err) => return Err(WriteError::Publish(err)),
        }
    }
}

/// How long a write refused because the term key's check was busy is tried again.
const BUSY_RETRY_FOR: Duration = Duration::from_secs(10);

/// `JSStreamWrongLastSequenceConstantErr` (10164): a clustered stream had another write checking
/// the same subject in flight. Not a verdict on the term.
fn is_busy(err: &jetstream::context::PublishError) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|e| e.error_code() == jetstream::ErrorCode(10164))
}

/// The header that names the subject whose last sequence `Nats-Expected-Last-Subject-Sequence`
/// is checked against (nats-server 2.11 and later).
const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
