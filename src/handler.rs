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

    /// Connection `conn`'s output queue fell to the low-water mark after
    /// it was over the high-water mark (it crossed it, or a
    /// [`Control::send`] to it was refused with [`SendError::Full`], or
    /// [`Control::can_send`] said so): a good time to send it more, or to
    /// resume reading from whatever feeds it. Once per crossing.
    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// The peer of `conn` sent EOF (shut down its writing side), after its
    /// last frame. Under [`HalfClose::Close`](crate::HalfClose::Close)
    /// (the default) the connection closes once its output drains; under
    /// [`HalfClose::KeepWriting`](crate::HalfClose::KeepWriting) it stays
    /// writable until the handler calls [`Conn::shutdown`],
    /// [`Conn::close`] or [`Conn::shutdown_write`].
    fn on_eof(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
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
    /// Reading is paused by the handler (`pause_reading`).
    pub held: bool,
    /// The handler resumed reading: serve it again (under edge the
    /// readiness edge has passed).
    pub kick: bool,
    /// The queue went over high water (or a push was refused): call
    /// `on_drain` once it is down to low water.
    pub drain_wanted: bool,
    /// `on_eof` has been called.
    pub eof_told: bool,
    /// Send FIN once the queue drains (`shutdown_write`).
    pub fin_wanted: bool,
    /// FIN has been sent.
    pub fin_sent: bool,
}

/// Why [`Control::send`] refused a payload; nothing was queued.
///
/// ```
/// use evmux::SendError;
///
/// assert_eq!(SendError::Full.to_string(), "the output queue is over its high-water mark");
/// let e: Box<dyn std::error::Error> = Box::new(SendError::Closed);
/// assert_eq!(e.to_string(), "no such connection, or it is closing");
/// ```
#[must_use]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The target's output queue (with what this callback sent it) is at
    /// or over the high-water mark. [`Handler::on_drain`] tells when it is
    /// down to the low-water mark.
    Full,
    /// No such connection: closed, closing, shutting its writing side
    /// down, or never there.
    Closed,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Full => "the output queue is over its high-water mark",
            SendError::Closed => "no such connection, or it is closing",
        })
    }
}

impl std::error::Error for SendError {}

/// A request by id a handler made through [`Control`], carried out after
/// the callback.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ById {
    PauseReading,
    ResumeReading,
    ShutdownWrite,
    Shutdown,
}

impl Flags {
    /// Asked to close, or done writing: no more sends.
    pub fn is_closing(&self) -> bool {
        self.close.is_some() || self.drain_then_close || self.fin_wanted
    }
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
///
/// Each slot also keeps what [`Control::send`] needs to know of its
/// connection, which the table lends out during callbacks: its queued
/// bytes and whether it is closing (stored by the connection when it
/// settles), and the bytes sent to it in the current callback.
#[derive(Default)]
pub(crate) struct Keys {
    free: Vec<u32>,
    next: usize,
    serial: u32,
    slots: Vec<Slot>,
}

/// One slot's view for [`Control::send`].
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct Slot {
    gen: u32,
    live: bool,
    /// As the connection stored it when it last settled.
    pub settled: Settled,
    /// Payload bytes sent to it by id, not yet delivered.
    pending: usize,
    /// A send was refused (or `can_send` said full): it owes an `on_drain`.
    refused: bool,
}

/// What a connection stores of itself when it settles (one store).
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct Settled {
    pub queued: usize,
    pub closing: bool,
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
        let index = key as usize;
        if index >= self.slots.len() {
            self.slots.resize(index + 1, Slot::default());
        }
        self.slots[index] = Slot {
            gen: self.serial,
            live: true,
            ..Slot::default()
        };
        Some(ConnId {
            key,
            gen: self.serial,
        })
    }

    /// Gives a slot back once its connection is gone.
    pub fn release(&mut self, key: u32) {
        if let Some(slot) = self.slots.get_mut(key as usize) {
            slot.live = false;
        }
        self.free.push(key);
    }

    /// The slot of live connection `id`.
    fn slot_mut(&mut self, id: ConnId) -> Option<&mut Slot> {
        let slot = self.slots.get_mut(id.key as usize)?;
        (slot.live && slot.gen == id.gen).then_some(slot)
    }

    /// Stores what a settled connection is (called by the connection).
    pub fn settle(&mut self, key: u32, settled: Settled) {
        if let Some(slot) = self.slots.get_mut(key as usize) {
            slot.settled = settled;
        }
    }

    /// Was a send to slot `key` refused since the last look? And the
    /// bytes sent to it by id, not yet delivered.
    pub fn take_refused(&mut self, key: u32) -> (bool, usize) {
        match self.slots.get_mut(key as usize) {
            Some(slot) => (std::mem::take(&mut slot.refused), slot.pending),
            None => (false, 0),
        }
    }

    /// `bytes` sent to `id` by id have been delivered to its queue.
    pub fn delivered(&mut self, id: ConnId, bytes: usize) {
        if let Some(slot) = self.slot_mut(id) {
            slot.pending = slot.pending.saturating_sub(bytes);
        }
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
    /// The configured high-water mark, for `Control::send`.
    pub high_water: usize,
    /// Requests by id other than sends and closes, in order.
    pub by_id: Vec<(ConnId, ById)>,
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
    pub fn new(trigger: Trigger, high_water: usize, codec_type: TypeId) -> Shared {
        Shared {
            trigger,
            high_water,
            by_id: Vec::new(),
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
            || !self.by_id.is_empty()
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
    /// returns. Frames sent to one connection keep their order. A payload
    /// its codec refuses is dropped (logged).
    ///
    /// A send is taken while the target's queue (what it had when it last
    /// settled, plus what this callback sent it) is under the high-water
    /// mark, even one that takes it over; then sends are refused until
    /// [`Handler::on_drain`] says it is down to the low-water mark.
    ///
    /// # Errors
    ///
    /// Nothing is queued then:
    /// - [`SendError::Full`]: the target is at or over the high-water mark.
    /// - [`SendError::Closed`]: no live connection `id`, or it is closing
    ///   (closed or shut down by the handler, or shutting its writing side
    ///   down).
    ///
    /// # Examples
    ///
    /// A relay that stops reading from a sender whose target is full, and
    /// resumes once it drains:
    ///
    /// ```
    /// use evmux::{Conn, ConnId, Handler, SendError};
    ///
    /// struct Relay { to: ConnId, from: ConnId }
    /// impl Handler for Relay {
    ///     fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
    ///         let to = self.to;
    ///         match conn.control().send(to, frame) {
    ///             Ok(()) => {}
    ///             Err(SendError::Full) => conn.pause_reading(), // (the frame is lost)
    ///             Err(SendError::Closed) => conn.shutdown(),
    ///         }
    ///     }
    ///     fn on_drain(&mut self, conn: &mut Conn<'_>) {
    ///         let from = self.from;
    ///         conn.control().resume_reading(from);
    ///     }
    /// }
    /// ```
    pub fn send(&mut self, id: ConnId, payload: &[u8]) -> Result<(), SendError> {
        self.can_send(id)?;
        if let Some(slot) = self.shared.keys.slot_mut(id) {
            slot.pending += payload.len();
        }
        self.shared.outbox.extend_from_slice(payload);
        let end = self.shared.outbox.len();
        self.shared.outbox_ends.push((id, end));
        Ok(())
    }

    /// Would a [`send`](Control::send) to `id` be taken now? When it says
    /// [`SendError::Full`], [`Handler::on_drain`] follows for `id` as for a
    /// refused send: after a send, it tells whether that one took the
    /// target over the high-water mark.
    ///
    /// # Errors
    ///
    /// As [`send`](Control::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::{Conn, ConnId, Handler};
    ///
    /// struct Forward(ConnId);
    /// impl Handler for Forward {
    ///     fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
    ///         let to = self.0;
    ///         if conn.control().send(to, frame).is_ok() && conn.control().can_send(to).is_err() {
    ///             conn.pause_reading(); // until on_drain for `to`
    ///         }
    ///     }
    /// }
    /// ```
    pub fn can_send(&mut self, id: ConnId) -> Result<(), SendError> {
        let high_water = self.shared.high_water;
        if self.shared.to_close.contains(&id) {
            return Err(SendError::Closed);
        }
        let slot = self.shared.keys.slot_mut(id).ok_or(SendError::Closed)?;
        if slot.settled.closing {
            return Err(SendError::Closed);
        }
        if slot.settled.queued + slot.pending >= high_water {
            slot.refused = true;
            return Err(SendError::Full);
        }
        Ok(())
    }

    /// Stops reading from connection `id` (after the current callback)
    /// until [`resume_reading`](Control::resume_reading); see
    /// [`Conn::pause_reading`]. Unknown ids are ignored.
    pub fn pause_reading(&mut self, id: ConnId) {
        self.shared.by_id.push((id, ById::PauseReading));
    }

    /// Reads from connection `id` again (after the current callback); see
    /// [`Conn::resume_reading`]. Unknown ids are ignored.
    pub fn resume_reading(&mut self, id: ConnId) {
        self.shared.by_id.push((id, ById::ResumeReading));
    }

    /// Shuts connection `id`'s writing side down once its queue drains;
    /// see [`Conn::shutdown_write`]. Unknown ids are ignored.
    pub fn shutdown_write(&mut self, id: ConnId) {
        self.shared.by_id.push((id, ById::ShutdownWrite));
    }

    /// Closes connection `id` gracefully, as [`Conn::shutdown`]: stops
    /// reading, flushes its queue, then closes. Unknown ids are ignored.
    pub fn shutdown(&mut self, id: ConnId) {
        self.shared.by_id.push((id, ById::Shutdown));
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
    /// - `NotConnected` once [`close`](Conn::close),
    ///   [`shutdown`](Conn::shutdown) or
    ///   [`shutdown_write`](Conn::shutdown_write) was called.
    /// - The codec's error (`InvalidInput` for a payload it cannot frame);
    ///   nothing is queued then.
    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.flags.is_closing() {
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

    /// Sends FIN once the queued output has drained (`shutdown(SHUT_WR)`),
    /// and keeps reading: the peer sees EOF after the last byte, and the
    /// connection closes once the peer's EOF has come too (with
    /// [`CloseReason::PeerClosed`]). Sends fail from now on.
    ///
    /// ```
    /// use evmux::{Conn, Handler};
    ///
    /// /// Answers one request, then says it is done writing.
    /// struct OneShot;
    /// impl Handler for OneShot {
    ///     fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
    ///         let _ = conn.send(frame);
    ///         conn.shutdown_write();
    ///     }
    /// }
    /// ```
    pub fn shutdown_write(&mut self) {
        self.flags.fin_wanted = true;
    }

    /// Stops reading from this connection until
    /// [`resume_reading`](Conn::resume_reading): no frame comes from it
    /// meanwhile (frames already read stay buffered), and the kernel's
    /// receive buffer fills, which slows the peer down. Separate from the
    /// reactor's own pause at the high-water mark: reading resumes only
    /// when neither holds it.
    ///
    /// ```
    /// use evmux::{Conn, Handler};
    ///
    /// /// Takes one frame at a time; a timer (not shown) resumes.
    /// struct OneAtATime;
    /// impl Handler for OneAtATime {
    ///     fn on_frame(&mut self, conn: &mut Conn<'_>, _frame: &[u8]) {
    ///         conn.pause_reading();
    ///     }
    /// }
    /// ```
    pub fn pause_reading(&mut self) {
        self.flags.held = true;
    }

    /// Reads again after [`pause_reading`](Conn::pause_reading): frames
    /// held back are dispatched, and the socket is read again (in this
    /// turn or the next, under either trigger).
    pub fn resume_reading(&mut self) {
        if std::mem::take(&mut self.flags.held) {
            self.flags.kick = true;
        }
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
