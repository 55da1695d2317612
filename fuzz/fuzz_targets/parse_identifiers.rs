//! The atom, drone name and arch parsers on arbitrary text: none may panic, an accepted atom
//! parses again to itself, and its package key maps back to it alone.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    swarm_schemas::fuzzing::parse_everything(data);
});
