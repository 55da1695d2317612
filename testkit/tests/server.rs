//! Integration tests of the test nats-server harness against the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use swarm_testkit::{NatsServer, TestkitError, TestkitErrorKind, free_port};

type TestResult = anyhow::Result<()>;

/// A file-backed stream, so data survives a server restart.
async fn create_stream(js: &jetstream::Context, name: &str) -> anyhow::Result<stream::Stream> {
    let stream = js
        .create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.>")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    Ok(stream)
}

/// A tiny HTTP GET, enough for the monitoring endpoint without an HTTP client dependency.
fn http_get(url: &str) -> std::io::Result<String> {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let mut conn = TcpStream::connect(host)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(conn, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut body = String::new();
    conn.read_to_string(&mut body)?;
    Ok(body)
}

async fn wait_for_state(
    client: &async_nats::Client,
    wanted: impl Fn(State) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !wanted(client.connection_state()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .context("client connection state did not change")
}

fn fake_binary(dir: &Path, version_line: &str) -> std::io::Result<PathBuf> {
    let path = dir.join("nats-server");
    std::fs::write(&path, format!("#!/bin/sh\necho '{version_line}'\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[tokio::test]
async fn jetstream_publish_and_consume() -> TestResult {
    let server = NatsServer::start()?;
    assert!(server.client_url().starts_with("nats://127.0.0.1:"));
    assert_eq!(
        server.client_url(),
        format!("nats://127.0.0.1:{}", server.port())
    );
    assert!(server.pid().is_some());

    let client = server.connect().await?;
    let js = jetstream::new(client.clone());
    let stream = create_stream(&js, "JOBS").await?;
    js.publish("JOBS.one", "hello".into()).await?.await?;

    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("reader".to_owned()),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    let message = messages
        .next()
        .await
        .context("no message fetched")?
        .map_err(anyhow::Error::from_boxed)?;
    assert_eq!(message.subject.as_str(), "JOBS.one");
    assert_eq!(message.payload.as_ref(), b"hello");
    message.ack().await.map_err(anyhow::Error::from_boxed)?;

    // Core NATS works on the same server too.
    let mut sub = client.subscribe("plain").await?;
    client.publish("plain", "core".into()).await?;
    let plain = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await?
        .context("no core message")?;
    assert_eq!(plain.payload.as_ref(), b"core");
    Ok(())
}

#[tokio::test]
async fn restart_keeps_port_store_and_messages() -> TestResult {
    let mut server = NatsServer::builder().sync_always(true).start()?;
    let (port, monitor_port, store) = (
        server.port(),
        server.monitor_port(),
        server.store_dir().to_owned(),
    );
    let first_pid = server.pid();

    {
        let js = jetstream::new(server.connect().await?);
        create_stream(&js, "DURABLE").await?;
        js.publish("DURABLE.x", "kept".into()).await?.await?;
    }

    server.restart()?;
    assert_eq!(server.port(), port);
    assert_eq!(server.monitor_port(), monitor_port);
    assert_eq!(server.store_dir(), store);
    assert_ne!(server.pid(), first_pid);

    let js = jetstream::new(server.connect().await?);
    let stream = js.get_stream("DURABLE").await?;
    let message = stream.get_raw_message(1).await?;
    assert_eq!(message.payload.as_ref(), b"kept");
    Ok(())
}

#[tokio::test]
async fn client_reconnects_across_kill_and_start_again() -> TestResult {
    let mut server = NatsServer::start()?;
    let client = server.connect().await?;
    let js = jetstream::new(client.clone());
    create_stream(&js, "RECONNECT").await?;

    server.kill()?;
    assert_eq!(server.pid(), None);
    assert!(TcpStream::connect(("127.0.0.1", server.port())).is_err());
    server.kill()?; // Killing twice is harmless.
    // The client notices the dead connection only when its task next runs; waiting for that
    // keeps the first request after the restart from going into the old socket and timing out.
    wait_for_state(&client, |state| state != State::Connected).await?;

    server.start_again()?;
    assert!(server.pid().is_some());
    // The client made before the kill finds the server again on the same port.
    wait_for_state(&client, |state| state == State::Connected).await?;
    let ack = js.publish("RECONNECT.y", "after".into()).await?.await?;
    assert_eq!(ack.stream, "RECONNECT");
    Ok(())
}

#[tokio::test]
async fn fixed_port_and_reused_store_dir() -> TestResult {
    let store = tempfile::tempdir()?;
    let port = free_port()?;
    {
        let server = NatsServer::builder()
            .port(port)
            .store_dir(store.path())
            .start()?;
        assert_eq!(server.port(), port);
        let js = jetstream::new(server.connect().await?);
        create_stream(&js, "REUSED").await?;
        js.publish("REUSED.z", "again".into()).await?.await?;
    }
    // The first server is gone; its store, supplied by us, must have been kept.
    assert!(store.path().join("jetstream").is_dir());

    let server = NatsServer::builder().store_dir(store.path()).start()?;
    let js = jetstream::new(server.connect().await?);
    let message = js.get_stream("REUSED").await?.get_raw_message(1).await?;
    assert_eq!(message.payload.as_ref(), b"again");
    Ok(())
}

#[tokio::test]
async fn options_reach_the_server() -> TestResult {
    let server = NatsServer::builder()
        .sync_always(true)
        .max_payload(2 * 1024 * 1024)
        .extra_config("server_name: testkit-options")
        .start()?;
    let client = server.connect().await?;
    let info = client.server_info();
    assert_eq!(info.max_payload, 2 * 1024 * 1024);
    assert_eq!(info.server_name, "testkit-options");

    let varz = http_get(&format!("{}/varz", server.monitor_url()))?;
    assert!(varz.contains("\"sync_always\": true"), "{varz}");
    Ok(())
}

#[test]
fn temp_store_is_removed_on_drop() -> TestResult {
    let server = NatsServer::start()?;
    let store = server.store_dir().to_owned();
    let log = server.log_file();
    assert!(store.join("jetstream").is_dir());
    assert!(log.is_file());
    drop(server);
    assert!(!store.exists());
    assert!(!log.exists());
    Ok(())
}

#[test]
fn too_old_binary_is_rejected() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fake = fake_binary(dir.path(), "nats-server: v2.9.10")?;
    let err = NatsServer::builder()
        .binary(&fake)
        .start()
        .err()
        .context("old binary accepted")?;
    assert_eq!(err.kind(), TestkitErrorKind::TooOld);
    match &err {
        TestkitError::TooOld { binary, found } => {
            assert_eq!(binary, &fake);
            assert_eq!(found, "nats-server: v2.9.10");
        }
        other => bail!("unexpected error {other:?}"),
    }
    // The brief requires the message to point at the fix.
    assert!(err.to_string().contains("scripts/install-deps.sh"), "{err}");
    Ok(())
}

#[test]
fn unparseable_version_is_rejected() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fake = fake_binary(dir.path(), "something else entirely")?;
    let err = NatsServer::builder()
        .binary(&fake)
        .start()
        .err()
        .context("unknown binary accepted")?;
    assert_eq!(err.kind(), TestkitErrorKind::TooOld);
    Ok(())
}

#[test]
fn missing_binary_is_reported() -> TestResult {
    let err = NatsServer::builder()
        .binary("/nonexistent/nats-server")
        .start()
        .err()
        .context("missing binary accepted")?;
    assert_eq!(err.kind(), TestkitErrorKind::BinaryNotFound);
    Ok(())
}

#[test]
fn bad_config_exits_with_log_tail() -> TestResult {
    let err = NatsServer::builder()
        .extra_config("this is { not valid")
        .start()
        .err()
        .context("bad config accepted")?;
    assert_eq!(err.kind(), TestkitErrorKind::Exited);
    Ok(())
}

#[test]
fn taken_port_exits() -> TestResult {
    let first = NatsServer::start()?;
    let err = NatsServer::builder()
        .port(first.port())
        .start()
        .err()
        .context("second server on a taken port")?;
    assert_eq!(err.kind(), TestkitErrorKind::Exited);
    Ok(())
}
