//! The checks the fuzz targets (`fuzz/`) run on arbitrary input, kept here so that the
//! regression inputs in `fuzz/regressions/` are replayed by this crate's ordinary tests. Each
//! function panics exactly when an invariant of the wire contract breaks.

use crate::codec::{Wire, decode, encode};
use crate::ids::{Arch, Atom, DroneName, PackageKey};
use crate::messages::{
    DroneControl, DroneControlReply, DroneRecord, Event, Job, Lease, PackageRecord, SubmitReply,
    SubmitRequest,
};

/// Whatever decodes must encode, and decode again to a message that encodes to the same bytes
/// (bytes, not values: a NaN estimate is a valid float that never equals itself).
fn round_trip<T: Wire>(data: &[u8]) {
    let Ok(message) = decode::<T>(data) else {
        return;
    };
    let bytes = encode(&message).expect("a decoded message encodes");
    let again: T = decode(&bytes).expect("an encoded message decodes");
    assert_eq!(
        encode(&again).expect("encodes again"),
        bytes,
        "{} changes in a round trip",
        T::KIND
    );
}

/// Every message decoder on `data`.
pub fn decode_everything(data: &[u8]) {
    round_trip::<Job>(data);
    round_trip::<Lease>(data);
    round_trip::<DroneRecord>(data);
    round_trip::<Event>(data);
    round_trip::<PackageRecord>(data);
    round_trip::<SubmitRequest>(data);
    round_trip::<SubmitReply>(data);
    round_trip::<DroneControl>(data);
    round_trip::<DroneControlReply>(data);
}

/// Every identifier parser on `data` read as text.
pub fn parse_everything(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(atom) = Atom::parse(text) {
        let again = Atom::parse(atom.as_str()).expect("an accepted atom parses again");
        assert_eq!(again, atom);
        let key = atom.key();
        assert!(
            key.as_str()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "key {key} is not one subject token"
        );
        assert_eq!(
            PackageKey::decode(key.as_str()),
            Some(atom),
            "the key does not map back to its atom"
        );
    }
    if let Ok(name) = DroneName::parse(text) {
        assert_eq!(name.as_str(), text);
        assert!(!name.as_str().contains(['.', '*', '>', ' ']));
    }
    if let Ok(arch) = Arch::parse(text) {
        assert_eq!(arch.as_str(), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Replays every input kept in `fuzz/regressions/` (crashes the fuzzers once found, now
    /// fixed) and the seed corpus.
    #[test]
    fn regressions_and_seeds_stay_fixed() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for (dir, check) in [
            ("decode_messages", decode_everything as fn(&[u8])),
            ("parse_identifiers", parse_everything as fn(&[u8])),
        ] {
            for base in ["regressions", "corpus"] {
                let Ok(entries) = std::fs::read_dir(fuzz.join(base).join(dir)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let data = std::fs::read(entry.path()).expect("readable input");
                    check(&data);
                    replayed += 1;
                }
            }
        }
        assert!(
            replayed > 0,
            "no fuzz inputs found under {}",
            fuzz.display()
        );
    }
}
