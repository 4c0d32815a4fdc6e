//! `Config`: the reactor's knobs, with defaults a server can start from.
//! A leaf: plain values, read by the reactor.

use std::time::Duration;

use crate::Trigger;

/// Settings for a [`Reactor`](crate::Reactor). Start from
/// `Config::default()` and change what you need:
///
/// ```
/// use std::time::Duration;
/// use evmux::{Config, Trigger};
///
/// let config = Config::default()
///     .trigger(Trigger::Level)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .high_water(256 * 1024);
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) trigger: Option<Trigger>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) high_water: usize,
    pub(crate) low_water: usize,
    pub(crate) accept_batch: usize,
    pub(crate) read_chunk: usize,
    pub(crate) read_budget: usize,
    pub(crate) max_connections: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) backlog: i32,
    pub(crate) nodelay: bool,
    pub(crate) half_close: HalfClose,
}

/// What a connection does once its peer has sent EOF (shut its writing
/// side down); see [`Config::half_close`].
///
/// ```
/// use evmux::{Config, HalfClose};
///
/// let config = Config::default().half_close(HalfClose::KeepWriting);
/// # let _ = config;
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HalfClose {
    /// Close once the output queued so far has drained (the default).
    #[default]
    Close,
    /// Keep the connection writable: the handler hears of the EOF through
    /// [`Handler::on_eof`](crate::Handler::on_eof) and may go on sending
    /// until it calls `shutdown`, `close` or `shutdown_write` (the last
    /// closes once the FIN is sent).
    KeepWriting,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            trigger: None,
            idle_timeout: Some(Duration::from_secs(60)),
            stall_timeout: None,
            keepalive: None,
            high_water: 1024 * 1024,
            low_water: 256 * 1024,
            accept_batch: 256,
            read_chunk: 64 * 1024,
            read_budget: 256 * 1024,
            max_connections: usize::MAX,
            shutdown_grace: Duration::from_secs(5),
            backlog: 1024,
            nodelay: true,
            half_close: HalfClose::Close,
        }
    }
}

impl Config {
    /// `Trigger::Level` or `Trigger::Edge`. Default: edge where the backend
    /// supports it (epoll, uring), level otherwise. Asking a backend for a trigger it
    /// cannot deliver fails in [`Reactor::new`](crate::Reactor::new).
    pub fn trigger(mut self, trigger: Trigger) -> Config {
        self.trigger = Some(trigger);
        self
    }

    /// Close connections with no traffic in either direction for this long
    /// (`None`: never), with
    /// [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout).
    /// Default: 60 s.
    ///
    /// Traffic is what the reactor reads and writes, and also what the peer
    /// takes from the kernel's send buffer: on Linux, when the timer fires
    /// with bytes still unacknowledged (`SIOCOUTQ`), a count that went down
    /// since the last look counts as traffic, so a long transfer the
    /// kernel is still feeding is not closed as idle. A peer that stopped
    /// reading with bytes in flight is closed after one to two periods.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Config {
        self.idle_timeout = timeout.filter(|d| !d.is_zero());
        self
    }

    /// Close a connection whose output has been queued for this long with
    /// no byte of it taken by the peer (`None`: never), with
    /// [`CloseReason::SlowConsumer`](crate::CloseReason::SlowConsumer).
    /// Default: `None`.
    ///
    /// The clock starts when output is first queued for a full socket and
    /// restarts at every write that makes progress, so a peer that reads
    /// slowly but steadily is not stalled (its memory is bounded by the
    /// high-water mark instead); one that stops reading is closed. As
    /// nginx's `send_timeout`, it is a bound on the time between two
    /// successful writes, not on a whole transfer.
    pub fn stall_timeout(mut self, timeout: Option<Duration>) -> Config {
        self.stall_timeout = timeout.filter(|d| !d.is_zero());
        self
    }

    /// Turn on TCP keepalive on accepted connections (`None`: off, the
    /// default). Probes start after `idle` without traffic and repeat every
    /// third of it (at least 1 s); after three unanswered probes the kernel
    /// resets the connection, which then closes as
    /// [`CloseReason::Io`](crate::CloseReason::Io)`(TimedOut)`. So a peer
    /// that vanished without a FIN is closed within about twice `idle`,
    /// even with no idle timeout. Ignored for sockets that are not TCP.
    pub fn keepalive(mut self, idle: Option<Duration>) -> Config {
        self.keepalive = idle.filter(|d| !d.is_zero());
        self
    }

    /// Stop reading from a connection whose replies (what its own frames'
    /// callbacks sent it) took its output queue to this many bytes, and
    /// refuse pushes to it ([`Control::send`](crate::Control::send) says
    /// [`SendError::Full`](crate::SendError::Full)) from there. A queue
    /// filled by pushes alone does not stop its reading: a proxy decides
    /// that itself (`pause_reading` on the sender). Default: 1 MiB. The
    /// low-water mark is lowered to a quarter of it if it was higher.
    pub fn high_water(mut self, bytes: usize) -> Config {
        self.high_water = bytes.max(1);
        self.low_water = self.low_water.min(self.high_water / 4);
        self
    }

    /// Resume reading once the output queue is down to this many bytes.
    /// Default: 256 KiB (never above the high-water mark).
    pub fn low_water(mut self, bytes: usize) -> Config {
        self.low_water = bytes.min(self.high_water);
        self
    }

    /// Accepts per listener per loop turn, so a connection storm cannot
    /// starve established connections. Default: 256.
    pub fn accept_batch(mut self, n: usize) -> Config {
        self.accept_batch = n.max(1);
        self
    }

    /// Bytes asked of the kernel per read (the size of the shared read
    /// buffer). Default: 64 KiB.
    pub fn read_chunk(mut self, bytes: usize) -> Config {
        self.read_chunk = bytes.max(64);
        self
    }

    /// Bytes read from one connection per loop turn before the others get
    /// their turn. Default: 256 KiB.
    pub fn read_budget(mut self, bytes: usize) -> Config {
        self.read_budget = bytes.max(1);
        self
    }

    /// Refuse connections past this many, closing them with
    /// [`CloseReason::OverCapacity`](crate::CloseReason::OverCapacity).
    /// Default: unlimited (but the backend's fd capacity always applies).
    pub fn max_connections(mut self, n: usize) -> Config {
        self.max_connections = n;
        self
    }

    /// How long a stop waits for queued output to flush. Default: 5 s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Config {
        self.shutdown_grace = grace;
        self
    }

    /// The listen backlog. Default: 1024 (the kernel caps it at somaxconn).
    pub fn backlog(mut self, backlog: i32) -> Config {
        self.backlog = backlog.max(1);
        self
    }

    /// Set `TCP_NODELAY` on accepted sockets. Default: true (replies leave
    /// at once; the reactor already batches replies into few writes).
    pub fn nodelay(mut self, on: bool) -> Config {
        self.nodelay = on;
        self
    }

    /// What to do after the peer's EOF: close once output drains
    /// ([`HalfClose::Close`], the default), or keep writing until the
    /// handler is done ([`HalfClose::KeepWriting`], for proxies and
    /// protocols that answer after the request's end).
    pub fn half_close(mut self, mode: HalfClose) -> Config {
        self.half_close = mode;
        self
    }
}
