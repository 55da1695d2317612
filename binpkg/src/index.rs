//! The `Packages` index of a binhost, written as Portage writes it (`PackageIndex.write` in
//! `lib/portage/getbinpkg.py`): a header stanza, then one stanza per package, each `KEY: value`
//! line sorted by key and ended by a blank line; packages sorted by `CPV`; empty values and
//! Portage's defaults (`SLOT: 0`, `EAPI: 0`) left out.
//!
//! The traps, from Portage's reader: two blank lines in a row end the parse (every package after
//! them is silently lost), so no stanza is ever empty and no value holds a newline; a header
//! without `TIMESTAMP` or `VERSION` makes a client ignore the whole binhost.

use crate::Metadata;

/// What Portage omits because a reader assumes it (`_pkgindex_default_pkg_data`).
const DEFAULTS: &[(&str, &str)] = &[("SLOT", "0"), ("EAPI", "0")];

/// One value on one line: every run of whitespace (newlines included) becomes one space.
fn one_line(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn stanza(out: &mut String, entries: &Metadata, skip_defaults: bool) {
    let mut wrote = false;
    for (key, value) in entries {
        let value = one_line(value);
        let default = skip_defaults
            && DEFAULTS
                .iter()
                .any(|(k, v)| *k == key.as_str() && *v == value);
        if value.is_empty() || default || key.is_empty() || key.contains(':') {
            continue;
        }
        out.push_str(key);
        out.push_str(": ");
        out.push_str(&value);
        out.push('\n');
        wrote = true;
    }
    if wrote {
        out.push('\n');
    }
}

/// Renders an index. `header` must hold `TIMESTAMP` (strictly increasing between published
/// revisions: a client reads the package list only when it is newer than its cache) and
/// `VERSION`; `PACKAGES` is set here. A package without `CPV` is left out, as a reader would.
pub fn render(header: &Metadata, packages: &[Metadata]) -> String {
    let mut sorted: Vec<&Metadata> = packages
        .iter()
        .filter(|p| p.get("CPV").is_some_and(|cpv| !cpv.trim().is_empty()))
        .collect();
    sorted.sort_by(|a, b| a.get("CPV").cmp(&b.get("CPV")));
    let mut header = header.clone();
    header.insert("PACKAGES".to_owned(), sorted.len().to_string());
    header
        .entry("VERSION".to_owned())
        .or_insert_with(|| "0".to_owned());
    let mut out = String::new();
    stanza(&mut out, &header, false);
    for package in sorted {
        stanza(&mut out, package, true);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn stanzas_are_sorted_with_defaults_and_empties_left_out() {
        let header = map(&[("TIMESTAMP", "1700000001"), ("ARCH", "amd64")]);
        let packages = [
            map(&[
                ("CPV", "sys-libs/zlib-1.3.1"),
                ("SLOT", "0/1"),
                ("EAPI", "8"),
                ("SIZE", "10"),
            ]),
            map(&[
                ("CPV", "app-misc/hello-1.0"),
                ("SLOT", "0"),
                ("EAPI", "0"),
                ("USE", ""),
            ]),
            // Nothing a reader could use: left out, never an empty stanza.
            map(&[("SLOT", "0")]),
            map(&[("CPV", "a-b/c-1"), ("RDEPEND", "x-y/z\n\t>=q-r/s-1")]),
        ];
        assert_eq!(
            render(&header, &packages),
            "ARCH: amd64\nPACKAGES: 3\nTIMESTAMP: 1700000001\nVERSION: 0\n\n\
             CPV: a-b/c-1\nRDEPEND: x-y/z >=q-r/s-1\n\n\
             CPV: app-misc/hello-1.0\n\n\
             CPV: sys-libs/zlib-1.3.1\nEAPI: 8\nSIZE: 10\nSLOT: 0/1\n\n"
        );
        assert!(!render(&header, &packages).contains("\n\n\n"));
    }
}
