//! Turning what the operator hands `swarmctl submit` (arguments, atom lists, `emerge --pretend`
//! output) into submission items, validating every atom locally so that a bad list is refused
//! whole, with every bad line named, before anything is sent.

use std::fmt;
use std::path::{Path, PathBuf};

use schemas::{Atom, SubmitItem};

/// Where an atom came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The n-th (1-based) ATOM argument.
    Argument(usize),
    /// A line (1-based) of a file; `-` is standard input.
    Line { path: PathBuf, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Argument(n) => write!(f, "argument {n}"),
            Origin::Line { path, line } => write!(f, "{}:{line}", path.display()),
        }
    }
}

/// One atom that failed local validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAtom {
    pub origin: Origin,
    /// Why, naming the input (quoted and escaped, so control characters cannot reach the
    /// terminal).
    pub reason: String,
}

impl fmt::Display for InvalidAtom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.reason)
    }
}

/// The items of a submission in input order, without duplicates, or every invalid atom.
#[derive(Debug, Default)]
pub struct Collected {
    pub items: Vec<SubmitItem>,
    pub invalid: Vec<InvalidAtom>,
}

impl Collected {
    fn push(
        &mut self,
        origin: Origin,
        atom: &str,
        estimate_secs: Option<f64>,
        class: Option<schemas::SizeClass>,
        dep_column: &str,
    ) {
        let mut deps = Vec::new();
        for dep in dep_column.split(',').map(|d| d.trim_matches(' ')) {
            if dep.is_empty() || dep == "-" {
                continue;
            }
            match Atom::parse(dep) {
                Ok(dep) => deps.push(String::from(dep)),
                Err(err) => {
                    return self.invalid.push(InvalidAtom {
                        origin,
                        reason: format!("build dependency: {err}"),
                    });
                }
            }
        }
        match Atom::parse(atom) {
            Ok(atom) => {
                let atom = String::from(atom);
                // A list assembled from several sources often repeats a package; the first
                // mention (and its estimate) wins, the coordinator would ignore the rest anyway.
                if !self.items.iter().any(|item| item.atom == atom) {
                    self.items.push(SubmitItem {
                        atom,
                        estimate_secs,
                        class,
                        deps,
                    });
                }
            }
            Err(err) => self.invalid.push(InvalidAtom {
                origin,
                reason: err.to_string(),
            }),
        }
    }

    /// Adds the ATOM arguments.
    pub fn add_arguments<S: AsRef<str>>(&mut self, atoms: &[S]) {
        for (i, atom) in atoms.iter().enumerate() {
            self.push(Origin::Argument(i + 1), atom.as_ref(), None, None, "");
        }
    }

    /// Adds an atom list: one atom per line; blank lines and lines starting with `#` are
    /// skipped; a line may be tab-separated `atom<TAB>estimate_seconds<TAB>class<TAB>deps`, where
    /// the second column is taken as the build-time estimate on an 8-core drone when it is a
    /// number, the third as the size class (`small`, `medium`, `heavy`, `giant`) when it names
    /// one, and the fourth as the package's build dependencies in the run: comma-separated
    /// atoms, or empty or `-` for none.
    pub fn add_atom_list(&mut self, path: &Path, text: &str) {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut columns = line.split('\t');
            // Surrounding spaces are forgiven; anything inside the atom is the parser's business.
            let atom = columns.next().unwrap_or_default().trim_matches(' ');
            let estimate_secs = columns.next().and_then(parse_estimate);
            let class = columns.next().and_then(schemas::SizeClass::parse);
            let deps = columns.next().unwrap_or_default();
            self.push(
                Origin::Line {
                    path: path.to_owned(),
                    line: i + 1,
                },
                atom,
                estimate_secs,
                class,
                deps,
            );
        }
    }

    /// Adds the packages of `emerge --pretend` output: every `[ebuild ...] cat/pkg-ver...` line
    /// becomes `=cat/pkg-ver`; other lines (headers, `[binary ...]`, `[blocks ...]`,
    /// `[uninstall ...]`, USE flag notes) are skipped.
    pub fn add_pretend_output(&mut self, path: &Path, text: &str) {
        for (i, line) in text.lines().enumerate() {
            let origin = Origin::Line {
                path: path.to_owned(),
                line: i + 1,
            };
            match pretend_line(line) {
                PretendLine::Other => {}
                PretendLine::Package(cpv) => self.push(origin, &format!("={cpv}"), None, None, ""),
                PretendLine::Malformed => self.invalid.push(InvalidAtom {
                    origin,
                    reason: format!(
                        "[ebuild] line {:?} names no package",
                        schemas::shorten(line.trim(), 80)
                    ),
                }),
            }
        }
    }
}

/// The estimate column: a finite, non-negative number of seconds, or nothing (a header such as
/// `est_seconds_8_cores`, or a column left empty).
fn parse_estimate(column: &str) -> Option<f64> {
    column
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
}

#[derive(Debug, PartialEq, Eq)]
enum PretendLine {
    /// Not a line that asks for a build.
    Other,
    /// An `[ebuild ...]` line; the package as `cat/pkg-ver`, slot and repository removed.
    Package(String),
    /// An `[ebuild ...]` line without a package after the bracket.
    Malformed,
}

fn pretend_line(raw: &str) -> PretendLine {
    let line = strip_ansi(raw);
    let Some(rest) = line.trim_start().strip_prefix("[ebuild") else {
        return PretendLine::Other;
    };
    let Some((_flags, after)) = rest.split_once(']') else {
        return PretendLine::Malformed;
    };
    // `cat/pkg-1.0:0/1::gentoo` (tree views indent it): the version ends at the slot or repo.
    let Some(token) = after.split_whitespace().next() else {
        return PretendLine::Malformed;
    };
    match token.split(':').next() {
        Some(cpv) if !cpv.is_empty() => PretendLine::Package(cpv.to_owned()),
        _ => PretendLine::Malformed,
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), which `emerge --color=y` puts inside the
/// bracket and around the package, so coloured output is read like plain output. A lone ESC is
/// kept, and then fails atom validation visibly.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("\u{1b}[") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(|c: char| c.is_ascii_alphabetic()) {
            Some(end) => rest = &after[end + 1..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The parser's messages can span lines (the input, a caret under the fault, the reason); the
/// report is one line per invalid atom, so the lines are joined and the caret dropped.
#[cfg(test)]
mod tests {
    use super::*;

    fn from_list(text: &str) -> Collected {
        let mut collected = Collected::default();
        collected.add_atom_list(Path::new("list.txt"), text);
        collected
    }

    fn from_pretend(text: &str) -> Collected {
        let mut collected = Collected::default();
        collected.add_pretend_output(Path::new("pretend.txt"), text);
        collected
    }

    fn atoms(collected: &Collected) -> Vec<&str> {
        collected.items.iter().map(|i| i.atom.as_str()).collect()
    }

    #[test]
    fn pretend_lines() {
        // (line, expected atom or None when skipped)
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"[ebuild   R    ] sys-libs/zlib-1.3.1-r1::gentoo  USE="minizip -static-libs -verify-sig" ABI_X86="(64) -32 (-x32)" 0 KiB"#,
                Some("=sys-libs/zlib-1.3.1-r1"),
            ),
            (
                "[ebuild  N     ] dev-libs/foo-1.0:0/1::gentoo [0.9::gentoo]",
                Some("=dev-libs/foo-1.0"),
            ),
            (
                r#"[ebuild     U  ] x11-libs/gtk+-3.24.41:3::gentoo [3.24.39:3::gentoo] USE="X introspection wayland -broadway -cloudproviders (-colord) -cups -examples -gtk-doc -sysprof -test -vim-syntax -xinerama" ABI_X86="(64) -32 (-x32)" 0 KiB"#,
                Some("=x11-libs/gtk+-3.24.41"),
            ),
            (
                "[ebuild  NS    ] dev-lang/python-3.13.1:3.13::gentoo [3.12.8_p1:3.12::gentoo] USE=\"ensurepip ncurses readline sqlite ssl -bluetooth -build\" 19,883 KiB",
                Some("=dev-lang/python-3.13.1"),
            ),
            (
                "[ebuild   R   ~] app-misc/foo-9999::guru  0 KiB",
                Some("=app-misc/foo-9999"),
            ),
            (
                "[ebuild  N     ] sys-kernel/gentoo-sources-6.12.8:6.12.8::gentoo  USE=\"-build\"",
                Some("=sys-kernel/gentoo-sources-6.12.8"),
            ),
            (
                "[ebuild  N    ]  dev-libs/indented-1.2",
                Some("=dev-libs/indented-1.2"),
            ),
            (
                "[\u{1b}[32;01mebuild\u{1b}[0m  \u{1b}[32;01mN\u{1b}[0m     ] \u{1b}[32;01mdev-libs/coloured-2.0\u{1b}[0m::\u{1b}[36;01mgentoo\u{1b}[0m  \u{1b}[32;01m0 KiB\u{1b}[0m",
                Some("=dev-libs/coloured-2.0"),
            ),
            (
                "\u{1b}[32m[ebuild\u{1b}[0m  N     ] dev-libs/coloured-3.0::gentoo",
                Some("=dev-libs/coloured-3.0"),
            ),
            ("[binary   R    ] sys-libs/zlib-1.3.1-r1-1::gentoo", None),
            (
                "[blocks B      ] <sys-apps/portage-3.0.40 (\"<sys-apps/portage-3.0.40\" is soft blocking sys-apps/foo-1)",
                None,
            ),
            ("[uninstall     ] sys-apps/old-1.0::gentoo", None),
            ("[nomerge       ] sys-apps/portage-3.0.66::gentoo", None),
            (
                "These are the packages that would be merged, in order:",
                None,
            ),
            ("Calculating dependencies  ... done!", None),
            (
                "Total: 2 packages (1 upgrade, 1 reinstall), Size of downloads: 0 KiB",
                None,
            ),
            ("", None),
            (
                "\u{1b}[1m[binary\u{1b}[0m   R    ] sys-libs/zlib-1.3.1::gentoo",
                None,
            ),
            ("!!! The following installed packages are masked:", None),
        ];
        for (line, expected) in cases {
            let collected = from_pretend(line);
            assert!(
                collected.invalid.is_empty(),
                "{line}: {:?}",
                collected.invalid
            );
            assert_eq!(
                atoms(&collected),
                expected.iter().copied().collect::<Vec<_>>(),
                "{line}"
            );
        }
    }

    #[test]
    fn pretend_output_keeps_order_and_names_bad_lines() {
        let text = "\
These are the packages that would be merged, in order:

Calculating dependencies... done!
[ebuild   R    ] sys-libs/zlib-1.3.1-r1::gentoo  USE=\"-static-libs\" 0 KiB
[binary   R    ] app-arch/xz-utils-5.6.3::gentoo
[ebuild     U  ] x11-libs/gtk+-3.24.41:3::gentoo [3.24.39:3::gentoo] 0 KiB
[ebuild  N     ]
[ebuild  N     ] dev-libs/$(reboot)-1.0::gentoo
[ebuild  N     ] dev-libs/foo::gentoo

Total: 3 packages
";
        let collected = from_pretend(text);
        assert_eq!(
            atoms(&collected),
            ["=sys-libs/zlib-1.3.1-r1", "=x11-libs/gtk+-3.24.41"]
        );
        let lines: Vec<_> = collected
            .invalid
            .iter()
            .map(|i| i.origin.to_string())
            .collect();
        assert_eq!(lines, ["pretend.txt:7", "pretend.txt:8", "pretend.txt:9"]);
        assert!(
            collected.invalid[1].reason.contains("$(reboot)"),
            "{:?}",
            collected.invalid
        );
    }

    #[test]
    fn atom_lists() {
        // (file text, expected atoms with estimates, expected invalid lines)
        type Case<'a> = (&'a str, &'a [(&'a str, Option<f64>)], &'a [usize]);
        let cases: &[Case] = &[
            ("sys-libs/zlib\n", &[("sys-libs/zlib", None)], &[]),
            (
                "# comment\n\n   \n  # indented comment\nsys-libs/zlib\r\n=dev-libs/openssl-3.3.2\n",
                &[("sys-libs/zlib", None), ("=dev-libs/openssl-3.3.2", None)],
                &[],
            ),
            (
                "# atom\test_seconds_8_cores\tkind\nsys-libs/zlib\t20\tsmall\nsys-devel/gcc\t4800\tgiant\n",
                &[
                    ("sys-libs/zlib", Some(20.0)),
                    ("sys-devel/gcc", Some(4800.0)),
                ],
                &[],
            ),
            (
                "atom\test\nsys-libs/zlib\t2.5\n",
                &[("sys-libs/zlib", Some(2.5))],
                &[1],
            ),
            (
                "sys-libs/zlib\tfast\ndev-libs/a\t-3\ndev-libs/b\tNaN\ndev-libs/c\t\n",
                &[
                    ("sys-libs/zlib", None),
                    ("dev-libs/a", None),
                    ("dev-libs/b", None),
                    ("dev-libs/c", None),
                ],
                &[],
            ),
            ("  sys-libs/zlib  \n", &[("sys-libs/zlib", None)], &[]),
            (
                "sys-libs/zlib\nsys-libs/zlib\t9\n",
                &[("sys-libs/zlib", None)],
                &[],
            ),
            ("sys-libs/zlib # needed\n", &[], &[1]),
            (
                "sys-libs/glibc; rm -rf /\n$(reboot)\n../etc/passwd\nsys-libs/zlib\n`id`\n!!sys-libs/zlib\ndev-libs/foo[ssl?]\nsys-libs/zl\u{e9}b\n\u{1b}[2Jsys-libs/zlib\n",
                &[("sys-libs/zlib", None)],
                &[1, 2, 3, 5, 6, 7, 8, 9],
            ),
        ];
        for (text, expected, invalid) in cases {
            let collected = from_list(text);
            let got: Vec<_> = collected
                .items
                .iter()
                .map(|i| (i.atom.as_str(), i.estimate_secs))
                .collect();
            assert_eq!(&got, expected, "{text:?}");
            let got_invalid: Vec<_> = collected
                .invalid
                .iter()
                .map(|i| match &i.origin {
                    Origin::Line { line, .. } => *line,
                    Origin::Argument(_) => 0,
                })
                .collect();
            assert_eq!(&got_invalid, invalid, "{text:?}: {:?}", collected.invalid);
        }
    }

    #[test]
    fn hostile_atoms_are_named_with_file_and_line_and_escaped() {
        let collected =
            from_list("sys-libs/zlib\nsys-libs/glibc; rm -rf /\n$(reboot)\n\u{1b}[2J\n");
        let shown: Vec<_> = collected.invalid.iter().map(|i| i.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("list.txt:2: "), "{shown:?}");
        assert!(shown[0].contains("sys-libs/glibc; rm -rf /"), "{shown:?}");
        assert!(shown[1].starts_with("list.txt:3: "), "{shown:?}");
        assert!(shown[1].contains("$(reboot)"), "{shown:?}");
        assert!(shown[2].starts_with("list.txt:4: "), "{shown:?}");
        assert!(
            !shown[2].contains('\u{1b}'),
            "escape sequences are escaped: {shown:?}"
        );
        assert!(
            shown.iter().all(|s| !s.contains('\n')),
            "one line each: {shown:?}"
        );
    }

    #[test]
    fn arguments_are_numbered() {
        let mut collected = Collected::default();
        collected.add_arguments(&["sys-libs/zlib", "", "x".repeat(10_000).as_str()]);
        assert_eq!(atoms(&collected), ["sys-libs/zlib"]);
        let origins: Vec<_> = collected
            .invalid
            .iter()
            .map(|i| i.origin.to_string())
            .collect();
        assert_eq!(origins, ["argument 2", "argument 3"]);
        assert!(
            collected.invalid[1].reason.len() < 200,
            "long input is shortened"
        );
    }

    #[test]
    fn the_world_workload_format_parses() {
        // The head of `world-152.tsv`, the workload model the demo and the e2e suite submit.
        let text = "# atom\test_seconds_8_cores\tkind\n\
# A 152-package @world rebuild queue for a Gentoo desktop/server, for demos and benchmarks.\n\
# est_seconds_8_cores: modelled wall-clock build time on an 8-core drone with MAKEOPTS=-j8,\n\
# rough figures in the range that genlop reports on such machines; they are a workload model, not measurements.\n\
# Rows are in a plausible `emerge --emptytree @world` order (toolchain and base libraries first, the large\n\
# desktop applications last), as a coordinator would receive the queue; the order is part of the workload.\n\
sys-libs/zlib\t20\tsmall\n\
app-arch/xz-utils\t45\tsmall\n\
app-arch/bzip2\t15\tsmall\n\
app-arch/zstd\t60\tsmall\n\
app-arch/gzip\t30\tsmall\n\
dev-build/make\t40\tsmall\n\
";
        let collected = from_list(text);
        assert!(collected.invalid.is_empty(), "{:?}", collected.invalid);
        assert_eq!(collected.items.len(), 6);
        assert_eq!(collected.items[0].atom, "sys-libs/zlib");
        assert_eq!(collected.items[0].estimate_secs, Some(20.0));
        assert_eq!(collected.items[0].class, Some(schemas::SizeClass::Small));
        assert!(collected.items.iter().all(|i| i.estimate_secs.is_some()));
    }

    #[test]
    fn the_fourth_column_names_build_dependencies() {
        let text = "sys-libs/zlib\t20\tsmall\t-\n\
dev-libs/a\t\t\tsys-libs/zlib, =dev-libs/b-1\n\
dev-libs/c\t\t\t\n\
dev-libs/d\t5\n\
dev-libs/e\t\t\tsys-libs/zlib,$(reboot)\n";
        let collected = from_list(text);
        let got: Vec<(&str, Vec<&str>)> = collected
            .items
            .iter()
            .map(|i| (i.atom.as_str(), i.deps.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            got,
            [
                ("sys-libs/zlib", vec![]),
                ("dev-libs/a", vec!["sys-libs/zlib", "=dev-libs/b-1"]),
                ("dev-libs/c", vec![]),
                ("dev-libs/d", vec![]),
            ]
        );
        assert_eq!(collected.invalid.len(), 1, "{:?}", collected.invalid);
        assert!(
            collected.invalid[0]
                .to_string()
                .contains(":5: build dependency: atom \"$(reboot)\""),
            "{}",
            collected.invalid[0]
        );
    }
}
