//! The claim hold: claims not yet written, by package. A claim is written `CLAIM_DELAY` after
//! it arrived, or together with its package's result if that comes first, so that a short
//! build's claim and result cost one write. Held items are generic so the decisions can be
//! tested without a JetStream message; the service holds its unacknowledged events here.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use schemas::PackageKey;

/// How long a claim waits to be written together with its package's result.
pub const CLAIM_DELAY: Duration = Duration::from_millis(200);

/// What the hold needs to know of an item: whether it is a claim, the only kind worth holding.
pub trait Claim {
    fn is_claim(&self) -> bool;
}

#[derive(Debug)]
pub struct Hold<T> {
    /// Held items by package, with the time they are due to be written.
    held: HashMap<PackageKey, (Instant, Vec<T>)>,
    /// When each held package is due, in arrival order (so also in due order). An entry whose
    /// package was released or re-held since is stale and skipped.
    due: VecDeque<(Instant, PackageKey)>,
}

impl<T> Default for Hold<T> {
    fn default() -> Self {
        Hold {
            held: HashMap::new(),
            due: VecDeque::new(),
        }
    }
}

impl<T: Claim> Hold<T> {
    /// Adds a package's newly arrived items (in stream order) to those it has held, which come
    /// first: they are older in the stream. If all of them are claims and the package is
    /// `known` (has a record), they are held, keeping the package's place in line if it had
    /// one; otherwise they are all returned, to be written now.
    pub fn add(
        &mut self,
        key: PackageKey,
        mut items: Vec<T>,
        known: bool,
        now: Instant,
    ) -> Option<Vec<T>> {
        let (due, fresh) = match self.held.remove(&key) {
            Some((due, mut held)) => {
                held.append(&mut items);
                items = held;
                (due, false)
            }
            None => (now + CLAIM_DELAY, true),
        };
        if known && items.iter().all(Claim::is_claim) {
            if fresh {
                self.due.push_back((due, key.clone()));
            }
            self.held.insert(key, (due, items));
            None
        } else {
            Some(items)
        }
    }

    /// Takes the packages whose delay is over at `now`, in the order they were first held.
    pub fn take_due(&mut self, now: Instant) -> Vec<(PackageKey, Vec<T>)> {
        let mut ready = Vec::new();
        while let Some((due, _)) = self.due.front() {
            if *due > now {
                break;
            }
            let Some((due, key)) = self.due.pop_front() else {
                break;
            };
            // A key re-held later carries a later entry; this one is stale then.
            if self.held.get(&key).is_some_and(|(held, _)| *held == due)
                && let Some((_, items)) = self.held.remove(&key)
            {
                ready.push((key, items));
            }
        }
        ready
    }

    /// When the first held package is due; `None` while nothing is held (stale entries may
    /// make this early, never late).
    pub fn next_due(&self) -> Option<Instant> {
        self.due.front().map(|(at, _)| *at)
    }

    /// How many packages are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures;

    /// A test item: a claim or a result, named so the order can be checked.
    #[derive(Debug, Clone, PartialEq)]
    enum Item {
        Claim(&'static str),
        Result(&'static str),
    }

    impl Claim for Item {
        fn is_claim(&self) -> bool {
            matches!(self, Item::Claim(_))
        }
    }

    fn key(atom: &str) -> PackageKey {
        fixtures::atom(atom).key()
    }

    const MS: Duration = Duration::from_millis(1);

    /// What `add` decides for each mix of items and whether the package is known.
    #[test]
    fn only_claims_of_known_packages_are_held() {
        use Item::{Claim as C, Result as R};
        let cases: Vec<(Vec<Item>, bool, bool)> = vec![
            (vec![C("c1")], true, true),
            (vec![C("c1"), C("c2")], true, true),
            (vec![C("c1")], false, false),
            (vec![R("r1")], true, false),
            (vec![C("c1"), R("r1")], true, false),
            (vec![R("r1")], false, false),
        ];
        for (items, known, held) in cases {
            let mut hold = Hold::default();
            let now = Instant::now();
            let out = hold.add(key("a/p"), items.clone(), known, now);
            assert_eq!(out.is_none(), held, "{items:?} known {known}");
            assert_eq!(hold.len(), usize::from(held));
            if let Some(out) = out {
                assert_eq!(out, items, "returned in order");
            }
            assert_eq!(hold.next_due(), held.then_some(now + CLAIM_DELAY));
        }
    }

    #[test]
    fn a_result_releases_the_held_claims_first() {
        let mut hold = Hold::default();
        let t0 = Instant::now();
        assert!(
            hold.add(key("a/p"), vec![Item::Claim("c")], true, t0)
                .is_none()
        );
        let out = hold.add(key("a/p"), vec![Item::Result("r")], true, t0 + 50 * MS);
        assert_eq!(out, Some(vec![Item::Claim("c"), Item::Result("r")]));
        assert!(hold.is_empty());
        // Its line entry is stale now: nothing comes out when it is due.
        assert!(hold.take_due(t0 + CLAIM_DELAY).is_empty());
        assert_eq!(hold.next_due(), None);
    }

    #[test]
    fn a_second_claim_keeps_the_first_ones_due_time() {
        let mut hold = Hold::default();
        let t0 = Instant::now();
        assert!(
            hold.add(key("a/p"), vec![Item::Claim("1")], true, t0)
                .is_none()
        );
        assert!(
            hold.add(key("a/p"), vec![Item::Claim("2")], true, t0 + 150 * MS)
                .is_none()
        );
        assert!(hold.take_due(t0 + CLAIM_DELAY - MS).is_empty());
        let out = hold.take_due(t0 + CLAIM_DELAY);
        assert_eq!(
            out,
            [(key("a/p"), vec![Item::Claim("1"), Item::Claim("2")])]
        );
        assert!(hold.is_empty());
    }

    #[test]
    fn due_packages_come_out_in_arrival_order_and_the_rest_stay() {
        let mut hold = Hold::default();
        let t0 = Instant::now();
        for (i, atom) in ["a/first", "a/second", "a/third"].into_iter().enumerate() {
            let at = t0 + u32::try_from(i).expect("small") * 100 * MS;
            assert!(
                hold.add(key(atom), vec![Item::Claim(atom)], true, at)
                    .is_none()
            );
        }
        let out: Vec<_> = hold
            .take_due(t0 + 100 * MS + CLAIM_DELAY)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(out, [key("a/first"), key("a/second")]);
        assert_eq!(hold.len(), 1);
        assert_eq!(hold.next_due(), Some(t0 + 200 * MS + CLAIM_DELAY));
    }

    /// A package released and held again gets a new place in line; its old entry, met first,
    /// is skipped rather than releasing the new claims early.
    #[test]
    fn a_package_held_again_waits_its_new_delay() {
        let mut hold = Hold::default();
        let t0 = Instant::now();
        assert!(
            hold.add(key("a/p"), vec![Item::Claim("1")], true, t0)
                .is_none()
        );
        assert!(
            hold.add(key("a/p"), vec![Item::Result("r")], true, t0 + MS)
                .is_some()
        );
        assert!(
            hold.add(key("a/p"), vec![Item::Claim("2")], true, t0 + 2 * MS)
                .is_none()
        );
        assert!(hold.take_due(t0 + CLAIM_DELAY).is_empty());
        assert_eq!(hold.len(), 1);
        let out = hold.take_due(t0 + 2 * MS + CLAIM_DELAY);
        assert_eq!(out, [(key("a/p"), vec![Item::Claim("2")])]);
    }
}
