//! Tests of the validated identifiers: atoms against hostile and real input, drone names,
//! arches and package keys.
use super::*;

#[test]
fn the_package_name_drops_operator_version_slot_and_repository() {
    for (atom, name) in [
        ("sys-libs/zlib", "sys-libs/zlib"),
        ("=sys-libs/zlib-1.3.1", "sys-libs/zlib"),
        (">=dev-libs/openssl-3.3:0/3::gentoo", "dev-libs/openssl"),
        ("~www-client/chromium-129.0.6668.58", "www-client/chromium"),
        ("dev-qt/qtbase:6", "dev-qt/qtbase"),
        ("dev-libs/openssl[ssl,-test]", "dev-libs/openssl"),
        (
            "=dev-libs/foo-1-bar-2:0::gentoo[x(+)]",
            "dev-libs/foo-1-bar",
        ),
    ] {
        assert_eq!(Atom::parse(atom).expect(atom).package_name(), name);
    }
}

#[test]
fn the_version_has_its_revision_and_no_glob_or_build_id() {
    for (atom, version) in [
        ("sys-libs/zlib", None),
        ("=dev-libs/openssl-3.3.2-r1", Some("3.3.2-r1")),
        ("=sys-devel/gcc-13*", Some("13")),
        ("=dev-libs/foo-1.2-3", Some("1.2")),
        (">=dev-libs/openssl-3.3[ssl]", Some("3.3")),
    ] {
        let atom = Atom::parse(atom).expect(atom);
        assert_eq!(atom.version().as_deref(), version, "{atom}");
    }
}

#[test]
fn use_dependencies_are_read_back() {
    let atom = Atom::parse(">=dev-libs/openssl-3:0=[ssl,-test(-)]").expect("valid");
    assert_eq!(atom.use_deps(), Some("ssl,-test(-)"));
    assert_eq!(
        Atom::parse("dev-libs/openssl").expect("valid").use_deps(),
        None
    );
}

#[test]
fn valid_atoms_parse() {
    for input in [
        "sys-libs/zlib",
        "=dev-libs/openssl-3.0.13",
        ">=dev-lang/rust-1.75.0:0::gentoo",
        "www-client/chromium",
        "dev-qt/qtbase:6",
        "~app-editors/vim-9.1.0",
        "=sys-devel/gcc-13*",
        "x11-libs/gtk+:3",
        "dev-libs/openssl[ssl,-test]",
        "dev-libs/foo[foo(+),-bar(-)]",
        "dev-libs/foo:=",
        "dev-libs/foo:*",
        "dev-libs/foo:0/1=",
        "=dev-libs/foo-1.2-3",
        "dev-libs/foo::my-overlay",
    ] {
        let atom = Atom::parse(input);
        assert!(atom.is_ok(), "{input}: {atom:?}");
    }
}

#[test]
fn hostile_atoms_are_rejected_with_the_reason() {
    let long = "a".repeat(10_000);
    type Check = fn(&AtomError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, AtomError::Empty)),
        ("sys-libs/glibc; rm -rf /", |e| {
            matches!(e, AtomError::BadCharacter { at: 15, .. })
        }),
        ("sys-libs/glibc;rm", |e| {
            matches!(e, AtomError::Syntax { .. })
        }),
        ("../etc/passwd", |e| {
            matches!(e, AtomError::NotAnAtom { .. })
        }),
        ("$(reboot)", |e| matches!(e, AtomError::Syntax { .. })),
        ("`reboot`/x", |e| matches!(e, AtomError::Syntax { .. })),
        ("dev-libs/f\u{f6}\u{f6}", |e| {
            matches!(e, AtomError::BadCharacter { .. })
        }),
        ("dev-libs/foo\u{7}", |e| {
            matches!(e, AtomError::BadCharacter { .. })
        }),
        (&long, |e| {
            matches!(e, AtomError::TooLong { len: 10_000, .. })
        }),
        ("!dev-libs/foo", |e| matches!(e, AtomError::Blocker { .. })),
        ("!!dev-libs/foo", |e| matches!(e, AtomError::Blocker { .. })),
        (
            "dev-libs/foo[gtk?]",
            |e| matches!(e, AtomError::ConditionalUseDep { token, .. } if token == "gtk?"),
        ),
        (
            "dev-libs/foo[!gtk=]",
            |e| matches!(e, AtomError::ConditionalUseDep { token, .. } if token == "!gtk="),
        ),
        ("dev-libs/*", |e| matches!(e, AtomError::Syntax { .. })),
        ("@world", |e| matches!(e, AtomError::NotAnAtom { .. })),
        ("-dev/foo", |e| matches!(e, AtomError::Syntax { .. })),
        ("dev-libs/<script>", |e| {
            matches!(e, AtomError::Syntax { .. })
        }),
        ("zlib", |e| matches!(e, AtomError::NoCategory { .. })),
        ("=zlib-1.3", |e| matches!(e, AtomError::NoCategory { .. })),
    ];
    for (input, check) in cases {
        match Atom::parse(input) {
            Ok(atom) => panic!("{input:?} was accepted as {atom}"),
            Err(err) => {
                assert!(check(&err), "{input:?}: unexpected error {err:?}");
                let text = err.to_string();
                assert!(!text.ends_with('.'), "{text}");
            }
        }
    }
}

#[test]
fn error_names_the_input() {
    let err = Atom::parse("../etc/passwd").expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("../etc/passwd"), "{err}");
    assert_eq!(text.matches("../etc/passwd").count(), 1, "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(err.input(), "../etc/passwd");
}

#[test]
fn package_key_is_a_single_safe_token_and_round_trips() {
    for input in [
        "sys-libs/zlib",
        ">=dev-lang/rust-1.75.0:0::gentoo",
        "x11-libs/gtk+:3",
    ] {
        let atom = Atom::parse(input).expect("valid");
        let key = atom.key();
        assert!(
            key.as_str()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{key}"
        );
        assert_eq!(PackageKey::decode(key.as_str()), Some(atom));
    }
    assert_eq!(
        Atom::parse("sys-libs/zlib").expect("valid").key().as_str(),
        "sys-libs_2Fzlib"
    );
}

#[test]
fn refusals_say_why_in_emerges_words() {
    let text = |input: &str| Atom::parse(input).expect_err(input).to_string();
    let bare = text("zlib");
    assert!(
        bare.contains("category/name") && bare.contains("ebuild tree"),
        "{bare}"
    );
    let conditional = text("dev-libs/foo[gtk?]");
    assert!(
        conditional.contains("\"gtk?\"") && conditional.contains("contains a conditional"),
        "{conditional}"
    );
    let blocker = text("!dev-libs/foo");
    assert!(blocker.contains("is not a valid package atom"), "{blocker}");
    let version = text("dev-libs/foo-1.2");
    assert!(version.contains("forget to prefix with '='"), "{version}");
    for input in [
        "zlib",
        "dev-libs/foo[gtk?]",
        "!dev-libs/foo",
        "dev-libs/foo-1.2",
    ] {
        assert_eq!(text(input).matches(input).count(), 1, "{}", text(input));
    }
}

#[test]
fn distinct_atoms_have_distinct_keys() {
    let a = Atom::parse("dev-libs/a_b").expect("valid").key();
    let b = Atom::parse("dev-libs/a-b").expect("valid").key();
    assert_ne!(a, b);
}

/// Atoms that differ only in their USE dependencies (even only in their order) are distinct
/// packages of the swarm: each its own key, so its own job subject, lease, state and log, and
/// each key one valid subject token and KV key.
#[test]
fn atoms_differing_only_in_use_dependencies_are_distinct_packages() {
    let atoms = [
        "dev-libs/openssl",
        "dev-libs/openssl[ssl]",
        "dev-libs/openssl[-ssl]",
        "dev-libs/openssl[ssl,-test]",
        "dev-libs/openssl[-test,ssl]",
        "dev-libs/openssl[ssl(+)]",
    ];
    let keys: std::collections::HashSet<PackageKey> = atoms
        .iter()
        .map(|a| Atom::parse(a).expect(a).key())
        .collect();
    assert_eq!(keys.len(), atoms.len(), "{keys:?}");
    for key in &keys {
        // What a NATS subject token and a JetStream KV key may hold.
        assert!(
            key.as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{key}"
        );
        let subject = crate::names::build_subject(&Arch::default(), key);
        assert_eq!(subject.split('.').count(), 4, "{subject}");
    }
    assert_eq!(
        Atom::parse("dev-libs/openssl[ssl,-test]")
            .expect("valid")
            .key()
            .as_str(),
        "dev-libs_2Fopenssl_5Bssl_2C-test_5D"
    );
}

#[test]
fn the_longest_atom_has_a_bounded_key() {
    let flags: Vec<String> = (0..40).map(|i| format!("-f{i}(+)")).collect();
    let mut input = format!(">=a/b-1:0/1=::r[{}]", flags.join(","));
    while input.len() > MAX_ATOM_LEN {
        let cut = input[..input.len() - 1].rfind(',').expect("a flag to drop");
        input = format!("{}]", &input[..cut]);
    }
    let atom = Atom::parse(&input).expect("valid");
    let key = atom.key();
    assert!(
        key.as_str().len() <= 3 * MAX_ATOM_LEN,
        "{}",
        key.as_str().len()
    );
    assert_eq!(PackageKey::decode(key.as_str()), Some(atom));
}

#[test]
fn shorten_cuts_on_a_character_boundary() {
    assert_eq!(shorten("abc", 3), "abc");
    assert_eq!(shorten("abcd", 3), "abc...");
    assert_eq!(shorten("a\u{f6}b", 2), "a...");
}

#[test]
fn drone_names() {
    for ok in ["drone-Izar", "drone-Tau-Beta", "d1", "X"] {
        assert!(DroneName::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "-x",
        "a.b",
        "a b",
        "a*",
        "a>",
        "<b>",
        "x;rm",
        &"a".repeat(65),
    ] {
        assert!(DroneName::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn arch_names() {
    assert!(Arch::parse("amd64").is_ok());
    assert!(Arch::parse("AMD64").is_err());
    assert!(Arch::parse("amd64.x").is_err());
}

#[test]
fn run_names() {
    for ok in ["run-20261203-081502", "world.2026-12", "nightly_1", "7"] {
        assert_eq!(RunName::parse(ok).map(|r| r.to_string()).as_deref(), Ok(ok));
    }
    for bad in [
        "",
        "-x",
        ".x",
        "a b",
        "a/b",
        "a*",
        "x;rm",
        "r\u{e9}",
        &"a".repeat(65),
    ] {
        let err = RunName::parse(bad).expect_err(bad);
        assert!(err.to_string().contains("run name"), "{bad:?}: {err}");
    }
}
