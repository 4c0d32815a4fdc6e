//! Fuzzes `LengthPrefixed`.
#![no_main]

use evmux::codec::LengthPrefixed;
use evmux_fuzz::{check_codec, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let codec = match input.max {
        Some(max) => LengthPrefixed::new().max_frame(max),
        None => LengthPrefixed::new(),
    };
    check_codec(&codec, &input);
});
