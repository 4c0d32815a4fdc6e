//! What a handler may touch: the [`Handler`] trait, [`Conn`] (one
//! connection, for one callback), [`Control`] (the loop, from any
//! callback), and the loop state they share with the reactor (`Shared`:
//! timers, counters, requests by id).
//!
//! Depends only on the leaves (ids, stats, timers, codecs, sockets). It
//! never touches the poller or closes anything itself: closes and sends
//! by id are requests the reactor carries out after the callback returns.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::codec::Codec;
use crate::ids::{CloseReason, ConnId, SourceId, TimerId};
use crate::net::{Endpoint, Stream};
use crate::source::{Source, GEN_MASK, MAX_KEY};
use crate::stats::Stats;
use crate::timer::Timers;
use crate::{Interest, Poller, Readiness, Token, Trigger};

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

    /// A connection was accepted (or adopted with
    /// [`Reactor::adopt`](crate::Reactor::adopt)).
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// An outbound connection made with [`Control::connect`] is
    /// established; frames sent to it meanwhile are flushed after this.
    /// (`on_open` is not called for it.)
    fn on_connect(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// An outbound connection never got established: refused
    /// (`ConnectionRefused`), timed out (`TimedOut`), unreachable, closed
    /// by the handler or the stop before it connected
    /// (`ConnectionAborted`). Frames queued for it are dropped. This is
    /// the last callback for `id`: `on_close` is not called for it.
    fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId, error: io::Error) {
        let _ = (ctl, id, error);
    }

    /// An fd watched with [`Control::watch`] is ready. The reactor never
    /// reads or closes it: do what its readiness asks (under edge
    /// triggering, until `WouldBlock`).
    fn on_ready(&mut self, ctl: &mut Control<'_>, source: SourceId, readiness: Readiness) {
        let _ = (ctl, source, readiness);
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
    /// An outbound connection's connect timeout.
    Connect(ConnId),
}

/// The part of the poller a handler's requests use: registering and
/// deregistering fds. Object-safe, so [`Control`] need not be generic.
pub(crate) trait Registry {
    fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()>;
    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()>;
}

impl<P: Poller> Registry for P {
    fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        Poller::register(self, &fd, token, interest, trigger)
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Poller::deregister(self, &fd)
    }
}

/// The connection table's keys: which slots are free, and the serial
/// numbers that tell a slot's users apart. Kept apart from the table so
/// a handler can reserve an id (for [`Control::connect`]) while the
/// table holds the connection it is called for.
#[derive(Default)]
pub(crate) struct Keys {
    free: Vec<u32>,
    next: usize,
    serial: u32,
}

impl Keys {
    /// A fresh id in a free slot; `None` when the table is full.
    pub fn reserve(&mut self) -> Option<ConnId> {
        let key = match self.free.pop() {
            Some(key) => key,
            None if self.next <= MAX_KEY => {
                self.next += 1;
                (self.next - 1) as u32
            }
            None => return None,
        };
        self.serial = self.serial.wrapping_add(1) & GEN_MASK;
        Some(ConnId {
            key,
            gen: self.serial,
        })
    }

    /// Gives a slot back once its connection is gone.
    pub fn release(&mut self, key: u32) {
        self.free.push(key);
    }
}

/// A connection [`Control::connect`] started, waiting to be put in the
/// table after the callback.
pub(crate) struct PendingConnect {
    pub id: ConnId,
    pub stream: Stream,
    pub to: Endpoint,
    pub deadline: Instant,
    /// Its own codec ([`Control::connect_with`]): the reactor's type.
    pub codec: Option<Box<dyn Any + Send>>,
}

/// An fd the handler watches.
pub(crate) struct Watch {
    pub gen: u32,
    pub fd: RawFd,
}

/// State shared by every callback and the reactor: timers, counters, and
/// what handlers asked for by id.
pub(crate) struct Shared {
    pub trigger: Trigger,
    /// The reactor's codec type, which `connect_with` must match.
    pub codec_type: TypeId,
    pub keys: Keys,
    pub connects: Vec<PendingConnect>,
    pub watches: Slab<Watch>,
    pub watch_serial: u32,
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
    pub fn new(trigger: Trigger, codec_type: TypeId) -> Shared {
        Shared {
            trigger,
            codec_type,
            keys: Keys::default(),
            connects: Vec::new(),
            watches: Slab::new(),
            watch_serial: 0,
            timers: Timers::default(),
            user_timers: HashMap::new(),
            next_timer: 0,
            stats: Stats::default(),
            stop: false,
            to_close: Vec::new(),
            adopted: Vec::new(),
            outbox: Vec::new(),
            outbox_ends: Vec::new(),
            now: None,
        }
    }

    pub fn now(&self) -> Instant {
        self.now.unwrap_or_else(Instant::now)
    }

    /// Are requests waiting to be carried out?
    pub fn has_requests(&self) -> bool {
        !self.to_close.is_empty()
            || !self.outbox_ends.is_empty()
            || !self.adopted.is_empty()
            || !self.connects.is_empty()
    }
}

/// What a handler may ask of the reactor from any callback.
pub struct Control<'a> {
    pub(crate) shared: &'a mut Shared,
    pub(crate) registry: &'a mut dyn Registry,
}

impl Control<'_> {
    /// Starts an outbound connection and returns its id at once. The
    /// connect runs in the background (a non-blocking connect; no name is
    /// resolved here, which would block the loop: pass an address).
    /// [`Handler::on_connect`] tells when it is up, or
    /// [`Handler::on_connect_failed`] why not, at the latest once
    /// `timeout` has passed. Frames sent to it before then are queued (up
    /// to the high-water mark, like any output) and flushed once it
    /// connects. It uses a clone of the reactor's codec.
    ///
    /// # Errors
    ///
    /// What fails at once: making the socket (`EMFILE`...), an address the
    /// kernel refuses straight away (`ENETUNREACH`, `EADDRNOTAVAIL`...), a
    /// full connection table, or registering (select's fd capacity,
    /// `InvalidInput`). Nothing is left behind then.
    pub fn connect(&mut self, to: impl Into<Endpoint>, timeout: Duration) -> io::Result<ConnId> {
        self.start_connect(to.into(), timeout, None)
    }

    /// [`connect`](Control::connect) with a codec of its own, so one
    /// reactor can speak one framing to clients and another upstream. The
    /// codec must be of the reactor's codec type `C` (make `C` an enum to
    /// speak several protocols).
    ///
    /// # Errors
    ///
    /// As [`connect`](Control::connect), and `InvalidInput` if `codec` is
    /// not of the reactor's codec type.
    pub fn connect_with<K: Codec + Send + 'static>(
        &mut self,
        to: impl Into<Endpoint>,
        timeout: Duration,
        codec: K,
    ) -> io::Result<ConnId> {
        if TypeId::of::<K>() != self.shared.codec_type {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "connect_with: the codec must be of the reactor's codec type, not {}",
                    std::any::type_name::<K>()
                ),
            ));
        }
        self.start_connect(to.into(), timeout, Some(Box::new(codec)))
    }

    fn start_connect(
        &mut self,
        to: Endpoint,
        timeout: Duration,
        codec: Option<Box<dyn Any + Send>>,
    ) -> io::Result<ConnId> {
        let stream = to.start_connect()?;
        let Some(id) = self.shared.keys.reserve() else {
            return Err(io::Error::other(format!(
                "connect to {to}: the connection table is full"
            )));
        };
        let token = Source::Conn(id).to_token();
        let trigger = self.shared.trigger;
        if let Err(e) = self
            .registry
            .register(stream.as_fd(), token, Interest::WRITABLE, trigger)
        {
            self.shared.keys.release(id.key);
            return Err(io::Error::new(e.kind(), format!("connect to {to}: {e}")));
        }
        let deadline = self.shared.now() + timeout;
        self.shared.connects.push(PendingConnect {
            id,
            stream,
            to,
            deadline,
            codec,
        });
        Ok(id)
    }

    /// Watches an fd the handler owns (a pipe, stdin, a timerfd, a
    /// signalfd...) on the reactor's poller, with the reactor's trigger:
    /// [`Handler::on_ready`] reports its readiness. The reactor never
    /// reads, writes or closes it; call [`unwatch`](Control::unwatch)
    /// before closing it.
    ///
    /// # Errors
    ///
    /// The backend's: `AlreadyExists` for an fd watched already,
    /// `InvalidInput` past select's fd capacity, `PermissionDenied` for a
    /// regular file on epoll.
    pub fn watch(&mut self, fd: &impl AsFd, interest: Interest) -> io::Result<SourceId> {
        let entry = self.shared.watches.vacant_entry();
        let key = entry.key();
        if key > MAX_KEY {
            return Err(io::Error::other("watch: too many watched fds"));
        }
        self.shared.watch_serial = self.shared.watch_serial.wrapping_add(1) & GEN_MASK;
        let id = SourceId {
            key: key as u32,
            gen: self.shared.watch_serial,
        };
        let token = Source::User(id).to_token();
        let trigger = self.shared.trigger;
        self.registry
            .register(fd.as_fd(), token, interest, trigger)?;
        let fd = fd.as_fd().as_raw_fd();
        self.shared.watches.insert(Watch { gen: id.gen, fd });
        Ok(id)
    }

    /// Stops watching: no event for `id` is reported after this, even one
    /// the poller had already returned in this turn.
    ///
    /// # Errors
    ///
    /// `NotFound` for an id not watched (any more); `InvalidInput` if `fd`
    /// is not the fd watched as `id`; the backend's deregister error.
    pub fn unwatch(&mut self, id: SourceId, fd: &impl AsFd) -> io::Result<()> {
        let raw = fd.as_fd().as_raw_fd();
        match self.shared.watches.get(id.key as usize) {
            Some(w) if w.gen == id.gen && w.fd == raw => {}
            Some(w) if w.gen == id.gen => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unwatch {id}: it watches fd {}, not fd {raw}", w.fd),
                ))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("unwatch {id}: not watched"),
                ))
            }
        }
        self.shared.watches.remove(id.key as usize);
        self.registry.deregister(fd.as_fd())
    }

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
