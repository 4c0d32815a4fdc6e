//! Framing: cutting a byte stream into frames and back.
//!
//! A [`Codec`] finds complete frames at the front of a connection's unread
//! bytes and encodes outgoing payloads onto its output buffer. The reactor
//! owns both buffers; a codec only keeps a few words of state (how far its
//! last scan got), so decoding borrows frames straight from the input buffer
//! and never copies them.
//!
//! The reactor drives a codec like this:
//!
//! ```text
//! loop {
//!     match codec.decode(&input[start..])? {
//!         Some(Decoded { frame, consumed }) => {
//!             on_frame(&input[start..][frame]);   // borrowed, no copy
//!             start += consumed;
//!         }
//!         None => break,                          // wait for more bytes
//!     }
//! }
//! ```
//!
//! After a `None` the next call sees the same bytes with more appended;
//! after a `Some` it sees what follows the `consumed` bytes. Codecs remember
//! where their last scan stopped, so a large frame trickling in one byte at a
//! time costs O(n) in total, not O(n²).
//!
//! Every codec rejects a frame longer than its maximum (default
//! [`DEFAULT_MAX_FRAME`]) as soon as the bytes seen prove it too long, before
//! its body is buffered. Each connection gets its own codec by `Clone` from a
//! prototype; the provided codecs are small, `Send`, and clone without
//! allocating.
//!
//! | codec | frame on the wire |
//! |---|---|
//! | [`Delimited`] | payload, then a delimiter of one or more bytes |
//! | [`Lines`] | payload, then `\n` (a `\r` before it is stripped) |
//! | [`LengthPrefixed`] | 4-byte big-endian length, then the payload |
//! | [`Raw`] | no framing: whatever bytes are available |
//! | [`Resp`] | a Redis (RESP2) request: an array of bulk strings, or an inline command (own bounds; see [`resp`]) |

use std::error::Error;
use std::fmt;
use std::io;
use std::ops::Range;

mod delimited;
mod length_prefixed;
mod lines;
mod raw;
pub mod resp;

#[cfg(test)]
mod sim;

pub use delimited::Delimited;
pub use length_prefixed::LengthPrefixed;
pub use lines::Lines;
pub use raw::Raw;
pub use resp::Resp;

/// The default maximum payload of one frame: 64 KiB (65536 bytes).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Cuts a byte stream into frames (`decode`) and frames payloads (`encode`).
///
/// Implementations keep decoding O(n) in total over a connection: remember
/// how far the last scan of `buf` got (relative to its front) and resume
/// there after returning `None`; forget it after returning a frame.
pub trait Codec {
    /// Finds the next complete frame at the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete frame yet. A returned
    /// [`Decoded`] has `consumed >= 1` and `frame` within `buf[..consumed]`,
    /// so a caller looping on `decode` always makes progress.
    ///
    /// # Errors
    ///
    /// [`DecodeError::FrameTooLarge`] when the front frame is provably longer
    /// than the codec's maximum; [`DecodeError::Malformed`] when the bytes
    /// can never form a valid frame. The stream cannot be resynchronised
    /// after either; the caller should close the connection.
    fn decode(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError>;

    /// Appends one encoded frame carrying `payload` to `out` (append only;
    /// never touches existing bytes).
    ///
    /// # Errors
    ///
    /// `ErrorKind::InvalidInput` when `payload` cannot be framed (too long,
    /// or it contains the codec's delimiter); `out` is then left as it was.
    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()>;
}

/// A frame found by [`Codec::decode`]: where its payload lies in the buffer
/// passed to `decode`, and how many bytes at the front of that buffer it
/// used up (payload plus framing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The payload's byte range in the decoded buffer; within `..consumed`.
    pub frame: Range<usize>,
    /// How many bytes at the front of the buffer the frame took up; the
    /// caller advances its read cursor by this much. Always at least 1.
    pub consumed: usize,
}

/// Why [`Codec::decode`] rejected the bytes at the front of a stream.
///
/// Converts into an `io::Error` of kind `InvalidData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The front frame's payload is longer than `max` bytes.
    FrameTooLarge {
        /// The codec's maximum payload length in bytes.
        max: usize,
    },
    /// The bytes can never form a valid frame; the text says why.
    Malformed(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::FrameTooLarge { max } => {
                write!(f, "decode: frame longer than the maximum of {max} bytes")
            }
            DecodeError::Malformed(why) => write!(f, "decode: malformed frame: {why}"),
        }
    }
}

impl Error for DecodeError {}

impl From<DecodeError> for io::Error {
    fn from(err: DecodeError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

/// The `InvalidInput` error `encode` returns when `payload_len` exceeds `max`.
fn payload_too_large(codec: &str, payload_len: usize, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{codec} encode: payload of {payload_len} bytes exceeds the maximum of {max}"),
    )
}

/// Records that a decode scanned `n` bytes; the tests read the total to
/// check that decoding stays O(n). Compiles to nothing outside tests.
#[inline]
fn note_scanned(n: usize) {
    #[cfg(test)]
    sim::SCANNED.with(|total| total.set(total.get() + n));
    #[cfg(not(test))]
    let _ = n;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_error_becomes_invalid_data() {
        let err = io::Error::from(DecodeError::FrameTooLarge { max: 10 });
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            err.to_string(),
            "decode: frame longer than the maximum of 10 bytes"
        );
        let err = io::Error::from(DecodeError::Malformed("bad header"));
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "decode: malformed frame: bad header");
    }

    #[test]
    fn codecs_are_small_send_and_clone() {
        fn check<C: Codec + Clone + fmt::Debug + Send + Sync + 'static>(_: &C) {
            assert!(std::mem::size_of::<C>() <= 48);
        }
        check(&Delimited::new(b"\r\n").unwrap());
        check(&Lines::new());
        check(&LengthPrefixed::new());
        check(&Raw);
    }
}
