//! Every message decoder of the wire contract on arbitrary bytes: none may panic, and whatever
//! decodes must encode and decode again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    swarm_schemas::fuzzing::decode_everything(data);
});
