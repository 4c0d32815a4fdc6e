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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::sim::{
        assert_every_cut, bytes_from, cut_at, cuts, feed, feed_bytewise, scanned_during,
    };

    fn too_large(max: usize) -> Option<DecodeError> {
        Some(DecodeError::FrameTooLarge { max })
    }

    #[test]
    fn single_line() {
        assert_every_cut(&Lines::new(), b"PING\n", &[b"PING"], None);
    }

    #[test]
    fn pipelined_lines_with_either_ending() {
        let stream = b"SET k v\r\nGET k\nDEL k\r\n";
        assert_every_cut(
            &Lines::new(),
            stream,
            &[b"SET k v", b"GET k", b"DEL k"],
            None,
        );
    }

    #[test]
    fn empty_lines() {
        assert_every_cut(&Lines::new(), b"\n\r\n\n", &[b"", b"", b""], None);
    }

    #[test]
    fn only_the_carriage_return_before_the_newline_is_stripped() {
        let stream = b"a\rb\n\r\r\n\ra\n";
        assert_every_cut(&Lines::new(), stream, &[b"a\rb", b"\r", b"\ra"], None);
    }

    #[test]
    fn incomplete_line_waits() {
        let out = feed(&mut Lines::new(), [&b"one\ntw"[..], b"o\r"]);
        assert_eq!(out.frames, [b"one"]);
        assert_eq!(out.error, None);
    }

    #[test]
    fn line_of_exactly_max_is_accepted_one_more_is_not() {
        let codec = Lines::new().max_frame(4);
        assert_every_cut(&codec, b"abcd\n", &[b"abcd"], None);
        assert_every_cut(&codec, b"abcd\r\n", &[b"abcd"], None);
        assert_every_cut(&codec, b"abcde\n", &[], too_large(4));
        assert_every_cut(&codec, b"abcde\r\n", &[], too_large(4));
        assert_every_cut(&codec, b"abcd\r\r\n", &[], too_large(4));
        assert_every_cut(&Lines::new().max_frame(0), b"\r\n\n", &[b"", b""], None);
    }

    #[test]
    fn default_max_is_64_kib() {
        let mut line = vec![b'a'; DEFAULT_MAX_FRAME];
        line.extend_from_slice(b"\r\n");
        assert_eq!(feed(&mut Lines::new(), [&line[..]]).frames.len(), 1);
        line.insert(0, b'a');
        assert_eq!(feed(&mut Lines::new(), [&line[..]]).error, too_large(65536));
    }

    #[test]
    fn oversized_line_is_rejected_before_more_is_fed() {
        let codec = Lines::new().max_frame(10);
        let out = feed_bytewise(&codec, &[b'a'; 100]);
        assert_eq!(out.error, too_large(10));
        assert_eq!(out.fed, 11, "11 bytes without \\n or \\r prove it too long");
        // A `\r` at offset max may still be half of a "\r\n": wait one more.
        let mut stream = vec![b'a'; 10];
        stream.extend_from_slice(b"\rxyz");
        let out = feed_bytewise(&codec, &stream);
        assert_eq!(out.error, too_large(10));
        assert_eq!(out.fed, 12);
    }

    #[test]
    fn byte_at_a_time_scans_each_byte_once() {
        let n = 100_000;
        let codec = Lines::new().max_frame(n);
        let mut stream = vec![b'a'; n];
        stream.extend_from_slice(b"\r\n");
        let mut out = None;
        let scanned = scanned_during(|| out = Some(feed_bytewise(&codec, &stream)));
        assert_eq!(out.map(|o| o.frames.len()), Some(1));
        assert!(scanned <= stream.len(), "scanned {scanned} bytes");
    }

    #[test]
    fn encode_appends_a_newline() {
        let mut out = b"kept".to_vec();
        Lines::new().encode(b"a\rb", &mut out).unwrap();
        Lines::new().encode(b"", &mut out).unwrap();
        assert_eq!(out, b"kepta\rb\n\n");
    }

    #[test]
    fn encode_errors_name_the_problem() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"abcde",
                "lines encode: payload of 5 bytes exceeds the maximum of 4",
            ),
            (
                b"a\nb",
                "lines encode: newline inside the payload at byte 1",
            ),
            (
                b"ab\r",
                "lines encode: payload ends with \\r, which decode would strip",
            ),
        ];
        for (payload, message) in cases {
            let mut out = b"kept".to_vec();
            let err = Lines::new()
                .max_frame(4)
                .encode(payload, &mut out)
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(err.to_string(), message);
            assert_eq!(out, b"kept");
        }
    }

    const ALPHABET: &[u8] = b"ab\r\n";

    proptest! {
        #[test]
        fn any_cut_of_a_valid_stream_gives_the_same_lines(
            payloads in prop::collection::vec(bytes_from(ALPHABET, 12), 0..6),
            crlf in any::<bool>(),
            cuts in cuts(),
        ) {
            let mut stream = Vec::new();
            let mut sent = Vec::new();
            for payload in payloads {
                if Lines::new().encode(&payload, &mut stream).is_ok() {
                    if crlf {
                        // Write "\r\n" instead: decoding must not care.
                        stream.pop();
                        stream.extend_from_slice(b"\r\n");
                    }
                    sent.push(payload);
                }
            }
            let out = feed(&mut Lines::new(), cut_at(&stream, &cuts));
            prop_assert_eq!(out.error, None);
            prop_assert_eq!(out.frames, sent);
        }

        #[test]
        fn encode_then_decode_gives_back_the_payload(payload in bytes_from(ALPHABET, 20)) {
            let mut codec = Lines::new();
            let mut out = Vec::new();
            if codec.encode(&payload, &mut out).is_ok() {
                let decoded = codec.decode(&out).unwrap().unwrap();
                prop_assert_eq!(&out[decoded.frame], &payload[..]);
                prop_assert_eq!(decoded.consumed, out.len());
            } else {
                prop_assert!(out.is_empty());
                prop_assert!(payload.contains(&b'\n') || payload.last() == Some(&b'\r'));
            }
        }

        #[test]
        fn random_bytes_decode_the_same_however_they_are_cut(
            max in 0..12usize,
            stream in bytes_from(ALPHABET, 60),
            cuts in cuts(),
        ) {
            let codec = Lines::new().max_frame(max);
            let whole = feed(&mut codec.clone(), [&stream[..]]);
            let cut = feed(&mut codec.clone(), cut_at(&stream, &cuts));
            prop_assert_eq!(cut.result(), whole.result());
            let bytewise = feed_bytewise(&codec, &stream);
            prop_assert_eq!(bytewise.result(), whole.result());
        }
    }
}
