//! Publishing a package's job to the work stream. The job, its subject and its message id are
//! pure functions of the package record (`Publication`); `publish` sends it and tells a job
//! refused because the package's subject still holds one (`SubjectBusy`) from a failure, by the
//! server's error code, never by its text.

use std::error::Error as _;

use async_nats::jetstream::{self, ErrorCode, context, message::PublishMessage, stream};
use schemas::{
    BuildOutcome, EncodeError, FailureClass, Job, PackageKey, PackageRecord, SCHEMA_VERSION,
    encode, names,
};

use crate::schedule::Placement;

/// One job to publish: the package's record at `revision`, for `attempt`, on the normal or the
/// big queue (`placement`).
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    pub key: &'a PackageKey,
    pub record: &'a PackageRecord,
    pub revision: u64,
    pub attempt: u32,
    pub placement: Placement,
}

impl Publication<'_> {
    /// The job's message id: the same record revision always gives the same id, so publishing
    /// twice after a crash is deduplicated by the server, while a re-publish after the record
    /// moved on (a requeue of a lost job) is a new message.
    pub fn msg_id(&self) -> String {
        let queue = if self.placement.is_big() { ":big" } else { "" };
        format!(
            "{}:{}:{}:{}{queue}",
            self.key, self.record.submission, self.attempt, self.revision
        )
    }

    pub fn subject(&self) -> String {
        if self.placement.is_big() {
            names::big_build_subject(&self.record.arch, self.key)
        } else {
            names::build_subject(&self.record.arch, self.key)
        }
    }

    /// The job, which asks drones to avoid those that failed the package before.
    pub fn job(&self) -> Job {
        let avoid = self
            .record
            .history
            .iter()
            // A download that failed says nothing about the drone that tried it.
            .filter(|a| {
                matches!(
                    a.outcome,
                    BuildOutcome::Failed { class, .. } if class != FailureClass::Fetch
                )
            })
            .map(|a| a.drone.clone())
            .collect();
        let (min_cores, linger) = match self.placement {
            Placement::Normal => (None, false),
            Placement::Big { min_cores, linger } => (min_cores, linger),
        };
        Job {
            v: SCHEMA_VERSION,
            atom: self.record.atom.clone(),
            attempt: self.attempt,
            submission: self.record.submission,
            avoid,
            estimate_secs: self.record.estimate_secs,
            fingerprint: self.record.fingerprint.clone(),
            min_cores,
            linger,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Stored (or recognised as a duplicate of a job already stored).
    Published,
    /// A job for this package is still in the stream, which holds one per subject.
    SubjectBusy,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Not sent, or sent and not stored for a reason other than a store refusal.
    #[error(transparent)]
    Publish(#[from] context::PublishError),
    /// The server refused to store the job (JetStream error 10077) although its subject holds
    /// no job: another limit of the stream refused it.
    #[error("job refused on {subject}, which holds no job: {source}")]
    Refused {
        subject: String,
        #[source]
        source: context::PublishError,
    },
    /// The server refused to store the job, and whether its subject holds one is unknown.
    #[error("job refused on {subject}, and the stream cannot say whether it holds one: {source}")]
    Unconfirmed {
        subject: String,
        #[source]
        source: stream::LastRawMessageError,
    },
}

/// The JetStream API error behind a publish error, if the server answered with one.
pub fn api_error(err: &context::PublishError) -> Option<&jetstream::Error> {
    err.source()?.downcast_ref::<jetstream::Error>()
}

/// Publishes the job and waits for the stream's acknowledgement. The work stream holds one job
/// per subject and refuses another (`discard_new_per_subject`); the server reports that, like
/// every refusal to store, as JetStream error 10077 (`JSStreamStoreFailedF`), so a 10077 is
/// taken as "busy" only once the subject is seen to hold a job.
pub async fn publish(
    js: &jetstream::Context,
    builds: &stream::Stream,
    publication: &Publication<'_>,
) -> Result<PublishOutcome, PublishError> {
    let job = publication.job();
    let payload = encode(&job)?;
    let subject = publication.subject();
    let mut message = PublishMessage::build()
        .payload(payload.into())
        .message_id(publication.msg_id());
    for (name, value) in job.headers(publication.record.run.as_ref()) {
        message = message.header(name, value.as_str());
    }
    let ack = js.send_publish(subject.clone(), message).await?;
    let err = match ack.await {
        Ok(_) => return Ok(PublishOutcome::Published),
        Err(err) => err,
    };
    if api_error(&err).is_none_or(|api| api.error_code() != ErrorCode::STREAM_STORE_FAILED) {
        return Err(PublishError::Publish(err));
    }
    match builds.get_last_raw_message_by_subject(&subject).await {
        Ok(_) => Ok(PublishOutcome::SubjectBusy),
        Err(found)
            if matches!(
                found.kind(),
                stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            Err(PublishError::Refused {
                subject,
                source: err,
            })
        }
        Err(found) => Err(PublishError::Unconfirmed {
            subject,
            source: found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{AttemptRecord, ExitInfo, PackageState, fixtures};

    fn attempt(drone: &str, outcome: BuildOutcome) -> AttemptRecord {
        AttemptRecord {
            attempt: 1,
            drone: fixtures::drone_name(drone),
            outcome,
            duration_ms: 1,
            ended_ms: 1,
        }
    }

    #[test]
    fn the_message_id_names_submission_attempt_revision_and_queue() {
        let record = PackageRecord {
            submission: 3,
            ..fixtures::package_record("dev-libs/a", PackageState::Queued { attempt: 2 })
        };
        let key = record.atom.key();
        let mut publication = Publication {
            key: &key,
            record: &record,
            revision: 17,
            attempt: 2,
            placement: Placement::Normal,
        };
        assert_eq!(publication.msg_id(), "dev-libs_2Fa:3:2:17");
        assert_eq!(publication.subject(), "swarm.build.amd64.dev-libs_2Fa");
        publication.placement = Placement::Big {
            min_cores: Some(24),
            linger: true,
        };
        let job = publication.job();
        assert_eq!((job.min_cores, job.linger), (Some(24), true));
        assert_eq!(publication.msg_id(), "dev-libs_2Fa:3:2:17:big");
        assert_eq!(publication.subject(), "swarm.build.amd64.big.dev-libs_2Fa");
    }

    #[test]
    fn the_job_avoids_the_drones_that_failed_the_package() {
        let failed_as = |class| BuildOutcome::Failed {
            exit: ExitInfo::code(1),
            log_tail: String::new(),
            class,
            signature: None,
        };
        let failed = failed_as(schemas::FailureClass::Package);
        let record = PackageRecord {
            submission: 2,
            estimate_secs: Some(60.0),
            history: vec![
                attempt("d1", failed.clone()),
                attempt("d2", BuildOutcome::Succeeded),
                attempt("d3", failed),
                // A download that failed is not the drone's doing: it is not avoided.
                attempt("d4", failed_as(schemas::FailureClass::Fetch)),
                attempt("d5", failed_as(schemas::FailureClass::Infrastructure)),
            ],
            ..fixtures::package_record(
                "dev-libs/a",
                PackageState::RetryWait {
                    attempt: 3,
                    not_before_ms: 0,
                },
            )
        };
        let key = record.atom.key();
        let job = Publication {
            key: &key,
            record: &record,
            revision: 1,
            attempt: 3,
            placement: Placement::Normal,
        }
        .job();
        assert_eq!(
            job.avoid,
            [
                fixtures::drone_name("d1"),
                fixtures::drone_name("d3"),
                fixtures::drone_name("d5")
            ]
        );
        assert_eq!(
            (job.attempt, job.submission, job.estimate_secs),
            (3, 2, Some(60.0))
        );
        assert_eq!(job.atom, record.atom);
    }
}
