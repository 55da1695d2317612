//! End-to-end: the seed's swarm and the queue properties, driving the built binaries.

use std::collections::HashMap;
use std::time::Duration;

use schemas::{PackageState, SubmitResult};
use swarm_tests::*;

fn seed_drones() -> Vec<DroneSpec> {
    vec![
        DroneSpec::new("drone-Izar", 16, 4),
        DroneSpec::new("drone-Tarn", 10, 2),
        DroneSpec::new("drone-Meridian", 24, 6),
        DroneSpec::new("drone-Tau-Beta", 8, 2),
    ]
}

/// The 152-package world on the seed's four drones: every package built exactly once, no two
/// builds of a package overlap, and slots do not sit idle while packages wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_swarm_builds_world_152_exactly_once_without_idle_slots() {
    let mut swarm = Swarm::start().await;
    for spec in seed_drones() {
        swarm.spawn_drone(&spec.env("SWARM_TEST_SCALE", "0.0004"));
    }
    let world = world();
    assert_eq!(world.len(), 152);
    let items: Vec<(String, Option<f64>)> =
        world.iter().map(|(a, e)| (a.clone(), Some(*e))).collect();
    let submitted_at = runtime::now_ms();
    match submit(&swarm.nats, &items).await {
        SubmitResult::Accepted {
            queued: 152,
            already_queued: 0,
            run: Some(_),
            ..
        } => {}
        other => panic!("unexpected submit reply {other:?}"),
    }
    let packages = swarm.wait_final(152, Duration::from_secs(180)).await;
    assert!(all_succeeded(&packages), "{packages:?}");

    let builds = builds(&swarm.records());
    let per_atom: HashMap<String, usize> = builds.iter().fold(HashMap::new(), |mut m, b| {
        *m.entry(b.atom.clone()).or_default() += 1;
        m
    });
    for (atom, _) in &world {
        assert_eq!(
            per_atom.get(atom),
            Some(&1),
            "{atom} built {:?} times",
            per_atom.get(atom)
        );
    }
    assert!(overlaps(&builds, runtime::now_ms()).is_empty());

    // Idle slot-time while packages waited: at every instant until the last build started,
    // free slots = total slots - running builds, counted while some package had not started.
    let total_slots: u64 = 4 + 2 + 6 + 2;
    let mut points: Vec<(u64, i64)> = Vec::new();
    for b in &builds {
        points.push((b.start_ms, 1));
        points.push((b.end_ms.expect("every build ended"), -1));
    }
    points.sort();
    let last_start = builds.iter().map(|b| b.start_ms).max().expect("builds");
    let end = builds
        .iter()
        .filter_map(|b| b.end_ms)
        .max()
        .expect("builds");
    let first = submitted_at.min(points[0].0);
    let mut running = 0i64;
    let mut t = first;
    let mut idle_waiting = 0u64;
    for (at, delta) in points {
        if t < last_start {
            let until = at.min(last_start);
            if until > t {
                idle_waiting += (total_slots as i64 - running).max(0) as u64 * (until - t);
            }
        }
        running += delta;
        t = at;
    }
    let total = total_slot_time(total_slots, first, end);
    let share = idle_waiting as f64 / total as f64;
    println!(
        "world-152: makespan {} ms, idle slot-time while packages waited {} ms of {} ms ({:.2} %)",
        end - first,
        idle_waiting,
        total,
        share * 100.0
    );
    assert!(share < 0.05, "idle share {share}");
}

fn total_slot_time(slots: u64, from: u64, to: u64) -> u64 {
    slots * (to - from)
}

/// 2,000 no-op packages on 4 drones × 8 slots: each built exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_noop_packages_each_built_once() {
    let mut swarm = Swarm::start().await;
    for i in 0..4 {
        swarm.spawn_drone(&DroneSpec::new(&format!("noop-{i}"), 8, 8));
    }
    let items: Vec<(String, Option<f64>)> = (0..2000)
        .map(|i| (format!("=dev-test/noop-1.{i}"), None))
        .collect();
    match submit(&swarm.nats, &items).await {
        SubmitResult::Accepted { queued: 2000, .. } => {}
        other => panic!("unexpected submit reply {other:?}"),
    }
    let packages = swarm.wait_final(2000, Duration::from_secs(300)).await;
    assert!(all_succeeded(&packages));
    let builds = builds(&swarm.records());
    let counts = successes(&builds);
    assert_eq!(builds.len(), 2000, "builds recorded");
    assert_eq!(counts.len(), 2000);
    assert!(counts.values().all(|c| *c == 1));
    // Every drone took part.
    let drones: std::collections::HashSet<&str> = builds.iter().map(|b| b.drone.as_str()).collect();
    assert_eq!(drones.len(), 4, "{drones:?}");
    let _ = PackageState::Queued { attempt: 1 };
}

/// A job too long for any slot (chromium beside a dozen small packages, one small drone and one
/// big one) is queued apart and built by the big drone with every core, while the small drone
/// takes the small packages; each success teaches the coordinator the package's build time
/// scaled to 8 cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_giant_is_built_by_a_big_drone_with_every_core() {
    let mut swarm = Swarm::start().await;
    swarm.spawn_drone(&DroneSpec::new("small", 4, 1).env("SWARM_TEST_SLEEP", "0.3"));
    swarm.spawn_drone(&DroneSpec::new("big", 16, 4).env("SWARM_TEST_SLEEP", "0.3"));
    // The coordinator decides a job's queue from the drones it sees online.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = swarm.swarmctl(&["drones", "--json"]);
        let drones: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let online = drones
            .as_array()
            .map(|a| a.iter().filter(|d| d["state"] == "idle").count())
            .unwrap_or(0);
        if online == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drones not online: {drones}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut items = vec![("www-client/chromium".to_owned(), Some(21_600.0))];
    items.extend((0..12).map(|i| (format!("=dev-test/small-1.{i}"), Some(60.0))));
    assert!(matches!(
        swarm.submit(&items).await,
        SubmitResult::Accepted { queued: 13, .. }
    ));
    let packages = swarm.wait_final(13, Duration::from_secs(60)).await;
    assert!(all_succeeded(&packages), "{packages:?}");
    let builds = builds(&swarm.records());
    let chromium: Vec<_> = builds
        .iter()
        .filter(|b| b.atom == "www-client/chromium")
        .collect();
    assert_eq!(chromium.len(), 1, "{builds:?}");
    assert_eq!(chromium[0].drone, "big", "{builds:?}");
    assert!(
        builds.iter().any(|b| b.drone == "small"),
        "the small drone took the small packages: {builds:?}"
    );
    // Learned estimates: duration × cores used / 8. Chromium had all 16 cores of the big
    // drone; a small package had one slot's share (4 cores) wherever it ran.
    let learned = |atom: &str, cores: f64| {
        let record = &packages[atom];
        let duration = record.history.last().expect("a build").duration_ms as f64 / 1000.0;
        let learned = record.learned_secs.expect("learned");
        assert!(
            (learned - duration * cores / 8.0).abs() < 1e-6,
            "{atom}: learned {learned} from {duration} s on {cores} cores"
        );
    };
    learned("www-client/chromium", 16.0);
    learned("=dev-test/small-1.0", 4.0);
}
