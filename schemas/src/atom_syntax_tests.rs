//! Table tests of the atom grammar: the parts read from valid atoms, and each refusal with the
//! problem it names. The corpus checked against Portage itself is in `tests/tests/atoms.rs`.
use super::*;

fn parts(input: &str) -> Parts<'_> {
    parse(input).unwrap_or_else(|refusal| panic!("{input:?} refused: {refusal:?}"))
}

#[test]
fn the_parts_of_valid_atoms() {
    let p = parts("sys-libs/zlib");
    assert_eq!((p.operator, p.category, p.name), (None, "sys-libs", "zlib"));
    assert_eq!(
        (p.version, p.slot, p.repo, p.use_deps),
        (None, None, None, None)
    );

    let p = parts(">=dev-libs/openssl-3.3.2-r1:0/3=::gentoo[ssl,-test(-)]");
    assert_eq!(p.operator, Some(Operator::GreaterOrEqual));
    assert_eq!((p.category, p.name), ("dev-libs", "openssl"));
    assert_eq!(p.version, Some("3.3.2-r1"));
    assert_eq!(p.slot, Some("0/3="));
    assert_eq!(p.repo, Some("gentoo"));
    assert_eq!(p.use_deps, Some("ssl,-test(-)"));
    assert_eq!(p.build_id, None);

    let p = parts("=sys-devel/gcc-13*");
    assert_eq!((p.operator, p.version), (Some(Operator::Glob), Some("13")));

    let p = parts("~dev-lang/rust-1.75.0");
    assert_eq!(
        (p.operator, p.version),
        (Some(Operator::AnyRevision), Some("1.75.0"))
    );

    // A name that looks like a version after its first hyphen, read as Portage reads it.
    let p = parts("=dev-libs/foo-1-bar-2");
    assert_eq!((p.name, p.version), ("foo-1-bar", Some("2")));
    let p = parts("=x11-libs/gtk+-3.24.41");
    assert_eq!((p.name, p.version), ("gtk+", Some("3.24.41")));
}

#[test]
fn build_ids_are_read_as_portage_reads_them() {
    for (input, name, version, build) in [
        ("=dev-libs/foo-1.0-3", "foo", "1.0", "3"),
        ("=dev-libs/foo-1.0-r1-0", "foo", "1.0-r1", "0"),
        ("=dev-libs/foo-1-2-3", "foo-1", "2", "3"),
        ("=dev-libs/foo-1_p2-r3-10", "foo", "1_p2-r3", "10"),
    ] {
        let p = parts(input);
        assert_eq!(
            (p.name, p.version, p.build_id),
            (name, Some(version), Some(build)),
            "{input}"
        );
    }
}

#[test]
fn slot_and_repository_forms() {
    for (input, slot) in [
        ("dev-qt/qtbase:6", "6"),
        ("dev-libs/foo:0/1.2", "0/1.2"),
        ("dev-libs/foo:=", "="),
        ("dev-libs/foo:*", "*"),
        ("dev-libs/foo:0=", "0="),
        ("dev-libs/foo:0/1=", "0/1="),
        ("dev-libs/foo:_x+.y-z", "_x+.y-z"),
    ] {
        assert_eq!(parts(input).slot, Some(slot), "{input}");
    }
    assert_eq!(parts("dev-libs/foo::my_over-lay").repo, Some("my_over-lay"));
    assert_eq!(parts("dev-libs/foo:2::gentoo").repo, Some("gentoo"));
}

#[test]
fn unconditional_use_dependencies_are_taken() {
    for input in [
        "dev-libs/openssl[ssl]",
        "dev-libs/openssl[ssl,-test]",
        "dev-libs/foo[foo(+)]",
        "dev-libs/foo[-foo(-)]",
        "dev-libs/foo[python_targets_python3_12(-),X,gtk+,a@b,c-]",
        "dev-libs/foo[foo,-foo]",
        "dev-libs/foo[foo(+),-foo(+)]",
    ] {
        assert_eq!(
            parse(input).map(|p| p.use_deps.is_some()),
            Ok(true),
            "{input}"
        );
    }
}

#[test]
fn each_refusal_names_its_problem() {
    use Problem::*;
    for (input, expected) in [
        ("!dev-libs/foo", Refusal::Blocker),
        ("!!dev-libs/foo", Refusal::Blocker),
        ("zlib", Refusal::NoCategory),
        (">=zlib-1.3", Refusal::NoCategory),
        ("zlib:0/1", Refusal::NoCategory),
        ("dev-libs/foo[gtk?]", Refusal::ConditionalUse("gtk?")),
        ("dev-libs/foo[a,!gtk?]", Refusal::ConditionalUse("!gtk?")),
        ("dev-libs/foo[gtk=]", Refusal::ConditionalUse("gtk=")),
        ("dev-libs/foo[!gtk=,x]", Refusal::ConditionalUse("!gtk=")),
        ("dev-libs/foo[gtk(+)?]", Refusal::ConditionalUse("gtk(+)?")),
        ("@world", Refusal::NotAnAtom(NotAnAtom::Set)),
        ("world", Refusal::NotAnAtom(NotAnAtom::Set)),
        ("/usr/bin/gcc", Refusal::NotAnAtom(NotAnAtom::Path)),
        ("../etc/passwd", Refusal::NotAnAtom(NotAnAtom::Path)),
        (
            "dev-libs/foo:1.ebuild",
            Refusal::NotAnAtom(NotAnAtom::Ebuild),
        ),
        (
            "dev-libs/foo-1.gpkg.tar",
            Refusal::NotAnAtom(NotAnAtom::BinaryPackage),
        ),
        ("dev-libs/*", Refusal::Syntax(Wildcard)),
        ("*/*", Refusal::Syntax(Wildcard)),
        ("=dev-libs/foo-1**", Refusal::Syntax(Wildcard)),
        ("~dev-libs/foo-1*", Refusal::Syntax(Wildcard)),
        ("dev-libs/foo:0*", Refusal::Syntax(Wildcard)),
        ("-dev/foo", Refusal::Syntax(Category("-dev"))),
        ("$(reboot)", Refusal::Syntax(Category("$(reboot)"))),
        ("dev-libs/<script>", Refusal::Syntax(Name("<script>"))),
        ("dev-libs/foo.bar", Refusal::Syntax(Name("foo.bar"))),
        (
            "dev-libs/foo-1.2",
            Refusal::Syntax(VersionWithoutOperator("foo-1.2")),
        ),
        (
            "dev-libs/foo-1-r1",
            Refusal::Syntax(VersionWithoutOperator("foo-1-r1")),
        ),
        ("=dev-libs/foo", Refusal::Syntax(NoVersion("foo"))),
        ("=dev-libs/foo-1.2.x", Refusal::Syntax(Name("foo-1.2.x"))),
        ("=dev-libs/foo-1.0-1.5", Refusal::Syntax(BuildId("1.5"))),
        ("=dev-libs/foo-1.0-01", Refusal::Syntax(BuildId("01"))),
        // Portage takes the build-id reading first and does not look for another.
        ("=dev-libs/foo-1-2a", Refusal::Syntax(BuildId("2a"))),
        ("=dev-libs/foo-1.0-2*", Refusal::Syntax(GlobbedBuildId)),
        ("dev-libs/foo:", Refusal::Syntax(Slot(""))),
        ("dev-libs/foo:/1", Refusal::Syntax(Slot("/1"))),
        ("dev-libs/foo:0/", Refusal::Syntax(Slot("0/"))),
        ("dev-libs/foo:.0", Refusal::Syntax(Slot(".0"))),
        ("dev-libs/foo:0:x", Refusal::Syntax(AfterSlot(":x"))),
        ("dev-libs/foo::", Refusal::Syntax(Repo(""))),
        ("dev-libs/foo::-x", Refusal::Syntax(Repo("-x"))),
        ("dev-libs/foo::a.b", Refusal::Syntax(Repo("a.b"))),
        ("dev-libs/foo[ssl", Refusal::Syntax(UseBrackets)),
        ("dev-libs/foo[ssl]x", Refusal::Syntax(UseBrackets)),
        ("dev-libs/foo[]", Refusal::Syntax(UseDep(""))),
        ("dev-libs/foo[a,]", Refusal::Syntax(UseDep(""))),
        ("dev-libs/foo[!a]", Refusal::Syntax(UseDep("!a"))),
        ("dev-libs/foo[-a?]", Refusal::Syntax(UseDep("-a?"))),
        ("dev-libs/foo[_a]", Refusal::Syntax(UseDep("_a"))),
        ("dev-libs/foo[a(+)(-)]", Refusal::Syntax(UseDep("a(+)(-)"))),
        ("dev-libs/foo[a][b]", Refusal::Syntax(UseDep("a][b"))),
        (
            "dev-libs/foo[a(+),a(-)]",
            Refusal::Syntax(UseDefaults("a(-)")),
        ),
        (
            "dev-libs/foo[a,-a(+)]",
            Refusal::Syntax(UseDefaults("-a(+)")),
        ),
        // Syntax comes before the conditional, as emerge checks it first.
        ("dev-libs/foo[gtk?,]", Refusal::Syntax(UseDep(""))),
    ] {
        assert_eq!(parse(input), Err(expected), "{input}");
    }
}

#[test]
fn problems_read_as_one_line_naming_the_part() {
    let text = Problem::VersionWithoutOperator("foo-1.2").to_string();
    assert!(
        text.contains("\"foo-1.2\"") && text.contains("'='"),
        "{text}"
    );
    for problem in [
        Problem::Wildcard,
        Problem::Slot("0*"),
        Problem::UseDep("!a"),
        Problem::BuildId("01"),
    ] {
        let text = problem.to_string();
        assert!(!text.contains('\n') && !text.ends_with('.'), "{text}");
    }
}

#[test]
fn the_longest_hostile_inputs_parse_in_linear_time() {
    // Every '-' a possible split of name and version: about n * hyphens steps, not more.
    let hyphens = "=a/b".to_owned() + &"-1".repeat(126);
    let started = std::time::Instant::now();
    for _ in 0..1_000 {
        let _ = parse(&hyphens);
        let _ = parse(&format!("a/b[{}]", "x,".repeat(126)));
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
