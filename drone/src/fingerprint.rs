//! A drone's fingerprint, pure: what its binary packages depend on besides the atom (CHOST,
//! profile, the settings that change binary packages) and how fresh its ebuild tree is; and
//! whether the drone fits the fingerprint its arch's run targets. The probe that asks Portage
//! (`portageq`) and follows the target is `fit.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use schemas::{Arch, Fingerprint, RunTarget};
use sha2::{Digest, Sha256};

/// The make.conf settings that change what a build installs, asked of Portage as they apply to
/// builds (`portageq envvar`, so profile defaults and package.use-free USE are included).
/// `USE` holds the USE_EXPAND flags too (`cpu_flags_x86_*`, `python_targets_*`).
pub const SETTINGS: &[&str] = &[
    "CFLAGS",
    "CXXFLAGS",
    "FFLAGS",
    "FCFLAGS",
    "LDFLAGS",
    "RUSTFLAGS",
    "USE",
    "INSTALL_MASK",
    "FEATURES",
];

/// The `FEATURES` that change a package's image; the others (parallel-fetch, sandbox, ...)
/// change how it is built, not what it holds.
const IMAGE_FEATURES: &[&str] = &[
    "compressdebug",
    "installsources",
    "nodoc",
    "noinfo",
    "noman",
    "nostrip",
    "splitdebug",
];

/// Settings whose words are a set: their order does not matter.
const WORD_SETS: &[&str] = &["USE", "INSTALL_MASK", "FEATURES"];

/// Why Portage's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    #[error("line {line} of portageq's answer is not KEY=value: {text:?}")]
    NotAssignment { line: usize, text: String },
    #[error("portageq's value of {key} is not shell-quoted as Portage quotes: {text:?}")]
    BadQuoting { key: String, text: String },
    #[error("portageq did not report {0}")]
    Missing(&'static str),
}

/// `portageq envvar -v KEY...` output (`KEY=<shlex-quoted value>` per line) as a map.
pub fn parse_envvar(output: &str) -> Result<BTreeMap<String, String>, FingerprintError> {
    let mut values = BTreeMap::new();
    for (i, line) in output.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, quoted)) = line.split_once('=') else {
            return Err(FingerprintError::NotAssignment {
                line: i + 1,
                text: line.to_owned(),
            });
        };
        let value = unquote(quoted).ok_or_else(|| FingerprintError::BadQuoting {
            key: key.to_owned(),
            text: quoted.to_owned(),
        })?;
        values.insert(key.to_owned(), value);
    }
    Ok(values)
}

/// Undoes Python's `shlex.quote`: a bare word, or single-quoted runs joined by `"'"`.
fn unquote(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => out.push(chars.next()?),
                    c => out.push(c),
                }
            },
            c if c.is_whitespace() => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// One setting's value as the fingerprint sees it: words separated by single spaces; a set's
/// words sorted and once each; of `FEATURES`, only those that change the image.
fn normalise(key: &str, value: &str) -> String {
    let mut words: Vec<&str> = value.split_whitespace().collect();
    if key == "FEATURES" {
        words.retain(|w| IMAGE_FEATURES.contains(&w.trim_start_matches('-')));
    }
    if WORD_SETS.contains(&key) {
        words.sort_unstable();
        words.dedup();
    }
    words.join(" ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of `arch`, `chost`, `profile` and `settings` (any keys; the ones in
/// `SETTINGS` count), with the tree's timestamp.
pub fn compute(
    arch: &Arch,
    chost: &str,
    profile: &str,
    settings: &BTreeMap<String, String>,
    tree_timestamp: Option<u64>,
) -> Fingerprint {
    let mut text = String::new();
    for key in SETTINGS {
        let value = settings.get(*key).map(String::as_str).unwrap_or_default();
        text.push_str(&format!("{key}={}\n", normalise(key, value)));
    }
    let settings_digest = hex(&Sha256::digest(text.as_bytes()));
    let identity = format!("{arch}\n{chost}\n{profile}\n{settings_digest}\n");
    let id = hex(&Sha256::digest(identity.as_bytes()))[..12].to_owned();
    Fingerprint {
        id,
        chost: chost.to_owned(),
        profile: profile.to_owned(),
        settings: settings_digest,
        tree_timestamp,
    }
}

/// The profile a `make.profile` link points at, as named below the repository's `profiles/`:
/// `../../var/db/repos/gentoo/profiles/default/linux/amd64/23.0` → `default/linux/amd64/23.0`.
pub fn profile_name(link_target: &Path) -> String {
    let text = link_target.to_string_lossy();
    match text.rfind("/profiles/") {
        Some(at) => text[at + "/profiles/".len()..]
            .trim_end_matches('/')
            .to_owned(),
        None => text.trim_end_matches('/').to_owned(),
    }
}

/// A date for people: `2026-12-02 00:45 UTC`.
fn when(secs: u64) -> String {
    let http = runtime::dates::format_http(secs);
    // "Wed, 02 Dec 2026 00:45:01 GMT" → "02 Dec 2026 00:45 UTC"
    let trimmed = http.get(5..22).unwrap_or(&http);
    format!("{trimmed} UTC")
}

/// Why this drone takes no work of its arch's run, or `None` when it fits: its fingerprint is
/// the run's and its ebuild tree is at least as new as the run's.
pub fn excluded(target: Option<&RunTarget>, mine: &Fingerprint) -> Option<String> {
    let target = target?;
    let wanted = &target.fingerprint;
    if wanted.id != mine.id {
        return Some(format!(
            "its fingerprint {} ({}, {}) is not the run's {} ({}, {})",
            mine.id, mine.chost, mine.profile, wanted.id, wanted.chost, wanted.profile
        ));
    }
    let needed = wanted.tree_timestamp?;
    match mine.tree_timestamp {
        Some(have) if have >= needed => None,
        Some(have) => Some(format!(
            "its ebuild tree ({}) is older than the run's ({}): sync it",
            when(have),
            when(needed)
        )),
        None => Some(format!(
            "its ebuild tree's age is unknown (no metadata/timestamp.chk); the run's is {}",
            when(needed)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn portageqs_answer_is_read_as_portage_quotes_it() {
        // What `portageq envvar -v` prints: shlex.quote of each value.
        let output = "CHOST=x86_64-pc-linux-gnu\nCFLAGS='-O2 -pipe -march=native'\nUSE='acl amd64 python_targets_python3_12'\nLDFLAGS='-Wl,-O1 -Wl,--as-needed'\nINSTALL_MASK=''\nRUSTFLAGS='-C target-cpu='\"'\"'native'\"'\"''\n";
        let values = parse_envvar(output).expect("parsed");
        assert_eq!(values["CHOST"], "x86_64-pc-linux-gnu");
        assert_eq!(values["CFLAGS"], "-O2 -pipe -march=native");
        assert_eq!(values["LDFLAGS"], "-Wl,-O1 -Wl,--as-needed");
        assert_eq!(values["INSTALL_MASK"], "");
        assert_eq!(values["RUSTFLAGS"], "-C target-cpu='native'");
        assert_eq!(
            parse_envvar("warning: no equals sign"),
            Err(FingerprintError::NotAssignment {
                line: 1,
                text: "warning: no equals sign".into()
            })
        );
        assert!(matches!(
            parse_envvar("CFLAGS='-O2"),
            Err(FingerprintError::BadQuoting { .. })
        ));
        assert!(matches!(
            parse_envvar("CFLAGS=-O2 -pipe"),
            Err(FingerprintError::BadQuoting { .. })
        ));
    }

    #[test]
    fn only_what_changes_a_package_changes_the_fingerprint() {
        let amd64 = Arch::default();
        let base = settings(&[
            ("CFLAGS", "-O2 -pipe"),
            ("USE", "acl amd64 ssl"),
            ("FEATURES", "sandbox parallel-fetch"),
        ]);
        let of = |s: &BTreeMap<String, String>| {
            compute(
                &amd64,
                "x86_64-pc-linux-gnu",
                "default/linux/amd64/23.0",
                s,
                None,
            )
            .id
        };
        let id = of(&base);
        assert_eq!(id.len(), 12);
        #[rustfmt::skip]
        let same: Vec<(&str, BTreeMap<String, String>)> = vec![
            ("USE in another order, a flag twice", settings(&[("CFLAGS", "-O2 -pipe"), ("USE", "ssl amd64 acl ssl"), ("FEATURES", "sandbox parallel-fetch")])),
            ("spacing", settings(&[("CFLAGS", " -O2   -pipe "), ("USE", "acl amd64 ssl"), ("FEATURES", "sandbox parallel-fetch")])),
            ("FEATURES that change only how it builds", settings(&[("CFLAGS", "-O2 -pipe"), ("USE", "acl amd64 ssl"), ("FEATURES", "ccache distcc")])),
            ("keys that do not count", settings(&[("CFLAGS", "-O2 -pipe"), ("USE", "acl amd64 ssl"), ("MAKEOPTS", "-j64"), ("FEATURES", "")])),
        ];
        for (what, s) in same {
            assert_eq!(of(&s), id, "{what}");
        }
        #[rustfmt::skip]
        let different: Vec<(&str, BTreeMap<String, String>)> = vec![
            ("CFLAGS", settings(&[("CFLAGS", "-O3 -pipe"), ("USE", "acl amd64 ssl")])),
            ("a USE flag", settings(&[("CFLAGS", "-O2 -pipe"), ("USE", "acl amd64")])),
            ("an image FEATURE", settings(&[("CFLAGS", "-O2 -pipe"), ("USE", "acl amd64 ssl"), ("FEATURES", "nostrip")])),
        ];
        for (what, s) in different {
            assert_ne!(of(&s), id, "{what}");
        }
        let other_profile = compute(
            &amd64,
            "x86_64-pc-linux-gnu",
            "default/linux/amd64/23.0/desktop",
            &base,
            None,
        );
        let other_chost = compute(
            &amd64,
            "x86_64-gentoo-linux-musl",
            "default/linux/amd64/23.0",
            &base,
            None,
        );
        let other_arch = compute(
            &Arch::parse("arm64").expect("arch"),
            "x86_64-pc-linux-gnu",
            "default/linux/amd64/23.0",
            &base,
            None,
        );
        for other in [other_profile, other_chost, other_arch] {
            assert_ne!(other.id, id);
        }
        // The tree's age is not identity.
        let fresh = compute(
            &amd64,
            "x86_64-pc-linux-gnu",
            "default/linux/amd64/23.0",
            &base,
            Some(9),
        );
        assert_eq!(fresh.id, id);
    }

    #[test]
    fn a_profile_is_named_below_profiles() {
        #[rustfmt::skip]
        let cases = [
            ("../../var/db/repos/gentoo/profiles/default/linux/amd64/23.0", "default/linux/amd64/23.0"),
            ("/var/db/repos/gentoo/profiles/default/linux/arm64/23.0/desktop/", "default/linux/arm64/23.0/desktop"),
            ("/etc/portage/my-profile", "/etc/portage/my-profile"),
        ];
        for (link, name) in cases {
            assert_eq!(profile_name(Path::new(link)), name, "{link}");
        }
    }

    #[test]
    fn a_drone_fits_the_run_with_its_fingerprint_and_a_tree_as_new() {
        let amd64 = Arch::default();
        let base = settings(&[("CFLAGS", "-O2")]);
        let at = |tree: Option<u64>| compute(&amd64, "x86_64-pc-linux-gnu", "p", &base, tree);
        let other = compute(
            &amd64,
            "x86_64-pc-linux-gnu",
            "q",
            &base,
            Some(2_000_000_000),
        );
        let target = |fingerprint: Fingerprint| RunTarget {
            v: schemas::SCHEMA_VERSION,
            arch: amd64.clone(),
            fingerprint,
            set_ms: 0,
        };
        let run = target(at(Some(1_796_212_345)));
        #[rustfmt::skip]
        let cases: Vec<(&str, Option<&RunTarget>, Fingerprint, Option<&str>)> = vec![
            ("no run target", None, at(None), None),
            ("same tree", Some(&run), at(Some(1_796_212_345)), None),
            ("newer tree", Some(&run), at(Some(1_796_300_000)), None),
            ("older tree", Some(&run), at(Some(1_796_000_000)), Some("its ebuild tree (30 Nov 2026 00:53 UTC) is older than the run's (02 Dec 2026 11:52 UTC): sync it")),
            ("unknown tree", Some(&run), at(None), Some("its ebuild tree's age is unknown (no metadata/timestamp.chk); the run's is 02 Dec 2026 11:52 UTC")),
            ("another fingerprint, however new", Some(&run), other.clone(), Some("is not the run's")),
        ];
        for (what, target, mine, expected) in cases {
            let got = excluded(target, &mine);
            match expected {
                None => assert_eq!(got, None, "{what}"),
                Some(text) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(text)),
                    "{what}: {got:?}"
                ),
            }
        }
        // A run that names no tree takes any tree of its fingerprint.
        assert_eq!(excluded(Some(&target(at(None))), &at(None)), None);
    }
}
