//! Test support: drives a codec exactly as the reactor does, over chunks of
//! a stream standing in for successive reads.

use std::cell::Cell;

use super::{Codec, DecodeError};

thread_local! {
    /// Bytes scanned by decodes on this thread (see `note_scanned`).
    pub(super) static SCANNED: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` and returns how many bytes its decodes scanned.
pub(super) fn scanned_during(f: impl FnOnce()) -> usize {
    SCANNED.with(|total| total.set(0));
    f();
    SCANNED.with(Cell::get)
}

/// What a codec made of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    /// The frames decoded, in order.
    pub frames: Vec<Vec<u8>>,
    /// The error that stopped decoding, if any.
    pub error: Option<DecodeError>,
    /// How many bytes had been fed when decoding stopped (or in all).
    pub fed: usize,
}

impl Outcome {
    /// Frames and error, ignoring when the error came.
    pub fn result(&self) -> (&[Vec<u8>], Option<&DecodeError>) {
        (&self.frames, self.error.as_ref())
    }
}

/// Feeds `chunks` to `codec` one by one, after each running the reactor's
/// decode loop over the unconsumed bytes; stops at the first error. Checks
/// the `Decoded` invariants on the way.
#[track_caller]
pub(super) fn feed<'a, C: Codec>(
    codec: &mut C,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Outcome {
    let mut input = Vec::new();
    let mut start = 0;
    let mut out = Outcome {
        frames: Vec::new(),
        error: None,
        fed: 0,
    };
    for chunk in chunks {
        input.extend_from_slice(chunk);
        out.fed += chunk.len();
        loop {
            let unread = &input[start..];
            match codec.decode(unread) {
                Ok(Some(decoded)) => {
                    let frame = decoded.frame.clone();
                    assert!(decoded.consumed >= 1, "no progress: {decoded:?}");
                    assert!(decoded.consumed <= unread.len(), "{decoded:?}");
                    assert!(frame.start <= frame.end, "{decoded:?}");
                    assert!(frame.end <= decoded.consumed, "{decoded:?}");
                    out.frames.push(unread[frame].to_vec());
                    start += decoded.consumed;
                }
                Ok(None) => break,
                Err(err) => {
                    out.error = Some(err);
                    return out;
                }
            }
        }
        // Compact as the reactor may; the unread bytes stay contiguous.
        if start > input.len() / 2 {
            input.drain(..start);
            start = 0;
        }
    }
    out
}

/// Feeds `stream` to a fresh clone of `proto` one byte at a time.
#[track_caller]
pub(super) fn feed_bytewise<C: Codec + Clone>(proto: &C, stream: &[u8]) -> Outcome {
    feed(&mut proto.clone(), stream.chunks(1))
}

/// Splits `stream` at the offsets in `cuts` (any order, out-of-range ones
/// clamped) into the chunks successive reads would return.
pub(super) fn cut_at<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in cuts {
        chunks.push(&stream[from..cut]);
        from = cut;
    }
    chunks.push(&stream[from..]);
    chunks
}

/// Asserts that `stream`, cut into two reads at every possible offset and
/// also fed one byte at a time, decodes to `frames` then `error`.
#[track_caller]
pub(super) fn assert_every_cut<C: Codec + Clone>(
    proto: &C,
    stream: &[u8],
    frames: &[&[u8]],
    error: Option<DecodeError>,
) {
    let frames: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
    let want = (frames.as_slice(), error.as_ref());
    for k in 0..=stream.len() {
        let got = feed(&mut proto.clone(), cut_at(stream, &[k]));
        assert_eq!(
            got.result(),
            want,
            "cut at {k} of {:?}",
            stream.escape_ascii().to_string()
        );
    }
    let got = feed_bytewise(proto, stream);
    assert_eq!(got.result(), want, "fed one byte at a time");
}

/// Byte strings of up to `max_len` bytes drawn from `alphabet`; a small
/// alphabet makes delimiters, `\r` and hostile headers common.
pub(super) fn bytes_from(
    alphabet: &'static [u8],
    max_len: usize,
) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(alphabet), 0..=max_len)
}

/// Offsets at which to cut a stream into reads (clamped by `cut_at`).
pub(super) fn cuts() -> impl proptest::strategy::Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..200usize, 0..8)
}
