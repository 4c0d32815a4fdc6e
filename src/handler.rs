//! What a handler may touch: the [`Handler`] trait, [`Conn`] (one
//! connection, for one callback), [`Control`] (the loop, from any
//! callback), and the loop state they share with the reactor (`Shared`:
//! timers, counters, requests by id).
//!
//! Depends only on the leaves (ids, stats, timers, codecs, sockets). It
//! never touches the poller or closes anything itself: closes and sends
//! by id are requests the reactor carries out after the callback returns.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::Codec;
use crate::ids::{CloseReason, ConnId, TimerId};
use crate::net::Stream;
use crate::stats::Stats;
use crate::timer::Timers;

/// The business logic plugged into a [`Reactor`](crate::Reactor).
///
/// The reactor owns sockets, buffers and framing; the handler sees only
/// connections ([`Conn`]), whole frames and close reasons. All callbacks run
/// on the reactor's thread, one at a time.
pub trait Handler {
    /// Called once when [`Reactor::run`](crate::Reactor::run) starts.
    fn on_start(&mut self, ctl: &mut Control<'_>) {
        let _ = ctl;
    }

    /// A connection was accepted.
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// One complete frame arrived (borrowed from the input buffer, without
    /// its delimiter or length header).
    fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]);

    /// A timer set with [`Control::set_timer`] or
    /// [`Control::set_interval`] fired.
    fn on_timer(&mut self, ctl: &mut Control<'_>, timer: TimerId) {
        let _ = (ctl, timer);
    }

    /// A connection closed: its fd is closed and its state dropped already.
    fn on_close(&mut self, id: ConnId, reason: CloseReason) {
        let _ = (id, reason);
    }
}

/// Per-connection state bits a handler may set through [`Conn`], and the
/// reactor's own.
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
    /// A stall check is scheduled on the timer heap.
    pub stall_armed: bool,
}

/// What a timer-heap entry stands for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Due {
    /// A connection's idle check.
    Idle(ConnId),
    /// A connection's stall check (output queued, no write progress).
    Stall(ConnId),
    /// A handler's timer.
    User(TimerId),
    /// A listener paused after fd exhaustion, to be watched again.
    Listener(usize),
}

/// State shared by every callback and the reactor: timers, counters, and
/// what handlers asked for by id.
#[derive(Default)]
pub(crate) struct Shared {
    pub timers: Timers<Due>,
    /// Live handler timers and their repeat interval.
    pub user_timers: HashMap<TimerId, Option<Duration>>,
    pub next_timer: u64,
    pub stats: Stats,
    pub stop: bool,
    pub to_close: Vec<ConnId>,
    /// Connections adopted whose `on_open` has not run yet.
    pub adopted: Vec<ConnId>,
    /// Payloads for `Control::send`: the bytes back to back, and where each
    /// one ends, with its connection.
    pub outbox: Vec<u8>,
    pub outbox_ends: Vec<(ConnId, usize)>,
    /// The start of the current loop turn.
    pub now: Option<Instant>,
}

impl Shared {
    pub fn now(&self) -> Instant {
        self.now.unwrap_or_else(Instant::now)
    }

    /// Are requests waiting to be carried out?
    pub fn has_requests(&self) -> bool {
        !self.to_close.is_empty() || !self.outbox_ends.is_empty() || !self.adopted.is_empty()
    }
}

/// What a handler may ask of the reactor from any callback.
pub struct Control<'a> {
    pub(crate) shared: &'a mut Shared,
}

impl Control<'_> {
    /// Fires [`Handler::on_timer`] once, `after` from now.
    pub fn set_timer(&mut self, after: Duration) -> TimerId {
        self.add_timer(after, None)
    }

    /// Fires [`Handler::on_timer`] every `every`, until cancelled.
    pub fn set_interval(&mut self, every: Duration) -> TimerId {
        self.add_timer(every, Some(every.max(Duration::from_millis(1))))
    }

    /// Cancels a timer; true if it was still pending.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        let pending = self.shared.user_timers.remove(&timer).is_some();
        if pending {
            self.shared.timers.mark_stale();
        }
        pending
    }

    /// Closes another connection (or this one) after the current callback,
    /// with [`CloseReason::ClosedByHandler`]. Unknown ids are ignored.
    pub fn close(&mut self, id: ConnId) {
        self.shared.to_close.push(id);
    }

    /// Sends `payload` as one frame to connection `id` (another one, or the
    /// current one from a timer): encoded by that connection's codec and
    /// queued behind what it already has, after the current callback
    /// returns. Frames sent to one connection keep their order. Unknown or
    /// closed ids are ignored, as is a payload its codec refuses (logged).
    pub fn send(&mut self, id: ConnId, payload: &[u8]) {
        self.shared.outbox.extend_from_slice(payload);
        let end = self.shared.outbox.len();
        self.shared.outbox_ends.push((id, end));
    }

    /// Stops the reactor as a [`StopHandle`](crate::StopHandle) would.
    pub fn stop(&mut self) {
        self.shared.stop = true;
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The time the current loop turn started.
    pub fn now(&self) -> Instant {
        self.shared.now()
    }

    fn add_timer(&mut self, after: Duration, every: Option<Duration>) -> TimerId {
        self.shared.next_timer += 1;
        let id = TimerId(self.shared.next_timer);
        self.shared.user_timers.insert(id, every);
        let at = self.shared.now() + after;
        self.shared.timers.push(at, Due::User(id));
        id
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
    pub(crate) stream: &'a Stream,
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
    /// The error of `getpeername` (for example `ENOTCONN` after a reset);
    /// `Unsupported` on a Unix-domain connection.
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
