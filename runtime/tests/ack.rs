//! `double_ack` against a real nats-server: a confirmed acknowledgement, and each way one is
//! not confirmed.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use swarm_runtime::ack::{AckError, double_ack};

const TIMEOUT: Duration = Duration::from_secs(5);

/// One message pulled from a work stream, with the consumer it came from.
async fn pulled(
    js: &jetstream::Context,
) -> (jetstream::Message, jetstream::consumer::PullConsumer) {
    let stream = js
        .create_stream(stream::Config {
            name: "ACKS".to_owned(),
            subjects: vec!["acks.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("stream");
    js.publish("acks.one", "job".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("acker".to_owned()),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let message = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("fetch")
        .next()
        .await
        .expect("one message")
        .expect("a message");
    (message, consumer)
}

#[tokio::test]
async fn a_confirmed_ack_removes_the_job() {
    let server = testkit::NatsServer::start().expect("server starts");
    let js = jetstream::new(server.connect().await.expect("connects"));
    let (message, mut consumer) = pulled(&js).await;
    double_ack(&message, TIMEOUT).await.expect("confirmed");
    let info = consumer.info().await.expect("info");
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
}

#[tokio::test]
async fn unconfirmed_acks_say_why() {
    let server = testkit::NatsServer::start().expect("server starts");
    let client = server.connect().await.expect("connects");
    let js = jetstream::new(client.clone());
    let (message, _consumer) = pulled(&js).await;

    let mut no_reply = message.clone();
    no_reply.message.reply = None;
    let err = double_ack(&no_reply, TIMEOUT).await.expect_err("no reply");
    assert!(
        matches!(&err, AckError::NoReply { subject } if subject == "acks.one"),
        "{err}"
    );

    // Nobody listens on the reply subject: the server answers "no responders".
    let mut nobody = message.clone();
    nobody.message.reply = Some("elsewhere.nobody".into());
    let err = double_ack(&nobody, TIMEOUT)
        .await
        .expect_err("no responders");
    assert!(matches!(err, AckError::NotConfirmed { .. }), "{err}");

    // Someone listens and never answers.
    let _silent = client
        .subscribe("elsewhere.silent")
        .await
        .expect("subscribes");
    client.flush().await.expect("flush");
    let mut silent = message;
    silent.message.reply = Some("elsewhere.silent".into());
    let err = double_ack(&silent, Duration::from_millis(200))
        .await
        .expect_err("no answer");
    assert!(
        matches!(&err, AckError::TimedOut { reply, timeout }
            if reply == "elsewhere.silent" && *timeout == Duration::from_millis(200)),
        "{err}"
    );
}
