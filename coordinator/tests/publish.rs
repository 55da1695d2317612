//! Job publication against a real nats-server: a second job for a package whose subject holds
//! one is refused with JetStream error 10077 (`JSStreamStoreFailedF`) and reported as
//! `SubjectBusy`; a 10077 for another reason (a stream limit) while the subject holds nothing is
//! an error, not "busy"; a re-publish of the same record is deduplicated, not refused.

use async_nats::jetstream::{self, ErrorCode, message::PublishMessage, stream};
use schemas::{PackageRecord, PackageState, fixtures, names};
use swarm_coordinator::config::Settings;
use swarm_coordinator::publish::{self, Publication, PublishError, PublishOutcome};
use swarm_coordinator::topology;

fn queued(atom: &str) -> PackageRecord {
    fixtures::package_record(atom, PackageState::Queued { attempt: 1 })
}

#[tokio::test]
async fn a_busy_subject_is_told_by_the_servers_error_code() {
    let server = testkit::NatsServer::start().expect("nats-server");
    let js = jetstream::new(server.connect().await.expect("connect"));
    let topo = topology::ensure(&js, &Settings::default())
        .await
        .expect("topology");
    let record = queued("dev-libs/a");
    let key = record.atom.key();
    let first = Publication {
        key: &key,
        record: &record,
        revision: 1,
        attempt: 1,
        placement: swarm_coordinator::schedule::Placement::Normal,
    };
    assert_eq!(
        publish::publish(&js, &topo.builds, &first)
            .await
            .expect("stored"),
        PublishOutcome::Published
    );
    // The same record again (a crash between publishing and recording): deduplicated.
    assert_eq!(
        publish::publish(&js, &topo.builds, &first)
            .await
            .expect("duplicate"),
        PublishOutcome::Published
    );
    // A new message for the package while its job is in the stream: the subject is busy.
    let again = Publication {
        revision: 2,
        ..first
    };
    assert_eq!(
        publish::publish(&js, &topo.builds, &again)
            .await
            .expect("busy is no error"),
        PublishOutcome::SubjectBusy
    );
    // What the decision rests on: the server's answer carries error code 10077.
    let refused = js
        .send_publish(
            names::build_subject(&record.arch, &key),
            PublishMessage::build()
                .payload("second".into())
                .message_id("another id"),
        )
        .await
        .expect("sent")
        .await
        .expect_err("refused");
    let code = publish::api_error(&refused).map(|e| e.error_code());
    assert_eq!(code, Some(ErrorCode::STREAM_STORE_FAILED), "{refused}");
    let mut builds = topo.builds.clone();
    assert_eq!(builds.info().await.expect("info").state.messages, 1);
}

/// A work stream that holds one message in all, so the second package's job is refused with
/// the same error code although its own subject is empty.
#[tokio::test]
async fn a_refusal_for_another_limit_is_an_error() {
    let server = testkit::NatsServer::start().expect("nats-server");
    let js = jetstream::new(server.connect().await.expect("connect"));
    let builds = js
        .create_stream(stream::Config {
            name: names::BUILDS_STREAM.to_owned(),
            subjects: vec![format!("{}.>", names::BUILD_SUBJECT_PREFIX)],
            max_messages: 1,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .expect("stream");
    let (a, b) = (queued("dev-libs/a"), queued("dev-libs/b"));
    let (key_a, key_b) = (a.atom.key(), b.atom.key());
    let publication = |key, record| Publication {
        key,
        record,
        revision: 1,
        attempt: 1,
        placement: swarm_coordinator::schedule::Placement::Normal,
    };
    let stored = publish::publish(&js, &builds, &publication(&key_a, &a)).await;
    assert_eq!(stored.expect("stored"), PublishOutcome::Published);
    match publish::publish(&js, &builds, &publication(&key_b, &b)).await {
        Err(PublishError::Refused { subject, source }) => {
            assert_eq!(subject, names::build_subject(&b.arch, &key_b));
            let code = publish::api_error(&source).map(|e| e.error_code());
            assert_eq!(code, Some(ErrorCode::STREAM_STORE_FAILED), "{source}");
        }
        other => panic!("expected a refusal that is not busy, got {other:?}"),
    }
}
