//! The binary packages a successful build wrote: found in the drone's `PKGDIR`, described (the
//! metadata and checksums a binhost's index carries) and stored in the artifacts object store
//! under the SHA-256 of their contents, so a retried or repeated upload stores nothing twice.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_nats::jetstream::object_store::ObjectStore;
use binpkg::{BinpkgError, Format, checksums};
use schemas::Artifact;
use tracing::debug;

/// Why a build's packages could not be stored: the machine's or the store's fault, never the
/// package's, so the build is given back to be done again.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot list {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] BinpkgError),
    #[error("cannot upload {path} to the artifacts store: {reason}")]
    Upload { path: String, reason: String },
    #[error("the artifacts store is not available (the coordinator creates it)")]
    NoStore,
}

/// The binary packages of `package` (`category/name`) that were written into `pkgdir` since
/// `since`, in Portage's two layouts: `cat/pn/pf-BUILD_ID.gpkg.tar` (`binpkg-multi-instance`)
/// and `cat/pf.gpkg.tar` (also `.tbz2` and `.xpak`). Another slot may be writing other
/// packages into the same folder at the same time: only this package's files count.
pub fn find(
    pkgdir: &Path,
    package: &str,
    since: SystemTime,
) -> Result<Vec<PathBuf>, ArtifactError> {
    let Some((category, name)) = package.split_once('/') else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for dir in [pkgdir.join(category).join(name), pkgdir.join(category)] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ArtifactError::List { dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| ArtifactError::List {
                dir: dir.clone(),
                source,
            })?;
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let fresh = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified >= since);
            if fresh && Format::of(&path).is_some() && is_version_of(&file_name, name) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Whether a file name is `<name>-<version>...`: a version starts with a digit.
fn is_version_of(file_name: &str, name: &str) -> bool {
    file_name
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// Describes one binary package: its metadata (which must name `package`), checksums, object
/// name and path below `pkgdir`. Blocking: it reads the whole file.
pub fn describe(pkgdir: &Path, path: &Path) -> Result<Artifact, ArtifactError> {
    let (_, metadata) = binpkg::read_metadata(path)?;
    let sums = checksums::of_file(path)?;
    let relative = path
        .strip_prefix(pkgdir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    Ok(Artifact {
        object: Artifact::object_name(&sums.sha256),
        path: relative,
        size: sums.size,
        md5: sums.md5,
        sha1: sums.sha1,
        metadata,
    })
}

/// Stores the file under its artifact's object name unless an object of that name (the same
/// contents) is already there.
pub async fn upload(
    store: &ObjectStore,
    path: &Path,
    artifact: &Artifact,
) -> Result<(), ArtifactError> {
    let failed = |reason: String| ArtifactError::Upload {
        path: artifact.path.clone(),
        reason,
    };
    if let Ok(info) = store.info(&artifact.object).await
        && info.size == artifact.size as usize
        && !info.deleted
    {
        debug!(object = %artifact.object, "artifact already stored");
        return Ok(());
    }
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|err| failed(err.to_string()))?;
    store
        .put(artifact.object.as_str(), &mut file)
        .await
        .map_err(|err| failed(err.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_this_packages_fresh_binary_packages_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pkgdir = dir.path();
        let write = |relative: &str| {
            let path = pkgdir.join(relative);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, b"x").expect("write");
        };
        write("app-misc/hello/hello-1.0-1.gpkg.tar");
        write("app-misc/hello/hello-1.0-2.xpak");
        write("app-misc/hello-1.0.tbz2");
        write("app-misc/hello/hello-world-2.0-1.gpkg.tar");
        write("app-misc/hello/hello-1.0-1.gpkg.tar.partial");
        write("app-misc/other/other-1.0-1.gpkg.tar");
        write("app-misc/Packages");
        let since = SystemTime::now() - Duration::from_secs(60);
        let found: Vec<String> = find(pkgdir, "app-misc/hello", since)
            .expect("listed")
            .iter()
            .map(|p| {
                p.strip_prefix(pkgdir)
                    .expect("inside")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            found,
            [
                "app-misc/hello/hello-1.0-1.gpkg.tar",
                "app-misc/hello/hello-1.0-2.xpak",
                "app-misc/hello-1.0.tbz2",
            ]
        );
        // Written before the build started: not this build's.
        let later = SystemTime::now() + Duration::from_secs(60);
        assert!(
            find(pkgdir, "app-misc/hello", later)
                .expect("listed")
                .is_empty()
        );
        assert!(
            find(pkgdir, "no-such/thing", since)
                .expect("listed")
                .is_empty()
        );
    }

    /// An upload repeated (a retried or redelivered build) stores nothing twice: the object is
    /// named by its contents and found before anything is sent.
    #[tokio::test]
    async fn a_repeated_upload_stores_one_object() {
        use futures::StreamExt;
        let server = testkit::NatsServer::start().expect("server");
        let js = async_nats::jetstream::new(server.connect().await.expect("connect"));
        let store = js
            .create_object_store(async_nats::jetstream::object_store::Config {
                bucket: "artifacts".into(),
                ..Default::default()
            })
            .await
            .expect("store");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-misc/hello/hello-1.0-1.gpkg.tar");
        let mut metadata = binpkg::Metadata::new();
        metadata.insert("CATEGORY".into(), "app-misc".into());
        metadata.insert("PF".into(), "hello-1.0".into());
        binpkg::gpkg::write(&path, "hello-1.0-1", &metadata, &[], 1).expect("write");
        let artifact = describe(dir.path(), &path).expect("described");
        assert_eq!(artifact.path, "app-misc/hello/hello-1.0-1.gpkg.tar");
        assert_eq!(artifact.metadata, metadata);
        for _ in 0..3 {
            upload(&store, &path, &artifact).await.expect("stored");
        }
        let mut list = store.list().await.expect("list");
        let mut names = Vec::new();
        while let Some(Ok(info)) = list.next().await {
            names.push(info.name);
        }
        assert_eq!(names, std::slice::from_ref(&artifact.object));
        let info = store.info(&artifact.object).await.expect("info");
        assert_eq!(info.size as u64, artifact.size);
    }
}
