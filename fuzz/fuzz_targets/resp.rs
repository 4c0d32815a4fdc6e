//! Fuzzes `Resp`: the checks every decoder target runs (see `src/lib.rs`),
//! with fuzzer-chosen bounds, plus `Args` over every decoded frame (as many
//! arguments as it announced, each within the frame) and over the raw
//! stream (no panic on bytes that are not a frame).
#![no_main]

use evmux::codec::resp::Args;
use evmux::codec::Resp;
use evmux_fuzz::{check_codec, decode, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    // One byte of bounds for everything: small maxima make every bound
    // reachable; 0xff keeps the defaults.
    let codec = match input.max {
        Some(max) => Resp::new()
            .max_bulk(max)
            .max_args(max / 4)
            .max_inline(max)
            .max_request(2 * max + 8),
        None => Resp::new(),
    };
    check_codec(&codec, &input);
    let whole = decode(&mut codec.clone(), [input.stream]);
    for frame in &whole.frames {
        let args = Args::new(frame);
        let announced = args.len();
        let mut seen = 0;
        for arg in args {
            let inside = frame.as_ptr_range();
            assert!(inside.contains(&arg.as_ptr()) || arg.is_empty());
            assert!(arg.len() <= frame.len());
            seen += 1;
        }
        assert_eq!(seen, announced, "Args announced {announced}, gave {seen}");
    }
    let foreign = Args::new(input.stream);
    let claimed = foreign.len();
    assert!(foreign.count() <= claimed);
});
