//! The deterministic reproduction of the 3-node cluster test's flake: a drone whose result is
//! committed on its lease but not yet stored, while the lease and event streams cannot take its
//! writes (a NATS leader election) and the work stream's consumer can.
//!
//! In the cluster test the node leading the leases and events streams was killed just after a
//! drone committed a result: for seconds its finished lease could not be renewed and expired
//! (its TTL is 1.5 s there), its `finished` event could not be stored, and the job, which the
//! drone no longer told the server it was working on, was redelivered after the ack wait to
//! another drone. That drone found no lease and a package record still unfinished (the
//! coordinator had not seen the first result), built it again and reported a second success,
//! once the first drone's event was stored too.
//!
//! Here a proxy between one drone and a single nats-server forces that interleaving: the moment
//! the drone publishes its `finished` event, the proxy holds that and every later write of the
//! drone to the leases bucket and the event stream, and lets everything else (heartbeats,
//! acknowledgements, pulls) through; a second drone starts; after a while the proxy lets the held
//! writes through.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schemas::SubmitResult;
use swarm_tests::invariants::{self, Observer};
use swarm_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy holds the drone's writes past the lease TTL (1.5 s), the ack wait (2 s) and a
/// redelivered job's build elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_held_up_in_a_leader_election_is_not_built_again_elsewhere() {
    held_result_is_built_once(Duration::from_secs(7)).await;
}

/// The proxy holds the drone's writes longer than the 10 s (four lease TTLs, at least 10 s) for
/// which a drone used to try to store its result before it gave up and let the job be built
/// again, while its last try, unanswered, could still be stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_held_up_longer_than_its_first_tries_is_not_built_again() {
    held_result_is_built_once(Duration::from_secs(14)).await;
}

async fn held_result_is_built_once(hold: Duration) {
    let mut swarm = Swarm::start().await;
    let observer = Observer::start(swarm.record_file());
    let proxy = HoldingProxy::start(swarm.nats.port(), "first").await;
    swarm.spawn_drone(
        &DroneSpec::new("first", 4, 1)
            .env("SWARM_TEST_SLEEP", "0.3")
            .env("SWARM_NATS__URL", &proxy.url()),
    );
    let atom = "=dev-test/fenced-1.0".to_owned();
    match swarm.submit(&[(atom.clone(), None)]).await {
        SubmitResult::Accepted { queued: 1, .. } => {}
        other => panic!("submission refused: {other:?}"),
    }

    // The drone builds the package and publishes its result: held from here on.
    proxy.wait_held(Duration::from_secs(30)).await;
    let held_at = Instant::now();
    swarm.spawn_drone(&DroneSpec::new("second", 4, 1).env("SWARM_TEST_SLEEP", "0.3"));
    // The second drone must not build it while the first one's result is on its way; wait out
    // the hold, or stop early when it does (the failure).
    while held_at.elapsed() < hold {
        if builds(&swarm.records()).iter().any(|b| b.drone == "second") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.release();

    swarm.wait_final(1, Duration::from_secs(60)).await;
    // Let a late duplicate, if any, reach the event stream before it is read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let built: Vec<String> = builds(&swarm.records())
        .into_iter()
        .map(|b| b.drone)
        .collect();
    assert_eq!(
        built,
        vec!["first".to_owned()],
        "the package was built once, by the drone whose result was held up; logs in {}",
        swarm.dir.path().display()
    );
    invariants::check(
        &swarm,
        "a committed result held up while the job's ack wait passed",
        &[atom],
        &observer,
    )
    .await
    .assert_ok();
}

/// A TCP proxy between one drone and nats-server that reads the client's side of the NATS
/// protocol: once the drone publishes a `finished` event, it holds that frame and every later
/// publish to the leases bucket or the event stream (what a stream without a leader does not
/// take), passing everything else, until [`release`](Self::release).
struct HoldingProxy {
    port: u16,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    /// Whether the `finished` event was seen (and the holding began).
    held: watch::Sender<bool>,
    /// Whether the held frames may go.
    released: watch::Sender<bool>,
    /// Frames held back, per connection, in order.
    frames: Mutex<Vec<Vec<u8>>>,
    event_subject: String,
}

impl HoldingProxy {
    async fn start(upstream: u16, drone: &str) -> HoldingProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Shared {
            held: watch::channel(false).0,
            released: watch::channel(false).0,
            frames: Mutex::new(Vec::new()),
            event_subject: format!("{}.{drone}", schemas::names::EVENT_SUBJECT_PREFIX),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (mut server_read, server_write) = server.into_split();
                tokio::spawn(upstream_pump(client_read, server_write, shared.clone()));
                tokio::spawn(async move {
                    let mut client_write = client_write;
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
            }
        });
        HoldingProxy { port, state, task }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn wait_held(&self, timeout: Duration) {
        let mut held = self.state.held.subscribe();
        tokio::time::timeout(timeout, held.wait_for(|h| *h))
            .await
            .expect("the drone published its result within the timeout")
            .expect("the proxy runs");
    }

    fn release(&self) {
        self.state.released.send_replace(true);
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Client to server, one protocol frame at a time.
async fn upstream_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<Shared>,
) {
    let mut released = state.released.subscribe();
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut flushed = false;
    loop {
        while let Some(length) = frame_length(&buffer) {
            let frame: Vec<u8> = buffer.drain(..length).collect();
            if !flushed && state.holds(&frame) {
                lock(&state.frames).push(frame);
            } else if to.write_all(&frame).await.is_err() {
                return;
            }
        }
        tokio::select! {
            read = from.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            },
            ok = async { released.wait_for(|r| *r).await.is_ok() }, if !flushed => {
                if !ok {
                    return;
                }
                flushed = true;
                let frames: Vec<Vec<u8>> = std::mem::take(&mut *lock(&state.frames));
                for frame in frames {
                    if to.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl Shared {
    /// Whether this frame is held: the drone's `finished` event starts the holding; from then
    /// on every publish to its event subject or to the leases bucket waits.
    fn holds(&self, frame: &[u8]) -> bool {
        let Some(subject) = publish_subject(frame) else {
            return false;
        };
        let to_events = subject == self.event_subject;
        let to_leases = subject.starts_with(&format!("$KV.{}.", schemas::names::LEASES_BUCKET));
        if *self.held.borrow() {
            return to_events || to_leases;
        }
        let finished = format!("{}: finished", schemas::names::HEADER_KIND);
        if to_events && contains(frame, finished.as_bytes()) {
            self.held.send_replace(true);
            return true;
        }
        false
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The length of the first complete frame in `buffer`: a control line, or a `PUB`/`HPUB` line
/// with its payload and the payload's line end. `None` until it has all arrived.
fn frame_length(buffer: &[u8]) -> Option<usize> {
    let line_end = buffer.windows(2).position(|w| w == b"\r\n")? + 2;
    let line = std::str::from_utf8(&buffer[..line_end - 2]).ok()?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let payload = match words.first().map(|op| op.to_ascii_uppercase()) {
        // PUB <subject> [reply] <bytes>; HPUB <subject> [reply] <header bytes> <total bytes>
        Some(op) if op == "PUB" || op == "HPUB" => words.last()?.parse::<usize>().ok()? + 2,
        _ => 0,
    };
    (buffer.len() >= line_end + payload).then_some(line_end + payload)
}

/// The subject of a `PUB` or `HPUB` frame.
fn publish_subject(frame: &[u8]) -> Option<&str> {
    let line_end = frame.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&frame[..line_end]).ok()?;
    let mut words = line.split_whitespace();
    let op = words.next()?;
    (op.eq_ignore_ascii_case("PUB") || op.eq_ignore_ascii_case("HPUB"))
        .then(|| words.next())
        .flatten()
}

#[test]
fn frames_are_cut_at_their_payloads_end() {
    let pub_frame = b"PUB a.b _INBOX.1 5\r\nhello\r\n";
    let hpub = b"HPUB swarm.event.d 25 29\r\nNATS/1.0\r\nK: finished\r\n\r\nabcd\r\n";
    let mut stream = Vec::new();
    stream.extend_from_slice(b"PING\r\n");
    stream.extend_from_slice(pub_frame);
    stream.extend_from_slice(hpub);
    assert_eq!(frame_length(&stream), Some(6));
    assert_eq!(frame_length(&stream[6..]), Some(pub_frame.len()));
    assert_eq!(
        frame_length(&stream[6 + pub_frame.len()..]),
        Some(hpub.len())
    );
    assert_eq!(frame_length(&pub_frame[..pub_frame.len() - 1]), None);
    assert_eq!(publish_subject(pub_frame), Some("a.b"));
    assert_eq!(publish_subject(hpub), Some("swarm.event.d"));
    assert_eq!(publish_subject(b"SUB a 1\r\n"), None);
}
