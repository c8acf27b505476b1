//! Any request frame: decoding never panics; a produce request's record
//! batches that decode are written back and decode to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kappa_node::fuzzing::request(data);
});
