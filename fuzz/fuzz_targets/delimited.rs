//! Fuzzes `Delimited`: the input's first byte after the common header is
//! the delimiter's length (1..=4), then the delimiter, then the stream.
#![no_main]

use evmux::codec::{Delimited, DEFAULT_MAX_FRAME};
use evmux_fuzz::{check_codec, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let Some((&len, rest)) = input.stream.split_first() else {
        return;
    };
    let len = usize::from(len % 4) + 1;
    if rest.len() < len {
        return;
    }
    let (delimiter, stream) = rest.split_at(len);
    let codec = Delimited::new(delimiter).expect("a non-empty delimiter");
    let codec = codec.max_frame(input.max.unwrap_or(DEFAULT_MAX_FRAME));
    check_codec(&codec, &Input { stream, ..input });
});
