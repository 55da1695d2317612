//! The golden fixtures on disk: their names, their readable JSON twins, writing the missing ones
//! (never rewriting one), and comparing what a release decodes with what was written.
//!
//! A fixture is `<kind>[.<sample>].v<schema version>.msgpack`, the bytes exactly as the release
//! that wrote it put them on the wire, beside `<same stem>.json`, the same message as JSON for
//! people (and a check that the two never drift apart).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::samples::{Kind, Sample};

/// `tests/fixtures/golden/` of the workspace.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden")
}

/// The file stem of a sample written by this release: `event.finished.v1`.
pub fn stem(kind: &Kind, sample: &Sample) -> String {
    let mut stem = kind.slug();
    if !sample.name.is_empty() {
        stem.push('.');
        stem.push_str(sample.name);
    }
    format!("{stem}.v{}", swarm_schemas::SCHEMA_VERSION)
}

/// A fixture's name read back: its kind's slug, its sample's name and its schema version.
#[derive(Debug, PartialEq)]
pub struct FixtureName {
    pub slug: String,
    pub sample: String,
    pub version: u16,
}

/// Reads `<kind>[.<sample>].v<N>.msgpack`; `None` for any other name.
pub fn parse_name(file_name: &str) -> Option<FixtureName> {
    let stem = file_name.strip_suffix(".msgpack")?;
    let (rest, version) = stem.rsplit_once(".v")?;
    let version = version.parse().ok()?;
    let (slug, sample) = rest.split_once('.').unwrap_or((rest, ""));
    Some(FixtureName {
        slug: slug.to_owned(),
        sample: sample.to_owned(),
        version,
    })
}

/// Every `.msgpack` fixture in `dir`, sorted by name.
pub fn fixtures(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "msgpack"))
        .collect();
    found.sort();
    found
}

/// A MessagePack message as JSON, whatever its kind: what was written, field by field.
pub fn to_json(bytes: &[u8]) -> Value {
    rmp_serde::from_slice(bytes).expect("a fixture is MessagePack")
}

/// JSON as a MessagePack message with named fields (maps stay maps).
pub fn to_msgpack(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("JSON encodes as MessagePack")
}

/// Where `decoded` (a message as this release reads it, re-encoded as JSON) differs from
/// `written` (the fixture as written): every field written must be read back with the same
/// value. Fields this release added are not in `written` and are ignored.
pub fn differences(decoded: &Value, written: &Value, path: &str, out: &mut Vec<String>) {
    match (decoded, written) {
        (Value::Object(decoded), Value::Object(written)) => {
            for (key, value) in written {
                let at = format!("{path}.{key}");
                match decoded.get(key) {
                    Some(got) => differences(got, value, &at, out),
                    None => out.push(format!("{at}: written {value}, not read back")),
                }
            }
        }
        (Value::Array(decoded), Value::Array(written)) if decoded.len() == written.len() => {
            for (i, (got, value)) in decoded.iter().zip(written).enumerate() {
                differences(got, value, &format!("{path}[{i}]"), out);
            }
        }
        (got, value) if got == value => {}
        (got, value) => out.push(format!("{path}: written {value}, read back as {got}")),
    }
}

/// Writes the fixture of every sample that has none. An existing fixture is never rewritten:
/// one that no longer decodes to its sample's value is reported, and the caller fails.
/// Returns (written, unchanged, conflicting) file names.
pub fn write_missing(dir: &Path, kinds: &[Kind]) -> (Vec<String>, usize, Vec<String>) {
    std::fs::create_dir_all(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let (mut written, mut unchanged, mut conflicts) = (Vec::new(), 0, Vec::new());
    for kind in kinds {
        for sample in &kind.samples {
            let stem = stem(kind, sample);
            let path = dir.join(format!("{stem}.msgpack"));
            match std::fs::read(&path) {
                Ok(existing) if (kind.read)(&existing).ok().as_ref() == Some(&sample.json) => {
                    unchanged += 1
                }
                Ok(_) => conflicts.push(format!("{stem}.msgpack")),
                Err(_) => {
                    std::fs::write(&path, &sample.bytes)
                        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                    let json = serde_json::to_string_pretty(&to_json(&sample.bytes))
                        .expect("JSON prints")
                        + "\n";
                    let twin = dir.join(format!("{stem}.json"));
                    std::fs::write(&twin, json)
                        .unwrap_or_else(|err| panic!("{}: {err}", twin.display()));
                    written.push(format!("{stem}.msgpack"));
                }
            }
        }
    }
    (written, unchanged, conflicts)
}
