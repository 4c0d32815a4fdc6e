//! RESP2, the Redis protocol: requests as Redis reads them, replies as it
//! writes them.
//!
//! [`Resp`] is the request side: it cuts a stream into commands, either
//! arrays of bulk strings (what every client library sends) or inline
//! commands (what `telnet` and `redis-benchmark -t ping_inline` send).
//! [`Args`] reads a command's arguments out of the frame without copying or
//! allocating. The reply functions ([`simple`], [`error`], [`integer`],
//! [`bulk`], [`null_bulk`], [`array`](fn@array)) append one encoded reply to a
//! buffer, which [`Conn::send`](crate::Conn::send) then queues.
//!
//! ```
//! use evmux::codec::resp::{self, Args};
//! use evmux::codec::{Codec, Resp};
//!
//! let mut codec = Resp::new();
//! let input = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\nGET a\r\n";
//! let set = codec.decode(input)?.expect("a whole command");
//! let args: Vec<&[u8]> = Args::new(&input[set.frame]).collect();
//! assert_eq!(args, [&b"SET"[..], b"a", b"1"]);
//!
//! let rest = &input[set.consumed..];
//! let get = codec.decode(rest)?.expect("a whole inline command");
//! let args: Vec<&[u8]> = Args::new(&rest[get.frame]).collect();
//! assert_eq!(args, [&b"GET"[..], b"a"]);
//!
//! let mut reply = Vec::new();
//! resp::bulk(&mut reply, b"1");
//! assert_eq!(reply, b"$1\r\n1\r\n");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::iter::FusedIterator;

use super::{note_scanned, Codec, DecodeError, Decoded};

/// The default longest bulk string (one argument): 1 MiB. Redis allows
/// 512 MiB (`proto-max-bulk-len`), which lets one client make the server
/// buffer half a gigabyte before its command even runs.
pub const DEFAULT_MAX_BULK: usize = 1024 * 1024;

/// The default largest number of arguments in one array request: 1 Mi,
/// Redis's limit for clients that have not authenticated.
pub const DEFAULT_MAX_ARGS: usize = 1024 * 1024;

/// The default longest inline command: 64 KiB, Redis's
/// `PROTO_INLINE_MAX_SIZE`.
pub const DEFAULT_MAX_INLINE: usize = 64 * 1024;

/// The default longest array request, headers included: 8 MiB. This is
/// what bounds a connection's input buffer.
pub const DEFAULT_MAX_REQUEST: usize = 8 * 1024 * 1024;

/// RESP2 requests: arrays of bulk strings and inline commands, as Redis
/// accepts them.
///
/// ```text
/// array:   *<N>\r\n  then N times  $<len>\r\n<len bytes>\r\n
///          e.g. "*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
/// inline:  words separated by spaces or tabs, then \n or \r\n
///          e.g. "GET a\r\n"
/// ```
///
/// A request starting with `*` is an array; anything else is an inline
/// command. The frame handed out is the whole array, from `*` to the last
/// bulk string's `\r\n`, or the inline line without its line ending; read
/// its arguments with [`Args`]. `*0\r\n`, `*-1\r\n` (the null array) and a
/// blank line are frames with no arguments: Redis ignores them, and so
/// should a handler. Inline commands are split on white space only: unlike
/// Redis, quotes are not interpreted.
///
/// # Bounds
///
/// Each is checked as soon as the bytes seen prove it crossed, before the
/// body is buffered (a `$1000000000` header fails at its eighth digit):
///
/// | bound | default | crossed |
/// |---|---|---|
/// | [`max_bulk`](Resp::max_bulk): bytes in one bulk string | [`DEFAULT_MAX_BULK`] | [`DecodeError::FrameTooLarge`] with that maximum |
/// | [`max_request`](Resp::max_request): bytes in one array request, headers included | [`DEFAULT_MAX_REQUEST`] | [`DecodeError::FrameTooLarge`] with that maximum |
/// | [`max_inline`](Resp::max_inline): bytes in one inline command, without its line ending (never more than `max_request`) | [`DEFAULT_MAX_INLINE`] | [`DecodeError::FrameTooLarge`] with that maximum |
/// | [`max_args`](Resp::max_args): arguments in one array request | [`DEFAULT_MAX_ARGS`] | [`DecodeError::Malformed`] (the count is not a byte length) |
///
/// # Malformed input
///
/// [`DecodeError::Malformed`] says what was wrong: a length that is not a
/// decimal number (`*x`, `$`, a leading zero as in `$03`), a negative
/// array length other than `*-1`, a negative bulk length (a null bulk
/// string, `$-1`, is not an argument; Redis refuses it too), a bulk header
/// not starting with `$`, or a `\r\n` missing after a length or a bulk
/// string. Redis skips the two bytes after a bulk string without looking;
/// this codec checks them.
///
/// # Cost
///
/// Headers are read one byte at a time, each byte once, with the parse
/// state kept between calls; bulk string bodies are not scanned at all, and
/// inline lines are searched with `memchr` from where the last search
/// stopped. A request trickling in one byte at a time costs O(n) in total.
///
/// # Examples
///
/// ```
/// use evmux::codec::{Codec, DecodeError, Resp};
///
/// let mut codec = Resp::new().max_bulk(10);
/// // Rejected on the header, before any of the body arrives.
/// assert_eq!(
///     codec.decode(b"*1\r\n$11\r\n"),
///     Err(DecodeError::FrameTooLarge { max: 10 })
/// );
/// assert_eq!(
///     codec.decode(b"*1\r\n#3\r\n"),
///     Err(DecodeError::Malformed("expected '$' at the start of a bulk string"))
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Resp {
    max_bulk: usize,
    max_args: usize,
    max_inline: usize,
    max_request: usize,
    /// Where the parse of the front request stands.
    step: Step,
    /// How many bytes of the front request the parse has used up (for an
    /// inline command: how many were searched for `\n`).
    at: usize,
    /// Bulk strings still to come in the current array.
    left: usize,
    /// The length being read, or the length of the body awaited.
    num: usize,
    /// Inside a length line: digits seen, `-` seen, `\r` seen.
    line: Line,
}

/// The parse of the front request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing of it seen yet.
    Start,
    /// An inline command: searching for `\n`.
    Inline,
    /// The array length after `*`.
    Count,
    /// Expecting the `$` of the next bulk string.
    BulkStart,
    /// The bulk length after `$`.
    BulkLen,
    /// Awaiting `num` body bytes and `\r\n`, starting at `at`.
    Body,
}

/// The state within a length line (`*<N>\r\n` or `$<len>\r\n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Line {
    digits: u8,
    minus: bool,
    cr: bool,
}

impl Resp {
    /// Makes a codec with the default bounds ([`DEFAULT_MAX_BULK`],
    /// [`DEFAULT_MAX_ARGS`], [`DEFAULT_MAX_INLINE`],
    /// [`DEFAULT_MAX_REQUEST`]).
    pub fn new() -> Self {
        Resp {
            max_bulk: DEFAULT_MAX_BULK,
            max_args: DEFAULT_MAX_ARGS,
            max_inline: DEFAULT_MAX_INLINE,
            max_request: DEFAULT_MAX_REQUEST,
            step: Step::Start,
            at: 0,
            left: 0,
            num: 0,
            line: Line::default(),
        }
    }

    /// Sets the longest bulk string (one argument) accepted, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::codec::{Codec, DecodeError, Resp};
    ///
    /// let mut codec = Resp::new().max_bulk(3);
    /// assert!(codec.decode(b"*1\r\n$3\r\nabc\r\n")?.is_some());
    /// assert_eq!(codec.decode(b"*1\r\n$4"), Err(DecodeError::FrameTooLarge { max: 3 }));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_bulk(mut self, bytes: usize) -> Self {
        self.max_bulk = bytes;
        self
    }

    /// Sets the largest number of arguments accepted in one array request.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::codec::{Codec, DecodeError, Resp};
    ///
    /// let mut codec = Resp::new().max_args(2);
    /// assert_eq!(
    ///     codec.decode(b"*3\r\n"),
    ///     Err(DecodeError::Malformed("array length above the maximum number of arguments"))
    /// );
    /// ```
    pub fn max_args(mut self, n: usize) -> Self {
        self.max_args = n;
        self
    }

    /// Sets the longest inline command accepted, in bytes, without its line
    /// ending. [`max_request`](Resp::max_request) caps it too.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::codec::{Codec, DecodeError, Resp};
    ///
    /// let mut codec = Resp::new().max_inline(4);
    /// assert!(codec.decode(b"PING\r\n")?.is_some());
    /// assert_eq!(codec.decode(b"PINGS"), Err(DecodeError::FrameTooLarge { max: 4 }));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_inline(mut self, bytes: usize) -> Self {
        self.max_inline = bytes;
        self
    }

    /// Sets the longest array request accepted, in bytes, from `*` to the
    /// last `\r\n`; it also caps inline commands.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::codec::{Codec, DecodeError, Resp};
    ///
    /// // "*1\r\n$4\r\nPING\r\n" is 14 bytes.
    /// assert!(Resp::new().max_request(14).decode(b"*1\r\n$4\r\nPING\r\n")?.is_some());
    /// assert_eq!(
    ///     Resp::new().max_request(13).decode(b"*1\r\n$4\r\n"),
    ///     Err(DecodeError::FrameTooLarge { max: 13 })
    /// );
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_request(mut self, bytes: usize) -> Self {
        self.max_request = bytes;
        self
    }

    /// The longest bulk string accepted, in bytes.
    pub fn max_bulk_len(&self) -> usize {
        self.max_bulk
    }

    /// The largest number of arguments accepted in one array request.
    pub fn max_args_len(&self) -> usize {
        self.max_args
    }

    /// The longest inline command accepted, in bytes: the smaller of the
    /// inline and the request maximum.
    pub fn max_inline_len(&self) -> usize {
        self.max_inline.min(self.max_request)
    }

    /// The longest array request accepted, in bytes.
    pub fn max_request_len(&self) -> usize {
        self.max_request
    }

    /// Forgets the parse of the front request.
    fn reset(&mut self) {
        self.step = Step::Start;
        self.at = 0;
        self.left = 0;
        self.num = 0;
        self.line = Line::default();
    }

    /// Starts a length line (after `*` or `$`).
    fn begin_line(&mut self, step: Step) {
        self.step = step;
        self.num = 0;
        self.line = Line::default();
    }

    /// Parses as far as `buf` allows; `Ok(None)` keeps the state for the
    /// next call.
    fn advance(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        loop {
            match self.step {
                Step::Start => match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        if self.max_request == 0 {
                            return Err(DecodeError::FrameTooLarge { max: 0 });
                        }
                        self.at = 1;
                        self.begin_line(Step::Count);
                    }
                    Some(_) => {
                        self.at = 0;
                        self.step = Step::Inline;
                    }
                },
                Step::Inline => return self.inline(buf),
                Step::Count | Step::BulkLen => {
                    if let Some(value) = self.whole_line(buf) {
                        if let Some(done) = self.line_done(Some(value))? {
                            return Ok(Some(done));
                        }
                        continue;
                    }
                    let Some(&byte) = buf.get(self.at) else {
                        return Ok(None);
                    };
                    note_scanned(1);
                    if self.at >= self.max_request {
                        return Err(DecodeError::FrameTooLarge {
                            max: self.max_request,
                        });
                    }
                    self.at += 1;
                    if let Some(value) = self.line_byte(byte)? {
                        if let Some(done) = self.line_done(value)? {
                            return Ok(Some(done));
                        }
                    }
                }
                Step::BulkStart => {
                    let Some(&byte) = buf.get(self.at) else {
                        return Ok(None);
                    };
                    note_scanned(1);
                    if self.at >= self.max_request {
                        return Err(DecodeError::FrameTooLarge {
                            max: self.max_request,
                        });
                    }
                    if byte != b'$' {
                        return Err(DecodeError::Malformed(
                            "expected '$' at the start of a bulk string",
                        ));
                    }
                    self.at += 1;
                    self.begin_line(Step::BulkLen);
                }
                Step::Body => {
                    // `at + num + 2 <= max_request` was checked: no overflow.
                    let cr = self.at + self.num;
                    match buf.get(cr..cr + 2) {
                        Some(b"\r\n") => {}
                        Some(_) => return Err(MISSING_CRLF_AFTER_BULK),
                        None if buf.len() > cr && buf[cr] != b'\r' => {
                            return Err(MISSING_CRLF_AFTER_BULK)
                        }
                        None => return Ok(None),
                    }
                    self.at = cr + 2;
                    self.left -= 1;
                    if self.left == 0 {
                        return Ok(Some(whole(self.at)));
                    }
                    self.step = Step::BulkStart;
                }
            }
        }
    }

    /// The fast path for a length line: when it is all there, plain
    /// decimal (no sign, no leading zero) and within its bounds, reads it at
    /// once and moves past its `\r\n`. Anything else (a partial line, a
    /// sign, a bound crossed, garbage) returns `None` and is left to
    /// [`line_byte`](Resp::line_byte), which is the definition of what is
    /// accepted and says what is wrong.
    fn whole_line(&mut self, buf: &[u8]) -> Option<usize> {
        if self.line != Line::default() {
            return None; // a line already half read byte by byte
        }
        let line = buf.get(self.at..)?;
        let digits = line
            .iter()
            .take(20)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0
            || line.get(digits..digits + 2)? != b"\r\n"
            || (digits > 1 && line[0] == b'0')
        {
            return None;
        }
        let mut value: usize = 0;
        for &digit in &line[..digits] {
            value = value
                .checked_mul(10)?
                .checked_add(usize::from(digit - b'0'))?;
        }
        let bound = match self.step {
            Step::BulkLen => self.max_bulk,
            _ => self.max_args,
        };
        let end = self.at + digits + 2;
        if value > bound || end > self.max_request {
            return None;
        }
        note_scanned(digits + 2);
        self.at = end;
        Some(value)
    }

    /// One byte of a length line. Returns the value once its `\r\n` is
    /// complete (`None` for `-1`), checking the bound on every digit.
    fn line_byte(&mut self, byte: u8) -> Result<Option<Option<usize>>, DecodeError> {
        let bulk = self.step == Step::BulkLen;
        let invalid = DecodeError::Malformed(if bulk {
            "invalid bulk length"
        } else {
            "invalid array length"
        });
        let line = &mut self.line;
        if line.cr {
            if byte != b'\n' {
                return Err(DecodeError::Malformed(if bulk {
                    "missing \\n after a bulk length's \\r"
                } else {
                    "missing \\n after an array length's \\r"
                }));
            }
            return Ok(Some((!line.minus).then_some(self.num)));
        }
        match byte {
            b'\r' if line.digits > 0 => line.cr = true,
            b'-' if bulk => {
                return Err(DecodeError::Malformed(
                    "negative bulk length (a null bulk string is not an argument)",
                ))
            }
            b'-' if line.digits == 0 && !line.minus => line.minus = true,
            b'0'..=b'9' if line.minus => {
                if line.digits > 0 || byte != b'1' {
                    return Err(DecodeError::Malformed(
                        "negative array length other than -1",
                    ));
                }
                line.digits = 1;
            }
            b'0'..=b'9' => {
                if line.digits > 0 && self.num == 0 {
                    return Err(invalid); // a leading zero, as Redis rejects
                }
                line.digits = line.digits.saturating_add(1);
                let next = self
                    .num
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(usize::from(byte - b'0')));
                let bound = if bulk { self.max_bulk } else { self.max_args };
                match next {
                    Some(n) if n <= bound => self.num = n,
                    _ if bulk => return Err(DecodeError::FrameTooLarge { max: self.max_bulk }),
                    _ => {
                        return Err(DecodeError::Malformed(
                            "array length above the maximum number of arguments",
                        ))
                    }
                }
            }
            _ => return Err(invalid),
        }
        Ok(None)
    }

    /// A length line is complete: an empty array is a frame; otherwise go
    /// on to the bulk strings or the body.
    fn line_done(&mut self, value: Option<usize>) -> Result<Option<Decoded>, DecodeError> {
        match (self.step, value) {
            (Step::Count, None | Some(0)) => Ok(Some(whole(self.at))),
            (Step::Count, Some(n)) => {
                self.left = n;
                self.step = Step::BulkStart;
                Ok(None)
            }
            (_, len) => {
                let len = len.unwrap_or(0); // `$-1` was refused at the `-`
                let end = self.at.checked_add(len).and_then(|n| n.checked_add(2));
                if end.map_or(true, |end| end > self.max_request) {
                    return Err(DecodeError::FrameTooLarge {
                        max: self.max_request,
                    });
                }
                self.num = len;
                self.step = Step::Body;
                Ok(None)
            }
        }
    }

    /// An inline command: a line ended by `\n`, a `\r` before it dropped,
    /// searched from where the last search stopped.
    fn inline(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        let max = self.max_inline_len();
        // The `\n` of an acceptable line is at most at offset `max + 1`.
        let limit = buf.len().min(max.saturating_add(2));
        let start = self.at.min(limit);
        note_scanned(limit - start);
        if let Some(found) = memchr::memchr(b'\n', &buf[start..limit]) {
            let newline = start + found;
            let end = match buf[..newline].last() {
                Some(b'\r') => newline - 1,
                _ => newline,
            };
            if end > max {
                return Err(DecodeError::FrameTooLarge { max });
            }
            return Ok(Some(Decoded {
                frame: 0..end,
                consumed: newline + 1,
            }));
        }
        // No `\n` yet: `max + 1` bytes prove it too long unless the last is
        // the `\r` of a `\r\n`; `max + 2` bytes always do.
        let too_long = match limit.checked_sub(max) {
            None | Some(0) => false,
            Some(1) => buf[limit - 1] != b'\r',
            Some(_) => true,
        };
        if too_long {
            return Err(DecodeError::FrameTooLarge { max });
        }
        self.at = limit;
        Ok(None)
    }
}

/// A request that is its own frame, `end` bytes long.
fn whole(end: usize) -> Decoded {
    Decoded {
        frame: 0..end,
        consumed: end,
    }
}

const MISSING_CRLF_AFTER_BULK: DecodeError =
    DecodeError::Malformed("missing \\r\\n after a bulk string");

impl Default for Resp {
    fn default() -> Self {
        Resp::new()
    }
}

impl Codec for Resp {
    fn decode(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        if self.at > buf.len() {
            // Not the buffer we parsed before (the caller broke the
            // contract): start over rather than misread it.
            self.reset();
        }
        let result = self.advance(buf);
        if !matches!(result, Ok(None)) {
            self.reset();
        }
        result
    }

    /// Appends `payload`, one or more replies already encoded with this
    /// module's functions, unchanged.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `payload` cannot be a reply: it does not start
    /// with one of `+ - : $ *` or does not end with `\r\n` (say,
    /// `conn.send(b"PONG")`); `out` is then left as it was.
    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let typed = matches!(payload.first(), Some(b'+' | b'-' | b':' | b'$' | b'*'));
        if !typed || !payload.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "resp encode: a reply starts with one of + - : $ * and ends with \\r\\n",
            ));
        }
        out.extend_from_slice(payload);
        Ok(())
    }
}

/// The arguments of one command, read out of a frame from [`Resp`]: an
/// iterator of `&[u8]` borrowed from the frame, the command name first. It
/// allocates nothing and copies nothing.
///
/// For an array the count comes from its header; for an inline command the
/// words are counted when `Args` is made (one pass over the line). A blank
/// line, `*0` and `*-1` give no arguments. On bytes that did not come from
/// [`Resp`], `Args` never panics, but it stops at the first thing it cannot
/// read, so it may give fewer arguments than [`len`](ExactSizeIterator::len)
/// said.
///
/// # Examples
///
/// ```
/// use evmux::codec::resp::Args;
///
/// let mut args = Args::new(b"*2\r\n$4\r\nECHO\r\n$5\r\nhi\r\nx\r\n");
/// assert_eq!(args.len(), 2);
/// assert_eq!(args.next(), Some(&b"ECHO"[..]));
/// assert_eq!(args.next(), Some(&b"hi\r\nx"[..])); // bulk strings are binary
/// assert_eq!(args.next(), None);
///
/// let inline: Vec<&[u8]> = Args::new(b"  SET k\tv ").collect();
/// assert_eq!(inline, [&b"SET"[..], b"k", b"v"]);
/// assert_eq!(Args::new(b"").len(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct Args<'a> {
    /// What is left to read.
    rest: &'a [u8],
    /// Arguments still to come.
    left: usize,
    /// True for an inline command (words), false for an array.
    inline: bool,
}

impl<'a> Args<'a> {
    /// The arguments of `frame`, a frame [`Resp`] decoded.
    pub fn new(frame: &'a [u8]) -> Args<'a> {
        match frame.strip_prefix(b"*") {
            Some(after) => match length_line(after) {
                Some((Some(n), rest)) => Args {
                    rest,
                    left: n,
                    inline: false,
                },
                _ => Args {
                    rest: &[],
                    left: 0,
                    inline: false,
                },
            },
            None => {
                let mut words = Args {
                    rest: frame,
                    left: usize::MAX,
                    inline: true,
                };
                let left = words.by_ref().count();
                Args {
                    rest: frame,
                    left,
                    inline: true,
                }
            }
        }
    }

    /// The next bulk string of an array, or `None` if what follows is not
    /// one.
    fn next_bulk(&mut self) -> Option<&'a [u8]> {
        let (len, after) = length_line(self.rest.strip_prefix(b"$")?)?;
        let len = len?;
        let body = after.get(..len)?;
        self.rest = after.get(len..)?.strip_prefix(b"\r\n")?;
        Some(body)
    }

    /// The next word of an inline command.
    fn next_word(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| !is_space(b))?;
        let word = &self.rest[start..];
        let len = word.iter().position(|&b| is_space(b)).unwrap_or(word.len());
        self.rest = &word[len..];
        Some(&word[..len])
    }
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let arg = if self.inline {
            self.next_word()
        } else {
            self.next_bulk()
        };
        match arg {
            Some(_) => self.left -= 1,
            None => self.left = 0,
        }
        arg
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Args<'_> {}

impl FusedIterator for Args<'_> {}

/// White space between inline arguments, as C's `isspace` (Redis splits
/// inline commands with it).
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

/// `<digits>\r\n` or `-1\r\n` at the front of `bytes`: the value (`None`
/// for `-1`) and what follows. Lenient: `Resp` has validated its frames.
fn length_line(bytes: &[u8]) -> Option<(Option<usize>, &[u8])> {
    if let Some(rest) = bytes.strip_prefix(b"-1\r\n") {
        return Some((None, rest));
    }
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = bytes[digits..].strip_prefix(b"\r\n")?;
    if digits == 0 {
        return None;
    }
    let mut n: usize = 0;
    for &digit in &bytes[..digits] {
        n = n.checked_mul(10)?.checked_add(usize::from(digit - b'0'))?;
    }
    Some((Some(n), rest))
}

/// Appends a simple string reply, `+<text>\r\n` (`+OK`, `+PONG`). A `\r` or
/// `\n` in `text` would end the reply early, so each becomes a space.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// evmux::codec::resp::simple(&mut out, b"OK");
/// assert_eq!(out, b"+OK\r\n");
/// ```
pub fn simple(out: &mut Vec<u8>, text: &[u8]) {
    line(out, b'+', text);
}

/// Appends an error reply, `-<text>\r\n`; `text` starts with the error code
/// (`ERR`, `WRONGTYPE`, `NOPROTO`, ...). A `\r` or `\n` in `text` becomes a
/// space, as Redis does with its own error messages.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// evmux::codec::resp::error(&mut out, b"ERR unknown command 'x\r\ny'");
/// assert_eq!(out, b"-ERR unknown command 'x  y'\r\n");
/// ```
pub fn error(out: &mut Vec<u8>, text: &[u8]) {
    line(out, b'-', text);
}

/// `<kind><text>\r\n`, with CR and LF in `text` made spaces.
fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.push(kind);
    let start = out.len();
    out.extend_from_slice(text);
    for byte in &mut out[start..] {
        if matches!(*byte, b'\r' | b'\n') {
            *byte = b' ';
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends an integer reply, `:<n>\r\n`.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// evmux::codec::resp::integer(&mut out, -42);
/// assert_eq!(out, b":-42\r\n");
/// ```
pub fn integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    if n < 0 {
        out.push(b'-');
    }
    decimal(out, n.unsigned_abs());
    out.extend_from_slice(b"\r\n");
}

/// Appends a bulk string reply, `$<len>\r\n<data>\r\n`; `data` may hold any
/// bytes.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// evmux::codec::resp::bulk(&mut out, b"a\r\nb");
/// assert_eq!(out, b"$4\r\na\r\nb\r\n");
/// ```
pub fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len() + 16);
    out.push(b'$');
    decimal(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the null bulk string, `$-1\r\n` (`GET` of a missing key).
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// evmux::codec::resp::null_bulk(&mut out);
/// assert_eq!(out, b"$-1\r\n");
/// ```
pub fn null_bulk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends an array header, `*<len>\r\n`; the caller appends the `len`
/// elements after it, each a reply of its own.
///
/// # Examples
///
/// ```
/// use evmux::codec::resp;
///
/// let mut out = Vec::new();
/// resp::array(&mut out, 2);
/// resp::bulk(&mut out, b"v");
/// resp::null_bulk(&mut out);
/// assert_eq!(out, b"*2\r\n$1\r\nv\r\n$-1\r\n");
/// ```
pub fn array(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    decimal(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, without allocating.
fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
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

    fn malformed(why: &'static str) -> Option<DecodeError> {
        Some(DecodeError::Malformed(why))
    }

    /// `args` as an array request.
    fn array_of(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        array(&mut out, args.len());
        for arg in args {
            bulk(&mut out, arg);
        }
        out
    }

    /// The arguments of each frame.
    fn commands(frames: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
        frames
            .iter()
            .map(|f| Args::new(f).map(<[u8]>::to_vec).collect())
            .collect()
    }

    #[test]
    fn array_request() {
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
        assert_every_cut(&Resp::new(), get, &[get], None);
        assert_eq!(
            commands(&[get.to_vec()]),
            [[b"GET".to_vec(), b"a".to_vec()]]
        );
    }

    #[test]
    fn bulk_strings_are_binary() {
        let stream = array_of(&[b"SET", b"\r\n*$-1\r\n", b"", b"\0\xff"]);
        assert_every_cut(&Resp::new(), &stream, &[&stream], None);
        let args: Vec<&[u8]> = Args::new(&stream).collect();
        assert_eq!(args, [&b"SET"[..], b"\r\n*$-1\r\n", b"", b"\0\xff"]);
    }

    #[test]
    fn inline_requests_with_either_ending() {
        let stream = b"PING\r\nSET k v\nGET  k \r\n";
        assert_every_cut(
            &Resp::new(),
            stream,
            &[b"PING", b"SET k v", b"GET  k "],
            None,
        );
        let words: Vec<&[u8]> = Args::new(b"\t GET \x0b k\x0c\r").collect();
        assert_eq!(words, [&b"GET"[..], b"k"]);
    }

    #[test]
    fn pipelined_mix_of_arrays_and_inline() {
        let ping = array_of(&[b"PING"]);
        let echo = array_of(&[b"ECHO", b"hi there"]);
        let mut stream = ping.clone();
        stream.extend_from_slice(b"INCR n\r\n");
        stream.extend_from_slice(&echo);
        assert_every_cut(&Resp::new(), &stream, &[&ping, b"INCR n", &echo], None);
    }

    #[test]
    fn empty_commands_are_frames_without_arguments() {
        let stream = b"*0\r\n*-1\r\n\r\n\n   \r\n";
        let want: [&[u8]; 5] = [b"*0\r\n", b"*-1\r\n", b"", b"", b"   "];
        assert_every_cut(&Resp::new(), stream, &want, None);
        for frame in want {
            assert_eq!(Args::new(frame).len(), 0);
            assert_eq!(Args::new(frame).next(), None);
        }
    }

    #[test]
    fn malformed_lengths_say_what_was_wrong() {
        let cases: [(&[u8], &str); 18] = [
            (b"*x\r\n", "invalid array length"),
            (b"*\r\n", "invalid array length"),
            (b"*-\r\n", "invalid array length"),
            (b"*01\r\n", "invalid array length"),
            (b"*1 \r\n", "invalid array length"),
            (b"*+1\r\n", "invalid array length"),
            (b"*-2\r\n", "negative array length other than -1"),
            (b"*-0\r\n", "negative array length other than -1"),
            (b"*-10\r\n", "negative array length other than -1"),
            (b"*1\rx", "missing \\n after an array length's \\r"),
            (b"*1\n", "invalid array length"),
            (
                b"*1\r\nGET\r\n",
                "expected '$' at the start of a bulk string",
            ),
            (b"*1\r\n$x\r\n", "invalid bulk length"),
            (b"*1\r\n$\r\n", "invalid bulk length"),
            (b"*1\r\n$00\r\n", "invalid bulk length"),
            (
                b"*1\r\n$-1\r\n",
                "negative bulk length (a null bulk string is not an argument)",
            ),
            (b"*1\r\n$1\r\r", "missing \\n after a bulk length's \\r"),
            (b"*1\r\n$1\r\nab\r\n", "missing \\r\\n after a bulk string"),
        ];
        for (stream, why) in cases {
            assert_every_cut(&Resp::new(), stream, &[], malformed(why));
        }
        // Rejected at the first wrong byte, not once both are there.
        let out = feed_bytewise(&Resp::new(), b"*1\r\n$1\r\nab");
        assert_eq!(out.error, malformed("missing \\r\\n after a bulk string"));
        assert_eq!(out.fed, 10);
        let missing_lf = b"*1\r\n$1\r\na\rX";
        let why = "missing \\r\\n after a bulk string";
        assert_every_cut(&Resp::new(), missing_lf, &[], malformed(why));
    }

    #[test]
    fn a_bad_request_after_good_ones_keeps_the_good_ones() {
        let ping = array_of(&[b"PING"]);
        let mut stream = ping.clone();
        stream.extend_from_slice(b"PING\r\n*2\r\n$1\r\na\r\n:1\r\n");
        let why = "expected '$' at the start of a bulk string";
        assert_every_cut(&Resp::new(), &stream, &[&ping, b"PING"], malformed(why));
    }

    #[test]
    fn bulk_of_exactly_max_is_accepted_one_more_is_not() {
        let codec = Resp::new().max_bulk(4);
        let fits = array_of(&[b"SET", b"k", b"abcd"]);
        assert_every_cut(&codec, &fits, &[&fits], None);
        let over = array_of(&[b"SET", b"k", b"abcde"]);
        assert_every_cut(&codec, &over, &[], too_large(4));
        let zero = Resp::new().max_bulk(0);
        let empty = array_of(&[b"", b""]);
        assert_every_cut(&zero, &empty, &[&empty], None);
        assert_every_cut(&zero, &array_of(&[b"a"]), &[], too_large(0));
    }

    #[test]
    fn args_of_exactly_max_are_accepted_one_more_is_not() {
        let codec = Resp::new().max_args(3);
        let fits = array_of(&[b"MGET", b"a", b"b"]);
        assert_every_cut(&codec, &fits, &[&fits], None);
        let over = array_of(&[b"MGET", b"a", b"b", b"c"]);
        let why = "array length above the maximum number of arguments";
        assert_every_cut(&codec, &over, &[], malformed(why));
        // The null and empty arrays are fine with no arguments allowed.
        let none = Resp::new().max_args(0);
        assert_every_cut(&none, b"*0\r\n*-1\r\n", &[b"*0\r\n", b"*-1\r\n"], None);
        assert_every_cut(&none, b"*1\r\n", &[], malformed(why));
    }

    #[test]
    fn inline_of_exactly_max_is_accepted_one_more_is_not() {
        let codec = Resp::new().max_inline(4);
        assert_every_cut(&codec, b"PING\r\n", &[b"PING"], None);
        assert_every_cut(&codec, b"PING\n", &[b"PING"], None);
        assert_every_cut(&codec, b"PINGS\r\n", &[], too_large(4));
        assert_every_cut(&codec, b"PING\r\r\n", &[], too_large(4));
        // The request maximum caps inline commands too.
        let capped = Resp::new().max_request(3);
        assert_eq!(capped.max_inline_len(), 3);
        assert_every_cut(&capped, b"GET\r\n", &[b"GET"], None);
        assert_every_cut(&capped, b"PING\r\n", &[], too_large(3));
    }

    #[test]
    fn request_of_exactly_max_is_accepted_one_more_is_not() {
        let fits = array_of(&[b"SET", b"k", b"v"]);
        let len = fits.len();
        assert_every_cut(&Resp::new().max_request(len), &fits, &[&fits], None);
        assert_every_cut(
            &Resp::new().max_request(len - 1),
            &fits,
            &[],
            too_large(len - 1),
        );
        // Crossed inside a header, not only by a body.
        let many = array_of(&[b"", b"", b""]); // *3 then three "$0\r\n\r\n"
        let codec = Resp::new().max_request(many.len() - 4);
        let out = feed_bytewise(&codec, &many);
        assert_eq!(out.error, too_large(many.len() - 4));
        // The last header's `\r` is the first byte past the maximum.
        assert_eq!(
            out.fed,
            many.len() - 3,
            "rejected at the first byte past the maximum"
        );
    }

    #[test]
    fn defaults() {
        let codec = Resp::new();
        assert_eq!(codec.max_bulk_len(), 1 << 20);
        assert_eq!(codec.max_args_len(), 1 << 20);
        assert_eq!(codec.max_inline_len(), 64 << 10);
        assert_eq!(codec.max_request_len(), 8 << 20);
        let mut line = vec![b'a'; DEFAULT_MAX_INLINE];
        line.extend_from_slice(b"\r\n");
        assert_eq!(feed(&mut Resp::new(), [&line[..]]).frames.len(), 1);
        line.insert(0, b'a');
        assert_eq!(feed(&mut Resp::new(), [&line[..]]).error, too_large(65536));
        let header = format!("*1\r\n${}\r\n", DEFAULT_MAX_BULK + 1);
        let out = feed(&mut Resp::new(), [header.as_bytes()]);
        assert_eq!(out.error, too_large(DEFAULT_MAX_BULK));
        // As the docs say: `$1000000000` fails at its eighth digit.
        let out = feed_bytewise(&Resp::new(), b"*1\r\n$1000000000\r\n");
        assert_eq!(out.error, too_large(DEFAULT_MAX_BULK));
        assert_eq!(out.fed, 4 + 1 + 8);
    }

    #[test]
    fn oversize_is_rejected_before_the_body_is_fed() {
        let codec = Resp::new().max_bulk(1000);
        let mut stream = b"*2\r\n$3\r\nSET\r\n$1001\r\n".to_vec();
        stream.extend_from_slice(&[b'x'; 1001]);
        stream.extend_from_slice(b"\r\n");
        let out = feed_bytewise(&codec, &stream);
        assert_eq!(out.error, too_large(1000));
        assert_eq!(out.fed, 18, "rejected at the fourth digit of $1001");
        // A header claiming more than usize can hold, with no bounds at all.
        let unbounded = Resp::new()
            .max_bulk(usize::MAX)
            .max_args(usize::MAX)
            .max_request(usize::MAX);
        let huge = b"*1\r\n$99999999999999999999999\r\n";
        let out = feed_bytewise(&unbounded, huge);
        assert_eq!(out.error, too_large(usize::MAX));
        let why = "array length above the maximum number of arguments";
        let out = feed_bytewise(&unbounded, b"*99999999999999999999999\r\n");
        assert_eq!(out.error, malformed(why));
        // An inline command with no newline: max + 1 bytes prove it.
        let out = feed_bytewise(&Resp::new().max_inline(10), &[b'a'; 100]);
        assert_eq!(out.error, too_large(10));
        assert_eq!(out.fed, 11);
    }

    #[test]
    fn byte_at_a_time_scans_each_byte_at_most_once() {
        let n = 100_000;
        let inline = {
            let mut line = vec![b'a'; n];
            line.extend_from_slice(b"\r\n");
            line
        };
        let args: Vec<Vec<u8>> = (0..n / 8).map(|i| i.to_string().into_bytes()).collect();
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let many_args = array_of(&refs);
        let big_bulk = array_of(&[b"SET", b"k", &vec![b'v'; n]]);
        let codec = Resp::new().max_inline(n);
        for stream in [inline, many_args, big_bulk] {
            let mut out = None;
            let scanned = scanned_during(|| out = Some(feed_bytewise(&codec, &stream)));
            assert_eq!(out.map(|o| o.frames.len()), Some(1));
            assert!(
                scanned <= stream.len(),
                "scanned {scanned} of {} bytes",
                stream.len()
            );
        }
    }

    #[test]
    fn bulk_bodies_are_not_scanned() {
        let stream = array_of(&[b"SET", b"k", &[b'v'; 10_000]]);
        let scanned = scanned_during(|| {
            assert_eq!(feed(&mut Resp::new(), [&stream[..]]).frames.len(), 1);
        });
        assert!(scanned < 30, "scanned {scanned} bytes: only the headers");
    }

    #[test]
    fn a_different_buffer_after_none_starts_over() {
        let mut codec = Resp::new();
        assert_eq!(codec.decode(b"*2\r\n$3\r\nGET\r\n"), Ok(None));
        // Shorter than what was parsed: the caller broke the contract.
        let decoded = codec.decode(b"PING\r\n").unwrap().unwrap();
        assert_eq!(decoded.frame, 0..4);
        assert_eq!(decoded.consumed, 6);
    }

    #[test]
    fn encode_appends_replies_unchanged() {
        let mut out = b"kept".to_vec();
        Resp::new().encode(b"+OK\r\n", &mut out).unwrap();
        Resp::new().encode(b":1\r\n$1\r\na\r\n", &mut out).unwrap();
        assert_eq!(out, b"kept+OK\r\n:1\r\n$1\r\na\r\n");
    }

    #[test]
    fn encode_refuses_what_cannot_be_a_reply() {
        for payload in [&b"PONG"[..], b"PONG\r\n", b"+PONG", b"", b"\r\n"] {
            let mut out = b"kept".to_vec();
            let err = Resp::new().encode(payload, &mut out).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                err.to_string(),
                "resp encode: a reply starts with one of + - : $ * and ends with \\r\\n"
            );
            assert_eq!(out, b"kept");
        }
    }

    #[test]
    fn reply_encoders() {
        let mut out = Vec::new();
        simple(&mut out, b"PONG");
        error(&mut out, b"ERR bad\r\nthing");
        integer(&mut out, 0);
        integer(&mut out, i64::MIN);
        integer(&mut out, i64::MAX);
        bulk(&mut out, b"");
        null_bulk(&mut out);
        array(&mut out, 0);
        array(&mut out, 12);
        let want = "+PONG\r\n-ERR bad  thing\r\n:0\r\n:-9223372036854775808\r\n\
                    :9223372036854775807\r\n$0\r\n\r\n$-1\r\n*0\r\n*12\r\n";
        assert_eq!(
            out.escape_ascii().to_string(),
            want.escape_default().to_string()
        );
    }

    #[test]
    fn args_never_panic_on_foreign_bytes_and_stop_at_garbage() {
        let cases: [&[u8]; 8] = [
            b"*",
            b"*2\r\n$3\r\nGET\r\n",
            b"*2\r\n$9\r\nGET\r\n",
            b"*3\r\n$1\r\na\r\n$x",
            b"*99999999999999999999999\r\n",
            b"*1\r\n$99999999999999999999999\r\n",
            b"*1\r\n$1\r\nab",
            b"*-1\r\n",
        ];
        for frame in cases {
            let args = Args::new(frame);
            let claimed = args.len();
            assert!(args.count() <= claimed, "{:?}", frame.escape_ascii());
        }
        let partial: Vec<&[u8]> = Args::new(b"*3\r\n$1\r\na\r\n$x").collect();
        assert_eq!(partial, [b"a"]);
    }

    #[test]
    fn codec_is_small_send_and_clone() {
        fn check<C: Codec + Clone + std::fmt::Debug + Send + Sync + 'static>(_: &C) {}
        check(&Resp::new());
        assert!(std::mem::size_of::<Resp>() <= 64);
    }

    /// One command as it goes on the wire: an array, or inline where its
    /// words allow it.
    fn encode_command(args: &[Vec<u8>], inline: bool, out: &mut Vec<u8>) {
        let can_inline = !args.is_empty()
            && args[0].first() != Some(&b'*')
            && args
                .iter()
                .all(|a| !a.is_empty() && !a.iter().any(|&b| is_space(b)));
        if inline && can_inline {
            out.extend_from_slice(&args.join(&b' '));
            out.extend_from_slice(b"\r\n");
        } else {
            array(out, args.len());
            for arg in args {
                bulk(out, arg);
            }
        }
    }

    const ALPHABET: &[u8] = b"a*$-1\r\n :";

    fn any_command() -> impl Strategy<Value = (Vec<Vec<u8>>, bool)> {
        (
            prop::collection::vec(bytes_from(ALPHABET, 6), 0..5),
            any::<bool>(),
        )
    }

    proptest! {
        #[test]
        fn any_cut_of_a_valid_stream_gives_the_same_commands(
            sent in prop::collection::vec(any_command(), 0..6),
            cuts in cuts(),
        ) {
            let mut stream = Vec::new();
            for (args, inline) in &sent {
                encode_command(args, *inline, &mut stream);
            }
            let out = feed(&mut Resp::new(), cut_at(&stream, &cuts));
            prop_assert_eq!(out.error, None);
            let want: Vec<Vec<Vec<u8>>> = sent.into_iter().map(|(args, _)| args).collect();
            prop_assert_eq!(commands(&out.frames), want);
            for frame in &out.frames {
                prop_assert_eq!(Args::new(frame).len(), Args::new(frame).count());
            }
        }

        #[test]
        fn bounds_at_max_and_max_plus_one(
            len in 0..40usize,
            count in 0..6usize,
        ) {
            // A bulk string of `len` bytes, `count` + 1 arguments.
            let body = vec![b'v'; len];
            let mut args: Vec<&[u8]> = vec![b"SET"; count];
            args.push(&body);
            let stream = array_of(&args);
            let n = args.len();

            let exact = Resp::new().max_bulk(len.max(3)).max_args(n).max_request(stream.len());
            prop_assert_eq!(feed_bytewise(&exact, &stream).frames.len(), 1);

            if len > 3 {
                let out = feed_bytewise(&exact.clone().max_bulk(len - 1), &stream);
                prop_assert_eq!(out.error, too_large(len - 1));
                prop_assert!(out.fed < stream.len() - len, "before the body");
            }
            let out = feed_bytewise(&exact.clone().max_args(n - 1), &stream);
            prop_assert_eq!(
                out.error,
                malformed("array length above the maximum number of arguments")
            );
            prop_assert_eq!(out.fed, 2, "at the count's digit");
            let out = feed_bytewise(&exact.clone().max_request(stream.len() - 1), &stream);
            prop_assert_eq!(out.error, too_large(stream.len() - 1));
            prop_assert!(out.fed <= stream.len() - len, "before the last body");

            let mut line = vec![b'a'; len];
            line.extend_from_slice(b"\r\n");
            let exact = Resp::new().max_inline(len);
            prop_assert_eq!(feed_bytewise(&exact, &line).frames.len(), 1);
            if len > 0 {
                let out = feed_bytewise(&Resp::new().max_inline(len - 1), &line);
                prop_assert_eq!(out.error, too_large(len - 1));
            }
        }

        #[test]
        fn random_bytes_decode_the_same_however_they_are_cut(
            max in 0..12usize,
            stream in bytes_from(b"*$-019\r\n a", 60),
            cuts in cuts(),
        ) {
            let codec = Resp::new().max_bulk(max).max_args(max).max_inline(max).max_request(4 * max);
            let whole = feed(&mut codec.clone(), [&stream[..]]);
            let cut = feed(&mut codec.clone(), cut_at(&stream, &cuts));
            prop_assert_eq!(cut.result(), whole.result());
            let bytewise = feed_bytewise(&codec, &stream);
            prop_assert_eq!(bytewise.result(), whole.result());
            for frame in &whole.frames {
                prop_assert_eq!(Args::new(frame).len(), Args::new(frame).count());
            }
        }

        #[test]
        fn args_never_panic(frame in bytes_from(b"*$-019\r\n a", 40)) {
            let claimed = Args::new(&frame).len();
            prop_assert!(Args::new(&frame).count() <= claimed);
        }
    }
}
