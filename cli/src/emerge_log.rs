//! Build times from history the user already has: Portage's `emerge.log`
//! (`/var/log/emerge.log`), as `qlop` reads it. A merge starts with
//! `TIME:  >>> emerge (i of n) CAT/PF to ROOT` and ends with
//! `TIME:  ::: completed emerge (i of n) CAT/PF to ROOT`; the time between is the build (and
//! merge) time. Pure: text in, seconds per package name out.

use std::collections::BTreeMap;

use schemas::Atom;

/// The build times of each package name (`category/name`) the log saw merged, in seconds,
/// in log order.
#[derive(Debug, Default, PartialEq)]
pub struct History {
    pub secs: BTreeMap<String, Vec<u64>>,
    /// Lines that looked like a merge's start or end but could not be read.
    pub unreadable: usize,
}

impl History {
    /// The estimate for `atom`: the median of its package's merges, `None` when the log never
    /// saw it merged.
    pub fn estimate(&self, atom: &Atom) -> Option<f64> {
        let mut times = self.secs.get(&atom.package_name())?.clone();
        times.sort_unstable();
        times.get(times.len() / 2).map(|&s| s as f64)
    }
}

/// One merge line: its time, whether it starts or ends a merge, and the CAT/PF it names.
fn merge_line(line: &str) -> Option<(u64, bool, &str)> {
    let (time, rest) = line.split_once(':')?;
    let time: u64 = time.trim().parse().ok()?;
    let rest = rest.trim_start();
    let (start, rest) = if let Some(rest) = rest.strip_prefix(">>> emerge (") {
        (true, rest)
    } else if let Some(rest) = rest.strip_prefix("::: completed emerge (") {
        (false, rest)
    } else {
        return None;
    };
    let (_, rest) = rest.split_once(") ")?;
    let cpv = rest.split_whitespace().next()?;
    Some((time, start, cpv))
}

/// Reads an `emerge.log`. A completion is paired with the latest start of the same CAT/PF;
/// an interrupted merge (a start never completed) counts for nothing.
pub fn parse(text: &str) -> History {
    let mut history = History::default();
    let mut started: BTreeMap<&str, u64> = BTreeMap::new();
    for line in text.lines() {
        let Some((time, start, cpv)) = merge_line(line) else {
            if line.contains(">>> emerge (") || line.contains("::: completed emerge (") {
                history.unreadable += 1;
            }
            continue;
        };
        if start {
            started.insert(cpv, time);
            continue;
        }
        let Some(begin) = started.remove(cpv) else {
            continue;
        };
        match Atom::parse(&format!("={cpv}")) {
            Ok(atom) => history
                .secs
                .entry(atom.package_name())
                .or_default()
                .push(time.saturating_sub(begin)),
            Err(_) => history.unreadable += 1,
        }
    }
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as Portage writes them (`_emerge/emergelog.py`: `"%.0f: %s"`, two spaces after the
    /// colon for these messages).
    const LOG: &str = "\
1700000000: Started emerge on: Nov 14, 2023 22:13:20
1700000000:  *** emerge --oneshot sys-libs/zlib dev-libs/openssl
1700000010:  >>> emerge (1 of 2) sys-libs/zlib-1.3-r1 to /
1700000011:  === (1 of 2) Cleaning (sys-libs/zlib-1.3-r1::/var/db/repos/gentoo/sys-libs/zlib/zlib-1.3-r1.ebuild)
1700000070:  ::: completed emerge (1 of 2) sys-libs/zlib-1.3-r1 to /
1700000071:  >>> emerge (2 of 2) dev-libs/openssl-3.3.2 to /
1700000371:  ::: completed emerge (2 of 2) dev-libs/openssl-3.3.2 to /
1700100000:  >>> emerge (1 of 1) sys-libs/zlib-1.3.1 to /
1700100040:  ::: completed emerge (1 of 1) sys-libs/zlib-1.3.1 to /
1700200000:  >>> emerge (1 of 1) sys-libs/zlib-1.3.1 to /
1700200500:  >>> emerge (1 of 1) www-client/chromium-130.0 to /
1700200000:  ::: completed emerge (1 of 1) garbage
bogus:  >>> emerge (1 of 1) a/b-1 to /
1700300000:  >>> emerge (1 of 1) sys-libs/zlib-1.3.1 to /
1700300050:  ::: completed emerge (1 of 1) sys-libs/zlib-1.3.1 to /
";

    #[test]
    fn merges_are_timed_per_package_and_the_median_estimates() {
        let history = parse(LOG);
        assert_eq!(history.secs["sys-libs/zlib"], [60, 40, 50]);
        assert_eq!(history.secs["dev-libs/openssl"], [300]);
        // Started, never completed: no time.
        assert!(!history.secs.contains_key("www-client/chromium"));
        assert_eq!(history.unreadable, 1);
        let atom = |a: &str| Atom::parse(a).expect("atom");
        assert_eq!(history.estimate(&atom(">=sys-libs/zlib-1.3:0")), Some(50.0));
        assert_eq!(history.estimate(&atom("dev-libs/openssl")), Some(300.0));
        assert_eq!(history.estimate(&atom("app-misc/never")), None);
        assert_eq!(parse(""), History::default());
    }
}
