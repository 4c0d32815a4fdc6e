//! Frames ended by a fixed delimiter of one or more bytes.

use std::fmt;
use std::io;
use std::sync::Arc;

use memchr::memmem::Finder;

use super::{note_scanned, payload_too_large, Codec, DecodeError, Decoded, DEFAULT_MAX_FRAME};

/// Frames ended by a delimiter: the payload, then the delimiter bytes.
///
/// ```text
/// +----------------------+-----------+
/// | payload (0..=max)    | delimiter |
/// +----------------------+-----------+
/// ```
///
/// The frame handed out is the payload without its delimiter. The delimiter
/// is shared between clones (one `Arc`), so cloning a prototype per
/// connection allocates nothing. A payload of up to `max` bytes (default
/// [`DEFAULT_MAX_FRAME`]) is accepted; once the unread bytes hold
/// `max + delimiter length` bytes with no delimiter, decode fails at once
/// with [`DecodeError::FrameTooLarge`].
///
/// # Examples
///
/// ```
/// use evmux::codec::{Codec, Decoded, Delimited};
///
/// let mut codec = Delimited::new(b"X")?;
/// let input = b"12+3X4*5X";
/// let Some(Decoded { frame, consumed }) = codec.decode(input)? else {
///     unreachable!("a whole frame is there");
/// };
/// assert_eq!(&input[frame], b"12+3");
/// assert_eq!(&input[consumed..], b"4*5X");
///
/// let mut out = Vec::new();
/// codec.encode(b"15", &mut out)?;
/// assert_eq!(out, b"15X");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Delimited {
    /// The delimiter and its precomputed searcher, shared by every clone.
    finder: Arc<Finder<'static>>,
    /// The longest payload accepted, in bytes.
    max: usize,
    /// How many bytes at the front of the buffer the last `None` scanned.
    scanned: usize,
}

impl Delimited {
    /// Makes a codec for frames ended by `delimiter`, with a maximum payload
    /// of [`DEFAULT_MAX_FRAME`] bytes.
    ///
    /// # Errors
    ///
    /// `ErrorKind::InvalidInput` if `delimiter` is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::codec::Delimited;
    ///
    /// let crlf = Delimited::new(b"\r\n")?;
    /// assert_eq!(crlf.delimiter(), b"\r\n");
    /// let err = Delimited::new(b"").unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(delimiter: &[u8]) -> io::Result<Self> {
        if delimiter.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "delimited codec: empty delimiter",
            ));
        }
        Ok(Delimited {
            finder: Arc::new(Finder::new(delimiter).into_owned()),
            max: DEFAULT_MAX_FRAME,
            scanned: 0,
        })
    }

    /// Sets the longest payload accepted (and encoded) to `max` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::codec::{Codec, DecodeError, Delimited};
    ///
    /// let mut codec = Delimited::new(b"\n")?.max_frame(3);
    /// assert!(codec.decode(b"abc\n")?.is_some());
    /// assert_eq!(codec.decode(b"abcd"), Err(DecodeError::FrameTooLarge { max: 3 }));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_frame(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The delimiter bytes.
    pub fn delimiter(&self) -> &[u8] {
        self.finder.needle()
    }

    /// The longest payload accepted, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }

    /// The offset of the first delimiter in `hay`, if any.
    fn find(&self, hay: &[u8]) -> Option<usize> {
        match self.delimiter() {
            [byte] => memchr::memchr(*byte, hay),
            _ => self.finder.find(hay),
        }
    }
}

impl Codec for Delimited {
    fn decode(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        let delim_len = self.delimiter().len();
        // A delimiter can start at most at offset `max`; never look further.
        let limit = buf.len().min(self.max.saturating_add(delim_len));
        if self.scanned > buf.len() {
            // Not the buffer we scanned before (the caller broke the
            // contract): start over rather than miss a delimiter.
            self.scanned = 0;
        }
        // Back up so a delimiter split across two reads is still found.
        let start = self.scanned.saturating_sub(delim_len - 1).min(limit);
        note_scanned(limit - start);
        if let Some(at) = self.find(&buf[start..limit]) {
            self.scanned = 0;
            let end = start + at;
            return Ok(Some(Decoded {
                frame: 0..end,
                consumed: end + delim_len,
            }));
        }
        if buf.len() >= self.max.saturating_add(delim_len) {
            self.scanned = 0;
            return Err(DecodeError::FrameTooLarge { max: self.max });
        }
        self.scanned = limit;
        Ok(None)
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if payload.len() > self.max {
            return Err(payload_too_large("delimited", payload.len(), self.max));
        }
        let old_len = out.len();
        out.extend_from_slice(payload);
        out.extend_from_slice(self.delimiter());
        // The first delimiter must be the one just appended; checking the
        // whole frame also catches a payload ending in part of the delimiter.
        match self.find(&out[old_len..]) {
            Some(at) if at < payload.len() => {
                out.truncate(old_len);
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("delimited encode: delimiter found inside the payload at byte {at}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Delimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delimited")
            .field(
                "delimiter",
                &format_args!("b\"{}\"", self.delimiter().escape_ascii()),
            )
            .field("max", &self.max)
            .field("scanned", &self.scanned)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::sim::{
        assert_every_cut, bytes_from, cut_at, cuts, feed, feed_bytewise, scanned_during,
    };

    fn x() -> Delimited {
        Delimited::new(b"X").unwrap()
    }

    fn crlf() -> Delimited {
        Delimited::new(b"\r\n").unwrap()
    }

    fn too_large(max: usize) -> Option<DecodeError> {
        Some(DecodeError::FrameTooLarge { max })
    }

    #[test]
    fn single_frame() {
        assert_every_cut(&x(), b"12+3X", &[b"12+3"], None);
        assert_every_cut(&crlf(), b"GET /\r\n", &[b"GET /"], None);
    }

    #[test]
    fn pipelined_frames() {
        assert_every_cut(&x(), b"1+2X3*4X5X", &[b"1+2", b"3*4", b"5"], None);
        assert_every_cut(&crlf(), b"a\r\nbc\r\nd\r\n", &[b"a", b"bc", b"d"], None);
    }

    #[test]
    fn empty_frames() {
        assert_every_cut(&x(), b"XX", &[b"", b""], None);
        assert_every_cut(&crlf(), b"\r\n\r\n", &[b"", b""], None);
    }

    #[test]
    fn incomplete_frame_waits_and_keeps_its_bytes() {
        let out = feed(&mut x(), [&b"1+2X3*"[..], b"4"]);
        assert_eq!(out.frames, [b"1+2"]);
        assert_eq!(out.error, None);
    }

    #[test]
    fn multi_byte_delimiter_split_across_two_reads() {
        let mut codec = crlf();
        assert_eq!(codec.decode(b"ab\r"), Ok(None));
        let want = Decoded {
            frame: 0..2,
            consumed: 4,
        };
        assert_eq!(codec.decode(b"ab\r\n"), Ok(Some(want)));
        let end = Delimited::new(b"END").unwrap();
        assert_every_cut(&end, b"helloENDworldEND", &[b"hello", b"world"], None);
    }

    #[test]
    fn delimiter_overlapping_its_own_prefix() {
        let aab = Delimited::new(b"aab").unwrap();
        assert_every_cut(&aab, b"aaabaab", &[b"a", b""], None);
        let abab = Delimited::new(b"abab").unwrap();
        assert_every_cut(&abab, b"xababab", &[b"x"], None);
    }

    #[test]
    fn payload_of_exactly_max_is_accepted_one_more_is_not() {
        assert_every_cut(&x().max_frame(4), b"abcdX", &[b"abcd"], None);
        assert_every_cut(&x().max_frame(4), b"abcdeX", &[], too_large(4));
        assert_every_cut(&crlf().max_frame(4), b"abcd\r\n", &[b"abcd"], None);
        assert_every_cut(&crlf().max_frame(4), b"abcde\r\n", &[], too_large(4));
        assert_every_cut(&x().max_frame(0), b"XX", &[b"", b""], None);
    }

    #[test]
    fn default_max_is_64_kib() {
        let mut payload = vec![b'a'; DEFAULT_MAX_FRAME];
        payload.push(b'X');
        assert_eq!(feed_bytewise(&x(), &payload).frames.len(), 1);
        payload.insert(0, b'a');
        assert_eq!(feed(&mut x(), [&payload[..]]).error, too_large(65536));
    }

    #[test]
    fn oversized_frame_is_rejected_before_more_is_fed() {
        let codec = crlf().max_frame(10);
        let stream = [b'a'; 100];
        // 11 bytes could still be 10 bytes of payload and half a "\r\n".
        assert_eq!(feed_bytewise(&codec, &stream[..11]).error, None);
        let out = feed_bytewise(&codec, &stream);
        assert_eq!(out.error, too_large(10));
        assert_eq!(
            out.fed, 12,
            "rejected as soon as max + delimiter bytes arrived"
        );
    }

    #[test]
    fn oversize_is_judged_per_frame() {
        let codec = x().max_frame(3);
        let out = feed_bytewise(&codec, b"abcXdefXghijX");
        assert_eq!(out.frames, [b"abc", b"def"]);
        assert_eq!(out.error, too_large(3));
    }

    #[test]
    fn byte_at_a_time_scans_each_byte_a_bounded_number_of_times() {
        let n = 100_000;
        for delimiter in [&b"X"[..], b"\r\n", b"<END>"] {
            let codec = Delimited::new(delimiter).unwrap().max_frame(n);
            let mut stream = vec![b'a'; n];
            stream.extend_from_slice(delimiter);
            let mut out = None;
            let scanned = scanned_during(|| out = Some(feed_bytewise(&codec, &stream)));
            assert_eq!(out.map(|o| o.frames.len()), Some(1));
            let bound = stream.len() * delimiter.len();
            assert!(scanned <= bound, "scanned {scanned} bytes, bound {bound}");
        }
    }

    #[test]
    fn encode_appends_payload_then_delimiter() {
        let mut out = b"kept".to_vec();
        crlf().encode(b"hi", &mut out).unwrap();
        crlf().encode(b"", &mut out).unwrap();
        assert_eq!(out, b"kepthi\r\n\r\n");
    }

    #[test]
    fn encode_rejects_payload_over_max() {
        let mut out = b"kept".to_vec();
        let err = x().max_frame(3).encode(b"abcd", &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "delimited encode: payload of 4 bytes exceeds the maximum of 3"
        );
        assert_eq!(out, b"kept");
        x().max_frame(3).encode(b"abc", &mut out).unwrap();
    }

    #[test]
    fn encode_rejects_payload_containing_the_delimiter() {
        let mut out = b"kept".to_vec();
        let err = x().encode(b"abXc", &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "delimited encode: delimiter found inside the payload at byte 2"
        );
        assert_eq!(out, b"kept");
        // "xa" + "aa" = "xaaa" would decode as "x": reject it too.
        let mut aa = Delimited::new(b"aa").unwrap();
        let err = aa.encode(b"xa", &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(out, b"kept");
    }

    #[test]
    fn empty_delimiter_is_invalid_input() {
        let err = Delimited::new(b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), "delimited codec: empty delimiter");
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut codec = crlf();
        let mut stream = Vec::new();
        for payload in [&b"one"[..], b"", b"three\r"] {
            codec.encode(payload, &mut stream).unwrap();
        }
        assert_every_cut(&codec, &stream, &[b"one", b"", b"three\r"], None);
    }

    #[test]
    fn clones_share_the_delimiter_and_debug_shows_it() {
        let proto = crlf().max_frame(7);
        let conn = proto.clone();
        assert!(Arc::ptr_eq(&proto.finder, &conn.finder));
        assert_eq!(
            format!("{conn:?}"),
            r#"Delimited { delimiter: b"\r\n", max: 7, scanned: 0 }"#
        );
    }

    /// The delimiters the property tests try, with an alphabet that makes
    /// them (and their prefixes) common in random payloads.
    const DELIMITERS: [&[u8]; 4] = [b"X", b"\r\n", b"aab", b"abab"];
    const ALPHABET: &[u8] = b"abX\r\nz";

    fn any_delimiter() -> impl Strategy<Value = Delimited> {
        prop::sample::select(&DELIMITERS[..]).prop_map(|d| Delimited::new(d).unwrap())
    }

    proptest! {
        #[test]
        fn any_cut_of_a_valid_stream_gives_the_same_frames(
            codec in any_delimiter(),
            payloads in prop::collection::vec(bytes_from(ALPHABET, 12), 0..6),
            cuts in cuts(),
        ) {
            let mut encoder = codec.clone();
            let mut stream = Vec::new();
            let sent: Vec<Vec<u8>> = payloads
                .into_iter()
                .filter(|p| encoder.encode(p, &mut stream).is_ok())
                .collect();
            let out = feed(&mut codec.clone(), cut_at(&stream, &cuts));
            prop_assert_eq!(out.error, None);
            prop_assert_eq!(out.frames, sent);
        }

        #[test]
        fn encode_then_decode_gives_back_the_payload(
            mut codec in any_delimiter(),
            payload in bytes_from(ALPHABET, 20),
        ) {
            let mut out = b"old".to_vec();
            match codec.encode(&payload, &mut out) {
                Ok(()) => {
                    let decoded = codec.decode(&out[3..]).unwrap().unwrap();
                    prop_assert_eq!(&out[3..][decoded.frame], &payload[..]);
                    prop_assert_eq!(decoded.consumed, out.len() - 3);
                }
                Err(err) => {
                    prop_assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
                    prop_assert_eq!(&out[..], b"old");
                    let mut framed = payload.clone();
                    framed.extend_from_slice(codec.delimiter());
                    prop_assert!(matches!(codec.find(&framed), Some(at) if at < payload.len()));
                }
            }
        }

        #[test]
        fn random_bytes_decode_the_same_however_they_are_cut(
            codec in any_delimiter(),
            max in 0..12usize,
            stream in bytes_from(ALPHABET, 60),
            cuts in cuts(),
        ) {
            let codec = codec.max_frame(max);
            let whole = feed(&mut codec.clone(), [&stream[..]]);
            let cut = feed(&mut codec.clone(), cut_at(&stream, &cuts));
            prop_assert_eq!(cut.result(), whole.result());
            let bytewise = feed_bytewise(&codec, &stream);
            prop_assert_eq!(bytewise.result(), whole.result());
        }
    }
}
