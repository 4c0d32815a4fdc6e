//! Text lines ended by `\n`, tolerating `\r\n`.

use std::io;

use super::{note_scanned, payload_too_large, Codec, DecodeError, Decoded, DEFAULT_MAX_FRAME};

/// Lines: the payload, then `\n`; a `\r` just before the `\n` is stripped
/// from the frame, so both `\n` and `\r\n` line endings work.
///
/// ```text
/// +------------------+------+----+
/// | payload (0..=max)| [\r] | \n |
/// +------------------+------+----+
/// ```
///
/// `max` (default [`DEFAULT_MAX_FRAME`]) bounds the frame as handed out,
/// after stripping the `\r`. Decode fails with
/// [`DecodeError::FrameTooLarge`] as soon as the unread bytes prove the line
/// is longer: `max + 1` bytes with no `\n` whose last byte is not `\r`, or
/// `max + 2` bytes with no `\n`. Encode appends the payload and `\n`.
///
/// # Examples
///
/// ```
/// use evmux::codec::{Codec, Lines};
///
/// let mut codec = Lines::new();
/// let input = b"PING\r\nECHO hi\n";
/// let first = codec.decode(input)?.expect("a whole line");
/// assert_eq!(&input[first.frame], b"PING");
/// let rest = &input[first.consumed..];
/// let second = codec.decode(rest)?.expect("a whole line");
/// assert_eq!(&rest[second.frame], b"ECHO hi");
///
/// let mut out = Vec::new();
/// codec.encode(b"PONG", &mut out)?;
/// assert_eq!(out, b"PONG\n");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lines {
    /// The longest line accepted, in bytes, without its line ending.
    max: usize,
    /// How many bytes at the front of the buffer the last `None` scanned.
    scanned: usize,
}

impl Lines {
    /// Makes a line codec with a maximum line of [`DEFAULT_MAX_FRAME`] bytes.
    pub fn new() -> Self {
        Lines {
            max: DEFAULT_MAX_FRAME,
            scanned: 0,
        }
    }

    /// Sets the longest line accepted (and encoded) to `max` bytes, not
    /// counting the line ending.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::codec::{Codec, DecodeError, Lines};
    ///
    /// let mut codec = Lines::new().max_frame(2);
    /// assert!(codec.decode(b"ab\r\n")?.is_some());
    /// assert_eq!(codec.decode(b"abc"), Err(DecodeError::FrameTooLarge { max: 2 }));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_frame(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The longest line accepted, in bytes, without its line ending.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }

    /// True if `buf`, which holds no `\n`, already proves its line too long.
    fn proves_too_long(&self, buf: &[u8]) -> bool {
        match buf.len().checked_sub(self.max) {
            None | Some(0) => false,
            // One byte over is still fine if it is the `\r` of a `\r\n`.
            Some(1) => buf.last() != Some(&b'\r'),
            Some(_) => true,
        }
    }
}

impl Default for Lines {
    fn default() -> Self {
        Lines::new()
    }
}

impl Codec for Lines {
    fn decode(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        // The `\n` of an acceptable line is at most at offset `max + 1`.
        let limit = buf.len().min(self.max.saturating_add(2));
        if self.scanned > buf.len() {
            // Not the buffer we scanned before: start over.
            self.scanned = 0;
        }
        let start = self.scanned.min(limit);
        note_scanned(limit - start);
        if let Some(at) = memchr::memchr(b'\n', &buf[start..limit]) {
            self.scanned = 0;
            let newline = start + at;
            let end = match buf[..newline].last() {
                Some(b'\r') => newline - 1,
                _ => newline,
            };
            if end > self.max {
                return Err(DecodeError::FrameTooLarge { max: self.max });
            }
            return Ok(Some(Decoded {
                frame: 0..end,
                consumed: newline + 1,
            }));
        }
        if self.proves_too_long(&buf[..limit]) {
            self.scanned = 0;
            return Err(DecodeError::FrameTooLarge { max: self.max });
        }
        self.scanned = limit;
        Ok(None)
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if payload.len() > self.max {
            return Err(payload_too_large("lines", payload.len(), self.max));
        }
        if let Some(at) = memchr::memchr(b'\n', payload) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("lines encode: newline inside the payload at byte {at}"),
            ));
        }
        if payload.last() == Some(&b'\r') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "lines encode: payload ends with \\r, which decode would strip",
            ));
        }
        out.reserve(payload.len() + 1);
        out.extend_from_slice(payload);
        out.push(b'\n');
        Ok(())
    }
}
