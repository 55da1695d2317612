//! End-to-end: atoms as `emerge` takes them. A corpus of thousands of valid and invalid atoms
//! checked line by line against Portage's own code (`tests/fixtures/portage_oracle.py atoms`),
//! and a running coordinator fed a million distinct refused atoms through its control service
//! keeps a flat memory footprint.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schemas::ids::MAX_ATOM_LEN;
use schemas::{Atom, AtomError, SubmitItem, SubmitRequest, SubmitResult, names};
use swarm_tests::*;

#[path = "atoms/corpus.rs"]
mod corpus;

/// How many lines the oracle test checks.
const CORPUS_LINES: usize = 6_000;

/// What the swarm should make of a line Portage judged: `Ok(())` when it accepts it, else
/// which refusal is right; `None` for any refusal.
fn expected(verdict: &str, bare: bool, line: &str) -> Result<(), Option<&'static str>> {
    match (verdict, bare) {
        // The swarm's own limits, stricter than emerge's on purpose.
        _ if line.len() > MAX_ATOM_LEN => Err(Some("too long")),
        ("atom", true) => Err(Some("no category")),
        ("atom", false) => Ok(()),
        ("blocker", _) => Err(Some("blocker")),
        ("conditional", false) => Err(Some("conditional")),
        _ => Err(None),
    }
}

fn refusal_kind(err: &AtomError) -> &'static str {
    match err {
        AtomError::TooLong { .. } => "too long",
        AtomError::NoCategory { .. } => "no category",
        AtomError::Blocker { .. } => "blocker",
        AtomError::ConditionalUseDep { .. } => "conditional",
        AtomError::Empty => "empty",
        AtomError::BadCharacter { .. } => "bad character",
        AtomError::Syntax { .. } => "syntax",
        AtomError::NotAnAtom { .. } => "not an atom",
    }
}

/// Every line of a generated corpus (`atoms/corpus.rs`: the world's real names combined with
/// operators, versions, build ids, globs, slots, repositories, USE dependencies of every kind,
/// blockers, wildcards, bare names, files, hostile strings, and mutations of all these) is
/// accepted by `Atom::parse` exactly when emerge takes it as a package argument, as Portage's
/// own code judges it, with two deliberate differences counted apart: a name without category
/// (emerge looks it up in its tree; the swarm has none) and an atom over `MAX_ATOM_LEN` bytes.
/// Blockers and conditional USE dependencies are refused as such.
#[test]
fn emerge_argument_validation_agrees_with_portage() {
    let lines = corpus::corpus(CORPUS_LINES);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("atoms.txt");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the corpus");
    let answer = testkit::portage::oracle(&["atoms", path.to_str().expect("utf-8 path")])
        .expect("the Portage oracle");
    let verdicts = answer["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), lines.len(), "one verdict per line");

    let mut disagreements = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (line, verdict) in lines.iter().zip(verdicts) {
        assert_eq!(
            verdict["line"].as_str(),
            Some(line.as_str()),
            "lines in order"
        );
        let portage = verdict["verdict"].as_str().expect("verdict");
        let bare = verdict["bare"].as_bool().expect("bare");
        let want = expected(portage, bare, line);
        let got = Atom::parse(line).map(|_| ()).map_err(|e| refusal_kind(&e));
        let kind = match &got {
            Ok(()) => "accepted",
            Err(kind) => kind,
        };
        *tally
            .entry(format!(
                "portage {portage}{}, swarm {kind}",
                if bare { " (bare)" } else { "" }
            ))
            .or_default() += 1;
        let agrees = match (&want, &got) {
            (Ok(()), Ok(())) => true,
            (Err(None), Err(_)) => true,
            // Blockers and conditionals may be refused for an earlier reason (a bad character).
            (Err(Some(w)), Err(g)) => w == g || *g == "bad character" || *g == "too long",
            _ => false,
        };
        if !agrees {
            disagreements.push(format!(
                "{line:?}: Portage: {portage}{}; swarm: {}",
                if bare { " (no category)" } else { "" },
                match Atom::parse(line) {
                    Ok(_) => "accepted".to_owned(),
                    Err(err) => err.to_string(),
                }
            ));
        }
    }
    let accepted = lines.iter().filter(|l| Atom::parse(l).is_ok()).count();
    eprintln!(
        "{} lines judged by Portage {}; the swarm accepts {accepted}:",
        lines.len(),
        answer["portage"]
    );
    for (what, count) in &tally {
        eprintln!("  {count:6}  {what}");
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements with Portage:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    // The corpus covers what it is meant to: enough of each verdict.
    for (what, at_least) in [
        ("portage atom, swarm accepted", 1_000),
        ("portage invalid, swarm syntax", 500),
        ("portage conditional, swarm conditional", 100),
        ("portage blocker, swarm blocker", 50),
        ("portage atom (bare), swarm no category", 10),
        ("portage atom, swarm too long", 5),
    ] {
        let count = tally.get(what).copied().unwrap_or(0);
        assert!(
            count >= at_least,
            "only {count} lines of {what:?}: {tally:?}"
        );
    }
}

/// Resident and peak resident memory of a process, in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Atoms the memory test feeds: every one distinct (its number is in its category, its
/// name, its version and its USE flag, so nothing repeats that a cache could share), in
/// every shape the parser reads to the end.
fn invented(i: u64) -> String {
    match i % 4 {
        0 => format!("=cat{i}-x/pkg{i}-{}.{}-r{}", i % 97, i % 13, i % 7),
        1 => format!(
            ">=c{i}/n{i}-{}.0:{}/{}.1::repo{i}[use{i},-u{i}(+)]",
            i % 89,
            i % 5,
            i % 3
        ),
        2 => format!("z{i}-y/p{i}-lib:{}[f{i}(-)]", i % 11),
        _ => format!("q{i}/w{i}::o{i}"),
    }
}

/// Atoms that are refused, each distinct: a conditional USE dependency, a blocker, a name
/// without category, shell and HTML fragments, a non-ASCII character, over the length limit.
fn hostile(i: u64) -> String {
    match i % 7 {
        0 => format!("cat{i}/pkg{i}[gtk{i}?]"),
        1 => format!("!!cat{i}/pkg{i}"),
        2 => format!("pkg{i}"),
        3 => format!("cat{i}/pkg{i};rm${{IFS}}-rf"),
        4 => format!("<b{i}>/x"),
        5 => format!("dev-libs/f\u{f6}\u{f6}{i}"),
        _ => format!("cat{i}/{}", "n".repeat(300)),
    }
}

/// How many atoms one request carries: about 0.6 MB of MessagePack, under the server's 1 MiB
/// limit.
const PER_REQUEST: u64 = 20_000;
/// Of these, how many are refused (each is named in the reply with its reason).
const HOSTILE_PER_REQUEST: u64 = 200;
const TOTAL: u64 = 1_000_000;
/// Requests sent before the baseline is measured: the allocator's and the service's buffers
/// reach their working size.
const WARM_UP_REQUESTS: u64 = 3;
/// How much the coordinator's resident memory may grow from the baseline while it reads the
/// rest of the million atoms, and its peak above the baseline's peak: about 4 bytes per atom,
/// a tenth of what keeping even one of each atom's names would take (the interning parser
/// used before grew by 273 MiB here).
const MAX_GROWTH_KIB: u64 = 4 * 1024;

/// One submission of `PER_REQUEST` atoms, numbered from `first`: one item per
/// `HOSTILE_PER_REQUEST` refused atoms, whose build dependencies are the valid invented atoms.
/// The coordinator parses every atom of it (items and build dependencies) and refuses it as a
/// whole, so it stores nothing.
fn request(first: u64) -> SubmitRequest {
    let valid = PER_REQUEST - HOSTILE_PER_REQUEST;
    let per_item = valid / HOSTILE_PER_REQUEST;
    let items = (0..HOSTILE_PER_REQUEST)
        .map(|h| {
            let deps_from = first + HOSTILE_PER_REQUEST + h * per_item;
            SubmitItem {
                atom: hostile(first + h),
                estimate_secs: None,
                class: None,
                deps: (deps_from..deps_from + per_item).map(invented).collect(),
            }
        })
        .collect();
    SubmitRequest {
        v: schemas::SCHEMA_VERSION,
        items,
        arch: None,
        fingerprint: None,
        run: None,
        priority: None,
    }
}

/// A real `swarm-coordinator` reads a million distinct atoms through `swarm.ctl.submit`, in 50
/// submissions of 20,000 (about 0.6 MB each): 990,000 valid invented atoms, every one with a
/// new category, package name, repository or USE flag, as build dependencies of 10,000 refused
/// ones (blockers, conditional USE dependencies, bare names, shell and HTML fragments,
/// non-ASCII, over-long). Each submission is refused as a whole, after every atom of it was
/// parsed, and stores nothing. Its resident memory (`VmRSS`) and peak (`VmHWM`) stay within
/// `MAX_GROWTH_KIB` of what they were after the first three submissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_refused_atoms_leave_the_coordinators_memory_flat() {
    let swarm = Swarm::start().await;
    swarm.wait_coordinator().await;
    let pid = swarm
        .coordinator
        .as_ref()
        .expect("coordinator")
        .pid()
        .as_raw();
    let client = swarm.client().await;
    let started = Instant::now();
    let (before_rss, before_hwm) = memory_kib(pid);
    let mut baseline = (0, 0);
    let mut fed = 0;
    let mut refused = 0;
    for n in 0..TOTAL / PER_REQUEST {
        if n == WARM_UP_REQUESTS {
            baseline = memory_kib(pid);
        }
        let bytes = schemas::encode(&request(n * PER_REQUEST)).expect("encode");
        assert!(bytes.len() < 1024 * 1024, "{} bytes", bytes.len());
        let reply = tokio::time::timeout(
            Duration::from_secs(30),
            client.request(names::SUBMIT_SUBJECT, bytes.into()),
        )
        .await
        .expect("answered in time")
        .expect("answered");
        match schemas::decode::<schemas::SubmitReply>(&reply.payload)
            .expect("a submit reply")
            .result
        {
            SubmitResult::Rejected { rejections } => {
                assert_eq!(rejections.len() as u64, HOSTILE_PER_REQUEST);
                refused += rejections.len() as u64;
            }
            other => panic!("request {n} not refused: {other:?}"),
        }
        fed += PER_REQUEST;
    }
    let (after_rss, after_hwm) = memory_kib(pid);
    let elapsed = started.elapsed();
    eprintln!(
        "fed {fed} atoms ({refused} refused) in {elapsed:.1?}: VmRSS {before_rss} KiB at start, \
         {} KiB after warm-up, {after_rss} KiB at the end; VmHWM {before_hwm} -> {} -> \
         {after_hwm} KiB",
        baseline.0, baseline.1
    );
    assert!(swarm.packages().await.is_empty(), "something was stored");
    assert!(
        after_rss <= baseline.0 + MAX_GROWTH_KIB,
        "resident memory grew from {} to {after_rss} KiB",
        baseline.0
    );
    assert!(
        after_hwm <= baseline.1 + MAX_GROWTH_KIB,
        "peak memory grew from {} to {after_hwm} KiB",
        baseline.1
    );
}

/// The longest atom the swarm takes, dense with the bytes a package key spells as `_XX`.
fn longest_atom() -> String {
    let mut atom = ">=dev-libs/foo-1.2_pre3-r4:0/1.2=::gentoo[".to_owned();
    for i in 0.. {
        let flag = format!(
            "{}f{i}({})",
            if i % 2 == 0 { "-" } else { "" },
            "+-".as_bytes()[i % 2] as char
        );
        if atom.len() + flag.len() + 2 > MAX_ATOM_LEN {
            break;
        }
        atom.push_str(&flag);
        atom.push(',');
    }
    atom.pop();
    atom.push(']');
    atom
}

/// Atoms with USE dependencies go through every part of the swarm as typed: swarmctl and the
/// coordinator take them (and refuse conditional ones and bare names with the reason); atoms
/// that differ only in their USE dependencies, even only in their order, are distinct
/// packages with distinct keys; the build command gets the atom as one argument (no shell)
/// and `{package}` as `category/name`; the log, the history and the dashboard's failure link
/// find them by atom and key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atoms_with_use_dependencies_are_built_logged_and_shown_as_typed() {
    let mut swarm = Swarm::start_with(&[("SWARM_COORDINATOR__MAX_ATTEMPTS", "1")]).await;
    swarm.wait_coordinator().await;
    let longest = longest_atom();
    assert!(longest.len() > MAX_ATOM_LEN - 8, "{}", longest.len());
    let failing = "dev-libs/openssl[-test,ssl]";
    let atoms = [
        "dev-libs/openssl[ssl,-test]",
        failing,
        "dev-libs/openssl",
        ">=dev-libs/foo-1.2:0/1=::gentoo[a(+),-b(-)]",
        longest.as_str(),
    ];
    let script = testkit::fixture("record-build.sh");
    let command = format!(
        "[\"{}\", \"--usepkg-exclude\", \"{{package}}\", \"{{atom}}\"]",
        script.display()
    );
    swarm.spawn_drone(
        &DroneSpec::new("u-a", 2, 2)
            .env("SWARM_DRONE__COMMAND", &command)
            .env("SWARM_TEST_PRINT_LINES", "2")
            .env("SWARM_TEST_PRINT_PAUSE", "0")
            .env("SWARM_TEST_FAIL_ATOMS", failing)
            .env("SWARM_DRONE__GROUND_AFTER_FAILURES", "100"),
    );
    let port = testkit::free_port().expect("free port");
    swarm.spawn_dashboard(port);

    for (refused, says) in [
        (
            "dev-libs/openssl[gtk?]",
            "contains a conditional which is not allowed",
        ),
        ("openssl[ssl]", "give it as category/name"),
    ] {
        let (ok, text) = swarm.swarmctl_text(&["submit", "dev-libs/openssl", refused]);
        assert!(!ok && text.contains(says), "{refused}: {text}");
    }
    let mut args = vec!["submit"];
    args.extend(atoms);
    let (ok, text) = swarm.swarmctl_text(&args);
    assert!(ok && text.contains("queued 5 packages"), "{text}");
    let packages = swarm.wait_final(atoms.len(), Duration::from_secs(60)).await;

    // Five packages, each under its atom's own key (the bucket's other keys are not packages').
    let client = swarm.client().await;
    let js = async_nats::jetstream::new(client);
    let kv = js
        .get_key_value(names::PACKAGES_BUCKET)
        .await
        .expect("bucket");
    let mut keys: Vec<String> =
        futures::StreamExt::collect::<Vec<_>>(kv.keys().await.expect("keys"))
            .await
            .into_iter()
            .map(|k| k.expect("key"))
            .filter(|k| schemas::PackageKey::decode(k).is_some())
            .collect();
    keys.sort();
    let mut expected_keys: Vec<String> = atoms
        .iter()
        .map(|a| Atom::parse(a).expect(a).key().to_string())
        .collect();
    expected_keys.sort();
    assert_eq!(keys, expected_keys);
    for atom in atoms {
        let state = packages[atom].state.label();
        let want = if atom == failing {
            "failed"
        } else {
            "succeeded"
        };
        assert_eq!(state, want, "{atom}");
    }

    // The command: `{package}` is the name alone, the atom one argument exactly as typed.
    let records = swarm.records();
    for atom in atoms {
        let start = records
            .iter()
            .find(|r| r.phase == "start" && r.atom == atom)
            .unwrap_or_else(|| panic!("{atom} never started"));
        let name = Atom::parse(atom).expect(atom).package_name();
        assert_eq!(start.rest, format!("--usepkg-exclude {name} {atom}"));
    }

    // The log and the history, by atom.
    let (ok, log) = swarm.swarmctl_text(&["logs", &longest]);
    assert!(ok && log == "line 1\nline 2\n", "{log:?}");
    let history = swarm.swarmctl_json(&["history", failing]);
    assert_eq!(history[0]["atom"], failing, "{history}");
    let listed = swarm.swarmctl_json(&["packages"]);
    let mut listed: Vec<&str> = listed
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["atom"].as_str())
        .collect();
    listed.sort_unstable();
    let mut typed = atoms.to_vec();
    typed.sort_unstable();
    assert_eq!(listed, typed);

    // The dashboard's failure links to its log by the package key.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    let link = loop {
        if let Ok(state) = testkit::http::get(addr, "/api/state", Duration::from_secs(5)).await
            && let Ok(json) = state.json()
            && json["failures"][0]["atom"] == failing
            && let Some(link) = json["failures"][0]["log"].as_str()
        {
            break link.to_owned();
        }
        assert!(Instant::now() < deadline, "the failure never showed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(link, "/logs/dev-libs_2Fopenssl_5B-test_2Cssl_5D/1");
    let log = testkit::http::get(addr, &link, Duration::from_secs(5))
        .await
        .expect("the log");
    assert_eq!(log.status, 200, "{}", log.body);
    assert!(
        log.body.contains(&format!("failing {failing} on purpose")),
        "{}",
        log.body
    );
}
