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
