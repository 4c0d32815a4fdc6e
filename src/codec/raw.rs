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
