//! Fuzzes `Raw`: besides the common checks, the frames of any cut must
//! add up to the stream.
#![no_main]

use evmux::codec::Raw;
use evmux_fuzz::{decode, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    for chunks in [vec![input.stream], input.chunks()] {
        let out = decode(&mut Raw, chunks);
        assert_eq!(out.error, None);
        assert!(out.frames.iter().all(|f| !f.is_empty()), "an empty frame");
        assert_eq!(out.frames.concat(), input.stream, "bytes lost or changed");
    }
    if !input.stream.is_empty() {
        evmux_fuzz::check_round_trip(&Raw, input.stream);
    }
});
