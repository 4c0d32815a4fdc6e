//! No framing: every byte that has arrived is a frame.

use std::io;

use super::{Codec, DecodeError, Decoded};

/// No framing: each decode hands out everything available as one frame,
/// and encode appends the bytes unchanged. For echo servers and proxies,
/// where the stream's boundaries do not matter.
///
/// Frames follow the reads, so the same stream may come out cut differently
/// on another run; only their concatenation is fixed.
///
/// # Examples
///
/// ```
/// use evmux::codec::{Codec, Raw};
///
/// let mut codec = Raw;
/// assert_eq!(codec.decode(b"")?, None);
/// let decoded = codec.decode(b"any bytes")?.expect("bytes are there");
/// assert_eq!(decoded.frame, 0..9);
/// assert_eq!(decoded.consumed, 9);
///
/// let mut out = b"kept ".to_vec();
/// codec.encode(b"as is", &mut out)?;
/// assert_eq!(out, b"kept as is");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    fn decode(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(Decoded {
            frame: 0..buf.len(),
            consumed: buf.len(),
        }))
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::sim::{bytes_from, cut_at, cuts, feed, feed_bytewise};

    #[test]
    fn nothing_available_is_no_frame() {
        assert_eq!(Raw.decode(b""), Ok(None));
        assert_eq!(feed(&mut Raw, [&b""[..], b""]).frames.len(), 0);
    }

    #[test]
    fn each_read_is_one_frame() {
        let out = feed(&mut Raw, [&b"ab"[..], b"", b"cde"]);
        assert_eq!(out.frames, [&b"ab"[..], b"cde"]);
        let out = feed_bytewise(&Raw, b"xyz");
        assert_eq!(out.frames, [b"x", b"y", b"z"]);
    }

    #[test]
    fn encode_appends_unchanged() {
        let mut out = b"kept".to_vec();
        Raw.encode(b"\0any\nbytes", &mut out).unwrap();
        Raw.encode(b"", &mut out).unwrap();
        assert_eq!(out, b"kept\0any\nbytes");
    }

    proptest! {
        #[test]
        fn any_cut_keeps_every_byte_in_order(
            stream in bytes_from(b"\0a\n\xff", 60),
            cuts in cuts(),
        ) {
            let out = feed(&mut Raw, cut_at(&stream, &cuts));
            prop_assert_eq!(out.error, None);
            prop_assert!(out.frames.iter().all(|f| !f.is_empty()));
            prop_assert_eq!(out.frames.concat(), stream);
        }

        #[test]
        fn encode_then_decode_gives_back_the_payload(payload in bytes_from(b"\0a\n", 20)) {
            let mut out = Vec::new();
            Raw.encode(&payload, &mut out).unwrap();
            let decoded = Raw.decode(&out).unwrap();
            prop_assert_eq!(decoded.map(|d| out[d.frame].to_vec()), Some(payload).filter(|p| !p.is_empty()));
        }
    }
}
