//! Validated identifiers: a value of these types has passed its parser, so code past the edge
//! never sees an invalid atom, drone name or arch.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest atom we accept. Real atoms are far shorter; the limit keeps hostile input from
/// reaching the parser, logs and subjects at full size.
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
    #[error("atom {input:?} is a blocker, which cannot be built")]
    Blocker { input: String },
    #[error(
        "atom {input:?} carries USE dependencies, which emerge does not take as a package to build"
    )]
    UseDeps { input: String },
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
            | AtomError::UseDeps { input } => input,
        }
    }
}

/// A Gentoo package atom (`cat/pkg`, `=cat/pkg-1.2.3`, `>=cat/pkg-1:0::gentoo`), validated as a
/// PMS dependency specification by the `portage-atom` parser. Blockers and USE dependencies are
/// refused because they name no single thing to build.
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
        let dep = portage_atom::Dep::parse(input).map_err(|err| AtomError::Syntax {
            input: input.to_owned(),
            reason: syntax_reason(input, &err.to_string()),
        })?;
        if dep.blocker.is_some() {
            return Err(AtomError::Blocker {
                input: input.to_owned(),
            });
        }
        if dep.use_deps.is_some() {
            return Err(AtomError::UseDeps {
                input: input.to_owned(),
            });
        }
        Ok(Atom(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key used for this atom's job subject, lease key and package-state key.
    pub fn key(&self) -> PackageKey {
        PackageKey::of(self)
    }

    /// The version the atom names, revision included: `3.3.2-r1` for
    /// `=dev-libs/openssl-3.3.2-r1`; `None` for an atom without one.
    pub fn version(&self) -> Option<String> {
        let dep = portage_atom::Dep::parse(&self.0).ok()?;
        dep.version.map(|v| v.to_string())
    }

    /// The package's name without version, slot or repository: `sys-libs/zlib` for
    /// `>=sys-libs/zlib-1.3:0/1::gentoo`.
    pub fn package_name(&self) -> String {
        // The atom parsed when it was made; parsing again cannot fail.
        match portage_atom::Dep::parse(&self.0) {
            Ok(dep) => dep.cpn.to_string(),
            Err(_) => self.0.clone(),
        }
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

/// The parser repeats the whole input in its message; drop that prefix so the reason reads once.
fn syntax_reason(input: &str, message: &str) -> String {
    let mut message = message.trim();
    for prefix in ["invalid dependency:", "invalid dep:"] {
        message = message.strip_prefix(prefix).unwrap_or(message).trim_start();
    }
    while let Some(rest) = message.strip_prefix(input) {
        message = rest.trim_start_matches(':').trim_start();
    }
    // The parser's message can span lines (a caret diagram); one line reads better in logs.
    let message = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let message = message.as_str();
    if message.is_empty() {
        "not of the form [op]category/package[-version][:slot][::repo]".to_owned()
    } else {
        message.to_owned()
    }
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
