//! End-to-end: the binary packages a build writes leave the drone. A drone with the `emerge`
//! builder runs the tests' fake `emerge` (a script on PATH that writes a real gpkg with
//! Portage's own code); the package's file lands in the artifacts object store under the
//! SHA-256 of its contents, with the checksums and metadata its record names, and Portage reads
//! what the store holds. A build whose package cannot be stored is not a success.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use schemas::{Artifact, BuildOutcome, FailureClass, PackageState, SubmitResult, names};
use swarm_tests::*;
use tokio::io::AsyncReadExt;

async fn download(swarm: &Swarm, object: &str) -> Vec<u8> {
    let js = jetstream::new(swarm.client().await);
    let store = js
        .get_object_store(names::ARTIFACTS_BUCKET)
        .await
        .expect("the artifacts store");
    let mut reader = store.get(object).await.expect("the object is stored");
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.expect("read");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_package_lands_in_the_store_with_its_checksums_and_metadata() {
    let mut swarm = Swarm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    swarm.spawn_drone(&DroneSpec::fake_emerge("e-a", dir.path()));
    let atom = "=app-misc/hello-1.0";
    assert!(matches!(
        submit(&swarm.nats, &[(atom.to_owned(), None)]).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    let packages = swarm.wait_final(1, Duration::from_secs(60)).await;
    let record = &packages[atom];
    assert!(
        matches!(record.state, PackageState::Succeeded { .. }),
        "{:?}",
        record.state
    );
    let [artifact]: &[Artifact; 1] = record
        .artifacts
        .as_slice()
        .try_into()
        .expect("one binary package");
    assert_eq!(artifact.path, "app-misc/hello/hello-1.0-1.gpkg.tar");
    assert_eq!(artifact.cpv().as_deref(), Some("app-misc/hello-1.0"));
    assert_eq!(artifact.metadata["BUILD_ID"], "1");
    assert_eq!(artifact.metadata["RDEPEND"], "sys-libs/zlib");

    // The stored bytes are the file the build wrote, and they are what the record says.
    let bytes = download(&swarm, &artifact.object).await;
    let written = std::fs::read(dir.path().join("pkgs").join(&artifact.path)).expect("the file");
    assert_eq!(bytes, written);
    let sums = swarm_binpkg_checksums(&bytes);
    assert_eq!(artifact.object, format!("sha256-{}", sums.sha256));
    assert_eq!(
        (artifact.size, artifact.md5.as_str(), artifact.sha1.as_str()),
        (sums.size, sums.md5.as_str(), sums.sha1.as_str())
    );
    // Portage reads (and verifies) what the store holds, with the metadata the record carries.
    let copy = dir.path().join("downloaded.gpkg.tar");
    std::fs::write(&copy, &bytes).expect("write");
    let read = testkit::portage::oracle(&["gpkg-read", &copy.display().to_string(), "hello-1.0-1"])
        .expect("Portage reads the stored package");
    for (key, value) in &artifact.metadata {
        assert_eq!(read["metadata"][key], value.as_str(), "{key}");
    }
    // The attempt's log file is there.
    let log = dir
        .path()
        .join("logs")
        .join(format!("{}-1.log", record.atom.key()));
    let text = std::fs::read_to_string(&log).expect("the attempt's log");
    assert!(
        text.contains("Completed (1 of 1) app-misc/hello-1.0"),
        "{text}"
    );
}

/// The digests through the same code the drone uses, as a dev-dependency of this crate would:
/// the test compares with what the record says, computed independently of the upload.
fn swarm_binpkg_checksums(bytes: &[u8]) -> Checksums {
    use sha2::Digest;
    Checksums {
        size: bytes.len() as u64,
        md5: hex(&md5::Md5::digest(bytes)),
        sha1: hex(&sha1::Sha1::digest(bytes)),
        sha256: hex(&sha2::Sha256::digest(bytes)),
    }
}

struct Checksums {
    size: u64,
    md5: String,
    sha1: String,
    sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_that_cannot_be_stored_is_not_a_success() {
    let mut swarm = Swarm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    swarm.spawn_drone(
        &DroneSpec::fake_emerge("e-bad", dir.path())
            .env("SWARM_TEST_CORRUPT_BINPKG", "1")
            .env("SWARM_DRONE__GROUND_AFTER_FAILURES", "1"),
    );
    let atom = "=app-misc/hello-1.0";
    assert!(matches!(
        submit(&swarm.nats, &[(atom.to_owned(), None)]).await,
        SubmitResult::Accepted { queued: 1, .. }
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let packages = swarm.packages().await;
        if let Some(record) = packages.get(atom)
            && !record.history.is_empty()
        {
            break record.clone();
        }
        assert!(Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        record.state,
        PackageState::Queued { attempt: 1 },
        "not succeeded, no attempt spent"
    );
    assert!(record.artifacts.is_empty());
    match &record.history[0].outcome {
        BuildOutcome::Failed {
            class, signature, ..
        } => {
            assert_eq!(*class, FailureClass::Infrastructure);
            let line = signature.as_deref().unwrap_or_default();
            assert!(line.contains("is not a gpkg"), "{line}");
        }
        other => panic!("{other:?}"),
    }
    // A healthy drone takes it over and delivers it.
    swarm.spawn_drone(&DroneSpec::fake_emerge("e-good", dir.path()));
    let packages = swarm.wait_final(1, Duration::from_secs(60)).await;
    assert!(matches!(
        packages[atom].state,
        PackageState::Succeeded { attempt: 1, .. }
    ));
    assert_eq!(packages[atom].artifacts.len(), 1);
}
