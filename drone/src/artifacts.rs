//! The binary packages a successful build wrote: found in the drone's `PKGDIR`, described (the
//! metadata and checksums a binhost's index carries) and stored in the artifacts object store
//! under the SHA-256 of their contents, so a retried or repeated upload stores nothing twice.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_nats::jetstream::object_store::ObjectStore;
use binpkg::{BinpkgError, Format, checksums};
use schemas::{Arch, Artifact, Atom, DroneName};
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

/// Writes the binary package of a simulated build of `atom` into `pkgdir`, in Portage's
/// multi-instance layout with the next free `BUILD_ID`: a small but valid gpkg (its image one
/// file saying what it is) at the atom's version, or `0` for an atom without one.
pub fn write_simulated(
    pkgdir: &Path,
    atom: &Atom,
    arch: &Arch,
    drone: &DroneName,
    now_secs: u64,
) -> Result<PathBuf, ArtifactError> {
    let package = atom.package_name();
    let Some((category, name)) = package.split_once('/') else {
        return Err(ArtifactError::Upload {
            path: package.clone(),
            reason: "not a category/name".to_owned(),
        });
    };
    let pf = format!(
        "{name}-{}",
        atom.version().unwrap_or_else(|| "0".to_owned())
    );
    let dir = pkgdir.join(category).join(name);
    std::fs::create_dir_all(&dir).map_err(|source| ArtifactError::List {
        dir: dir.clone(),
        source,
    })?;
    let build_id = next_build_id(&dir, &pf)?;
    let path = dir.join(format!("{pf}-{build_id}.gpkg.tar"));
    let text = |s: &str| s.to_owned();
    let metadata: binpkg::Metadata = [
        ("CATEGORY", text(category)),
        ("PF", pf.clone()),
        ("SLOT", text("0")),
        ("EAPI", text("8")),
        ("BUILD_ID", build_id.to_string()),
        ("BUILD_TIME", now_secs.to_string()),
        ("KEYWORDS", arch.to_string()),
        ("LICENSE", text("metapackage")),
        (
            "DESCRIPTION",
            format!("{package}, simulated by build swarm drone {drone}"),
        ),
        ("repository", text("gentoo")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let note = format!("{atom} was built by the build swarm's simulate builder on {drone}.\n");
    let doc = format!("usr/share/doc/{pf}/SIMULATED");
    let image = [binpkg::gpkg::ImageFile {
        path: &doc,
        contents: note.as_bytes(),
        mode: 0o644,
    }];
    binpkg::gpkg::write(
        &path,
        &format!("{pf}-{build_id}"),
        &metadata,
        &image,
        now_secs,
    )?;
    Ok(path)
}

/// One more than the highest `BUILD_ID` of `pf` in `dir`, as Portage numbers a new build.
fn next_build_id(dir: &Path, pf: &str) -> Result<u64, ArtifactError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ArtifactError::List {
        dir: dir.to_owned(),
        source,
    })?;
    let prefix = format!("{pf}-");
    let highest = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&prefix)?
                .strip_suffix(".gpkg.tar")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    Ok(highest + 1)
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
    #[test]
    fn a_simulated_build_writes_a_package_portage_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let atom = Atom::parse("=app-misc/hello-2.1-r1").expect("atom");
        let (arch, drone) = (Arch::default(), DroneName::parse("d-1").expect("name"));
        let first =
            write_simulated(dir.path(), &atom, &arch, &drone, 1_700_000_000).expect("first");
        let second =
            write_simulated(dir.path(), &atom, &arch, &drone, 1_700_000_001).expect("second");
        let relative = |p: &Path| {
            p.strip_prefix(dir.path())
                .expect("inside")
                .display()
                .to_string()
        };
        assert_eq!(relative(&first), "app-misc/hello/hello-2.1-r1-1.gpkg.tar");
        assert_eq!(relative(&second), "app-misc/hello/hello-2.1-r1-2.gpkg.tar");
        let since = SystemTime::now() - Duration::from_secs(60);
        assert_eq!(
            find(dir.path(), "app-misc/hello", since)
                .expect("found")
                .len(),
            2
        );
        let artifact = describe(dir.path(), &second).expect("described");
        assert_eq!(artifact.cpv().as_deref(), Some("app-misc/hello-2.1-r1"));
        assert_eq!(artifact.metadata["BUILD_ID"], "2");
        // Portage's own code reads it and verifies every member.
        let read = testkit::portage::oracle(&[
            "gpkg-read",
            &second.display().to_string(),
            "hello-2.1-r1-2",
        ])
        .expect("Portage reads the simulated package");
        assert_eq!(read["metadata"]["PF"], "hello-2.1-r1");
        assert_eq!(
            read["files"][0], "usr/share/doc/hello-2.1-r1/SIMULATED",
            "{read}"
        );
        // An atom without a version is built as version 0.
        let bare = Atom::parse("sys-libs/zlib").expect("atom");
        let path = write_simulated(dir.path(), &bare, &arch, &drone, 1).expect("bare");
        assert_eq!(relative(&path), "sys-libs/zlib/zlib-0-1.gpkg.tar");
    }

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
