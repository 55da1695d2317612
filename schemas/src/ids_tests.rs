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
    ] {
        assert_eq!(Atom::parse(atom).expect(atom).package_name(), name);
    }
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
        ("../etc/passwd", |e| matches!(e, AtomError::Syntax { .. })),
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
        ("dev-libs/foo[ssl]", |e| {
            matches!(e, AtomError::UseDeps { .. })
        }),
        ("-dev/foo", |e| matches!(e, AtomError::Syntax { .. })),
        ("dev-libs/<script>", |e| {
            matches!(e, AtomError::Syntax { .. })
        }),
        ("zlib", |e| matches!(e, AtomError::Syntax { .. })),
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
fn distinct_atoms_have_distinct_keys() {
    let a = Atom::parse("dev-libs/a_b").expect("valid").key();
    let b = Atom::parse("dev-libs/a-b").expect("valid").key();
    assert_ne!(a, b);
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
