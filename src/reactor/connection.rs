//! One connection: its socket, buffers, codec and state, and the code that
//! works on it alone: read until drained, decode and dispatch frames to
//! the handler, flush, and say what interest it wants next.
//!
//! Every entry point returns a [`Step`]: keep the connection with this
//! interest, or close it for this reason. Nothing here touches the poller
//! or the connection table; the turn (`reactor/mod.rs`) applies the step.
//! What it may touch of the loop comes in [`Io`]: the shared read and
//! batch buffers, the config, and the state handlers share.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Instant;

use crate::buffer::Buffer;
use crate::codec::{Codec, DecodeError, Decoded};
use crate::config::{Config, HalfClose};
use crate::handler::{ById, Conn, Control, Due, Flags, Handler, Registry, Settled, Shared};
use crate::ids::{CloseReason, ConnId};
use crate::net::{Endpoint, Stream};
use crate::stats::Stats;
use crate::{sys, Event, Interest};

/// Replies batched in the shared buffer past this size are written before
/// more frames are dispatched.
const FLUSH_AT: usize = 64 * 1024;

/// What should happen to a connection after it was worked on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep it, registered for this interest.
    Keep(Interest),
    /// Close it, for this reason.
    Close(CloseReason),
}

/// The outcome of working on a connection.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Step {
    pub next: Next,
    /// It stopped reading with input perhaps left in the socket (the read
    /// budget ran out, or reading resumed below the low-water mark): under
    /// edge triggering no new event may come for it, so serve it again
    /// next turn.
    pub again: bool,
}

/// What a connection may use of the loop while it is worked on.
pub(crate) struct Io<'a> {
    /// The shared read buffer: a read lands here while the connection
    /// holds no partial frame, so idle connections hold no input memory.
    pub scratch: &'a mut [u8],
    /// Replies encoded during one batch, written with one `send`.
    pub out: &'a mut Vec<u8>,
    pub shared: &'a mut Shared,
    pub registry: &'a mut dyn Registry,
    pub config: &'a Config,
    /// The reactor is stopping: read no more.
    pub stopping: bool,
}

/// One live connection in the reactor's table.
pub(crate) struct Connection<C> {
    pub stream: Stream,
    pub id: ConnId,
    input: Buffer,
    codec: C,
    out: Outgoing,
    pub last_active: Instant,
    /// The kernel's unsent-or-unacked byte count (`SIOCOUTQ`) when a timer
    /// last looked, to tell a peer that is still reading from one that
    /// stopped.
    unacked: u32,
    /// Where an outbound connection is connecting to, until it connects.
    pub connecting: Option<Box<Endpoint>>,
    /// The interest currently registered with the poller.
    pub interest: Interest,
    pub flags: Flags,
    /// Buffer bytes currently counted in `Stats::buffered` for it.
    pub held: usize,
}

impl<C: Codec> Connection<C> {
    /// A new connection, registered for reading.
    pub fn new(stream: Stream, id: ConnId, codec: C, now: Instant) -> Connection<C> {
        Connection {
            stream,
            id,
            input: Buffer::default(),
            codec,
            out: Outgoing {
                queue: Buffer::default(),
                blocked: false,
                last_progress: now,
            },
            last_active: now,
            unacked: 0,
            connecting: None,
            interest: Interest::READABLE,
            flags: Flags::default(),
            held: 0,
        }
    }

    /// An outbound connection, connecting (registered for writability,
    /// which says the connect is done).
    pub fn connecting(
        stream: Stream,
        id: ConnId,
        codec: C,
        to: Endpoint,
        now: Instant,
    ) -> Connection<C> {
        let mut conn = Connection::new(stream, id, codec, now);
        conn.connecting = Some(Box::new(to));
        conn.interest = Interest::WRITABLE;
        conn.out.blocked = true; // nothing is written before it connects
        conn
    }

    /// Calls `on_open`, then settles what it sent.
    pub fn open<H: Handler>(&mut self, io: &mut Io<'_>, handler: &mut H) -> Step {
        self.call(io, |h: &mut H, conn| h.on_open(conn), handler);
        self.settle(io, handler)
    }

    /// An outbound connection's first event: done, or failed. Once
    /// connected, `on_connect` runs and what was queued is flushed.
    fn finish_connect<H: Handler>(
        &mut self,
        event: Event,
        io: &mut Io<'_>,
        handler: &mut H,
    ) -> Step {
        let failed = match sys::take_error(self.stream.as_fd()) {
            Ok(None) if event.is_error() || event.is_hup() => Some(CloseReason::Reset),
            Ok(None) => None,
            Ok(Some(e)) | Err(e) => Some(io_reason(&e)),
        };
        if let Some(reason) = failed {
            return Step {
                next: Next::Close(reason),
                again: false,
            };
        }
        if !event.is_writable() {
            let next = Next::Keep(self.interest); // not done yet
            return Step { next, again: false };
        }
        self.connecting = None;
        self.out.blocked = false;
        io.shared.stats.connected += 1;
        io.shared.stats.open += 1;
        self.last_active = io.shared.now();
        self.call(io, |h: &mut H, conn| h.on_connect(conn), handler);
        self.settle(io, handler)
    }

    /// Handles one poller event: the error, room to write, input, hang-up.
    pub fn on_event<H: Handler>(&mut self, event: Event, io: &mut Io<'_>, handler: &mut H) -> Step {
        if self.connecting.is_some() {
            return self.finish_connect(event, io, handler);
        }
        if event.is_error() {
            let next = Next::Close(error_reason(&self.stream));
            return Step { next, again: false };
        }
        if event.is_writable() {
            // The socket has room again: writing may resume.
            self.out.blocked = false;
        }
        let mut again = false;
        if event.is_readable() || event.is_read_closed() {
            again = self.read(event.is_read_closed(), io, handler);
        }
        if event.is_hup() && !self.flags.fin_sent {
            // Both directions are down: nothing queued can be delivered.
            // (After our own FIN it only says the peer is done too: read
            // what it sent, to its EOF, and close then.)
            let flags = &mut self.flags;
            flags.close = flags.close.or(Some(CloseReason::PeerClosed));
        }
        let step = self.settle(io, handler);
        Step {
            again: again || step.again,
            ..step
        }
    }

    /// Serves a connection carried over from the last turn's budget (or
    /// resumed). Reads to `WouldBlock`, not just to a short read: an EOF
    /// (or hang-up) whose edge passed while it was not reading raises no
    /// new event.
    pub fn serve_again<H: Handler>(&mut self, io: &mut Io<'_>, handler: &mut H) -> Step {
        self.flags.ready = false;
        let again = self.read(true, io, handler);
        let step = self.settle(io, handler);
        Step {
            again: again || step.again,
            ..step
        }
    }

    /// Encodes a payload pushed by [`Control::send`] and settles.
    pub fn push<H: Handler>(&mut self, payload: &[u8], io: &mut Io<'_>, handler: &mut H) -> Step {
        if !self.flags.is_closing() {
            match self.codec.encode(payload, io.out) {
                Ok(()) => io.shared.stats.frames_out += 1,
                Err(e) => log::warn!("{}: send: {e}", self.id),
            }
        }
        self.settle(io, handler)
    }

    /// Carries out a request by id from [`Control`], and settles.
    pub fn by_id<H: Handler>(&mut self, request: ById, io: &mut Io<'_>, handler: &mut H) -> Step {
        let flags = &mut self.flags;
        match request {
            ById::PauseReading => flags.held = true,
            ById::ResumeReading => flags.kick |= std::mem::take(&mut flags.held),
            ById::ShutdownWrite => flags.fin_wanted = true,
            ById::Shutdown => flags.drain_then_close = true,
        }
        self.settle(io, handler)
    }

    /// Reads until `WouldBlock`, a short read, EOF, the per-turn budget, or
    /// backpressure, dispatching frames as they complete. Returns whether
    /// it stopped on the budget, with input perhaps left.
    ///
    /// A short read means the queue was empty a moment ago, and any later
    /// arrival raises a new event in both trigger modes; but an EOF that
    /// came *with* the data raises none under edge, so when the event said
    /// the peer closed (`read_closed`), read on to the EOF.
    fn read<H: Handler>(&mut self, read_closed: bool, io: &mut Io<'_>, handler: &mut H) -> bool {
        if !self.wants_read() || io.stopping {
            return false;
        }
        let mut budget = io.config.read_budget;
        loop {
            let from_scratch = self.input.is_empty();
            let (n, asked) = match self.recv(from_scratch, io) {
                Ok(Some(read)) => read,
                Ok(None) => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.flags.close = Some(io_reason(&e));
                    return false;
                }
            };
            io.shared.stats.bytes_in += n as u64;
            self.last_active = io.shared.now();
            self.dispatch(from_scratch.then_some(n), io, handler);
            if !self.wants_read() || (n < asked && !read_closed) {
                return false; // paused or closing, or a short read
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                return true;
            }
        }
    }

    /// One `recv`: into the shared buffer while no partial frame is held,
    /// else into the connection's own. Returns the bytes read and asked
    /// for, or `None` at `WouldBlock` or EOF (which it records).
    fn recv(&mut self, from_scratch: bool, io: &mut Io<'_>) -> io::Result<Option<(usize, usize)>> {
        let chunk = io.config.read_chunk;
        // With a partial frame held, read only up to one chunk in all;
        // a frame longer than that doubles the buffer per read (so a big
        // frame costs linear copying), up to the codec's maximum.
        let held = self.input.len();
        let asked = match from_scratch {
            true => io.scratch.len(),
            false if held < chunk => chunk - held,
            false => held,
        };
        let fd = self.stream.as_fd();
        let got = if from_scratch {
            sys::recv(fd, as_uninit(io.scratch))
        } else {
            self.input
                .fill_with(asked, chunk, |spare| sys::recv(fd, spare))
        };
        match got {
            Ok(0) => {
                self.flags.eof = true;
                Ok(None)
            }
            Ok(n) => Ok(Some((n, asked))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Settles the connection after anything happened to it: flushes,
    /// resumes reading below the low-water mark, and says whether it is
    /// due to close (asked, or EOF or a graceful shutdown with the output
    /// drained) or what interest it wants now.
    pub fn settle<H: Handler>(&mut self, io: &mut Io<'_>, handler: &mut H) -> Step {
        let again = self.flush_and_resume(io, handler);
        self.send_fin();
        if let Some(reason) = self.flags.close {
            if matches!(reason, CloseReason::FrameTooLarge | CloseReason::Malformed) {
                // Best effort: answers to the frames before the bad one.
                let _ = self.flush(io);
            }
            // Replies batched for a connection closing now die with it; the
            // shared buffer must not carry them to the next connection.
            io.out.clear();
        }
        self.account(&mut io.shared.stats);
        let due = self.due_close(io.stopping, io.config.half_close);
        self.store(io.shared, due.is_some());
        let next = match due {
            Some(reason) => Next::Close(reason),
            None => {
                self.arm_stall(io);
                Next::Keep(self.wanted_interest(io.stopping))
            }
        };
        Step { next, again }
    }

    /// Stores what [`Control::send`] needs to know of this connection.
    fn store(&self, shared: &mut Shared, closing: bool) {
        let settled = Settled {
            queued: self.out.queue.len(),
            closing: closing || self.flags.is_closing(),
        };
        shared.keys.settle(self.id.key, settled);
    }

    /// Sends FIN once `shutdown_write` was asked and the queue drained.
    fn send_fin(&mut self) {
        let flags = &mut self.flags;
        let connected = self.connecting.is_none() && flags.close.is_none();
        if !flags.fin_wanted || flags.fin_sent || !connected || !self.out.queue.is_empty() {
            return;
        }
        flags.fin_sent = true;
        if let Err(e) = sys::shutdown_write(self.stream.as_fd()) {
            flags.close = Some(io_reason(&e));
        }
    }

    /// Flushes; once the queue is down to the low-water mark, un-pauses
    /// and dispatches the frames held back, and calls `on_drain` if it was
    /// owed; dispatches held frames when the handler resumed reading;
    /// calls `on_eof` once after the peer's EOF. Returns whether reading
    /// resumed (under edge the event has passed: read next turn).
    fn flush_and_resume<H: Handler>(&mut self, io: &mut Io<'_>, handler: &mut H) -> bool {
        let (mut resumed, mut told_drain) = (false, false);
        loop {
            if self.flags.close.is_none() {
                if let Err(e) = self.flush(io) {
                    self.flags.close = Some(io_reason(&e));
                }
            }
            let queued = self.out.queue.len();
            let (refused, pending) = io.shared.keys.take_refused(self.id.key);
            let flags = &mut self.flags;
            flags.drain_wanted |= refused || queued >= io.config.high_water;
            if flags.close.is_some() {
                return false;
            }
            let drained = queued <= io.config.low_water;
            if (flags.paused && drained) || (flags.kick && !flags.held) {
                (flags.paused, flags.kick) = (flags.paused && !drained, false);
                resumed = true;
                self.dispatch(None, io, handler);
            } else if flags.drain_wanted && queued + pending <= io.config.low_water && !told_drain {
                // Once per settle: a refused send from `on_drain` itself
                // waits for the next one.
                (flags.drain_wanted, told_drain) = (false, true);
                self.store(io.shared, false);
                self.call(io, |h, conn| h.on_drain(conn), handler);
            } else if flags.eof && !flags.eof_told && !flags.paused && !flags.held {
                flags.eof_told = true;
                self.call(io, |h, conn| h.on_eof(conn), handler);
            } else {
                return resumed && self.wants_read();
            }
        }
    }

    /// Calls the handler with this connection.
    fn call<H: Handler>(
        &mut self,
        io: &mut Io<'_>,
        hook: impl FnOnce(&mut H, &mut Conn<'_>),
        handler: &mut H,
    ) {
        let mut conn = Conn {
            id: self.id,
            stream: &self.stream,
            out: io.out,
            codec: &mut self.codec,
            flags: &mut self.flags,
            ctl: Control {
                shared: io.shared,
                registry: io.registry,
            },
        };
        hook(handler, &mut conn);
    }

    /// Cuts frames out of the new bytes (the first `fresh` bytes of the
    /// shared read buffer) or, when `fresh` is `None`, out of the
    /// connection's input buffer, and hands each to the handler. Stops
    /// early on backpressure or a close; bytes not consumed from the
    /// shared buffer are kept in the input buffer.
    fn dispatch<H: Handler>(&mut self, fresh: Option<usize>, io: &mut Io<'_>, handler: &mut H) {
        let Connection {
            stream,
            id,
            input,
            codec,
            out,
            flags,
            last_active,
            ..
        } = self;
        let Io {
            scratch,
            out: batch,
            shared,
            registry,
            config,
            ..
        } = io;
        let data: &[u8] = match fresh {
            Some(n) => &scratch[..n],
            None => input.data(),
        };
        let mut pos = 0;
        while !flags.paused && !flags.held && flags.close.is_none() && !flags.drain_then_close {
            let Some(decoded) = next_frame(codec, &data[pos..], *id, flags) else {
                break;
            };
            shared.stats.frames_in += 1;
            let frame = &data[pos..][decoded.frame];
            pos += decoded.consumed;
            let batched = batch.len();
            let mut conn = Conn {
                id: *id,
                stream,
                out: batch,
                codec: &mut *codec,
                flags: &mut *flags,
                ctl: Control {
                    shared,
                    registry: &mut **registry,
                },
            };
            handler.on_frame(&mut conn, frame);
            // Pause on replies only: a queue filled by pushes from other
            // connections (a proxy's) must not stop this one reading, or
            // a peer that writes before it reads would deadlock the pair.
            let replied = batch.len() > batched;
            match out.after_frame(stream, batch, config.high_water, shared) {
                Err(e) => flags.close = Some(io_reason(&e)),
                Ok(wrote) => {
                    *last_active = wrote.map_or(*last_active, |_| shared.now());
                    flags.paused |= replied && out.queue.len() >= config.high_water;
                }
            }
        }
        match fresh {
            Some(n) if flags.close.is_none() => input.extend(&scratch[pos..n], config.read_chunk),
            Some(_) => {}
            None => input.consume(pos),
        }
    }

    /// Writes the batched replies, then the queue; see [`Outgoing::flush`].
    fn flush(&mut self, io: &mut Io<'_>) -> io::Result<()> {
        let wrote = self
            .out
            .flush(&self.stream, io.out, io.config.high_water, io.shared)?;
        if wrote > 0 {
            self.last_active = io.shared.now();
        }
        Ok(())
    }

    /// Schedules a stall check for a connection with output queued, unless
    /// one is pending already (it re-arms itself while output stays).
    fn arm_stall(&mut self, io: &mut Io<'_>) {
        let Some(stall) = io.config.stall_timeout else {
            return;
        };
        if self.out.queue.is_empty() || self.flags.stall_armed {
            return;
        }
        self.flags.stall_armed = true;
        let at = self.out.last_progress + stall;
        io.shared.timers.push(at, Due::Stall(self.id));
    }

    /// Gives idle buffers back, and counts what is still held.
    fn account(&mut self, stats: &mut Stats) {
        self.input.release();
        self.out.queue.release();
        let after = self.input.capacity() + self.out.queue.capacity();
        stats.account(self.held, after);
        self.held = after;
    }

    /// Is output queued for the peer?
    pub fn has_output(&self) -> bool {
        !self.out.queue.is_empty()
    }

    /// When the output queue last made progress.
    pub fn last_progress(&self) -> Instant {
        self.out.last_progress
    }

    fn wants_read(&self) -> bool {
        let flags = &self.flags;
        let open = self.connecting.is_none() && flags.close.is_none();
        open && !flags.paused && !flags.held && !flags.eof && !flags.drain_then_close
    }

    /// The close a settled connection is due, if any: asked for; or with
    /// its output drained, a graceful shutdown, both sides done (FIN sent
    /// and EOF seen), EOF under `HalfClose::Close`, or the stop.
    fn due_close(&self, stopping: bool, half_close: HalfClose) -> Option<CloseReason> {
        let flags = &self.flags;
        if let Some(reason) = flags.close {
            return Some(reason);
        }
        if !self.out.queue.is_empty() {
            return None;
        }
        if flags.drain_then_close {
            Some(CloseReason::ClosedByHandler)
        } else if flags.eof && (flags.fin_sent || (!flags.paused && half_close == HalfClose::Close))
        {
            Some(CloseReason::PeerClosed)
        } else if stopping {
            Some(CloseReason::ServerShutdown)
        } else {
            None
        }
    }

    fn wanted_interest(&self, stopping: bool) -> Interest {
        let mut want = Interest::empty();
        if self.wants_read() && !stopping {
            want |= Interest::READABLE;
        }
        if !self.out.queue.is_empty() || self.connecting.is_some() {
            want |= Interest::WRITABLE;
        }
        want
    }

    /// Has the peer taken bytes from the kernel's send buffer since the
    /// last look? That is traffic the reactor does not see itself (a large
    /// reply the kernel is still feeding to a slow reader), and counts as
    /// activity and as write progress from `now`. Remembers what it saw
    /// for the next look (by either timer).
    pub fn peer_took_bytes(&mut self, now: Instant) -> bool {
        let Some(unacked) = sys::unacked_bytes(self.stream.as_fd()) else {
            return false;
        };
        let moved = unacked > 0 && unacked != self.unacked;
        self.unacked = unacked;
        if moved {
            self.last_active = now;
            self.out.last_progress = now;
        }
        moved
    }
}

/// A connection's output side: the queue and its write state.
struct Outgoing {
    /// Bytes the kernel has not taken yet.
    queue: Buffer,
    /// The last write met a full socket (`WouldBlock`): nothing is written
    /// again until the poller reports the socket writable.
    blocked: bool,
    /// When the queue last made progress: bytes written, or the queue
    /// filled from empty (the start of a wait for the peer).
    last_progress: Instant,
}

impl Outgoing {
    /// Writes `batch` (the batched replies) and then the queue, until done
    /// or the socket is full; what is left joins the queue, in order.
    /// Once a write has met a full socket nothing is written until the
    /// poller says there is room: a peer that stopped reading costs one
    /// `send` per writable event, not one per reply. Returns the bytes
    /// written.
    fn flush(
        &mut self,
        stream: &Stream,
        batch: &mut Vec<u8>,
        high_water: usize,
        shared: &mut Shared,
    ) -> io::Result<usize> {
        let stats = &mut shared.stats;
        let was_empty = self.queue.is_empty();
        let mut wrote = 0;
        if !batch.is_empty() {
            if was_empty && !self.blocked {
                wrote = write(stream, batch, &mut self.blocked, stats)?;
                self.queue.extend(&batch[wrote..], high_water);
            } else {
                self.queue.extend(batch, high_water);
            }
            batch.clear();
        }
        while !self.queue.is_empty() && !self.blocked {
            let n = write(stream, self.queue.data(), &mut self.blocked, stats)?;
            self.queue.consume(n);
            wrote += n;
        }
        stats.bytes_out += wrote as u64;
        if wrote > 0 || (was_empty && !self.queue.is_empty()) {
            self.last_progress = shared.now();
        }
        Ok(wrote)
    }

    /// After a frame's replies: keeps their order behind older queued
    /// bytes, and writes once the batch is big. Returns the bytes written,
    /// if it wrote.
    fn after_frame(
        &mut self,
        stream: &Stream,
        batch: &mut Vec<u8>,
        high_water: usize,
        shared: &mut Shared,
    ) -> io::Result<Option<usize>> {
        if !self.queue.is_empty() {
            self.queue.extend(batch, high_water);
            batch.clear();
        }
        if batch.len() + self.queue.len() < FLUSH_AT.min(high_water) {
            return Ok(None);
        }
        let wrote = self.flush(stream, batch, high_water, shared)?;
        Ok((wrote > 0).then_some(wrote))
    }
}

/// Writes as much of `buf` as the kernel takes; a short count means the
/// socket is full, and sets `blocked`.
fn write(stream: &Stream, buf: &[u8], blocked: &mut bool, stats: &mut Stats) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        stats.writes += 1;
        match sys::send(stream.as_fd(), &buf[done..]) {
            Ok(0) => {
                *blocked = true; // a stream socket never does this
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *blocked = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the same layout as `u8`, and the only
    // writer through this view is the kernel's `recv`, which stores
    // initialised bytes, so `buf` stays initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// The next frame in `data`, if a whole one is there; a decode error
/// marks the connection for closing, with its reason.
fn next_frame<C: Codec>(
    codec: &mut C,
    data: &[u8],
    id: ConnId,
    flags: &mut Flags,
) -> Option<Decoded> {
    match codec.decode(data) {
        Ok(decoded) => decoded,
        Err(e) => {
            log::debug!("{id}: {e}");
            flags.close = Some(decode_reason(&e));
            None
        }
    }
}

fn decode_reason(e: &DecodeError) -> CloseReason {
    match e {
        DecodeError::FrameTooLarge { .. } => CloseReason::FrameTooLarge,
        _ => CloseReason::Malformed,
    }
}

/// The close reason for an I/O error.
pub(crate) fn io_reason(e: &io::Error) -> CloseReason {
    if sys::is_reset(e) {
        CloseReason::Reset
    } else {
        CloseReason::Io(e.kind())
    }
}

/// The reason for an error event: the socket's pending error, if any.
fn error_reason(stream: &Stream) -> CloseReason {
    match sys::take_error(stream.as_fd()) {
        Ok(Some(e)) => io_reason(&e),
        Ok(None) => CloseReason::Reset,
        Err(e) => io_reason(&e),
    }
}
