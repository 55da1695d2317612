//! GLEP 78 binary packages (`.gpkg.tar`): an uncompressed tar whose members sit under one
//! directory (the package's basename): `gpkg-1` (an empty marker), `metadata.tar[.comp]` (one
//! `metadata/<KEY>` file per key), `image.tar[.comp]` (the installed tree under `image/`), and a
//! `Manifest` of `DATA <member> <size> BLAKE2B <hex> SHA512 <hex>` lines.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::checksums;
use crate::{BinpkgError, Metadata};

/// The decompressor Portage uses for each member suffix (`lib/portage/gpkg.py`'s compressions).
fn decompressor(suffix: &str) -> Option<&'static [&'static str]> {
    Some(match suffix {
        "zst" => &["zstd", "-d", "-c", "-q"],
        "xz" => &["xz", "-d", "-c", "-q"],
        "bz2" => &["bzip2", "-d", "-c", "-q"],
        "gz" => &["gzip", "-d", "-c", "-q"],
        "lz4" => &["lz4", "-d", "-c", "-q"],
        "lz" => &["lzip", "-d", "-c", "-q"],
        "lzo" => &["lzop", "-d", "-c", "-q"],
        _ => return None,
    })
}

/// Reads the metadata of the gpkg at `path`.
pub fn read_metadata(path: &Path) -> Result<Metadata, BinpkgError> {
    let file = std::fs::File::open(path).map_err(BinpkgError::io(path))?;
    let mut container = tar::Archive::new(file);
    let mut marker = false;
    let mut metadata: Option<(String, Vec<u8>)> = None;
    // A tar that does not parse is not a gpkg, whatever read error the tar reader gives.
    let not_tar = |err: std::io::Error| match err.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::InvalidData
        | std::io::ErrorKind::Other => BinpkgError::NotGpkg {
            path: path.to_owned(),
            reason: "not a tar archive",
        },
        _ => BinpkgError::Io {
            path: path.to_owned(),
            source: err,
        },
    };
    for entry in container.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let name = entry
            .path()
            .map_err(BinpkgError::io(path))?
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name == "gpkg-1" {
            marker = true;
        } else if let Some(suffix) = name.strip_prefix("metadata.tar") {
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(BinpkgError::io(path))?;
            metadata = Some((suffix.trim_start_matches('.').to_owned(), data));
        }
    }
    if !marker {
        return Err(BinpkgError::NotGpkg {
            path: path.to_owned(),
            reason: "no gpkg-1 marker",
        });
    }
    let Some((suffix, data)) = metadata else {
        return Err(BinpkgError::NotGpkg {
            path: path.to_owned(),
            reason: "no metadata.tar member",
        });
    };
    let member = format!(
        "metadata.tar{}{suffix}",
        if suffix.is_empty() { "" } else { "." }
    );
    let tar = match suffix.as_str() {
        "" => data,
        "gz" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(data.as_slice())
                .read_to_end(&mut out)
                .map_err(|err| BinpkgError::Decompress {
                    path: path.to_owned(),
                    member: member.clone(),
                    reason: err.to_string(),
                })?;
            out
        }
        _ => decompress(path, &member, &suffix, &data)?,
    };
    parse_metadata_tar(path, &tar)
}

/// Runs the system's decompressor for `suffix` over `data`.
fn decompress(
    path: &Path,
    member: &str,
    suffix: &str,
    data: &[u8],
) -> Result<Vec<u8>, BinpkgError> {
    let failed = |reason: String| BinpkgError::Decompress {
        path: path.to_owned(),
        member: member.to_owned(),
        reason,
    };
    let argv =
        decompressor(suffix).ok_or_else(|| failed(format!("unknown compression .{suffix}")))?;
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| failed(format!("cannot run {}: {err}", argv[0])))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| failed("no stdin".to_owned()))?;
    let input = data.to_vec();
    // Written from another thread: a decompressor blocks writing its output while nobody reads.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child
        .wait_with_output()
        .map_err(|err| failed(format!("{} failed: {err}", argv[0])))?;
    let _ = writer.join();
    if !output.status.success() {
        return Err(failed(format!(
            "{} exited with {}: {}",
            argv[0],
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}

/// The `metadata/<KEY>` files of a metadata tar.
fn parse_metadata_tar(path: &Path, tar: &[u8]) -> Result<Metadata, BinpkgError> {
    let mut archive = tar::Archive::new(tar);
    let mut metadata = Metadata::new();
    for entry in archive.entries().map_err(BinpkgError::io(path))? {
        let mut entry = entry.map_err(BinpkgError::io(path))?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let key = entry
            .path()
            .map_err(BinpkgError::io(path))?
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let mut value = String::new();
        entry
            .read_to_string(&mut value)
            .map_err(BinpkgError::io(path))?;
        if !key.is_empty() {
            metadata.insert(key, value.trim_end_matches('\n').to_owned());
        }
    }
    Ok(metadata)
}

/// One file of the image a gpkg installs: its path under the root and its contents.
pub struct ImageFile<'a> {
    pub path: &'a str,
    pub contents: &'a [u8],
    pub mode: u32,
}

/// Writes a gpkg at `path` with gzip-compressed members: the marker, the metadata, the image
/// and a Manifest of their sizes and BLAKE2B and SHA512 digests. (Members are compressed
/// because Portage decompresses a member without a compression suffix with the reader's own
/// `BINPKG_COMPRESS`; gzip is what every client can undo, and needs no tool here.) `basename` is the members' directory (`hello-1.0-1`). Written
/// to a temporary file and renamed, so a reader never sees half a package. `mtime` dates every
/// member, so the same inputs give the same bytes.
pub fn write(
    path: &Path,
    basename: &str,
    metadata: &Metadata,
    image: &[ImageFile<'_>],
    mtime: u64,
) -> Result<(), BinpkgError> {
    let io = BinpkgError::io(path);
    let metadata_tar = {
        // Regular files only: Portage refuses a metadata member that is anything else.
        let mut builder = tar::Builder::new(Vec::new());
        for (key, value) in metadata {
            let contents = format!("{value}\n");
            append_file(
                &mut builder,
                &format!("metadata/{key}"),
                contents.as_bytes(),
                0o644,
                mtime,
            )
            .map_err(BinpkgError::io(path))?;
        }
        builder.into_inner().map_err(BinpkgError::io(path))?
    };
    let image_tar = {
        let mut builder = tar::Builder::new(Vec::new());
        append_dir(&mut builder, "image", mtime).map_err(BinpkgError::io(path))?;
        for file in image {
            append_file(
                &mut builder,
                &format!("image/{}", file.path.trim_start_matches('/')),
                file.contents,
                file.mode,
                mtime,
            )
            .map_err(BinpkgError::io(path))?;
        }
        builder.into_inner().map_err(BinpkgError::io(path))?
    };
    let metadata_gz = gzip(&metadata_tar).map_err(BinpkgError::io(path))?;
    let image_gz = gzip(&image_tar).map_err(BinpkgError::io(path))?;
    let members: [(&str, &[u8]); 3] = [
        ("gpkg-1", &[]),
        ("metadata.tar.gz", &metadata_gz),
        ("image.tar.gz", &image_gz),
    ];
    let mut manifest = String::new();
    for (name, data) in members {
        let sums = checksums::of_bytes(data);
        manifest.push_str(&format!(
            "DATA {name} {} BLAKE2B {} SHA512 {}\n",
            sums.size, sums.blake2b, sums.sha512
        ));
    }
    let mut container = tar::Builder::new(Vec::new());
    for (name, data) in members {
        append_file(
            &mut container,
            &format!("{basename}/{name}"),
            data,
            0o644,
            mtime,
        )
        .map_err(BinpkgError::io(path))?;
    }
    append_file(
        &mut container,
        &format!("{basename}/Manifest"),
        manifest.as_bytes(),
        0o644,
        mtime,
    )
    .map_err(BinpkgError::io(path))?;
    let bytes = container.into_inner().map_err(BinpkgError::io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(BinpkgError::io(path))?;
    }
    let partial = path.with_extension("tar.partial");
    std::fs::write(&partial, bytes).map_err(BinpkgError::io(path))?;
    std::fs::rename(&partial, path).map_err(io)
}

/// Gzip with a fixed header (no name, no time), so the same input gives the same bytes.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

fn header(size: u64, mode: u32, mtime: u64, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(kind);
    header
}

fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mode: u32,
    mtime: u64,
) -> std::io::Result<()> {
    let mut header = header(data.len() as u64, mode, mtime, tar::EntryType::Regular);
    builder.append_data(&mut header, name, data)
}

fn append_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    mtime: u64,
) -> std::io::Result<()> {
    let mut header = header(0, 0o755, mtime, tar::EntryType::Directory);
    builder.append_data(&mut header, format!("{name}/"), std::io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_gpkg_is_named_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("x-1.gpkg.tar");
        std::fs::write(&garbage, b"this is not a gpkg\n").expect("write");
        assert!(matches!(
            read_metadata(&garbage),
            Err(BinpkgError::NotGpkg { .. })
        ));
        // A tar without the marker is not one either.
        let mut builder = tar::Builder::new(Vec::new());
        append_file(&mut builder, "x-1/metadata.tar", b"", 0o644, 0).expect("append");
        let plain = dir.path().join("y-1.gpkg.tar");
        std::fs::write(&plain, builder.into_inner().expect("tar")).expect("write");
        match read_metadata(&plain) {
            Err(BinpkgError::NotGpkg { reason, .. }) => assert_eq!(reason, "no gpkg-1 marker"),
            other => panic!("{other:?}"),
        }
        let missing = dir.path().join("missing.gpkg.tar");
        assert!(matches!(
            read_metadata(&missing),
            Err(BinpkgError::Io { .. })
        ));
    }
}
