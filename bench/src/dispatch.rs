//! Dispatch: how fast the swarm hands out and retires no-op packages, beside the broker's own
//! limit measured on the same server: the same number of workers pulling with the same batch
//! size from a work-queue stream and doing nothing but `double_ack`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer::pull::BatchConfig};
use async_nats::{StatusCode, Subject};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::harness::{DroneSpec, Swarm, quantile};

/// `n` valid atoms of no-op packages.
pub fn noop_items(prefix: &str, n: usize) -> Vec<schemas::SubmitItem> {
    (0..n)
        .map(|i| schemas::SubmitItem {
            class: None,
            atom: format!("bench-{prefix}/p{i:06}"),
            estimate_secs: Some(0.0),
            deps: Vec::new(),
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct SwarmRun {
    pub packages: usize,
    pub drones: usize,
    pub slots_per_drone: u32,
    /// Time for the coordinator to accept the whole queue (state written, jobs published).
    pub submit_secs: f64,
    pub submit_per_sec: f64,
    /// From starting the drones on the full queue to the coordinator having applied every
    /// result.
    pub drain_secs: f64,
    pub packages_per_sec: f64,
    /// Slot freed (a build ended) to the next build started in that drone, in milliseconds.
    pub slot_gap_p50_ms: Option<f64>,
    pub slot_gap_p99_ms: Option<f64>,
    pub slot_gap_samples: usize,
    /// Messages into / out of the server per package during the drain (`/varz`).
    pub server_in_msgs_per_package: f64,
    pub server_out_msgs_per_package: f64,
    /// Coordinator resident memory before the submission and with the whole queue queued.
    pub coordinator_rss_idle_kib: Option<u64>,
    pub coordinator_rss_queued_kib: Option<u64>,
    pub succeeded: usize,
    /// CPU seconds per 1,000 packages during the drain: server, coordinator, drones.
    pub cpu_per_1000: [f64; 3],
}

impl SwarmRun {
    /// Coordinator memory per queued package, in bytes.
    pub fn coordinator_bytes_per_package(&self) -> Option<f64> {
        match (
            self.coordinator_rss_idle_kib,
            self.coordinator_rss_queued_kib,
        ) {
            (Some(idle), Some(queued)) if self.packages > 0 => {
                Some((queued as f64 - idle as f64) * 1024.0 / self.packages as f64)
            }
            _ => None,
        }
    }
}

/// Queues `packages` no-op packages with no drone online, then starts `drones` drones of
/// `slots` slots each and times the drain until the coordinator has applied every result.
pub async fn run_swarm(
    swarm: &Swarm,
    label: &str,
    packages: usize,
    drones: usize,
    slots: u32,
) -> anyhow::Result<SwarmRun> {
    let idle_rss = swarm.coordinator_rss_kib();
    let submit = swarm.submit(noop_items(label, packages)).await?;
    // The coordinator's memory settles once the submission is answered; give the allocator a
    // moment before reading it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued_rss = swarm.coordinator_rss_kib();
    let specs: Vec<DroneSpec> = (0..drones)
        .map(|i| DroneSpec::noop(format!("bench-{label}-{i}"), slots))
        .collect();
    let (in_before, out_before) = swarm.server_messages().await?;
    let cpu_before = crate::harness::cpu_split(swarm);
    let started = Instant::now();
    let fleet = swarm.spawn_drones(&specs);
    let timeout = Duration::from_secs(60 + packages as u64 / 50);
    let drained = swarm.wait_drained(timeout).await;
    let drain = started.elapsed();
    let cpu_after = crate::harness::cpu_split(swarm);
    let (in_after, out_after) = swarm.server_messages().await?;
    let mut gaps = fleet.take_slot_gaps();
    fleet.stop().await?;
    drained?;
    let states = swarm.package_states().await?;
    let succeeded = states.get("succeeded").copied().unwrap_or(0);
    if succeeded != packages {
        bail!("{label}: {succeeded} of {packages} packages succeeded; states: {states:?}");
    }
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1_000.0);
    Ok(SwarmRun {
        packages,
        drones,
        slots_per_drone: slots,
        submit_secs: submit.as_secs_f64(),
        submit_per_sec: packages as f64 / submit.as_secs_f64(),
        drain_secs: drain.as_secs_f64(),
        packages_per_sec: packages as f64 / drain.as_secs_f64(),
        slot_gap_p50_ms: ms(quantile(&mut gaps, 0.50)),
        slot_gap_p99_ms: ms(quantile(&mut gaps, 0.99)),
        slot_gap_samples: gaps.len(),
        server_in_msgs_per_package: (in_after - in_before) as f64 / packages as f64,
        server_out_msgs_per_package: (out_after - out_before) as f64 / packages as f64,
        coordinator_rss_idle_kib: idle_rss,
        coordinator_rss_queued_kib: queued_rss,
        succeeded,
        cpu_per_1000: std::array::from_fn(|i| {
            (cpu_after[i] - cpu_before[i]) * 1_000.0 / packages as f64
        }),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct RawRun {
    pub messages: usize,
    pub workers: usize,
    pub batch: usize,
    pub drain_secs: f64,
    pub messages_per_sec: f64,
    pub server_in_msgs_per_message: f64,
    pub server_out_msgs_per_message: f64,
}

const RAW_STREAM: &str = "BENCH_RAW";

/// The broker's own limit: `messages` messages (one subject each, like the swarm's jobs) in a
/// file-backed work-queue stream, drained by `workers` workers, each on its own connection,
/// each asking for exactly its free slots (at most `batch`) as a drone does and answering every
/// message with `double_ack` and nothing else.
pub async fn run_raw(
    swarm: &Swarm,
    messages: usize,
    workers: usize,
    batch: usize,
) -> anyhow::Result<RawRun> {
    let js = &swarm.js;
    let _ = js.delete_stream(RAW_STREAM).await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: RAW_STREAM.to_owned(),
            subjects: vec!["bench.raw.>".to_owned()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            storage: jetstream::stream::StorageType::File,
            max_messages_per_subject: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            discard_new_per_subject: true,
            ..Default::default()
        })
        .await
        .context("creating the raw work stream")?;
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("raw".to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .context("creating the raw consumer")?;
    // Fill the stream (not timed), acknowledged in windows.
    let payload = bytes::Bytes::from(vec![0u8; 64]);
    for start in (0..messages).step_by(1_000) {
        let mut acks = Vec::with_capacity(1_000);
        for i in start..(start + 1_000).min(messages) {
            acks.push(
                js.publish(format!("bench.raw.m{i}"), payload.clone())
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
    }
    let (in_before, out_before) = swarm.server_messages().await?;
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let url = swarm.server.client_url();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            raw_worker(url, batch, messages, done).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let drain = started.elapsed();
    let (in_after, out_after) = swarm.server_messages().await?;
    let left = js
        .get_stream(RAW_STREAM)
        .await?
        .info()
        .await?
        .state
        .messages;
    if left != 0 {
        bail!("raw drain left {left} messages in the stream");
    }
    js.delete_stream(RAW_STREAM).await?;
    Ok(RawRun {
        messages,
        workers,
        batch,
        drain_secs: drain.as_secs_f64(),
        messages_per_sec: messages as f64 / drain.as_secs_f64(),
        server_in_msgs_per_message: (in_after - in_before) as f64 / messages as f64,
        server_out_msgs_per_message: (out_after - out_before) as f64 / messages as f64,
    })
}

async fn raw_worker(
    url: String,
    batch: usize,
    total: usize,
    done: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client.clone());
    let consumer = js
        .get_stream(RAW_STREAM)
        .await?
        .get_consumer::<jetstream::consumer::pull::Config>("raw")
        .await
        .map_err(|e| anyhow::anyhow!("opening the raw consumer: {e}"))?;
    let inbox = Subject::from(client.new_inbox());
    let mut incoming = client.subscribe(inbox.clone()).await?;
    let (acked_tx, mut acked_rx) = mpsc::unbounded_channel::<()>();
    let mut in_flight = 0usize;
    let mut requested = 0usize;
    loop {
        if done.load(Ordering::SeqCst) >= total {
            return Ok(());
        }
        let free = batch.saturating_sub(in_flight + requested);
        if free > 0 {
            consumer
                .request_batch(
                    BatchConfig {
                        batch: free,
                        expires: Some(Duration::from_millis(500)),
                        idle_heartbeat: Duration::from_millis(250),
                        ..Default::default()
                    },
                    inbox.clone(),
                )
                .await?;
            requested += free;
        }
        tokio::select! {
            Some(message) = incoming.next() => match message.status {
                None => {
                    requested = requested.saturating_sub(1);
                    in_flight += 1;
                    let message = jetstream::Message { message, context: js.clone() };
                    let acked = acked_tx.clone();
                    tokio::spawn(async move {
                        let _ = runtime::ack::double_ack(&message, Duration::from_secs(5)).await;
                        let _ = acked.send(());
                    });
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(_) => {
                    let unfilled = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Pending-Messages"))
                        .and_then(|v| v.as_str().parse::<usize>().ok());
                    requested = unfilled.map_or(0, |n| requested.saturating_sub(n));
                }
            },
            Some(()) = acked_rx.recv() => {
                in_flight -= 1;
                done.fetch_add(1, Ordering::SeqCst);
            }
            // Another worker may take the last messages: look at the shared count again.
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}
