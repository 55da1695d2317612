//! The harness of swarmctl's integration tests: a real nats-server with the drones and packages
//! buckets, records written the way the coordinator and the drones write them, a stand-in for
//! whoever answers a request, and the seed's swarm in the middle of a run.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use schemas::fixtures::{self, drone_name as name};
use schemas::names::{DRONES_BUCKET, PACKAGES_BUCKET};
use schemas::{
    AttemptRecord, BuildOutcome, DroneRecord, DroneState, ExitInfo, PackageRecord, PackageState,
    Wire,
};
use serde_json::Value;
use swarmctl::{CliError, Command, Config, Outcome};
use tokio::task::JoinHandle;

pub fn drone(
    n: &str,
    cores: u32,
    state: DroneState,
    building: &[&str],
    interval_ms: u64,
) -> DroneRecord {
    DroneRecord {
        slots: 2,
        building: fixtures::running(building, 1),
        // The drone's own clock is deliberately absurd: readers must age heartbeats by the
        // server's timestamp.
        heartbeat_ms: 1,
        heartbeat_interval_ms: interval_ms,
        supervise_deadline_ms: None,
        ..fixtures::drone_record(n, cores, state)
    }
}

pub fn package(a: &str, state: PackageState, history: Vec<AttemptRecord>) -> PackageRecord {
    PackageRecord {
        history,
        ..fixtures::package_record(a, state)
    }
}

pub fn failed_attempt(attempt: u32, by: &str) -> AttemptRecord {
    AttemptRecord {
        attempt,
        drone: name(by),
        outcome: BuildOutcome::Failed {
            exit: ExitInfo::code(2),
            log_tail: "configure: error: no acceptable C compiler".into(),
            class: schemas::FailureClass::Package,
            signature: None,
        },
        duration_ms: 10,
        ended_ms: 10,
    }
}

pub struct Swarm {
    _server: testkit::NatsServer,
    pub client: async_nats::Client,
    pub url: String,
    pub drones: kv::Store,
    pub packages: kv::Store,
}

impl Swarm {
    pub async fn start() -> Swarm {
        let server = testkit::NatsServer::start().expect("server starts");
        let client = server.connect().await.expect("connects");
        let js = jetstream::new(client.clone());
        let mut stores = Vec::new();
        for bucket in [DRONES_BUCKET, PACKAGES_BUCKET] {
            stores.push(
                js.create_key_value(kv::Config {
                    bucket: bucket.to_owned(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .expect("bucket created"),
            );
        }
        let packages = stores.pop().expect("two stores");
        let drones = stores.pop().expect("two stores");
        Swarm {
            url: server.client_url(),
            _server: server,
            client,
            drones,
            packages,
        }
    }

    pub async fn put_drone(&self, record: &DroneRecord) {
        let bytes = schemas::encode(record).expect("encodes");
        self.drones
            .put(record.name.as_str(), bytes.into())
            .await
            .expect("put drone");
    }

    pub async fn put_package(&self, record: &PackageRecord) {
        let bytes = schemas::encode(record).expect("encodes");
        self.packages
            .put(record.atom.key().as_str(), bytes.into())
            .await
            .expect("put package");
    }

    /// Runs a command on the test's connection: outcome, stdout, progress output.
    pub async fn exec(&self, command: Command) -> (Result<Outcome, CliError>, String, String) {
        let mut out = Vec::new();
        let mut progress = Vec::new();
        let outcome = swarmctl::execute(&self.client, command, &mut out, &mut progress).await;
        (
            outcome,
            String::from_utf8(out).expect("utf-8 output"),
            String::from_utf8(progress).expect("utf-8 progress"),
        )
    }

    pub async fn json(&self, command: Command) -> Value {
        let (outcome, out, _) = self.exec(command).await;
        assert_eq!(outcome.expect("succeeds"), Outcome::Success);
        serde_json::from_str(&out).expect("one JSON document")
    }

    /// Stands in for the coordinator or a drone: answers the next requests on `subject` with
    /// `replies`, one each in order, and returns the requests it answered.
    pub async fn stand_in<Q: Wire + Send + 'static, R: Wire + Send + 'static>(
        &self,
        subject: String,
        replies: Vec<R>,
    ) -> JoinHandle<Vec<Q>> {
        let mut requests = self.client.subscribe(subject).await.expect("subscribes");
        self.client.flush().await.expect("flush");
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for reply in replies {
                let request = requests.next().await.expect("a request");
                seen.push(schemas::decode(&request.payload).expect("decodes"));
                client
                    .publish(
                        request.reply.expect("a reply subject"),
                        schemas::encode(&reply).expect("encodes").into(),
                    )
                    .await
                    .expect("replies");
            }
            seen
        })
    }

    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.nats.url = self.url.clone();
        config
    }
}

/// The seed's swarm in the middle of a run, plus a drone gone silent and a bad record.
pub async fn populate(swarm: &Swarm) {
    swarm
        .put_drone(&drone(
            "drone-Izar",
            16,
            DroneState::Building,
            &["sys-devel/gcc"],
            60_000,
        ))
        .await;
    swarm
        .put_drone(&drone("drone-Tarn", 10, DroneState::Idle, &[], 60_000))
        .await;
    swarm
        .put_drone(&drone(
            "drone-Tau-Beta",
            8,
            DroneState::Grounded {
                reason: "3 consecutive failures".into(),
            },
            &[],
            60_000,
        ))
        .await;
    // Heartbeats every 10 ms: stale (lost) once 30 ms pass without one.
    swarm
        .put_drone(&drone(
            "drone-Meridian",
            24,
            DroneState::Building,
            &["dev-lang/rust"],
            10,
        ))
        .await;
    swarm
        .drones
        .put("drone-garbage", bytes::Bytes::from_static(b"\xc1\xc1"))
        .await
        .expect("put");

    swarm
        .put_package(&package(
            "sys-libs/zlib",
            PackageState::Queued { attempt: 1 },
            vec![],
        ))
        .await;
    swarm
        .put_package(&package(
            "sys-devel/gcc",
            PackageState::Building {
                attempt: 2,
                drone: name("drone-Izar"),
                since_ms: 1,
            },
            vec![failed_attempt(1, "drone-Tau-Beta")],
        ))
        .await;
    swarm
        .put_package(&package(
            "app-arch/xz-utils",
            PackageState::Succeeded {
                attempt: 1,
                drone: name("drone-Tarn"),
            },
            vec![AttemptRecord {
                attempt: 1,
                drone: name("drone-Tarn"),
                outcome: BuildOutcome::Succeeded,
                duration_ms: 5,
                ended_ms: 5,
            }],
        ))
        .await;
    swarm
        .put_package(&package(
            "dev-libs/broken",
            PackageState::Failed {
                attempt: 3,
                reason: "exit status 2 on attempt 3".into(),
            },
            vec![
                failed_attempt(1, "drone-Tau-Beta"),
                failed_attempt(2, "drone-Tau-Beta"),
                failed_attempt(3, "drone-Izar"),
            ],
        ))
        .await;
    swarm
        .put_package(&package(
            "dev-libs/retrying",
            PackageState::RetryWait {
                attempt: 2,
                not_before_ms: u64::MAX,
            },
            vec![failed_attempt(1, "drone-Tau-Beta")],
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}
