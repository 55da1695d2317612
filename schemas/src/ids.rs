//! Validated identifiers: a value of these types has passed its parser, so code past the edge
//! never sees an invalid atom, drone name or arch.

use std::fmt;

use serde::{Deserialize, Serialize};

#[path = "atom_syntax.rs"]
mod atom_syntax;

use atom_syntax::{NotAnAtom, Parts, Refusal};

/// The longest atom we accept. Real atoms are far shorter, USE dependencies included; the limit
/// keeps hostile input from reaching the parser, logs and subjects at full size: an atom's
/// package key (up to three bytes for each of its bytes) stays one subject token well inside
/// the 4 KiB a NATS protocol line may take, with the rest of a log's subject around it.
pub const MAX_ATOM_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtomError {
    #[error("atom is empty")]
    Empty,
    #[error("atom {shown:?} is {len} bytes long, the limit is {MAX_ATOM_LEN}")]
    TooLong { shown: String, len: usize },
    #[error("atom {input:?} contains {what} at byte {at}")]
    BadCharacter {
        input: String,
        what: String,
        at: usize,
    },
    #[error("atom {input:?} is not a valid package atom: {reason}")]
    Syntax { input: String, reason: String },
    #[error(
        "atom {input:?} is a blocker, which names packages to keep off a system, not one to \
         build (emerge refuses it too: \"is not a valid package atom\")"
    )]
    Blocker { input: String },
    #[error(
        "atom {input:?} has the conditional USE dependency {token:?}, which means something \
         only in an ebuild's dependencies (emerge refuses it too: \"contains a conditional \
         which is not allowed\")"
    )]
    ConditionalUseDep { input: String, token: String },
    #[error(
        "atom {input:?} has no category: emerge would look the name up in its ebuild tree, \
         which the swarm does not have; give it as category/name"
    )]
    NoCategory { input: String },
    #[error("{input:?} is not a package atom: emerge reads it as {what}")]
    NotAnAtom { input: String, what: &'static str },
}

impl AtomError {
    /// The offending input, shortened for display when it is long.
    pub fn input(&self) -> &str {
        match self {
            AtomError::Empty => "",
            AtomError::TooLong { shown, .. } => shown,
            AtomError::BadCharacter { input, .. }
            | AtomError::Syntax { input, .. }
            | AtomError::Blocker { input }
            | AtomError::ConditionalUseDep { input, .. }
            | AtomError::NoCategory { input }
            | AtomError::NotAnAtom { input, .. } => input,
        }
    }

    fn refused(input: &str, refusal: Refusal<'_>) -> AtomError {
        let input = input.to_owned();
        match refusal {
            Refusal::Blocker => AtomError::Blocker { input },
            Refusal::ConditionalUse(token) => AtomError::ConditionalUseDep {
                token: token.to_owned(),
                input,
            },
            Refusal::NoCategory => AtomError::NoCategory { input },
            Refusal::NotAnAtom(kind) => AtomError::NotAnAtom {
                input,
                what: match kind {
                    NotAnAtom::BinaryPackage => "a binary package file",
                    NotAnAtom::Ebuild => "an ebuild file",
                    NotAnAtom::Path => "a file, to build the package that owns it",
                    NotAnAtom::Set => "a package set",
                },
            },
            Refusal::Syntax(problem) => AtomError::Syntax {
                reason: problem.to_string(),
                input,
            },
        }
    }
}

/// A Gentoo package atom exactly as `emerge` takes it as a package argument: `cat/pkg`,
/// `=cat/pkg-1.2.3-r1`, `>=cat/pkg-1:0/1.2::gentoo`, `=cat/pkg-1.2*`, slot operators
/// (`cat/pkg:=`, `cat/pkg:*`), a binary package's build id (`=cat/pkg-1.2-3`) and
/// unconditional USE dependencies (`cat/pkg[ssl,-test,foo(+),-bar(-)]`). Refused as emerge
/// refuses them: blockers, conditional USE dependencies (`[gtk?]`, `[!gtk?]`, `[gtk=]`,
/// `[!gtk=]`), wildcards (emerge takes `*` only to unmerge, except in a version glob), and
/// arguments emerge reads as files, paths or sets. Refused although emerge takes it: a name
/// without a category, which emerge looks up in an ebuild tree the swarm does not have.
///
/// The parser (`atom_syntax.rs`) keeps nothing of its input: no cache, no interning.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Atom(String);

impl Atom {
    pub fn parse(input: &str) -> Result<Atom, AtomError> {
        if input.is_empty() {
            return Err(AtomError::Empty);
        }
        if input.len() > MAX_ATOM_LEN {
            return Err(AtomError::TooLong {
                shown: shorten(input, 40),
                len: input.len(),
            });
        }
        // Checked before the parser so that the error names the character, which is what an
        // operator needs when a line of a file has a stray tab or a pasted shell fragment.
        if let Some((at, ch)) = input.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
            let what = if ch.is_whitespace() {
                format!("whitespace {ch:?}")
            } else if ch.is_control() {
                format!("control character {:?}", ch)
            } else {
                format!("non-ASCII character {ch:?}")
            };
            return Err(AtomError::BadCharacter {
                input: input.to_owned(),
                what,
                at,
            });
        }
        match atom_syntax::parse(input) {
            Ok(_) => Ok(Atom(input.to_owned())),
            Err(refusal) => Err(AtomError::refused(input, refusal)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key used for this atom's job subject, lease key and package-state key.
    pub fn key(&self) -> PackageKey {
        PackageKey::of(self)
    }

    /// The atom's parts; it parsed when it was made, so it parses again.
    fn parts(&self) -> Option<Parts<'_>> {
        atom_syntax::parse(&self.0).ok()
    }

    /// The version the atom names, revision included: `3.3.2-r1` for
    /// `=dev-libs/openssl-3.3.2-r1`, `13` for the glob `=sys-devel/gcc-13*`, `1.2` for the
    /// build `=dev-libs/foo-1.2-3`; `None` for an atom without one.
    pub fn version(&self) -> Option<String> {
        self.parts()?.version.map(str::to_owned)
    }

    /// The package's name without version, slot, repository or USE dependencies:
    /// `sys-libs/zlib` for `>=sys-libs/zlib-1.3:0/1::gentoo[minizip]`.
    pub fn package_name(&self) -> String {
        match self.parts() {
            Some(parts) => format!("{}/{}", parts.category, parts.name),
            None => self.0.clone(),
        }
    }

    /// The USE dependencies between the atom's brackets (`ssl,-test` for
    /// `dev-libs/openssl[ssl,-test]`), all unconditional; `None` without brackets.
    pub fn use_deps(&self) -> Option<&str> {
        self.parts()?.use_deps
    }
}

/// `text` cut to at most `max` bytes (on a character boundary) with `...` appended when cut, so
/// that hostile input is shown in errors and logs at a bounded size.
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Atom {
    type Error = AtomError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Atom::parse(&value)
    }
}

impl From<Atom> for String {
    fn from(value: Atom) -> Self {
        value.0
    }
}

impl std::str::FromStr for Atom {
    type Err = AtomError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Atom::parse(s)
    }
}

/// An atom encoded into one NATS subject token and KV key: `[A-Za-z0-9-]` pass through, every
/// other byte becomes `_XX` (upper-case hex). The encoding is injective, so two atoms never
/// share a job subject, and readable enough for an operator browsing the stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PackageKey(String);

impl PackageKey {
    pub fn of(atom: &Atom) -> PackageKey {
        let mut out = String::with_capacity(atom.0.len() + 8);
        for byte in atom.0.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'-' {
                out.push(byte as char);
            } else {
                out.push_str(&format!("_{byte:02X}"));
            }
        }
        PackageKey(out)
    }

    /// Reverses [`PackageKey::of`]; `None` when the key is not a valid encoding of an atom.
    pub fn decode(key: &str) -> Option<Atom> {
        let bytes = key.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'_' {
                let hex = key.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Atom::parse(std::str::from_utf8(&out).ok()?).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {input:?} is {len} bytes long, the limit is {max}")]
    TooLong {
        what: &'static str,
        input: String,
        len: usize,
        max: usize,
    },
    #[error("{what} {input:?} must {rule}")]
    Invalid {
        what: &'static str,
        input: String,
        rule: &'static str,
    },
}

fn check_name(
    what: &'static str,
    input: &str,
    max: usize,
    allowed: fn(char) -> bool,
    rule: &'static str,
) -> Result<(), NameError> {
    if input.is_empty() {
        return Err(NameError::Empty { what });
    }
    if input.len() > max {
        let shown: String = input.chars().take(40).collect();
        return Err(NameError::TooLong {
            what,
            input: shown,
            len: input.len(),
            max,
        });
    }
    let first_ok = input
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !input.chars().all(allowed) {
        return Err(NameError::Invalid {
            what,
            input: input.to_owned(),
            rule,
        });
    }
    Ok(())
}

/// `Display`, `FromStr` and the `String` conversions serde uses, for a name type with
/// `parse` and `as_str`.
macro_rules! name_impls {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $name::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }
    };
}

/// A drone's name: it is a NATS subject token, a KV key and a label on the dashboard, so it is
/// limited to ASCII letters, digits and hyphens, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DroneName(String);

impl DroneName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<DroneName, NameError> {
        check_name(
            "drone name",
            input,
            Self::MAX_LEN,
            |c| c.is_ascii_alphanumeric() || c == '-',
            "start with a letter or digit and contain only ASCII letters, digits and '-'",
        )?;
        Ok(DroneName(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

name_impls!(DroneName);

/// A Gentoo keyword arch (`amd64`, `arm64`, `riscv`): jobs are published per arch and each arch
/// has its own consumer, so a drone only ever pulls work it can build.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Arch(String);

impl Arch {
    pub fn parse(input: &str) -> Result<Arch, NameError> {
        check_name(
            "arch",
            input,
            32,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
            "start with a letter or digit and contain only lower-case ASCII letters, digits and '-'",
        )?;
        Ok(Arch(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Arch {
    fn default() -> Self {
        Arch("amd64".to_owned())
    }
}

name_impls!(Arch);

/// The name of a run: every submission belongs to one (`swarmctl submit --run NAME`, by
/// default `run-YYYYMMDD-HHMMSS`, the submission's UTC second), and a run is what is published
/// (`swarmctl binhost publish RUN`). ASCII letters, digits, `.`, `_` and `-`, starting with a
/// letter or digit: safe in a subject, a key and a shell.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunName(String);

impl RunName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<RunName, NameError> {
        check_name(
            "run name",
            input,
            Self::MAX_LEN,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
            "start with a letter or digit and contain only ASCII letters, digits, '.', '_' and '-'",
        )?;
        Ok(RunName(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

name_impls!(RunName);

#[cfg(test)]
#[path = "ids_tests.rs"]
mod tests;
