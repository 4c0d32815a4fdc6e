//! The names the reactor hands out, [`ConnId`], [`SourceId`] and
//! [`TimerId`], and why a connection closed, [`CloseReason`].
//!
//! A leaf: it depends on nothing else in the crate.

use std::fmt;
use std::io;

/// Names a connection for the life of the reactor: never reused for
/// another connection, even when the same fd or table slot is.
///
/// It prints as `conn#N`, where `N` counts the connections the reactor
/// has made (accepted, adopted or connected), from 1.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    /// The slot in the connection table.
    pub(crate) key: u32,
    /// The connection's serial number, which tells a slot's users apart.
    pub(crate) gen: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.gen)
    }
}

/// Names an fd the handler asked the reactor to watch
/// ([`Control::watch`](crate::Control::watch)); never reused, as
/// [`ConnId`]. Prints as `source#N`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source#{}", self.gen)
    }
}

/// Names a timer set through [`Control`](crate::Control); pass it to
/// [`Control::cancel_timer`](crate::Control::cancel_timer).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub(crate) u64);

/// Why a connection was closed; passed to
/// [`Handler::on_close`](crate::Handler::on_close) and counted in
/// [`Stats`](crate::Stats). New reasons may be added: match with a `_` arm.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side (EOF) and every reply was flushed.
    PeerClosed,
    /// The peer reset the connection (`ECONNRESET`, `EPIPE`).
    Reset,
    /// No traffic for the configured idle timeout.
    IdleTimeout,
    /// A frame went past the codec's maximum length.
    FrameTooLarge,
    /// The codec found bytes it cannot decode.
    Malformed,
    /// The handler called [`Conn::close`](crate::Conn::close),
    /// [`Conn::shutdown`](crate::Conn::shutdown) or
    /// [`Control::close`](crate::Control::close).
    ClosedByHandler,
    /// The reactor stopped.
    ServerShutdown,
    /// Refused at accept: past `max_connections` or the backend's fd
    /// capacity (select's FD_SETSIZE). `on_open` was never called for it.
    OverCapacity,
    /// Output was queued and the peer took none of it for the configured
    /// stall timeout ([`Config::stall_timeout`](crate::Config::stall_timeout)).
    SlowConsumer,
    /// Any other I/O error, by kind.
    Io(io::ErrorKind),
}

impl CloseReason {
    /// How many slots [`index`](CloseReason::index) spans.
    pub const COUNT: usize = 10;

    /// Every reason, in [`index`](CloseReason::index) order (`Io` stands
    /// for all its kinds).
    pub const ALL: [CloseReason; CloseReason::COUNT] = [
        CloseReason::PeerClosed,
        CloseReason::Reset,
        CloseReason::IdleTimeout,
        CloseReason::FrameTooLarge,
        CloseReason::Malformed,
        CloseReason::ClosedByHandler,
        CloseReason::ServerShutdown,
        CloseReason::OverCapacity,
        CloseReason::SlowConsumer,
        CloseReason::Io(io::ErrorKind::Other),
    ];

    /// A dense index per variant (every `Io` kind shares one).
    pub fn index(self) -> usize {
        match self {
            CloseReason::PeerClosed => 0,
            CloseReason::Reset => 1,
            CloseReason::IdleTimeout => 2,
            CloseReason::FrameTooLarge => 3,
            CloseReason::Malformed => 4,
            CloseReason::ClosedByHandler => 5,
            CloseReason::ServerShutdown => 6,
            CloseReason::OverCapacity => 7,
            CloseReason::SlowConsumer => 8,
            CloseReason::Io(_) => 9,
        }
    }

    /// A short lowercase name, for logs and counters.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; CloseReason::COUNT] = [
            "peer closed",
            "reset",
            "idle timeout",
            "frame too large",
            "malformed",
            "closed by handler",
            "server shutdown",
            "over capacity",
            "slow consumer",
            "i/o error",
        ];
        NAMES[self.index()]
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Io(kind) => write!(f, "i/o error ({kind})"),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_index_and_name() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let id = ConnId { key: 3, gen: 17 };
        assert_eq!(id.to_string(), "conn#17");
        assert_eq!(CloseReason::Io(io::ErrorKind::TimedOut).index(), 9);
    }
}
