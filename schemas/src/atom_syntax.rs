//! The syntax of a package atom as `emerge` reads a package argument on its command line, and
//! nothing else: what Portage's `is_valid_package_atom(arg, allow_repo=True)` accepts (a
//! `portage.dep.Atom` with a repository and a build id allowed, no wildcard, no blocker),
//! without the conditional USE dependencies emerge refuses in an argument, and with the
//! arguments emerge reads as something other than an atom (files, paths, sets) told apart.
//! `tests/tests/atoms.rs` checks every line of a corpus of thousands against Portage's own code.
//!
//! Written from Portage's grammar (`lib/portage/dep/__init__.py`, `lib/portage/versions.py`,
//! `lib/_emerge/depgraph.py`): where that grammar is a backtracking regular expression, the
//! split it finds first is the one taken here, so that the same inputs are refused.
//!
//! Pure: nothing of an input outlives the call (no cache, no interning; the one allocation, a
//! list of a USE dependency list's flags, is dropped before it returns), so parsing a million
//! distinct hostile names leaves no memory behind. Linear in the input's length times its
//! hyphens and flags.

use std::fmt;

#[path = "atom_version.rs"]
mod version;

use version::{split_version, version_suffix};

/// A version operator: `<`, `<=`, `=`, `=` with a trailing `*` (a glob on the version), `~`
/// (any revision), `>=`, `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Less,
    LessOrEqual,
    Equal,
    Glob,
    AnyRevision,
    GreaterOrEqual,
    Greater,
}

/// The parts of a valid atom, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    pub operator: Option<Operator>,
    pub category: &'a str,
    pub name: &'a str,
    /// The version with its revision (`3.3.2-r1`), without a glob's `*`.
    pub version: Option<&'a str>,
    /// A binary package's build id (`=dev-libs/foo-1.0-3` is version `1.0`, build 3): emerge
    /// takes it, and matches it only against binary packages.
    pub build_id: Option<&'a str>,
    /// What follows the `:`: `0`, `0/1.2`, `=`, `0=`, `0/1.2=` or `*`.
    pub slot: Option<&'a str>,
    pub repo: Option<&'a str>,
    /// Between the brackets: unconditional USE dependencies only (`ssl,-test,foo(+),-bar(-)`).
    pub use_deps: Option<&'a str>,
}

/// Why an argument is not an atom that `emerge` builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// `!cat/pkg`, `!!cat/pkg`.
    Blocker,
    /// A USE dependency that depends on the USE flags of a parent package: `gtk?`, `!gtk?`,
    /// `gtk=`, `!gtk=`.
    ConditionalUse(&'a str),
    /// No `/` before the first `:`: emerge would look the name up in its ebuild tree.
    NoCategory,
    /// Read by emerge as something other than an atom.
    NotAnAtom(NotAnAtom),
    /// Not an atom's syntax.
    Syntax(Problem<'a>),
}

/// Arguments emerge reads as something other than a package atom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAnAtom {
    /// Ends in `.tbz2`, `.xpak` or `.gpkg.tar`.
    BinaryPackage,
    /// Ends in `.ebuild`.
    Ebuild,
    /// Starts with `/`, `./` or `../`: the package that owns the file.
    Path,
    /// `@name`, `world`, `system`.
    Set,
}

/// What is wrong with an atom's syntax, naming the part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem<'a> {
    /// `*` outside a version glob (`=cat/pkg-1.2*`): emerge takes wildcards only to unmerge.
    Wildcard,
    Category(&'a str),
    Name(&'a str),
    /// A name ending in what reads as a version, without an operator: `dev-libs/foo-1.2`.
    VersionWithoutOperator(&'a str),
    /// An operator without a valid version after the name.
    NoVersion(&'a str),
    /// What follows a version's `-` is not a build id (digits, no leading zero).
    BuildId(&'a str),
    /// A version glob of a build id: `=cat/pkg-1.0-2*`.
    GlobbedBuildId,
    Slot(&'a str),
    /// Something other than `::repository` after the slot.
    AfterSlot(&'a str),
    Repo(&'a str),
    /// `[` not closed by a `]` that ends the atom.
    UseBrackets,
    UseDep(&'a str),
    /// One flag given two different defaults: `[foo(+),foo(-)]`, `[foo,-foo(+)]`.
    UseDefaults(&'a str),
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WORD: &str = "start with a letter, digit or '_'";
        match self {
            Problem::Wildcard => write!(
                f,
                "'*' is a wildcard, which emerge takes only to unmerge; the one '*' it builds \
                 is a version glob at the end of =category/name-version*"
            ),
            Problem::Category(c) => write!(
                f,
                "category {c:?} must {WORD} and contain only letters, digits, '+', '_', '.' and '-'"
            ),
            Problem::Name(n) => write!(
                f,
                "package name {n:?} must {WORD} and contain only letters, digits, '+', '_' and '-'"
            ),
            Problem::VersionWithoutOperator(n) => write!(
                f,
                "{n:?} ends in a version, which needs an operator in front of the atom (=, ~, <, \
                 <=, >, >=); emerge asks: did you specify a version but forget to prefix with '='?"
            ),
            Problem::NoVersion(rest) => write!(
                f,
                "the operator needs a valid version after the name: {rest:?} is not \
                 name-version (a version is like 1.2.3b_pre4-r1)"
            ),
            Problem::BuildId(b) => write!(
                f,
                "{b:?} after the version is no build id (a number without leading zeros)"
            ),
            Problem::GlobbedBuildId => write!(f, "a version glob cannot name a build id"),
            Problem::Slot(s) => write!(
                f,
                "slot {s:?} is not SLOT, SLOT/SUBSLOT, SLOT=, SLOT/SUBSLOT=, = or * (a slot \
                 must {WORD} and contain only letters, digits, '+', '_', '.' and '-')"
            ),
            Problem::AfterSlot(rest) => {
                write!(f, "only ::repository may follow the slot, not {rest:?}")
            }
            Problem::Repo(r) => write!(
                f,
                "repository name {r:?} must {WORD} and contain only letters, digits, '_' and '-'"
            ),
            Problem::UseBrackets => write!(
                f,
                "USE dependencies are one [...] list at the end of the atom"
            ),
            Problem::UseDep(d) => write!(
                f,
                "USE dependency {d:?} is not flag, -flag, flag(+), flag(-) or -flag(+)/(-) (a \
                 flag starts with a letter or digit and contains only letters, digits, '+', '_', \
                 '@' and '-')"
            ),
            Problem::UseDefaults(d) => write!(
                f,
                "USE dependency {d:?} gives its flag another default than an earlier one"
            ),
        }
    }
}

/// Reads `input` as emerge reads a package argument. `input` is expected to be printable ASCII
/// already; anything else is refused as some syntax problem.
pub fn parse(input: &str) -> Result<Parts<'_>, Refusal<'_>> {
    if let Some(kind) = not_an_atom(input) {
        return Err(Refusal::NotAnAtom(kind));
    }
    if input.starts_with('!') {
        return Err(Refusal::Blocker);
    }
    // Emerge puts a category in front of an argument with no '/' before its first ':' and
    // looks the name up in its ebuild tree, which the swarm does not have.
    let head = input.split(':').next().unwrap_or(input);
    if !head.contains('/') {
        let name = input.trim_start_matches(['<', '>', '=', '~']);
        if name.bytes().next().is_some_and(is_word) {
            return Err(Refusal::NoCategory);
        }
        return Err(Refusal::Syntax(Problem::Category(input)));
    }
    let (main, use_deps) = match input.find('[') {
        Some(open) if input.len() > open + 1 && input.ends_with(']') => {
            (&input[..open], Some(&input[open + 1..input.len() - 1]))
        }
        Some(_) => return Err(Refusal::Syntax(Problem::UseBrackets)),
        None => (input, None),
    };
    let (spec, slot, repo) = split_slot_and_repo(main).map_err(Refusal::Syntax)?;
    let parts = package(spec).map_err(Refusal::Syntax)?;
    if let Some(slot) = slot
        && !valid_slot(slot)
    {
        return Err(Refusal::Syntax(if slot.contains('*') && slot != "*" {
            Problem::Wildcard
        } else {
            Problem::Slot(slot)
        }));
    }
    if let Some(repo) = repo
        && !valid_repo(repo)
    {
        return Err(Refusal::Syntax(Problem::Repo(repo)));
    }
    if let Some(list) = use_deps
        && let Some(conditional) = check_use_deps(list).map_err(Refusal::Syntax)?
    {
        return Err(Refusal::ConditionalUse(conditional));
    }
    Ok(Parts {
        slot,
        repo,
        use_deps,
        ..parts
    })
}

/// What emerge reads `input` as when not an atom (`depgraph._select_files`, in its order).
fn not_an_atom(input: &str) -> Option<NotAnAtom> {
    if [".tbz2", ".xpak", ".gpkg.tar"]
        .iter()
        .any(|ext| input.ends_with(ext))
    {
        Some(NotAnAtom::BinaryPackage)
    } else if input.ends_with(".ebuild") {
        Some(NotAnAtom::Ebuild)
    } else if input.starts_with('/') || input.starts_with("./") || input.starts_with("../") {
        Some(NotAnAtom::Path)
    } else if input.starts_with('@') || input == "world" || input == "system" {
        Some(NotAnAtom::Set)
    } else {
        None
    }
}

/// An atom without its USE dependencies split in three: operator and package, slot, repository.
type Pieces<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

/// `main` (the atom without its USE dependencies) split into the operator and package, the
/// slot (after one `:`) and the repository (after `::`).
fn split_slot_and_repo(main: &str) -> Result<Pieces<'_>, Problem<'_>> {
    let Some(colon) = main.find(':') else {
        return Ok((main, None, None));
    };
    let (spec, rest) = main.split_at(colon);
    if let Some(repo) = rest.strip_prefix("::") {
        return Ok((spec, None, Some(repo)));
    }
    let rest = &rest[1..];
    let end = rest.find(':').unwrap_or(rest.len());
    let (slot, after) = rest.split_at(end);
    if after.is_empty() {
        return Ok((spec, Some(slot), None));
    }
    match after.strip_prefix("::") {
        Some(repo) => Ok((spec, Some(slot), Some(repo))),
        None => Err(Problem::AfterSlot(after)),
    }
}

/// The operator, category, name and version of `spec` (an atom without slot, repository and
/// USE dependencies).
fn package(spec: &str) -> Result<Parts<'_>, Problem<'_>> {
    let (operator, rest) = operator(spec);
    let (operator, rest) = match (operator, rest.strip_suffix('*')) {
        (Some(Operator::Equal), Some(globbed)) => (Some(Operator::Glob), globbed),
        _ => (operator, rest),
    };
    if rest.contains('*') {
        return Err(Problem::Wildcard);
    }
    let Some((category, after)) = rest.split_once('/') else {
        return Err(Problem::Category(rest));
    };
    if !valid_category(category) {
        return Err(Problem::Category(category));
    }
    let mut parts = Parts {
        operator,
        category,
        name: after,
        version: None,
        build_id: None,
        slot: None,
        repo: None,
        use_deps: None,
    };
    let Some(operator) = operator else {
        if version_suffix(after).is_some() {
            return Err(Problem::VersionWithoutOperator(after));
        }
        if !valid_name(after) {
            return Err(Problem::Name(after));
        }
        return Ok(parts);
    };
    let Some(split) = split_version(after) else {
        return Err(if valid_name(after) {
            Problem::NoVersion(after)
        } else {
            Problem::Name(after)
        });
    };
    if let Some(build) = split.build_id {
        if operator == Operator::Glob {
            return Err(Problem::GlobbedBuildId);
        }
        let digits = build.bytes().all(|b| b.is_ascii_digit());
        if !digits || (build.len() > 1 && build.starts_with('0')) {
            return Err(Problem::BuildId(build));
        }
    }
    parts.name = split.name;
    parts.version = Some(split.version);
    parts.build_id = split.build_id;
    Ok(parts)
}

fn operator(spec: &str) -> (Option<Operator>, &str) {
    for (text, operator) in [
        ("<=", Operator::LessOrEqual),
        (">=", Operator::GreaterOrEqual),
        ("<", Operator::Less),
        (">", Operator::Greater),
        ("=", Operator::Equal),
        ("~", Operator::AnyRevision),
    ] {
        if let Some(rest) = spec.strip_prefix(text) {
            return (Some(operator), rest);
        }
    }
    (None, spec)
}

/// `[A-Za-z0-9_]`, what Portage's expressions call a word character.
pub(crate) fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

pub(crate) fn is_name_byte(byte: u8) -> bool {
    is_word(byte) || byte == b'+' || byte == b'-'
}

fn word_then(text: &str, rest: fn(u8) -> bool) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(is_word) && bytes.all(rest)
}

fn valid_category(text: &str) -> bool {
    word_then(text, |b| is_name_byte(b) || b == b'.')
}

fn valid_name(text: &str) -> bool {
    word_then(text, is_name_byte)
}

fn valid_repo(text: &str) -> bool {
    word_then(text, |b| is_word(b) || b == b'-')
}

/// `SLOT`, `SLOT/SUBSLOT`, either followed by `=`; or `=` or `*` alone.
fn valid_slot(text: &str) -> bool {
    let (body, operator) = match text.as_bytes().last() {
        Some(&op @ (b'=' | b'*')) => (&text[..text.len() - 1], Some(op)),
        _ => (text, None),
    };
    if body.is_empty() {
        return operator.is_some();
    }
    if operator == Some(b'*') {
        return false;
    }
    let slot_name = |s: &str| word_then(s, |b| is_name_byte(b) || b == b'.');
    match body.split_once('/') {
        Some((slot, sub)) => slot_name(slot) && slot_name(sub),
        None => slot_name(body),
    }
}

/// One USE dependency read: its flag, default (`(+)`, `(-)` or none) and whether it is
/// conditional (`flag?`, `!flag?`, `flag=`, `!flag=`).
struct UseDep<'a> {
    flag: &'a str,
    default: Option<u8>,
    conditional: bool,
}

fn use_dep(token: &str) -> Option<UseDep<'_>> {
    let (prefix, rest) = match token.as_bytes().first() {
        Some(&p @ (b'!' | b'-')) => (Some(p), &token[1..]),
        _ => (None, token),
    };
    let (rest, suffix) = match rest.as_bytes().last() {
        Some(&s @ (b'?' | b'=')) => (&rest[..rest.len() - 1], Some(s)),
        _ => (rest, None),
    };
    let (flag, default) = if let Some(flag) = rest.strip_suffix("(+)") {
        (flag, Some(b'+'))
    } else if let Some(flag) = rest.strip_suffix("(-)") {
        (flag, Some(b'-'))
    } else {
        (rest, None)
    };
    let mut bytes = flag.bytes();
    let flag_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'@' | b'-'));
    // `!` only with a suffix, `-` only without one.
    let operator_ok = match (prefix, suffix) {
        (None, _) | (Some(b'!'), Some(_)) => true,
        (Some(_), None) => prefix == Some(b'-'),
        (Some(_), Some(_)) => false,
    };
    (flag_ok && operator_ok).then_some(UseDep {
        flag,
        default,
        conditional: suffix.is_some(),
    })
}

/// Checks every USE dependency of `list` (what is between the brackets); the first
/// conditional one when all are valid.
fn check_use_deps(list: &str) -> Result<Option<&str>, Problem<'_>> {
    let mut conditional = None;
    let mut seen: Vec<(&str, Option<u8>)> = Vec::new();
    for token in list.split(',') {
        let Some(dep) = use_dep(token) else {
            return Err(Problem::UseDep(token));
        };
        // Every mention of one flag must give it the same default (or none each time).
        if seen
            .iter()
            .any(|&(flag, default)| flag == dep.flag && default != dep.default)
        {
            return Err(Problem::UseDefaults(token));
        }
        seen.push((dep.flag, dep.default));
        if dep.conditional && conditional.is_none() {
            conditional = Some(token);
        }
    }
    Ok(conditional)
}

#[cfg(test)]
#[path = "atom_syntax_tests.rs"]
mod tests;
