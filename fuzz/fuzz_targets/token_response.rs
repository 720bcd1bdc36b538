//! The token-response parser on arbitrary bytes: the first bytes choose the status, the
//! provider's unit and lifetime bounds and a content type, the rest is the body. The
//! invariants checked are the property tests' (`src/invariants.rs` in the crate).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tower_oauth2::__fuzz::token_response(data);
});
