//! Frames led by a 4-byte big-endian length.

use std::io;

use super::{payload_too_large, Codec, DecodeError, Decoded, DEFAULT_MAX_FRAME};

/// The size of the length header in bytes.
const HEADER_LEN: usize = 4;

/// Length-prefixed frames: a 4-byte big-endian `u32` giving the payload's
/// length, then the payload.
///
/// ```text
///  0       1       2       3       4                   4 + len
/// +-------+-------+-------+-------+-------------------+
/// |  len (u32, big-endian)        | payload (len B)   |
/// +-------+-------+-------+-------+-------------------+
///  e.g. "hi" = 00 00 00 02 68 69
/// ```
///
/// The header is checked against `max` (default [`DEFAULT_MAX_FRAME`]) as
/// soon as its 4 bytes arrive, before any of the body is buffered: a hostile
/// header claiming 4 GiB fails at once with [`DecodeError::FrameTooLarge`].
/// Decoding reads only the header, so it is O(1) per call.
///
/// # Examples
///
/// ```
/// use evmux::codec::{Codec, LengthPrefixed};
///
/// let mut codec = LengthPrefixed::new();
/// let mut out = Vec::new();
/// codec.encode(b"hi", &mut out)?;
/// assert_eq!(out, [0, 0, 0, 2, b'h', b'i']);
///
/// assert_eq!(codec.decode(&out[..5])?, None); // body incomplete
/// let decoded = codec.decode(&out)?.expect("a whole frame");
/// assert_eq!(&out[decoded.frame], b"hi");
/// assert_eq!(decoded.consumed, 6);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LengthPrefixed {
    /// The longest payload accepted, in bytes.
    max: usize,
}

impl LengthPrefixed {
    /// Makes a codec with a maximum payload of [`DEFAULT_MAX_FRAME`] bytes.
    pub fn new() -> Self {
        LengthPrefixed {
            max: DEFAULT_MAX_FRAME,
        }
    }

    /// Sets the longest payload accepted (and encoded) to `max` bytes. The
    /// header cannot express more than `u32::MAX`, whatever `max` says.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::codec::{Codec, DecodeError, LengthPrefixed};
    ///
    /// let mut codec = LengthPrefixed::new().max_frame(1024);
    /// let hostile = [0xff, 0xff, 0xff, 0xff];
    /// assert_eq!(codec.decode(&hostile), Err(DecodeError::FrameTooLarge { max: 1024 }));
    /// ```
    pub fn max_frame(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The longest payload accepted, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }
}

impl Default for LengthPrefixed {
    fn default() -> Self {
        LengthPrefixed::new()
    }
}

impl Codec for LengthPrefixed {
    fn decode(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        let Some(&[b0, b1, b2, b3]) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        // A u32 always fits: `usize` is at least 32 bits on every target
        // with the sockets this crate drives.
        let len = u32::from_be_bytes([b0, b1, b2, b3]) as usize;
        if len > self.max {
            return Err(DecodeError::FrameTooLarge { max: self.max });
        }
        let end = len.saturating_add(HEADER_LEN);
        if buf.len() < end {
            return Ok(None);
        }
        Ok(Some(Decoded {
            frame: HEADER_LEN..end,
            consumed: end,
        }))
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let max = self.max.min(u32::MAX as usize);
        let len = match u32::try_from(payload.len()) {
            Ok(len) if payload.len() <= max => len,
            _ => return Err(payload_too_large("length-prefixed", payload.len(), max)),
        };
        out.reserve(HEADER_LEN + payload.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::sim::{assert_every_cut, bytes_from, cut_at, cuts, feed, feed_bytewise};

    fn too_large(max: usize) -> Option<DecodeError> {
        Some(DecodeError::FrameTooLarge { max })
    }

    #[test]
    fn single_frame() {
        assert_every_cut(&LengthPrefixed::new(), b"\0\0\0\x02hi", &[b"hi"], None);
    }

    #[test]
    fn pipelined_frames() {
        let stream = b"\0\0\0\x01a\0\0\0\x03bcd\0\0\0\x02ef";
        assert_every_cut(&LengthPrefixed::new(), stream, &[b"a", b"bcd", b"ef"], None);
    }

    #[test]
    fn empty_frames() {
        let stream = b"\0\0\0\0\0\0\0\0";
        assert_every_cut(&LengthPrefixed::new(), stream, &[b"", b""], None);
    }

    #[test]
    fn incomplete_header_or_body_waits() {
        let out = feed(
            &mut LengthPrefixed::new(),
            [&b"\0\0\0\x01a\0\0"[..], b"\0\x02e"],
        );
        assert_eq!(out.frames, [b"a"]);
        assert_eq!(out.error, None);
    }

    #[test]
    fn payload_of_exactly_max_is_accepted_one_more_is_not() {
        let codec = LengthPrefixed::new().max_frame(4);
        assert_every_cut(&codec, b"\0\0\0\x04abcd", &[b"abcd"], None);
        assert_every_cut(&codec, b"\0\0\0\x05abcde", &[], too_large(4));
        let codec = LengthPrefixed::new();
        let exact = 65536u32.to_be_bytes();
        assert_eq!(feed(&mut codec.clone(), [&exact[..]]).error, None);
        let over = 65537u32.to_be_bytes();
        assert_eq!(
            feed(&mut codec.clone(), [&over[..]]).error,
            too_large(65536)
        );
    }

    #[test]
    fn hostile_header_is_rejected_at_once() {
        let mut stream = vec![0xff; 4];
        stream.extend_from_slice(&[b'a'; 100]);
        let out = feed_bytewise(&LengthPrefixed::new(), &stream);
        assert_eq!(out.error, too_large(DEFAULT_MAX_FRAME));
        assert_eq!(out.fed, 4, "rejected on the header, before any body");
        let max = LengthPrefixed::new().max_frame(usize::MAX);
        assert_eq!(feed(&mut max.clone(), [&stream[..4]]).error, None);
    }

    #[test]
    fn large_frame_one_byte_at_a_time() {
        let n = 1 << 20;
        let mut codec = LengthPrefixed::new().max_frame(n);
        let mut stream = Vec::new();
        codec.encode(&vec![7; n], &mut stream).unwrap();
        let out = feed_bytewise(&codec, &stream);
        assert_eq!(out.frames.len(), 1);
        assert_eq!(out.frames[0].len(), n);
    }

    #[test]
    fn encode_writes_header_then_body() {
        let mut out = b"kept".to_vec();
        LengthPrefixed::new().encode(b"abc", &mut out).unwrap();
        LengthPrefixed::new().encode(b"", &mut out).unwrap();
        assert_eq!(out, b"kept\0\0\0\x03abc\0\0\0\0");
    }

    #[test]
    fn encode_rejects_payload_over_max() {
        let mut out = b"kept".to_vec();
        let mut codec = LengthPrefixed::new().max_frame(2);
        let err = codec.encode(b"abc", &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "length-prefixed encode: payload of 3 bytes exceeds the maximum of 2"
        );
        assert_eq!(out, b"kept");
    }

    proptest! {
        #[test]
        fn any_cut_of_a_valid_stream_gives_the_same_frames(
            payloads in prop::collection::vec(bytes_from(b"\0ab", 12), 0..6),
            cuts in cuts(),
        ) {
            let mut stream = Vec::new();
            for payload in &payloads {
                LengthPrefixed::new().encode(payload, &mut stream).unwrap();
            }
            let out = feed(&mut LengthPrefixed::new(), cut_at(&stream, &cuts));
            prop_assert_eq!(out.error, None);
            prop_assert_eq!(out.frames, payloads);
        }

        #[test]
        fn encode_then_decode_gives_back_the_payload(payload in bytes_from(b"\0\xffa", 40)) {
            let mut codec = LengthPrefixed::new().max_frame(30);
            let mut out = Vec::new();
            if codec.encode(&payload, &mut out).is_ok() {
                let decoded = codec.decode(&out).unwrap().unwrap();
                prop_assert_eq!(&out[decoded.frame], &payload[..]);
                prop_assert_eq!(decoded.consumed, out.len());
            } else {
                prop_assert!(payload.len() > 30);
                prop_assert!(out.is_empty());
            }
        }

        #[test]
        fn random_bytes_decode_the_same_however_they_are_cut(
            max in 0..12usize,
            stream in bytes_from(b"\0\x01\x02\x05\xff", 60),
            cuts in cuts(),
        ) {
            let codec = LengthPrefixed::new().max_frame(max);
            let whole = feed(&mut codec.clone(), [&stream[..]]);
            let cut = feed(&mut codec.clone(), cut_at(&stream, &cuts));
            prop_assert_eq!(cut.result(), whole.result());
            let bytewise = feed_bytewise(&codec, &stream);
            prop_assert_eq!(bytewise.result(), whole.result());
        }
    }
}
