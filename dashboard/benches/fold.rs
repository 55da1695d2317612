//! Benchmark of the dashboard's fold: events folded per second and the memory the picture
//! takes, for 100 drones × 10,000 events. Run with
//!
//! ```sh
//! cargo bench -p swarm-dashboard --bench fold
//! ```
//!
//! Two figures, printed as a Markdown table:
//!
//! 1. **In-process fold**: 100 drones × 10,000 events (a realistic mix: `claimed`, `started`,
//!    `finished` with one build in ten failing with a log tail, groundings, and a drone record
//!    every 20 events as heartbeats write them), interleaved across drones as they arrive from a
//!    busy swarm. What is timed is what the dashboard does per message: decode the MessagePack
//!    bytes and apply the input. Producing and encoding the messages is done beforehand, in
//!    batches, outside the timed part. Memory is the process's resident set before the picture
//!    exists and after everything is folded (`/proc/self/statm`), and its peak.
//! 2. **Replay through NATS**: the same kind of events (100 drones × `FOLD_BENCH_NATS_EVENTS`
//!    per drone, 1,000 by default) stored in a real nats-server's event stream, then a dashboard
//!    started in-process replays them: ordered consumer, decode and fold, timed from its start
//!    until it has folded them all.
//! 3. **Atom names**: resident memory growth per distinct package name parsed. The parser
//!    keeps nothing of what it parses since issue 15 (`portage-atom`, before, interned every
//!    name for the life of the process: 31 bytes each), so this should be about 0. Builds in
//!    (1) and (2) cycle through 19,000 names, the size of the Gentoo tree.

use std::time::{Duration, Instant};

use schemas::fixtures;
use schemas::{
    Arch, Atom, BuildOutcome, DroneName, DroneRecord, DroneState, Event, EventKind, ExitInfo,
    RunningBuild,
};
use swarm_dashboard::fold::{Input, Swarm};

const DRONES: usize = 100;
const EVENTS_PER_DRONE: usize = 10_000;
/// Distinct package names the builds cycle through: about the number of packages in the Gentoo
/// tree, the most a real swarm can ever see.
const PACKAGE_NAMES: u64 = 19_000;
/// Distinct new names parsed to measure the interner's growth.
const INTERN_PROBE: u64 = 100_000;
/// Messages produced and encoded per batch, outside the timed part.
const BATCH: usize = 20_000;

/// Resident and peak resident memory of this process, in bytes.
fn memory() -> (u64, u64) {
    let page = 4096;
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * page;
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        * 1024;
    (rss, peak)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One drone's stream of reports, generated on demand.
struct DroneGen {
    index: u64,
    name: DroneName,
    boot_ms: u64,
    seq: u64,
    events: usize,
    build: u64,
    building: Vec<RunningBuild>,
    step: u8,
}

enum Message {
    Event(Vec<u8>),
    Record(Vec<u8>),
}

impl DroneGen {
    fn new(i: usize) -> DroneGen {
        DroneGen {
            index: i as u64,
            name: DroneName::parse(&format!("drone-{i:03}")).expect("valid"),
            boot_ms: 1_700_000_000_000 + i as u64,
            seq: 0,
            events: 0,
            build: 0,
            building: Vec::new(),
            step: 0,
        }
    }

    fn atom(&self) -> Atom {
        let n = (self.build * DRONES as u64 + self.index) % PACKAGE_NAMES;
        Atom::parse(&format!("dev-bench/pkg{n}")).expect("valid")
    }

    fn event(&mut self, kind: EventKind) -> Message {
        self.seq += 1;
        self.events += 1;
        let event = Event {
            at_ms: self.boot_ms + self.seq * 10,
            ..fixtures::event(self.name.as_str(), self.boot_ms, self.seq, kind)
        };
        Message::Event(schemas::encode(&event).expect("encodes"))
    }

    /// The next report: an event, or a drone record every 20 events (a heartbeat).
    fn next(&mut self) -> Message {
        if self.seq > 0 && self.seq.is_multiple_of(21) {
            self.seq += 1;
            let state = if self.building.is_empty() {
                DroneState::Idle
            } else {
                DroneState::Building
            };
            let record = DroneRecord {
                slots: 4,
                building: self.building.clone(),
                heartbeat_ms: self.boot_ms + self.seq * 10,
                heartbeat_interval_ms: 2_000,
                supervise_deadline_ms: None,
                boot_ms: self.boot_ms,
                seq: self.seq,
                ..fixtures::drone_record(self.name.as_str(), 16, state)
            };
            return Message::Record(schemas::encode(&record).expect("encodes"));
        }
        if self.events == 0 {
            return self.event(EventKind::Online {
                cores: 16,
                slots: 4,
                arch: Arch::default(),
                version: "bench".into(),
            });
        }
        let atom = self.atom();
        let step = self.step;
        self.step = (self.step + 1) % 3;
        match step {
            0 => {
                self.building.push(RunningBuild {
                    atom: atom.clone(),
                    attempt: 1,
                    started_ms: self.boot_ms + self.seq * 10,
                });
                self.event(EventKind::Claimed {
                    atom,
                    attempt: 1,
                    stream_seq: self.build,
                    delivery: 1,
                    lease_rev: self.build,
                })
            }
            1 => self.event(EventKind::Started {
                argv: vec!["emerge".into(), "--oneshot".into(), atom.to_string()],
                atom,
                attempt: 1,
                jobs: 4,
                delivery: 1,
                lease_rev: 1,
            }),
            _ => {
                self.building.retain(|b| b.atom != atom);
                self.build += 1;
                let failed = self.build.is_multiple_of(10);
                let outcome = if failed {
                    BuildOutcome::Failed {
                        exit: ExitInfo::code(1),
                        log_tail: "checking for gcc... yes\nerror: build failed\n".repeat(50),
                        class: schemas::FailureClass::Package,
                        signature: None,
                    }
                } else {
                    BuildOutcome::Succeeded
                };
                self.event(EventKind::Finished {
                    atom,
                    attempt: 1,
                    lease_rev: self.build,
                    outcome,
                    duration_ms: 30_000,
                    jobs: 4,
                    artifacts: Vec::new(),
                })
            }
        }
    }
}

/// Produces the next batch of messages, round-robin across drones, with their wire bytes.
fn batch(drones: &mut [DroneGen], remaining_events: &mut usize) -> Vec<(usize, Message)> {
    let mut out = Vec::with_capacity(BATCH);
    let mut i = 0;
    while out.len() < BATCH && *remaining_events > 0 {
        let d = i % drones.len();
        if drones[d].events < EVENTS_PER_DRONE {
            let message = drones[d].next();
            if matches!(message, Message::Event(_)) {
                *remaining_events -= 1;
            }
            out.push((d, message));
        }
        i += 1;
    }
    out
}

struct InProcess {
    events: u64,
    records: u64,
    timed: Duration,
    rss_before: u64,
    rss_first_batch: u64,
    rss_after: u64,
    peak: u64,
}

impl InProcess {
    /// The rows of the report's table for the in-process fold.
    fn print_rows(&self) {
        let events = self.events;
        let records = self.records;
        let secs = self.timed.as_secs_f64();
        println!("| events folded in-process | {events} (plus {records} drone records) |");
        println!("| time decoding and folding | {secs:.3} s |");
        println!(
            "| events folded per second (decode + fold) | {:.0} |",
            events as f64 / secs
        );
        println!(
            "| inputs folded per second, records included | {:.0} |",
            (events + records) as f64 / secs
        );
        println!(
            "| resident memory before the picture | {:.1} MiB |",
            mib(self.rss_before)
        );
        println!(
            "| resident memory after the first batch of {BATCH} messages | {:.1} MiB |",
            mib(self.rss_first_batch)
        );
        println!(
            "| resident memory after all {events} events | {:.1} MiB |",
            mib(self.rss_after)
        );
        println!(
            "| growth over the last {} events (the picture is bounded per drone) | {:.1} MiB |",
            events - BATCH as u64 * events / (events + records),
            mib(self.rss_after.saturating_sub(self.rss_first_batch))
        );
        println!(
            "| peak resident memory (includes the message batches) | {:.1} MiB |",
            mib(self.peak)
        );
    }
}

fn in_process() -> InProcess {
    let (rss_before, _) = memory();
    let mut swarm = Swarm::new(20);
    let mut drones: Vec<DroneGen> = (0..DRONES).map(DroneGen::new).collect();
    let names: Vec<String> = drones.iter().map(|d| d.name.to_string()).collect();
    let mut remaining = DRONES * EVENTS_PER_DRONE;
    let mut timed = Duration::ZERO;
    let mut events = 0u64;
    let mut records = 0u64;
    let mut stream_seq = 0u64;
    let mut rss_first_batch = 0;
    while remaining > 0 {
        let messages = batch(&mut drones, &mut remaining);
        let start = Instant::now();
        for (d, message) in &messages {
            stream_seq += 1;
            match message {
                Message::Event(bytes) => {
                    let event = schemas::decode::<Event>(bytes).expect("decodes");
                    swarm.apply(Input::Event {
                        subject_drone: names[*d].clone(),
                        stream_seq,
                        stored_ms: stream_seq,
                        event,
                    });
                    events += 1;
                }
                Message::Record(bytes) => {
                    let record = schemas::decode::<DroneRecord>(bytes).expect("decodes");
                    swarm.apply(Input::DroneRecord {
                        key: names[*d].clone(),
                        written_ms: stream_seq,
                        record,
                    });
                    records += 1;
                }
            }
        }
        timed += start.elapsed();
        if rss_first_batch == 0 {
            rss_first_batch = memory().0;
        }
    }
    drop(drones);
    let (rss_after, peak) = memory();
    assert_eq!(swarm.events.folded, events, "every event folded");
    assert_eq!(swarm.drones.len(), DRONES);
    std::hint::black_box(&swarm);
    InProcess {
        events,
        records,
        timed,
        rss_before,
        rss_first_batch,
        rss_after,
        peak,
    }
}

async fn through_nats(per_drone: usize) -> (u64, Duration, Duration) {
    let nats = testkit::NatsServer::start().expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    coordinator::topology::ensure(&js, &coordinator::config::Settings::default())
        .await
        .expect("topology");
    let mut drones: Vec<DroneGen> = (0..DRONES).map(DroneGen::new).collect();
    let mut published = 0u64;
    let publish_start = Instant::now();
    let mut pending = Vec::new();
    for _ in 0..per_drone {
        for drone in drones.iter_mut() {
            // Only events go to the stream; records go to the bucket and are not timed here.
            let bytes = loop {
                if let Message::Event(bytes) = drone.next() {
                    break bytes;
                }
            };
            let subject = schemas::names::event_subject(&drone.name);
            pending.push(js.publish(subject, bytes.into()).await.expect("publish"));
            published += 1;
            if pending.len() >= 1_000 {
                for ack in pending.drain(..) {
                    ack.await.expect("stored");
                }
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await.expect("stored");
    }
    let publish_time = publish_start.elapsed();

    let mut config = swarm_dashboard::Config::default();
    config.nats.url = nats.client_url();
    config.dashboard.stream_poll_ms = 200;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(swarm_dashboard::serve(config, listener, shutdown.clone()));
    loop {
        let response = testkit::http::get(addr, "/metrics", Duration::from_secs(10)).await;
        if let Ok(response) = response {
            let folded = swarm_dashboard::metrics::parse(&response.body)
                .into_iter()
                .find(|(name, _)| name == "swarm_dashboard_events_folded_total")
                .map(|(_, v)| v as u64)
                .unwrap_or(0);
            if folded >= published {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replay = start.elapsed();
    shutdown.cancel();
    let _ = task.await;
    (published, publish_time, replay)
}

/// Resident memory growth per distinct package name the parser has not seen before.
fn interning() -> f64 {
    let (before, _) = memory();
    for n in 0..INTERN_PROBE {
        std::hint::black_box(Atom::parse(&format!("dev-probe/name{n}")).expect("valid"));
    }
    let (after, _) = memory();
    after.saturating_sub(before) as f64 / INTERN_PROBE as f64
}

fn main() {
    let fold = in_process();
    let per_name = interning();
    let per_drone: usize = std::env::var("FOLD_BENCH_NATS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (published, publish_time, replay) = runtime.block_on(through_nats(per_drone));

    println!("## Dashboard fold benchmark\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| drones | {DRONES} |");
    fold.print_rows();
    println!("| events replayed through NATS | {published} ({DRONES} drones × {per_drone}) |");
    println!(
        "| time to store them (publish, acks awaited in windows of 1,000) | {:.2} s |",
        publish_time.as_secs_f64()
    );
    println!(
        "| dashboard start to all folded (ordered consumer + decode + fold) | {:.2} s |",
        replay.as_secs_f64()
    );
    println!(
        "| events per second replayed through NATS | {:.0} |",
        published as f64 / replay.as_secs_f64()
    );
    println!(
        "| memory per distinct package name parsed (the parser keeps nothing) | {per_name:.0} bytes |"
    );
}
