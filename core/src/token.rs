//! `Token`: the caller's name for a registered fd.

/// Identifies a registered fd in the events that [`wait`](crate::Poller::wait)
/// reports.
///
/// The poller never interprets a token: it hands back whatever was given to
/// [`register`](crate::Poller::register). A slab index or a connection id is
/// the usual choice.
///
/// # Examples
///
/// ```
/// use evmux_core::Token;
///
/// let t = Token(7);
/// assert_eq!(usize::from(t), 7);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub usize);

impl Token {
    /// `Token(usize::MAX)`, kept for the poller's own use: `register` and
    /// `modify` refuse it with `ErrorKind::InvalidInput` on every backend.
    pub const RESERVED: Token = Token(usize::MAX);
}

impl From<Token> for usize {
    fn from(token: Token) -> usize {
        token.0
    }
}

impl From<usize> for Token {
    fn from(value: usize) -> Token {
        Token(value)
    }
}
