//! The fingerprint a run targets, pure: chosen when a submission comes in, from what it asks
//! for, the arch's current target and the fingerprints of the arch's online drones. A run's
//! tree is the newest any of its drones has: drones with an older tree take no work of it
//! until they sync.

use std::collections::BTreeMap;

use schemas::{Arch, DroneName, Fingerprint, RunTarget, SCHEMA_VERSION};

/// Why a submission cannot target a fingerprint; nothing of it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefusal {
    #[error("no online drone of {arch} has fingerprint {wanted}; online: {online}")]
    NoSuchDrone {
        arch: Arch,
        wanted: String,
        online: String,
    },
    #[error(
        "the online drones of {arch} have several fingerprints ({online}); name the run's with --fingerprint"
    )]
    Ambiguous { arch: Arch, online: String },
}

/// `id (n drones: a, b), ...` of the online drones, for an operator to choose from.
fn summary(online: &[(DroneName, Fingerprint)]) -> String {
    let mut by_id: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, fp) in online {
        by_id.entry(fp.id.as_str()).or_default().push(name.as_str());
    }
    if by_id.is_empty() {
        return "none".to_owned();
    }
    by_id
        .iter()
        .map(|(id, names)| format!("{id} ({})", names.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The target a submission to `arch` gets: the fingerprint it asks for (`requested`), else the
/// current target's if some online drone has it, else the one every online drone shares; with
/// the newest tree among the online drones of it and the current target's. `None`: no target (no drone says what it
/// builds with), every drone of the arch takes the work.
pub fn choose(
    arch: &Arch,
    requested: Option<&str>,
    current: Option<&RunTarget>,
    online: &[(DroneName, Fingerprint)],
    now_ms: u64,
) -> Result<Option<RunTarget>, TargetRefusal> {
    let has = |id: &str| online.iter().any(|(_, fp)| fp.id == id);
    let id = match requested {
        Some(id) if has(id) => id.to_owned(),
        // Its drones are all away just now: the run keeps its target.
        Some(id) if current.is_some_and(|c| c.fingerprint.id == id) => {
            return Ok(current.cloned());
        }
        Some(id) => {
            return Err(TargetRefusal::NoSuchDrone {
                arch: arch.clone(),
                wanted: id.to_owned(),
                online: summary(online),
            });
        }
        None => match current {
            Some(c) if has(&c.fingerprint.id) => c.fingerprint.id.clone(),
            _ => {
                let mut ids: Vec<&str> = online.iter().map(|(_, fp)| fp.id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                match ids.as_slice() {
                    [] => return Ok(current.cloned()),
                    [only] => (*only).to_owned(),
                    _ => {
                        return Err(TargetRefusal::Ambiguous {
                            arch: arch.clone(),
                            online: summary(online),
                        });
                    }
                }
            }
        },
    };
    // Every drone of one id has the same CHOST, profile and settings; the newest tree wins,
    // and a run's tree never goes back (its packages so far were built with the newer one).
    let newest = online
        .iter()
        .map(|(_, fp)| fp)
        .filter(|fp| fp.id == id)
        .max_by_key(|fp| fp.tree_timestamp)
        .cloned()
        .map(|mut fp| {
            if let Some(current) = current.filter(|c| c.fingerprint.id == id) {
                fp.tree_timestamp = fp.tree_timestamp.max(current.fingerprint.tree_timestamp);
            }
            fp
        });
    Ok(newest.map(|fingerprint| RunTarget {
        v: SCHEMA_VERSION,
        arch: arch.clone(),
        fingerprint,
        set_ms: now_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(id: &str, tree: Option<u64>) -> Fingerprint {
        Fingerprint {
            id: id.to_owned(),
            chost: "x86_64-pc-linux-gnu".into(),
            profile: format!("profile-{id}"),
            settings: "s".into(),
            tree_timestamp: tree,
        }
    }

    fn drone(name: &str, id: &str, tree: Option<u64>) -> (DroneName, Fingerprint) {
        (DroneName::parse(name).expect("name"), fp(id, tree))
    }

    fn target(id: &str, tree: Option<u64>) -> RunTarget {
        RunTarget {
            v: SCHEMA_VERSION,
            arch: Arch::default(),
            fingerprint: fp(id, tree),
            set_ms: 1,
        }
    }

    #[test]
    fn a_run_targets_one_fingerprint_with_the_newest_tree_of_its_drones() {
        let amd64 = Arch::default();
        let current = target("aaa", Some(100));
        let ahead = target("aaa", Some(300));
        let shared = [drone("d1", "aaa", Some(200)), drone("d2", "aaa", Some(150))];
        let mixed = [drone("d1", "aaa", Some(200)), drone("d3", "bbb", Some(900))];
        type Expected<'a> = Result<Option<(&'a str, Option<u64>)>, &'a str>;
        type Online<'a> = &'a [(DroneName, Fingerprint)];
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a RunTarget>,
            Online<'a>,
            Expected<'a>,
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("nobody says what it builds with", None, None, &[], Ok(None)),
            ("nobody online keeps the target", None, Some(&current), &[], Ok(Some(("aaa", Some(100))))),
            ("the drones share one", None, None, &shared, Ok(Some(("aaa", Some(200))))),
            ("the current one, its tree refreshed", None, Some(&current), &mixed, Ok(Some(("aaa", Some(200))))),
            ("the tree never goes back", None, Some(&ahead), &shared, Ok(Some(("aaa", Some(300))))),
            ("several and no current: ask", None, None, &mixed, Err("several fingerprints (aaa (d1); bbb (d3))")),
            ("asked for, online", Some("bbb"), Some(&current), &mixed, Ok(Some(("bbb", Some(900))))),
            ("asked for, nobody has it", Some("ccc"), None, &mixed, Err("no online drone of amd64 has fingerprint ccc; online: aaa (d1); bbb (d3)")),
            ("asked for the current one, its drones away", Some("aaa"), Some(&current), &[], Ok(Some(("aaa", Some(100))))),
        ];
        for (what, requested, current, online, expected) in cases {
            let got = choose(&amd64, requested, current, online, 7);
            match (got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(
                    got.map(|t| (t.fingerprint.id, t.fingerprint.tree_timestamp)),
                    expected.map(|(id, tree)| (id.to_owned(), tree)),
                    "{what}"
                ),
                (Err(err), Err(text)) => assert!(err.to_string().contains(text), "{what}: {err}"),
                (got, _) => panic!("{what}: {got:?}"),
            }
        }
    }
}
