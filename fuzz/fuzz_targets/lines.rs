//! Fuzzes `Lines`.
#![no_main]

use evmux::codec::Lines;
use evmux_fuzz::{check_codec, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let codec = match input.max {
        Some(max) => Lines::new().max_frame(max),
        None => Lines::new(),
    };
    check_codec(&codec, &input);
});
