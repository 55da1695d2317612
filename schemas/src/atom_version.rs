//! The version grammar of an atom, and where a package name ends and its version begins
//! (`foo-1-bar-2` is `foo-1-bar` version `2`; `=foo-1.0-3` is version `1.0`, build 3), split
//! as Portage's backtracking expression splits it.

use super::{is_name_byte, is_word};

/// A name, version and build id read from `name-version[-build]`.
pub(crate) struct Split<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) build_id: Option<&'a str>,
}

/// `text` read as `name-version` or `name-version-build`, taking the split Portage's
/// expression finds first: the shortest name, and for it a build id before none (the longest
/// version first).
pub(crate) fn split_version(text: &str) -> Option<Split<'_>> {
    let bytes = text.as_bytes();
    if !bytes.first().copied().is_some_and(is_word) {
        return None;
    }
    for (at, &byte) in bytes.iter().enumerate().skip(1) {
        if byte == b'-'
            && let Some(ends) = version_ends(bytes, at + 1)
        {
            for end in [ends.revised, Some(ends.plain)].into_iter().flatten() {
                if bytes.get(end) == Some(&b'-') && is_version(bytes, end + 1) {
                    return Some(Split {
                        name: &text[..at],
                        version: &text[at + 1..end],
                        build_id: Some(&text[end + 1..]),
                    });
                }
            }
            if ends.reaches(bytes.len()) {
                return Some(Split {
                    name: &text[..at],
                    version: &text[at + 1..],
                    build_id: None,
                });
            }
        }
        if !is_name_byte(byte) {
            return None;
        }
    }
    None
}

/// Where the first `-version` ending `name` starts, if any: such a name needs an operator.
pub(crate) fn version_suffix(name: &str) -> Option<usize> {
    let bytes = name.as_bytes();
    if !bytes.first().copied().is_some_and(is_word) {
        return None;
    }
    for (at, &byte) in bytes.iter().enumerate().skip(1) {
        if byte == b'-' && is_version(bytes, at + 1) {
            return Some(at);
        }
        if !is_name_byte(byte) {
            return None;
        }
    }
    None
}

/// Where a version starting at some position can end, as far as a `-` or the end of the text
/// can follow it: after its numbers, letter and suffixes (`1.2.3b_pre4`), and after its
/// revision (`-r1`) when it has one.
struct Ends {
    plain: usize,
    revised: Option<usize>,
}

impl Ends {
    fn reaches(&self, end: usize) -> bool {
        self.plain == end || self.revised == Some(end)
    }
}

/// The version grammar (`1.2.3b_pre4-r1`: numbers separated by dots, an optional lower-case
/// letter, suffixes `_alpha`, `_beta`, `_pre`, `_rc`, `_p` each with an optional number, an
/// optional revision) read from `at` as far as it goes. Every part starts with a character the
/// part before cannot continue with, so the longest reading is the only one a `-` or the end
/// can follow.
fn version_ends(bytes: &[u8], at: usize) -> Option<Ends> {
    let digits = |from: usize| {
        from + bytes.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    let mut end = digits(at);
    if end == at {
        return None;
    }
    while bytes.get(end) == Some(&b'.') && digits(end + 1) > end + 1 {
        end = digits(end + 1);
    }
    if bytes.get(end).is_some_and(u8::is_ascii_lowercase) {
        end += 1;
    }
    while bytes.get(end) == Some(&b'_') {
        let rest = &bytes[end + 1..];
        let Some(word) = ["pre", "p", "beta", "alpha", "rc"]
            .iter()
            .find(|w| rest.starts_with(w.as_bytes()))
        else {
            break;
        };
        end = digits(end + 1 + word.len());
    }
    let revised = (bytes.get(end..end + 2) == Some(b"-r") && digits(end + 2) > end + 2)
        .then(|| digits(end + 2));
    Some(Ends {
        plain: end,
        revised,
    })
}

/// Whether all of `bytes` from `at` is one version.
fn is_version(bytes: &[u8], at: usize) -> bool {
    version_ends(bytes, at).is_some_and(|ends| ends.reaches(bytes.len()))
}
