//! Shared by the dashboard's integration tests: a real nats-server with the swarm's topology (as
//! the coordinator creates it), the dashboard running in-process on a free port, and a reporter
//! that publishes drone records and events exactly as a drone does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use schemas::fixtures;
use schemas::{
    Arch, DroneName, DroneRecord, DroneState, Event, EventKind, PackageRecord, PackageState, names,
};
use swarm_dashboard::view::Snapshot;
use testkit::NatsServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The swarm's topology on a fresh server, created by the coordinator's own code.
pub async fn topology(nats: &NatsServer) -> coordinator::topology::Topology {
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client);
    coordinator::topology::ensure(&js, &coordinator::config::Settings::default())
        .await
        .expect("topology")
}

/// The dashboard, in-process, through the same `serve` the binary uses.
pub struct Dashboard {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), swarm_dashboard::RunError>>,
}

impl Dashboard {
    /// Starts a dashboard for `nats` on a free port (or on `addr` when given).
    pub async fn start(nats: &NatsServer, addr: Option<SocketAddr>) -> Dashboard {
        let mut config = swarm_dashboard::Config::default();
        config.nats.url = nats.client_url();
        config.dashboard.tick_ms = 50;
        config.dashboard.stream_poll_ms = 200;
        let listener = TcpListener::bind(addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(swarm_dashboard::serve(config, listener, shutdown.clone()));
        Dashboard {
            addr,
            shutdown,
            task,
        }
    }

    /// Cancels and waits for a clean exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("dashboard stops within 10 s")
            .expect("dashboard task");
        result.expect("dashboard ran without error");
    }

    pub async fn get(&self, path: &str) -> testkit::http::Response {
        testkit::http::get(self.addr, path, HTTP_TIMEOUT)
            .await
            .expect("HTTP answer")
    }

    pub async fn state(&self) -> Snapshot {
        let response = self.get("/api/state").await;
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str(&response.body).expect("snapshot JSON")
    }

    /// Polls `/api/state` until `done` holds, up to `timeout`; panics with the last snapshot.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state().await;
            if done(&state) {
                return state;
            }
            if Instant::now() > deadline {
                panic!("{what}: not within {timeout:?}; last state: {state:#?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub use schemas::fixtures::{atom, drone_name as name};

/// Publishes one drone's records and events over its own connection, numbering them from one
/// counter as a drone does.
pub struct Reporter {
    pub name: DroneName,
    pub boot_ms: u64,
    seq: u64,
    js: jetstream::Context,
    drones: jetstream::kv::Store,
    pub cores: u32,
    pub slots: u32,
}

impl Reporter {
    pub async fn connect(nats: &NatsServer, drone: &str, cores: u32, slots: u32) -> Reporter {
        let client = nats.connect().await.expect("connect");
        let js = jetstream::new(client);
        let drones = js
            .get_key_value(names::DRONES_BUCKET)
            .await
            .expect("drones bucket");
        Reporter {
            name: name(drone),
            boot_ms: runtime::now_ms(),
            seq: 0,
            js,
            drones,
            cores,
            slots,
        }
    }

    /// Publishes an event and waits for the stream to store it.
    pub async fn event(&mut self, kind: EventKind) {
        self.seq += 1;
        let event = Event {
            at_ms: runtime::now_ms(),
            ..fixtures::event(self.name.as_str(), self.boot_ms, self.seq, kind)
        };
        let bytes = schemas::encode(&event).expect("encode");
        self.js
            .publish(names::event_subject(&self.name), bytes.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    pub async fn online(&mut self) {
        self.event(EventKind::Online {
            cores: self.cores,
            slots: self.slots,
            arch: Arch::default(),
            version: "test".into(),
        })
        .await;
    }

    /// Writes the drone's record with `state` and `building`.
    pub async fn record(&mut self, state: DroneState, building: &[&str]) {
        self.seq += 1;
        let now = runtime::now_ms();
        let record = DroneRecord {
            slots: self.slots,
            building: fixtures::running(building, now),
            heartbeat_ms: now,
            // Long enough that no test drone turns lost while a test runs.
            heartbeat_interval_ms: 60_000,
            supervise_deadline_ms: None,
            boot_ms: self.boot_ms,
            seq: self.seq,
            ..fixtures::drone_record(self.name.as_str(), self.cores, state)
        };
        let bytes = schemas::encode(&record).expect("encode");
        self.drones
            .put(self.name.as_str(), bytes.into())
            .await
            .expect("record written");
    }
}

/// Writes a package record as the coordinator does.
pub async fn put_package(
    store: &jetstream::kv::Store,
    atom_text: &str,
    state: PackageState,
    submitted_ms: u64,
) {
    let record = PackageRecord {
        submitted_ms,
        updated_ms: runtime::now_ms(),
        ..fixtures::package_record(atom_text, state)
    };
    put_record(store, &record).await;
}

/// Writes `record` under its package key, as the coordinator does.
pub async fn put_record(store: &jetstream::kv::Store, record: &PackageRecord) {
    store
        .put(
            record.atom.key().as_str(),
            schemas::encode(record).expect("encode").into(),
        )
        .await
        .expect("package written");
}
