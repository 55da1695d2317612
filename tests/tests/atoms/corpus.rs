//! The corpus of the atom oracle test, generated deterministically (a fixed-seed generator, no
//! randomness from outside): the real category/name pairs of `world-152.tsv` and tricky ones,
//! combined with every operator, versions valid and not, build ids, globs, slots, sub-slots and
//! slot operators, repositories, USE dependencies of every kind, blockers, wildcards, bare
//! names, files, paths and sets, shell and HTML fragments, control and non-ASCII characters,
//! atoms over the length limit; then each of these mutated (a character inserted, removed or
//! repeated) to land on the edges of the grammar.

use std::collections::HashSet;

/// splitmix64: small, fast and fixed, so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const OPERATORS: &[&str] = &["=", "~", "<", "<=", ">", ">="];
const BAD_OPERATORS: &[&str] = &["==", "=<", "=>", "!=", "<>", "~=", "=~", ">>", "+", "^"];
const VERSIONS: &[&str] = &[
    "1",
    "0",
    "1.2.3",
    "1.2.3b",
    "1.0_pre1",
    "1_p",
    "1_p20240101",
    "2.0_rc3-r1",
    "1.0-r0",
    "13",
    "2024.01.01",
    "1.2.3_alpha_beta2",
    "9999",
    "3.3.2-r1",
    "1.75.0",
    "0.1a_rc1_p2-r10",
];
const BAD_VERSIONS: &[&str] = &[
    "1.", ".1", "1..2", "1.2A", "1_foo", "1-r", "1-rr1", "v1", "1.2b3", "1_pre-r", "r1", "1.2.x",
    "1-r1.2", "1_", "1ab", "1.0-R1", "-1",
];
const BUILD_IDS: &[&str] = &[
    "-1",
    "-0",
    "-01",
    "-12",
    "-1.5",
    "-2a",
    "-r1",
    "-99999999999999999999",
];
const SLOTS: &[&str] = &[
    ":0", ":0/1", ":=", ":*", ":0=", ":0/1=", ":3.12", ":_x", ":a+b", ":0/1.2.3",
];
const BAD_SLOTS: &[&str] = &[
    ":0*", ":/1", ":0/", ":", ":.0", ":+0", ":-0", ":a/b/c", ":=*", ":*=", ":0:1", "::", ":0/*",
    ":**", ":0/1/", ":=0",
];
const REPOS: &[&str] = &["::gentoo", "::my-overlay", "::_x", "::x_1-2", "::G3"];
const BAD_REPOS: &[&str] = &[
    "::-x", "::", "::a.b", "::a/b", "::a:b", ":::x", "::+x", "::a+",
];
const USE_DEPS: &[&str] = &[
    "[ssl]",
    "[ssl,-test]",
    "[foo(+)]",
    "[-foo(-)]",
    "[foo(+),-bar(-)]",
    "[a@b]",
    "[A+]",
    "[python_targets_python3_12(-)]",
    "[a,-a]",
    "[a(+),-a(+)]",
    "[X,x]",
    "[a-]",
    "[1]",
    "[a,a]",
    "[gtk+]",
];
const CONDITIONAL_USE: &[&str] = &[
    "[gtk?]",
    "[!gtk?]",
    "[gtk=]",
    "[!gtk=]",
    "[gtk(+)?]",
    "[!gtk(-)=]",
    "[ssl,gtk?]",
    "[-a,!b=]",
];
const BAD_USE: &[&str] = &[
    "[]",
    "[,]",
    "[a,]",
    "[,a]",
    "[!a]",
    "[-a?]",
    "[-a=]",
    "[a(+),a(-)]",
    "[a,a(+)]",
    "[a][b]",
    "[a b]",
    "[_a]",
    "[+a]",
    "[a(+)(-)]",
    "[a?=]",
    "[a!]",
    "[(+)]",
    "[a",
    "a]",
    "[a]b",
    "[[a]]",
    "[a(*)]",
    "[a.b]",
    "[a/b]",
    "[a:b]",
    "[!-a]",
    "[--a]",
    "[a??]",
];
const CATEGORIES: &[&str] = &[
    "virtual",
    "dev.libs",
    "_cat",
    "+cat",
    "cat-1",
    "cat.1-x",
    "-cat",
    "Cat9",
    "a",
    "dev-libs+",
    ".cat",
    "c@t",
    "cat_",
    "x11-libs",
];
const NAMES: &[&str] = &[
    "foo-1",
    "foo-1a",
    "foo-r1",
    "foo+",
    "foo--1",
    "foo-",
    "_foo",
    "+foo",
    "f.o",
    "foo-1-bar",
    "foo-1.2-bar",
    "g++",
    "gtk+-3",
    "foo_1",
    "foo-1_p",
    "foo-bar-2-r3",
    "a",
    "A",
    "0",
    "foo-1-r",
    "foo-r",
    "foo-1.x",
    "-foo",
    "foo@",
    "foo-9999",
    "foo-1b",
    "foo-1-1",
];
const HOSTILE: &[&str] = &[
    "sys-libs/glibc; rm -rf /",
    "../etc/passwd",
    "$(reboot)",
    "`id`",
    "a/b;rm",
    "a/b|sh",
    "a/b&&x",
    "a/b>x",
    "dev-libs/<script>",
    "<script>alert(1)</script>",
    "a/b'c",
    "a/b\"c",
    "a/b\\c",
    "a/b$IFS",
    "a/b{1,2}",
    "a/b%00",
    "a/b#x",
    "a/b?x",
    "a/b~",
    "a/b`",
    "/",
    "//",
    "./",
    "..",
    ".",
    "-",
    "--",
    "-v",
    "--help",
    "a/",
    "/b",
    "a//b",
    "a/b/c",
    "=",
    "!",
    "!!",
    "!!!a/b",
    "*",
    "**",
    "~",
    ":",
    "[",
    "]",
    "@",
    "@world",
    "@",
    "world",
    "system",
    "selected",
    "dev-libs/foo.ebuild",
    "foo.ebuild",
    "dev-libs/foo-1.tbz2",
    "foo-1.xpak",
    "dev-libs/foo-1-1.gpkg.tar",
    "./foo",
    "../foo",
    "/usr/lib/libz.so",
    "dev-libs/foo:1.ebuild",
    "dev-libs/föö",
    "dev-libs/foo\t",
    "dev-libs/foo\r",
    "dev-libs/\u{7}foo",
    "dev-libs/foo\0",
    "dev-libs/foo\u{7f}",
    "dev-libs/foo\u{a0}",
    "\u{feff}dev-libs/foo",
    "dev-libs/foo\u{2028}",
    "ｄｅｖ/ｆｏｏ",
    "dev-libs/foo ",
    " dev-libs/foo",
    "dev-libs /foo",
];
const BARE: &[&str] = &[
    "zlib",
    ">=zlib-1.2",
    "zlib:0",
    "zlib[ssl]",
    "zlib[gtk?]",
    "=zlib-1*",
    "zlib::gentoo",
    "!zlib",
    "zlib-1.2",
    "~zlib-1",
    "z",
    "zlib:0/1",
    "gtk+",
    "_x",
    "zlib[]",
    "*",
    "=*",
];
const WILDCARDS: &[&str] = &[
    "dev-libs/*",
    "*/*",
    "*/zlib",
    "dev-*/foo",
    "=dev-libs/foo-*",
    "sys-libs/zlib*",
    "sys-libs/*lib",
    "=sys-libs/zlib-1.2*:0",
    "=sys-libs/zlib-1.2.*",
    "<sys-libs/zlib-1*",
    "=*/zlib-1",
    "=sys-libs/zlib-1**",
    "sys-libs/zlib:*",
    "sys-libs/zlib::*",
    "sys-libs/zlib[*]",
    "=sys-libs/zlib-1*[ssl]",
    "=sys-libs/zlib-1*::gentoo",
    "=sys-libs/zlib-1-1*",
];

/// The real `category/name` pairs of the world-152 workload.
fn world_names() -> Vec<String> {
    swarm_tests::world()
        .into_iter()
        .map(|(atom, _)| atom)
        .collect()
}

/// One atom built from parts: mostly valid pieces, now and then a bad one of each kind.
fn composed(rng: &mut Rng, names: &[String]) -> String {
    let real = &names[rng.below(names.len())];
    let (category, name) = real.split_once('/').unwrap_or(("cat", real));
    let category = if rng.chance(10) {
        rng.pick(CATEGORIES)
    } else {
        category
    };
    let name = if rng.chance(15) {
        rng.pick(NAMES)
    } else {
        name
    };
    let mut atom = String::new();
    if rng.chance(4) {
        atom.push_str(if rng.chance(50) { "!" } else { "!!" });
    }
    let versioned = rng.chance(60);
    let operator = match (versioned, rng.below(100)) {
        (_, 0..=3) => rng.pick(BAD_OPERATORS),
        (true, 4..=9) => "",
        (true, _) => rng.pick(OPERATORS),
        (false, 10..=14) => rng.pick(OPERATORS),
        (false, _) => "",
    };
    atom.push_str(operator);
    atom.push_str(category);
    atom.push('/');
    atom.push_str(name);
    if versioned {
        atom.push('-');
        atom.push_str(if rng.chance(12) {
            rng.pick(BAD_VERSIONS)
        } else {
            rng.pick(VERSIONS)
        });
        if rng.chance(12) {
            atom.push_str(rng.pick(BUILD_IDS));
        }
        if rng.chance(10) {
            atom.push('*');
        }
    }
    if rng.chance(40) {
        atom.push_str(if rng.chance(20) {
            rng.pick(BAD_SLOTS)
        } else {
            rng.pick(SLOTS)
        });
    }
    if rng.chance(30) {
        atom.push_str(if rng.chance(20) {
            rng.pick(BAD_REPOS)
        } else {
            rng.pick(REPOS)
        });
    }
    if rng.chance(50) {
        atom.push_str(match rng.below(10) {
            0..=1 => rng.pick(CONDITIONAL_USE),
            2 => rng.pick(BAD_USE),
            _ => rng.pick(USE_DEPS),
        });
    }
    atom
}

/// `atom` with one change: a character inserted (from the atom syntax's alphabet or beyond),
/// removed, or a piece repeated.
fn mutated(rng: &mut Rng, atom: &str) -> String {
    const ALPHABET: &[u8] = b"!-_+.*=:/[](),?@~<>019azAZ;$ \t";
    let chars: Vec<char> = atom.chars().collect();
    if chars.is_empty() {
        return "a".to_owned();
    }
    let at = rng.below(chars.len() + 1);
    let mut out: Vec<char> = chars.clone();
    match rng.below(3) {
        0 => out.insert(at, ALPHABET[rng.below(ALPHABET.len())] as char),
        1 if at < chars.len() => {
            out.remove(at);
        }
        _ => {
            let from = rng.below(chars.len());
            let len = 1 + rng.below((chars.len() - from).min(6));
            let piece: Vec<char> = chars[from..from + len].to_vec();
            for (i, c) in piece.into_iter().enumerate() {
                out.insert(at.min(out.len()) + i, c);
            }
        }
    }
    out.into_iter().collect()
}

/// Valid atoms longer than the swarm's limit (256 bytes), which emerge takes.
fn long_atoms(names: &[String]) -> Vec<String> {
    (0..8)
        .map(|i| {
            let flags: Vec<String> = (0..40 + i * 10).map(|f| format!("flag{f}")).collect();
            format!("{}[{}]", names[i % names.len()], flags.join(","))
        })
        .collect()
}

/// The corpus: every fixed list above, the world's names, `composed` atoms and mutations of
/// them, without repeats and never a line break inside a line.
pub fn corpus(size: usize) -> Vec<String> {
    let names = world_names();
    let mut rng = Rng(0x5eed_a70b_5eed_a70b);
    let mut lines: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |line: String, lines: &mut Vec<String>| {
        if !line.contains('\n') && !line.is_empty() && seen.insert(line.clone()) {
            lines.push(line);
        }
    };
    let fixed = [HOSTILE, BARE, WILDCARDS, CONDITIONAL_USE, BAD_USE, USE_DEPS];
    for line in fixed.iter().flat_map(|list| list.iter()) {
        add((*line).to_owned(), &mut lines);
    }
    for name in &names {
        add(name.clone(), &mut lines);
        add(format!("{name}[ssl,-test]"), &mut lines);
        add(format!("{name}[gtk?]"), &mut lines);
    }
    for list in [USE_DEPS, CONDITIONAL_USE, BAD_USE] {
        for use_deps in list {
            add(format!("dev-libs/openssl{use_deps}"), &mut lines);
        }
    }
    for slot in SLOTS.iter().chain(BAD_SLOTS) {
        add(format!("dev-lang/python{slot}"), &mut lines);
        add(format!(">=dev-lang/python-3.12{slot}::gentoo"), &mut lines);
    }
    for repo in REPOS.iter().chain(BAD_REPOS) {
        add(format!("dev-lang/python{repo}"), &mut lines);
    }
    for version in VERSIONS.iter().chain(BAD_VERSIONS) {
        for operator in OPERATORS.iter().chain(BAD_OPERATORS).chain(&[""]) {
            add(format!("{operator}dev-lang/python-{version}"), &mut lines);
        }
        add(format!("=dev-lang/python-{version}*"), &mut lines);
        for build in BUILD_IDS {
            add(format!("=dev-lang/python-{version}{build}"), &mut lines);
        }
    }
    for category in CATEGORIES {
        add(format!("{category}/foo"), &mut lines);
    }
    for name in NAMES {
        add(format!("dev-libs/{name}"), &mut lines);
        add(format!("=dev-libs/{name}-1"), &mut lines);
        add(format!("=dev-libs/{name}-1-2"), &mut lines);
    }
    for line in long_atoms(&names) {
        add(line, &mut lines);
    }
    while lines.len() < size {
        let atom = composed(&mut rng, &names);
        if rng.chance(35) {
            let changed = mutated(&mut rng, &atom);
            add(changed, &mut lines);
        } else {
            add(atom, &mut lines);
        }
    }
    lines
}
