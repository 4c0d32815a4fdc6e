//! The checks every decoder fuzz target runs, written once.
//!
//! A target turns the fuzzer's bytes into a codec configuration, a byte
//! stream and a way of cutting that stream into reads, then calls
//! [`check_codec`]: decoding must never panic, must keep `Decoded`'s
//! promises, must give the same frames and error however the stream is cut
//! (whole, at the fuzzer's cuts, one byte at a time), and every frame that
//! encodes must decode back to itself.

use evmux::codec::{Codec, DecodeError};

/// What decoding a stream gave: the frames, then the error that stopped it.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Frames in order.
    pub frames: Vec<Vec<u8>>,
    /// The error that stopped decoding, if any.
    pub error: Option<DecodeError>,
}

/// Splits the fuzzer's input: the first byte picks a maximum frame length
/// (`None` for the codec's default), the next four pick read sizes, and the
/// rest is the stream.
pub struct Input<'a> {
    /// The maximum payload to configure.
    pub max: Option<usize>,
    /// Read sizes, cycled over the stream (each 1..=64).
    pub reads: [usize; 4],
    /// The bytes on the wire.
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Parses the fuzzer's bytes; `None` if there are too few.
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (head, stream) = data.split_first_chunk::<5>()?;
        let max = (head[0] != 0xff).then_some(usize::from(head[0]));
        let reads = [1, 2, 3, 4].map(|i| usize::from(head[i] % 64) + 1);
        Some(Input { max, reads, stream })
    }

    /// The stream cut into reads of the chosen sizes.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut at = 0;
        for size in self.reads.iter().cycle() {
            if at >= self.stream.len() {
                break;
            }
            let end = (at + size).min(self.stream.len());
            chunks.push(&self.stream[at..end]);
            at = end;
        }
        chunks
    }
}

/// Runs the reactor's decode loop over `chunks` fed one by one, asserting
/// `Decoded`'s promises; stops at the first error.
pub fn decode<'a, C: Codec>(codec: &mut C, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut input = Vec::new();
    let mut start = 0;
    let mut frames = Vec::new();
    for chunk in chunks {
        input.extend_from_slice(chunk);
        loop {
            let unread = &input[start..];
            match codec.decode(unread) {
                Ok(Some(d)) => {
                    assert!(d.consumed >= 1, "no progress: {d:?}");
                    assert!(d.consumed <= unread.len(), "past the end: {d:?}");
                    assert!(d.frame.start <= d.frame.end, "{d:?}");
                    assert!(d.frame.end <= d.consumed, "{d:?}");
                    frames.push(unread[d.frame].to_vec());
                    start += d.consumed;
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        frames,
                        error: Some(error),
                    }
                }
            }
        }
        // Compact as the reactor's buffer may.
        if start > input.len() / 2 {
            input.drain(..start);
            start = 0;
        }
    }
    Outcome {
        frames,
        error: None,
    }
}

/// Every check a decoder must pass on `input`, for a codec made by `proto`.
pub fn check_codec<C: Codec + Clone>(proto: &C, input: &Input<'_>) {
    let whole = decode(&mut proto.clone(), [input.stream]);
    let cut = decode(&mut proto.clone(), input.chunks());
    assert_eq!(cut, whole, "cutting into reads changed the result");
    let bytewise = decode(&mut proto.clone(), input.stream.chunks(1));
    assert_eq!(bytewise, whole, "one byte at a time changed the result");
    for frame in &whole.frames {
        check_round_trip(proto, frame);
    }
}

/// A payload that encodes decodes back to itself, consuming exactly the
/// encoded bytes; one that does not leaves the output untouched.
pub fn check_round_trip<C: Codec + Clone>(proto: &C, payload: &[u8]) {
    let mut out = b"prefix".to_vec();
    match proto.clone().encode(payload, &mut out) {
        Ok(()) => {
            let encoded = &out[6..];
            let d = proto
                .clone()
                .decode(encoded)
                .expect("an encoded frame decodes")
                .expect("an encoded frame is complete");
            assert_eq!(&encoded[d.frame], payload, "round trip changed the payload");
            assert_eq!(d.consumed, encoded.len(), "round trip left bytes over");
        }
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
            assert_eq!(out, b"prefix", "a failed encode wrote bytes");
        }
    }
}
