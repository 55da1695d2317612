//! The repository's structure, checked: every name ARCHITECTURE.md gives exists, `schemas` stays
//! free of async crates, the coordinator and the drone spawn no untracked task, and no source file
//! is over about 500 lines without a reason written at its top.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Lines a source file may have before it must say why it is that long; a little over 500, so
/// that a file does not fail for a few lines of formatting.
const MAX_LINES: usize = 520;
/// What a long file's reason says, in a comment among its first lines.
const LONG_FILE_REASON: &str = "over 500 lines";

fn root() -> PathBuf {
    testkit::workspace_root()
}

/// Every file git tracks (or would add), relative to the root.
fn tracked_files() -> Vec<PathBuf> {
    let output = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root())
        .output()
        .expect("git ls-files");
    assert!(output.status.success(), "git ls-files failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .filter(|path| root().join(path).is_file())
        .collect()
}

/// The text of every tracked file that is code or configuration (not prose).
fn corpus() -> Vec<(PathBuf, String)> {
    let code = [
        "rs", "toml", "sh", "yml", "conf", "js", "css", "html", "service", "tsv",
    ];
    tracked_files()
        .into_iter()
        .filter(|path| {
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            code.contains(&extension)
                || path.starts_with("deploy")
                || path.starts_with(".ci")
                || path.starts_with(".config")
        })
        .filter_map(|path| {
            std::fs::read_to_string(root().join(&path))
                .ok()
                .map(|text| (path, text))
        })
        .collect()
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `word` occurs in `text` with no identifier character on either side.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
    })
}

/// What a code span of the document names, when it names something checkable.
#[derive(Debug, PartialEq)]
enum Name {
    /// A path in the repository (`drone/src/build/`, `scripts/test.sh`).
    Path(String),
    /// A file name without its folder (`watch.rs`).
    Basename(String),
    /// An HTTP route the code serves (`/api/state`).
    Route(String),
    /// An identifier or a path of them (`Drone::normal_pull`, `swarm-leases`): each segment must
    /// occur in the code as a word.
    Identifier(Vec<String>),
}

/// Classifies one code span; `None` for what is not a name (commands, values, subjects with
/// placeholders, states written with their fields).
fn classify(span: &str) -> Option<Name> {
    let span = span.trim();
    // `transition(current, event)` and `daemon_config!` name `transition` and `daemon_config`.
    let span = match span.find('(') {
        Some(open) if span.ends_with(')') => &span[..open],
        _ => span,
    };
    let span = span.trim_end_matches('!');
    if span.is_empty()
        || span
            .chars()
            .any(|c| c.is_whitespace() || "<>$=*{}\"'[]|,#@%+".contains(c))
        || span.starts_with('-')
        || span.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return None;
    }
    if span.starts_with('/') {
        return Some(Name::Route(span.to_owned()));
    }
    if span.contains('/') {
        return Some(Name::Path(span.to_owned()));
    }
    let file_endings = [
        ".rs", ".md", ".sh", ".toml", ".tsv", ".yml", ".conf", ".json",
    ];
    if file_endings.iter().any(|ending| span.ends_with(ending)) {
        return Some(Name::Basename(span.to_owned()));
    }
    if span.contains('.') {
        // A subject, a host name, a value with a dot: not a name in the code.
        return None;
    }
    let segments: Vec<String> = span
        .split("::")
        .map(str::to_owned)
        .filter(|segment| !segment.is_empty())
        .collect();
    if segments
        .iter()
        .all(|s| s.chars().all(|c| is_word_char(c) || c == '-'))
    {
        Some(Name::Identifier(segments))
    } else {
        None
    }
}

fn code_spans(markdown: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        let mut parts = line.split('`');
        // Text, then code, then text, ...: every odd part is a span.
        parts.next();
        while let Some(code) = parts.next() {
            spans.push(code.to_owned());
            parts.next();
        }
    }
    spans
}

#[test]
fn the_classifier_tells_names_from_the_rest() {
    use Name::*;
    let cases = [
        ("drone/src/build/", Some(Path("drone/src/build/".into()))),
        ("/api/state", Some(Route("/api/state".into()))),
        ("watch.rs", Some(Basename("watch.rs".into()))),
        (
            "Drone::normal_pull",
            Some(Identifier(vec!["Drone".into(), "normal_pull".into()])),
        ),
        (
            "transition(current, event, policy, now)",
            Some(Identifier(vec!["transition".into()])),
        ),
        (
            "daemon_config!",
            Some(Identifier(vec!["daemon_config".into()])),
        ),
        (
            "swarm-leases",
            Some(Identifier(vec!["swarm-leases".into()])),
        ),
        ("swarm.build.<arch>.<package-key>", None),
        ("Queued { attempt: 1 }", None),
        ("emerge --oneshot --buildpkg", None),
        ("--check-config", None),
        ("10077", None),
    ];
    for (span, expected) in cases {
        assert_eq!(classify(span), expected, "{span}");
    }
    assert!(has_word("fn normal_pull(", "normal_pull"));
    assert!(!has_word("fn normal_pulls(", "normal_pull"));
}

/// ARCHITECTURE.md is the newcomer's map: a name in it that the code no longer has is a lie.
#[test]
fn every_name_in_the_architecture_document_exists() {
    let document =
        std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let corpus = corpus();
    let files = tracked_files();
    let mut missing = Vec::new();
    for span in code_spans(&document) {
        let found = match classify(&span) {
            None => true,
            Some(Name::Path(path)) => {
                let trimmed = path.trim_end_matches('/');
                root().join(trimmed).exists()
                    || files.iter().any(|file| {
                        let file = file.to_string_lossy();
                        file.ends_with(trimmed) || file.contains(&format!("{trimmed}/"))
                    })
            }
            Some(Name::Route(route)) => corpus
                .iter()
                .any(|(_, text)| text.contains(&format!("\"{route}\""))),
            Some(Name::Basename(name)) => files
                .iter()
                .any(|file| file.file_name().is_some_and(|f| f == name.as_str())),
            Some(Name::Identifier(segments)) => segments
                .iter()
                .all(|segment| corpus.iter().any(|(_, text)| has_word(text, segment))),
        };
        if !found {
            missing.push(span);
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what the code does not have: {missing:?}"
    );
}

/// `schemas` is what every component agrees on; it must stay usable from a pure unit test or a
/// fuzzer, so no async runtime and no NATS client.
#[test]
fn schemas_depends_on_no_async_crate() {
    let manifest = std::fs::read_to_string(root().join("schemas/Cargo.toml")).expect("manifest");
    let mut dependencies = Vec::new();
    let mut in_dependencies = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies && let Some((name, _)) = line.split_once('=') {
            dependencies.push(name.trim().trim_end_matches(".workspace").to_owned());
        }
    }
    dependencies.sort();
    assert_eq!(
        dependencies,
        ["rmp-serde", "serde", "thiserror"],
        "schemas' dependencies changed: keep async crates and the NATS client out of it"
    );
}

/// The coordinator spawns nothing; the drone spawns through its `TaskTracker`, which it joins
/// before going offline. The exceptions: a build's output readers, whose handles the build
/// keeps and joins (or aborts when dropped), and blocking work awaited where it is spawned.
#[test]
fn drones_and_coordinators_spawn_only_tracked_tasks() {
    let allowed = [Path::new("drone/src/builder.rs")];
    let mut untracked = Vec::new();
    for path in tracked_files() {
        let in_scope = path.starts_with("coordinator/src") || path.starts_with("drone/src");
        let is_test = path.to_string_lossy().ends_with("_tests.rs");
        if !in_scope || is_test || allowed.contains(&path.as_path()) {
            continue;
        }
        let text = std::fs::read_to_string(root().join(&path)).expect("read");
        // Unit tests at the end of a file may spawn what they like.
        let product = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (number, line) in product.lines().enumerate() {
            // Blocking work (hashing a package) is spawned onto the blocking pool and awaited
            // where it is spawned, so it cannot outlive its caller.
            let awaited_blocking = line.contains("task::spawn_blocking(");
            if (line.contains("tokio::spawn") || line.contains("task::spawn")) && !awaited_blocking
            {
                untracked.push(format!("{}:{}", path.display(), number + 1));
            }
        }
    }
    assert!(untracked.is_empty(), "untracked spawns: {untracked:?}");
}

/// A long file is hard to hold in mind whole; one that must stay long says why at its top.
#[test]
fn no_source_file_is_over_500_lines_without_a_reason_at_its_top() {
    let mut long = Vec::new();
    for path in tracked_files() {
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(root().join(&path)).expect("read");
        let lines = text.lines().count();
        let says_why = text
            .lines()
            .take(12)
            .any(|line| line.starts_with("//") && line.contains(LONG_FILE_REASON));
        if lines > MAX_LINES && !says_why {
            long.push(format!("{} ({lines} lines)", path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these, or say at their top why they are {LONG_FILE_REASON}: {long:?}"
    );
}
