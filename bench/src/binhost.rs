//! Binhost: what delivering the world's binary packages costs, against copying the same files
//! with `cp` on the same disk (what an rsync-and-cron binhost does at best).
//!
//! The world-152 packages as gpkgs of a size per class (a model of Gentoo amd64 binary package
//! sizes, not a measurement: small 250 KiB, medium 2.5 MiB, heavy 20 MiB, giant 90 MiB; about
//! 1.4 GB in all), with incompressible contents, written once into a pool. Then, each timed:
//!
//! - `cp`: `cp -r` of the pool into a fresh folder on the same disk (median of 3);
//! - upload: the drone's own code (`drone::artifacts::describe`, then `upload`) for every file,
//!   by one drone and by four at once, into an empty store of the benchmark's server;
//! - publication: the coordinator's, as `swarmctl binhost publish` asks it, of 152 succeeded
//!   package records naming those artifacts;
//! - serving: `swarm-binhost` serving the published index and every file to one HTTP client.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::object_store;
use schemas::{
    Arch, Artifact, Atom, BinhostCommand, BinhostReply, BinhostRequest, BinhostResult, DroneName,
    PackageRecord, PackageState, SCHEMA_VERSION, SizeClass, names,
};
use serde::Serialize;

use crate::harness::{Options, Swarm, sibling};

/// The world model: atom, modelled seconds, size class.
const WORLD: &str = include_str!("../../tests/fixtures/world-152.tsv");

/// How big each class's binary package is, in bytes, at full size.
fn class_bytes(class: SizeClass) -> u64 {
    const KIB: u64 = 1024;
    match class {
        SizeClass::Small => 250 * KIB,
        SizeClass::Medium => 2_560 * KIB,
        SizeClass::Heavy => 20 * 1024 * KIB,
        SizeClass::Giant => 90 * 1024 * KIB,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub what: String,
    pub seconds: f64,
    pub mb_per_sec: f64,
    pub packages_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Result {
    pub packages: usize,
    pub bytes: u64,
    pub rows: Vec<Row>,
    /// (upload by four drones + publication) / cp.
    pub delivery_vs_cp: f64,
}

fn row(what: &str, elapsed: Duration, bytes: u64, packages: usize) -> Row {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    Row {
        what: what.to_owned(),
        seconds,
        mb_per_sec: bytes as f64 / 1e6 / seconds,
        packages_per_sec: packages as f64 / seconds,
    }
}

/// One package of the pool: its atom and file.
struct Pooled {
    atom: Atom,
    path: PathBuf,
}

/// Bytes that gzip cannot shrink (xorshift64*), so a package's size on the wire is its size.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the world's packages into `pool` in Portage's multi-instance layout; `scale` divides
/// every size (the quick run's packages are tiny).
fn write_pool(pool: &Path, scale: u64) -> anyhow::Result<Vec<Pooled>> {
    let mut pooled = Vec::new();
    for (i, line) in WORLD
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .enumerate()
    {
        let mut fields = line.split('\t');
        let atom = Atom::parse(fields.next().unwrap_or_default())?;
        let class = match fields.nth(1).unwrap_or("small") {
            "medium" => SizeClass::Medium,
            "heavy" => SizeClass::Heavy,
            "giant" => SizeClass::Giant,
            _ => SizeClass::Small,
        };
        let package = atom.package_name();
        let (category, name) = package.split_once('/').context("category/name")?;
        let pf = format!("{name}-1.0");
        let path = pool
            .join(category)
            .join(name)
            .join(format!("{pf}-1.gpkg.tar"));
        std::fs::create_dir_all(path.parent().context("a parent")?)?;
        let metadata: binpkg::Metadata = [
            ("CATEGORY", category.to_owned()),
            ("PF", pf.clone()),
            ("SLOT", "0".to_owned()),
            ("EAPI", "8".to_owned()),
            ("BUILD_ID", "1".to_owned()),
            ("repository", "gentoo".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let contents = noise((class_bytes(class) / scale) as usize, i as u64 + 1);
        let file = format!("usr/lib64/{name}/payload");
        let image = [binpkg::gpkg::ImageFile {
            path: &file,
            contents: &contents,
            mode: 0o644,
        }];
        binpkg::gpkg::write(&path, &format!("{pf}-1"), &metadata, &image, 1_700_000_000)?;
        pooled.push(Pooled { atom, path });
    }
    Ok(pooled)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// `cp -r pool <fresh folder>`, median of 3, each copy removed after it.
fn time_cp(pool: &Path, work: &Path) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for i in 0..3 {
        let dest = work.join(format!("cp-{i}"));
        let started = Instant::now();
        let status = Command::new("cp")
            .arg("-r")
            .arg(pool)
            .arg(&dest)
            .stdin(Stdio::null())
            .status()
            .context("running cp")?;
        times.push(started.elapsed());
        if !status.success() {
            bail!("cp -r failed: {status}");
        }
        std::fs::remove_dir_all(&dest)?;
    }
    Ok(median(times))
}

/// Describes and uploads every pooled file with the drone's code, `drones` at once (each takes
/// every `drones`-th package), into `store`.
async fn upload_all(
    store: &object_store::ObjectStore,
    pool: &Path,
    pooled: &[Pooled],
    drones: usize,
) -> anyhow::Result<(Duration, Vec<Artifact>)> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let paths: Arc<Vec<PathBuf>> = Arc::new(pooled.iter().map(|p| p.path.clone()).collect());
    for drone in 0..drones {
        let (store, pool, paths) = (store.clone(), pool.to_owned(), paths.clone());
        tasks.spawn(async move {
            let mut described = Vec::new();
            for (i, path) in paths.iter().enumerate().skip(drone).step_by(drones) {
                let (p, f) = (pool.clone(), path.clone());
                let artifact =
                    tokio::task::spawn_blocking(move || drone::artifacts::describe(&p, &f))
                        .await??;
                drone::artifacts::upload(&store, path, &artifact).await?;
                described.push((i, artifact));
            }
            anyhow::Ok(described)
        });
    }
    let mut artifacts = Vec::new();
    while let Some(done) = tasks.join_next().await {
        artifacts.extend(done??);
    }
    let elapsed = started.elapsed();
    artifacts.sort_by_key(|(i, _)| *i);
    Ok((elapsed, artifacts.into_iter().map(|(_, a)| a).collect()))
}

/// Records every package as succeeded with its artifact, as the coordinator would have.
async fn write_records(
    swarm: &Swarm,
    pooled: &[Pooled],
    artifacts: &[Artifact],
) -> anyhow::Result<()> {
    let bucket = swarm.js.get_key_value(names::PACKAGES_BUCKET).await?;
    let now = runtime::now_ms();
    for (p, artifact) in pooled.iter().zip(artifacts) {
        let record = PackageRecord {
            v: SCHEMA_VERSION,
            atom: p.atom.clone(),
            arch: Arch::default(),
            submission: 1,
            state: PackageState::Succeeded {
                attempt: 1,
                drone: DroneName::parse("bench")?,
            },
            history: Vec::new(),
            estimate_secs: None,
            class: None,
            learned_secs: None,
            artifacts: vec![artifact.clone()],
            submitted_ms: now,
            updated_ms: now,
            fingerprint: None,
            run: None,
            deps: Vec::new(),
            priority: schemas::Priority::Normal,
        };
        bucket
            .put(p.atom.key().as_str(), schemas::encode(&record)?.into())
            .await?;
    }
    Ok(())
}

/// Asks the coordinator to publish, as `swarmctl binhost publish` does.
async fn publish(swarm: &Swarm) -> anyhow::Result<Duration> {
    let request = BinhostRequest {
        v: SCHEMA_VERSION,
        arch: None,
        // No run targets a fingerprint here: the arch's own binhost, `/published/amd64`.
        fingerprint: None,
        command: BinhostCommand::Publish { run: None },
    };
    let started = Instant::now();
    let reply = swarm
        .client
        .send_request(
            names::BINHOST_SUBJECT,
            async_nats::Request::new()
                .payload(schemas::encode(&request)?.into())
                .timeout(Some(Duration::from_secs(120))),
        )
        .await
        .context("asking the coordinator to publish")?;
    let elapsed = started.elapsed();
    let reply: BinhostReply = schemas::decode(&reply.payload)?;
    match reply.result {
        BinhostResult::State { changed: true, .. } => Ok(elapsed),
        other => bail!("publication did not happen: {other:?}"),
    }
}

/// Fetches the published index and every file from a `swarm-binhost` child process.
async fn serve_all(swarm: &Swarm, artifacts: &[Artifact]) -> anyhow::Result<(Duration, u64)> {
    let port = testkit::free_port()?;
    let log = std::fs::File::create(swarm.work_dir().join("binhost.log"))?;
    let mut child = tokio::process::Command::new(sibling("swarm-binhost")?)
        .env_clear()
        .env("SWARM_NATS__URL", swarm.server.client_url())
        .env("SWARM_BINHOST__LISTEN", format!("127.0.0.1:{port}"))
        .env("SWARM_LOG__FILTER", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context("starting swarm-binhost")?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(120);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !testkit::http::get(addr, "/healthz", timeout)
        .await
        .is_ok_and(|r| r.status == 200)
    {
        if Instant::now() > deadline {
            bail!("swarm-binhost did not come up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let index = testkit::http::get(addr, "/published/amd64/Packages", timeout).await?;
    let mut bytes = index.bytes.len() as u64;
    for artifact in artifacts {
        let path = format!("/published/amd64/{}", artifact.path);
        let response = testkit::http::get(addr, &path, timeout).await?;
        if response.status != 200 || response.bytes.len() as u64 != artifact.size {
            bail!(
                "{path}: {} with {} bytes",
                response.status,
                response.bytes.len()
            );
        }
        bytes += artifact.size;
    }
    let elapsed = started.elapsed();
    let _ = child.kill().await;
    Ok((elapsed, bytes))
}

/// Runs the part; `scale` divides every package size (1 for the figures).
pub async fn run(scale: u64) -> anyhow::Result<Result> {
    let mut swarm = Swarm::start(&Options {
        sync_always: false,
        coordinator_env: vec![(
            "SWARM_COORDINATOR__BINHOST_AUTO_PUBLISH".into(),
            "false".into(),
        )],
    })
    .await?;
    let pool = swarm.work_dir().join("pool");
    let writing = pool.clone();
    let pooled = tokio::task::spawn_blocking(move || write_pool(&writing, scale)).await??;
    let bytes: u64 = pooled
        .iter()
        .map(|p| std::fs::metadata(&p.path).map(|m| m.len()).unwrap_or(0))
        .sum();
    let packages = pooled.len();
    let mut rows = Vec::new();

    let (pool_dir, work) = (pool.clone(), swarm.work_dir().to_owned());
    let cp = tokio::task::spawn_blocking(move || time_cp(&pool_dir, &work)).await??;
    rows.push(row(
        "`cp -r` to the same disk (median of 3)",
        cp,
        bytes,
        packages,
    ));

    let mut artifacts = Vec::new();
    let mut four = Duration::ZERO;
    for drones in [1usize, 4] {
        let bucket = format!("bench-artifacts-{drones}");
        let store = swarm
            .js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                ..Default::default()
            })
            .await?;
        let (elapsed, described) = upload_all(&store, &pool, &pooled, drones).await?;
        let what = format!(
            "upload: describe + store, {drones} drone{}",
            if drones > 1 { "s at once" } else { "" }
        );
        rows.push(row(&what, elapsed, bytes, packages));
        swarm.js.delete_object_store(&bucket).await?;
        if drones == 4 {
            four = elapsed;
            artifacts = described;
        }
    }
    // The artifacts themselves go where the drones put them; already there, they are skipped,
    // so this is not timed.
    let store = swarm.js.get_object_store(names::ARTIFACTS_BUCKET).await?;
    upload_all(&store, &pool, &pooled, 4).await?;
    write_records(&swarm, &pooled, &artifacts).await?;
    swarm
        .restart_coordinator()
        .await
        .context("restarting the coordinator to load the records")?;
    let published = publish(&swarm).await?;
    rows.push(row(
        "publication of the revision (index of all)",
        published,
        bytes,
        packages,
    ));
    let (served, served_bytes) = serve_all(&swarm, &artifacts).await?;
    rows.push(row(
        "serving: index and every file over HTTP, 1 client",
        served,
        served_bytes,
        packages,
    ));
    swarm.stop().await;
    let delivery_vs_cp = (four + published).as_secs_f64() / cp.as_secs_f64().max(1e-9);
    Ok(Result {
        packages,
        bytes,
        rows,
        delivery_vs_cp,
    })
}

pub fn markdown(result: &Result) -> String {
    let mut out = format!(
        "## Binhost\n\nThe world's {} packages as gpkgs of a modelled size per class ({:.0} MB in all, incompressible), on the benchmark's server (default fsync), every row timed separately.\n\n| step | seconds | MB/s | packages/s |\n|---|---|---|---|\n",
        result.packages,
        result.bytes as f64 / 1e6
    );
    for row in &result.rows {
        out.push_str(&format!(
            "| {} | {:.2} | {:.0} | {:.0} |\n",
            row.what, row.seconds, row.mb_per_sec, row.packages_per_sec
        ));
    }
    out.push_str(&format!(
        "\nDelivery (upload by four drones, then publication) takes {:.1}× the time of `cp`.\n",
        result.delivery_vs_cp
    ));
    out
}
