//! One connection: its socket, buffers, codec and state, and [`Conn`], the
//! handle a handler gets to talk to it.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use crate::buffer::Buffer;
use crate::codec::Codec;
use crate::handler::Control;
use crate::Interest;

/// Names a connection for the life of the reactor: never reused for
/// another connection, even when the same fd or table slot is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(crate) usize);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{:x}", self.0)
    }
}

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
    /// The handler called [`Conn::close`], [`Conn::shutdown`] or
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

/// Per-connection state bits.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    /// Reading is paused: the output queue went past the high-water mark.
    pub paused: bool,
    /// The peer sent EOF.
    pub eof: bool,
    /// Close once the output queue drains (graceful shutdown).
    pub drain_then_close: bool,
    /// Close now, for this reason.
    pub close: Option<CloseReason>,
    /// Queued on the ready list (edge-triggered budget carry-over).
    pub ready: bool,
    /// The last write met a full socket (`WouldBlock`): no write is tried
    /// again until the poller reports the socket writable.
    pub write_blocked: bool,
    /// A stall check is scheduled on the timer heap.
    pub stall_armed: bool,
}

/// One live connection in the reactor's table.
pub(crate) struct Connection<C> {
    pub stream: TcpStream,
    pub id: ConnId,
    pub input: Buffer,
    pub output: Buffer,
    pub codec: C,
    pub last_active: Instant,
    /// When the output queue last made progress: bytes written, or the
    /// queue filled from empty (the start of a wait for the peer).
    pub last_progress: Instant,
    /// The kernel's unsent-or-unacked byte count (`SIOCOUTQ`) when the idle
    /// timer last looked, to tell a peer that is still reading from one
    /// that stopped.
    pub unacked: u32,
    /// The interest currently registered with the poller.
    pub interest: Interest,
    pub flags: Flags,
    /// Buffer bytes currently counted in `Stats::buffered` for it.
    pub held: usize,
}

impl<C> Connection<C> {
    /// Heap bytes held by the buffers.
    pub fn buffered(&self) -> usize {
        self.input.capacity() + self.output.capacity()
    }
}

/// A handler's view of one connection, valid for one callback.
///
/// Replies given to [`send`](Conn::send) are encoded by the connection's
/// codec into its output queue and written before the reactor waits again:
/// all replies to one batch of frames leave in as few `send` calls as the
/// kernel allows. Whatever the kernel does not take stays queued, and the
/// reactor watches for writability only while something is queued.
pub struct Conn<'a> {
    pub(crate) id: ConnId,
    pub(crate) stream: &'a TcpStream,
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) codec: &'a mut dyn Codec,
    pub(crate) flags: &'a mut Flags,
    pub(crate) ctl: Control<'a>,
}

impl<'a> Conn<'a> {
    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// The error of `getpeername` (for example `ENOTCONN` after a reset).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Encodes `payload` as one frame and queues it for writing.
    ///
    /// # Errors
    ///
    /// - `NotConnected` once [`close`](Conn::close) or
    ///   [`shutdown`](Conn::shutdown) was called.
    /// - The codec's error (`InvalidInput` for a payload it cannot frame);
    ///   nothing is queued then.
    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.flags.close.is_some() || self.flags.drain_then_close {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("send on {}: the connection is closing", self.id),
            ));
        }
        let before = self.out.len();
        if let Err(e) = self.codec.encode(payload, self.out) {
            self.out.truncate(before);
            return Err(e);
        }
        self.ctl.shared.stats.frames_out += 1;
        Ok(())
    }

    /// Closes gracefully: stops reading, flushes what is queued, then
    /// closes with [`CloseReason::ClosedByHandler`].
    pub fn shutdown(&mut self) {
        self.flags.drain_then_close = true;
    }

    /// Closes now, dropping queued output, with
    /// [`CloseReason::ClosedByHandler`].
    pub fn close(&mut self) {
        self.flags.close = Some(CloseReason::ClosedByHandler);
    }

    /// Timers, stopping, closing other connections, counters.
    pub fn control(&mut self) -> &mut Control<'a> {
        &mut self.ctl
    }
}
