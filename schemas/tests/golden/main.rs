//! The golden fixtures (`tests/fixtures/golden/`) and the reader rules, for every message kind:
//! every fixture any release wrote still decodes, field by field; every kind has samples and
//! every sample its fixture; fields added by a future release are ignored; another schema
//! version, or none, is refused with an error that says so.
//!
//! Fixtures are written only by `cargo run -p swarm-schemas --example golden -- write DIR`,
//! which adds the missing ones and never rewrites one (docs/upgrades.md).

mod files;
mod request_samples;
mod samples;
mod variants;
mod work_samples;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use swarm_schemas::{DecodeError, SCHEMA_VERSION};

use files::{FixtureName, differences, fixtures, golden_dir, parse_name, stem, to_json};
use samples::{Kind, kinds};

fn kind_of<'a>(kinds: &'a [Kind], slug: &str) -> Option<&'a Kind> {
    kinds.iter().find(|k| k.slug() == slug)
}

const WRITE: &str = "cargo run -p swarm-schemas --example golden -- write tests/fixtures/golden";

#[test]
fn every_fixture_decodes_with_this_release_and_keeps_every_field() {
    let kinds = kinds();
    let dir = golden_dir();
    let found = fixtures(&dir);
    assert!(!found.is_empty(), "no fixtures in {}", dir.display());
    let mut failures = Vec::new();
    for path in &found {
        let file = path.file_name().and_then(|n| n.to_str()).expect("name");
        let Some(name) = parse_name(file) else {
            failures.push(format!("{file}: not named <kind>[.<sample>].v<N>.msgpack"));
            continue;
        };
        let Some(kind) = kind_of(&kinds, &name.slug) else {
            failures.push(format!(
                "{file}: no message kind {:?} any more (a kind was removed or renamed?)",
                name.slug
            ));
            continue;
        };
        let bytes = std::fs::read(path).expect("fixture reads");
        let written = to_json(&bytes);
        // The readable twin is the same message.
        let twin = path.with_extension("json");
        match std::fs::read_to_string(&twin) {
            Ok(text) => {
                let twin_json: Value = serde_json::from_str(&text).expect("the twin is JSON");
                if twin_json != written {
                    failures.push(format!("{file}: its JSON twin says something else"));
                }
            }
            Err(_) => failures.push(format!("{file}: no JSON twin {}", twin.display())),
        }
        match ((kind.read)(&bytes), name.version) {
            (Ok(decoded), version) if version == SCHEMA_VERSION => {
                let mut diffs = Vec::new();
                differences(&decoded, &written, "", &mut diffs);
                failures.extend(diffs.into_iter().map(|d| format!("{file}: {d}")));
            }
            // A release that stops reading an old version refuses it by name.
            (Err(DecodeError::UnsupportedVersion { found, .. }), version)
                if version < SCHEMA_VERSION && found == version => {}
            (Ok(_), version) => failures.push(format!(
                "{file}: a message of version {version} was read as version {SCHEMA_VERSION}"
            )),
            (Err(err), _) => failures.push(format!("{file}: {err}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_sample_of_this_release_has_its_fixture_and_reads_back_equal() {
    let dir = golden_dir();
    let mut failures = Vec::new();
    for kind in kinds() {
        for sample in &kind.samples {
            let stem = stem(&kind, sample);
            let path = dir.join(format!("{stem}.msgpack"));
            let Ok(bytes) = std::fs::read(&path) else {
                failures.push(format!("{stem}: no fixture; write it with `{WRITE}`"));
                continue;
            };
            match (kind.read)(&bytes) {
                Ok(decoded) if decoded == sample.json => {}
                Ok(decoded) => {
                    let mut diffs = Vec::new();
                    differences(&decoded, &sample.json, "", &mut diffs);
                    failures.push(format!(
                        "{stem}: the sample is not what its fixture holds ({}); a fixture is \
                         never rewritten: keep the sample as it was and add the new value as \
                         a sample of its own",
                        diffs.join("; ")
                    ));
                }
                Err(err) => failures.push(format!("{stem}: {err}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `impl Wire for X` in the workspace's sources (outside tests).
fn wire_types(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for line in text.lines() {
                    let line = line.trim();
                    if !line.starts_with("impl") {
                        continue;
                    }
                    if let Some((_, rest)) = line.split_once("Wire for ") {
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        found.insert(name);
                    }
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    for member in std::fs::read_dir(root).expect("workspace").flatten() {
        let src = member.path().join("src");
        if member.path().join("Cargo.toml").exists() && src.is_dir() {
            walk(&src, &mut found);
        }
    }
    found
}

#[test]
fn every_wire_kind_has_golden_samples() {
    let kinds = kinds();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let declared = wire_types(&root);
    assert!(
        declared.contains("Job"),
        "the source scan found {declared:?}"
    );
    let listed: BTreeSet<String> = kinds.iter().map(|k| k.type_name.to_owned()).collect();
    let missing: Vec<_> = declared.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "message kinds without golden samples: {missing:?}; add a line to `kinds()` in \
         schemas/tests/golden/samples.rs and run `{WRITE}`"
    );
    let mut slugs = BTreeSet::new();
    for kind in &kinds {
        assert!(!kind.samples.is_empty(), "{}: no samples", kind.kind);
        assert!(slugs.insert(kind.slug()), "two kinds named {}", kind.kind);
        let mut names = BTreeSet::new();
        for sample in &kind.samples {
            assert!(
                names.insert(sample.name),
                "{}: two samples named {:?}",
                kind.kind,
                sample.name
            );
            assert!(
                sample
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}: sample name {:?}",
                kind.kind,
                sample.name
            );
        }
        assert!(
            kind.samples.len() == 1 || names.iter().all(|n| !n.is_empty()),
            "{}: several samples, one without a name",
            kind.kind
        );
    }
}

/// Adds `key` to every map, nested ones included: a map of lists and maps at the top, a string
/// in the nested ones (which include free-form string maps such as an artifact's metadata,
/// where a string is an entry like any other).
fn with_field_everywhere(value: &Value, key: &str, depth: usize) -> Value {
    match value {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), with_field_everywhere(v, key, depth + 1)))
                .collect();
            let added = if depth == 0 {
                serde_json::json!({"nested": [1, "two", {"v": 2}], "v": 2})
            } else {
                Value::String("a future release's field".into())
            };
            out.insert(key.to_owned(), added);
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| with_field_everywhere(v, key, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Removes `key` from every map (where a free-form map, such as an artifact's metadata, kept it).
fn without_field(value: &Value, key: &str) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != key)
                .map(|(k, v)| (k.clone(), without_field(v, key)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| without_field(v, key)).collect()),
        other => other.clone(),
    }
}

#[test]
fn fields_added_by_a_future_release_are_ignored_by_every_kind() {
    const ADDED: &str = "added_by_a_future_release";
    let mut checked = 0;
    for kind in kinds() {
        for sample in &kind.samples {
            let future = with_field_everywhere(&sample.json, ADDED, 0);
            let bytes = files::to_msgpack(&future);
            let read = (kind.read)(&bytes).unwrap_or_else(|err| {
                panic!("{} {:?} with added fields: {err}", kind.kind, sample.name)
            });
            assert_eq!(
                without_field(&read, ADDED),
                sample.json,
                "{} {:?}",
                kind.kind,
                sample.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 21, "{checked}");
}

#[test]
fn other_versions_and_messages_without_one_are_refused_by_every_kind() {
    for kind in kinds() {
        let sample = &kind.samples[0];
        let with_v = |v: Option<u16>| {
            let mut json = sample.json.clone();
            let map = json.as_object_mut().expect("a message is a map");
            match v {
                Some(v) => map.insert("v".into(), v.into()),
                None => map.remove("v"),
            };
            files::to_msgpack(&json)
        };
        for (v, says) in [
            (SCHEMA_VERSION + 98, "newer release"),
            (SCHEMA_VERSION - 1, "too old"),
        ] {
            match (kind.read)(&with_v(Some(v))) {
                Err(err @ DecodeError::UnsupportedVersion { found, .. }) if found == v => {
                    let text = err.to_string();
                    assert!(
                        text.starts_with(kind.kind)
                            && text.contains(&format!("schema version {v}"))
                            && text.contains(says),
                        "{text}"
                    );
                    assert_eq!(err.unsupported_version(), Some(v));
                }
                other => panic!("{} of version {v}: {other:?}", kind.kind),
            }
        }
        match (kind.read)(&with_v(None)) {
            Err(err @ DecodeError::MissingVersion { .. }) => {
                assert!(err.to_string().starts_with(kind.kind), "{err}")
            }
            other => panic!("{} without a version: {other:?}", kind.kind),
        }
    }
}

/// The paths of a value's fields (`state.attempt`, `history[].outcome.type`), each with whether
/// it holds something (not null, not an empty list, map or string).
fn field_paths(value: &Value, path: &str, out: &mut BTreeMap<String, bool>) {
    let filled = match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        Value::String(text) => !text.is_empty(),
        _ => true,
    };
    if !path.is_empty() {
        *out.entry(path.to_owned()).or_default() |= filled;
    }
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                field_paths(inner, &at, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                field_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_samples_of_every_kind_fill_every_field() {
    let mut empty = Vec::new();
    for kind in kinds() {
        let mut paths = BTreeMap::new();
        for sample in &kind.samples {
            field_paths(&sample.json, "", &mut paths);
        }
        empty.extend(
            paths
                .into_iter()
                .filter(|(_, filled)| !filled)
                .map(|(path, _)| format!("{}: {path}", kind.kind)),
        );
    }
    assert!(
        empty.is_empty(),
        "fields no sample fills:\n{}",
        empty.join("\n")
    );
}

#[test]
fn the_writer_adds_missing_fixtures_and_never_rewrites_one() {
    let dir = std::env::temp_dir().join(format!("swarm-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let kinds = kinds();
    let total: usize = kinds.iter().map(|k| k.samples.len()).sum();
    let (written, unchanged, conflicts) = files::write_missing(&dir, &kinds);
    assert_eq!((written.len(), unchanged, conflicts.len()), (total, 0, 0));
    // What it writes is what the committed fixtures hold for this release.
    for kind in &kinds {
        for sample in &kind.samples {
            let name = format!("{}.msgpack", stem(kind, sample));
            let fresh = std::fs::read(dir.join(&name)).expect("written");
            assert_eq!(fresh, sample.bytes, "{name}");
            let twin = std::fs::read_to_string(dir.join(&name).with_extension("json"));
            let twin: Value = serde_json::from_str(&twin.expect("twin")).expect("JSON");
            assert_eq!(twin, to_json(&sample.bytes), "{name}");
        }
    }
    let (written, unchanged, conflicts) = files::write_missing(&dir, &kinds);
    assert_eq!((written.len(), unchanged, conflicts.len()), (0, total, 0));
    // A fixture that holds another value is reported and left as it was.
    let name = format!("{}.msgpack", stem(&kinds[0], &kinds[0].samples[0]));
    let job = dir.join(&name);
    let other = kinds[0].samples[1].bytes.clone();
    std::fs::write(&job, &other).expect("write");
    let (_, _, conflicts) = files::write_missing(&dir, &kinds);
    assert_eq!(conflicts, [name]);
    assert_eq!(std::fs::read(&job).expect("read"), other);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn fixture_names_read_back() {
    let cases = [
        ("job.plain.v1.msgpack", Some(("job", "plain", 1))),
        (
            "binhost-current-revision.v1.msgpack",
            Some(("binhost-current-revision", "", 1)),
        ),
        (
            "event.finished-failed.v12.msgpack",
            Some(("event", "finished-failed", 12)),
        ),
        ("job.plain.v1.json", None),
        ("job.msgpack", None),
        ("job.vx.msgpack", None),
    ];
    for (file, expected) in cases {
        let expected = expected.map(|(slug, sample, version)| FixtureName {
            slug: slug.into(),
            sample: sample.into(),
            version,
        });
        assert_eq!(parse_name(file), expected, "{file}");
    }
}
