//! Per-connection I/O: read until drained, dispatch frames, flush, switch
//! interest, and apply the close and backpressure rules.

use std::io;
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Instant;

use super::Reactor;
use crate::buffer::Buffer;
use crate::codec::{Codec, DecodeError};
use crate::conn::{CloseReason, Conn, Connection, Flags};
use crate::handler::{Control, Handler, Shared};
use crate::reactor::Stats;
use crate::timer::Due;
use crate::{sys, Event, Interest, Poller, Token, Trigger};

/// Replies batched in the shared buffer past this size are written before
/// more frames are dispatched.
const FLUSH_AT: usize = 64 * 1024;

/// The limits dispatch works within.
#[derive(Copy, Clone)]
struct Limits {
    /// Output memory cap while backpressured.
    high_water: usize,
    /// Input memory cap while frames are shorter than one read.
    read_chunk: usize,
}

impl<P: Poller, C: Codec + Clone> Reactor<P, C> {
    pub(super) fn conn_event<H: Handler>(&mut self, key: usize, event: Event, handler: &mut H) {
        if event.is_error() {
            let reason = error_reason(&self.conns[key].stream);
            self.close(key, reason, handler);
            return;
        }
        if event.is_writable() {
            // The socket has room again: writing may resume.
            self.conns[key].flags.write_blocked = false;
        }
        if event.is_readable() || event.is_read_closed() {
            self.read_ready(key, event.is_read_closed(), handler);
        }
        if event.is_hup() {
            // Both directions are down: nothing queued can be delivered.
            let flags = &mut self.conns[key].flags;
            flags.close = flags.close.or(Some(CloseReason::PeerClosed));
        }
        self.finish(key, handler);
    }

    /// Calls `on_open`, then flushes what it sent.
    pub(super) fn open<H: Handler>(&mut self, key: usize, handler: &mut H) {
        let conn = &mut self.conns[key];
        let mut handle = Conn {
            id: conn.id,
            stream: &conn.stream,
            out: &mut self.out,
            codec: &mut conn.codec,
            flags: &mut conn.flags,
            ctl: Control {
                shared: &mut self.shared,
            },
        };
        handler.on_open(&mut handle);
        self.finish(key, handler);
    }

    /// Reads until `WouldBlock`, a short read, EOF, the per-turn budget, or
    /// backpressure, dispatching frames as they complete.
    ///
    /// A short read means the queue was empty a moment ago, and any later
    /// arrival raises a new event in both trigger modes; but an EOF that
    /// came *with* the data raises none under edge, so when the event said
    /// the peer closed (`read_closed`), read on to the EOF.
    pub(super) fn read_ready<H: Handler>(
        &mut self,
        key: usize,
        read_closed: bool,
        handler: &mut H,
    ) {
        let limits = self.limits();
        let chunk = self.config.read_chunk;
        let mut budget = self.config.read_budget;
        let conn = &mut self.conns[key];
        if !wants_read(&conn.flags) || self.stopping.is_some() {
            return;
        }
        loop {
            let from_scratch = conn.input.is_empty();
            // With a partial frame held, read only up to one chunk in all;
            // a frame longer than that doubles the buffer per read (so a
            // big frame costs linear copying), up to the codec's maximum.
            let held = conn.input.len();
            let asked = match from_scratch {
                true => self.scratch.len(),
                false if held < chunk => chunk - held,
                false => held,
            };
            let got = if from_scratch {
                sys::recv(conn.stream.as_fd(), as_uninit(&mut self.scratch))
            } else {
                let fd = conn.stream.as_fd();
                conn.input
                    .fill_with(asked, chunk, |spare| sys::recv(fd, spare))
            };
            let n = match got {
                Ok(0) => {
                    conn.flags.eof = true;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    conn.flags.close = Some(io_reason(&e));
                    return;
                }
            };
            self.shared.stats.bytes_in += n as u64;
            conn.last_active = self.shared.now();
            let data = if from_scratch {
                Some(&self.scratch[..n])
            } else {
                None
            };
            dispatch(conn, data, &mut self.out, &mut self.shared, handler, limits);
            if !wants_read(&conn.flags) {
                return;
            }
            if n < asked && !read_closed {
                return; // short read: the queue was empty
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                if self.trigger == Trigger::Edge && !conn.flags.ready {
                    conn.flags.ready = true;
                    self.ready.push(super::key_of(conn.id));
                }
                return;
            }
        }
    }

    /// Settles a connection after anything happened to it: flushes,
    /// resumes reading below the low-water mark, closes it if it is due
    /// (asked, or EOF or a graceful shutdown with the output drained), and
    /// switches poller interest to what is wanted now.
    pub(super) fn finish<H: Handler>(&mut self, key: usize, handler: &mut H) {
        self.flush_and_resume(key, handler);
        let limits = self.limits();
        let conn = &mut self.conns[key];
        if let Some(reason) = conn.flags.close {
            if matches!(reason, CloseReason::FrameTooLarge | CloseReason::Malformed) {
                // Best effort: answers to the frames before the bad one.
                let _ = flush(conn, &mut self.out, &mut self.shared, limits);
            }
            // Replies batched for a connection closing now die with it; the
            // shared buffer must not carry them to the next connection.
            self.out.clear();
        }
        let after = conn.buffered_after_release();
        self.shared.stats.account(conn.held, after);
        conn.held = after;
        let stopping = self.stopping.is_some();
        match settled_close(&conn.flags, conn.output.is_empty(), stopping) {
            Some(reason) => self.close(key, reason, handler),
            None => {
                self.arm_stall(key);
                self.update_interest(key, stopping, handler);
            }
        }
    }

    /// Schedules a stall check for a connection with output queued, unless
    /// one is pending already (it re-arms itself while output stays).
    fn arm_stall(&mut self, key: usize) {
        let Some(stall) = self.config.stall_timeout else {
            return;
        };
        let conn = &mut self.conns[key];
        if conn.output.is_empty() || conn.flags.stall_armed {
            return;
        }
        conn.flags.stall_armed = true;
        let (key, gen) = super::key_of(conn.id);
        let at = conn.last_progress + stall;
        self.shared.timers.push(at, Due::Stall { key, gen });
    }

    /// Flushes; once the queue is down to the low-water mark, un-pauses,
    /// dispatches the frames held back, and (under edge, where the edge has
    /// passed) queues the connection to be read next turn.
    fn flush_and_resume<H: Handler>(&mut self, key: usize, handler: &mut H) {
        let limits = self.limits();
        let conn = &mut self.conns[key];
        loop {
            if conn.flags.close.is_none() {
                if let Err(e) = flush(conn, &mut self.out, &mut self.shared, limits) {
                    conn.flags.close = Some(io_reason(&e));
                }
            }
            let drained = conn.output.len() <= self.config.low_water;
            if conn.flags.close.is_some() || !conn.flags.paused || !drained {
                return;
            }
            conn.flags.paused = false;
            dispatch(conn, None, &mut self.out, &mut self.shared, handler, limits);
            if self.trigger == Trigger::Edge && !conn.flags.ready && wants_read(&conn.flags) {
                conn.flags.ready = true;
                self.ready.push(super::key_of(conn.id));
            }
        }
    }

    /// Registers the interest the connection wants now, if it changed.
    fn update_interest<H: Handler>(&mut self, key: usize, stopping: bool, handler: &mut H) {
        let conn = &mut self.conns[key];
        let want = wanted_interest(conn, stopping);
        if want == conn.interest {
            return;
        }
        let token = Token(conn.id.0);
        match self.poller.modify(&conn.stream, token, want, self.trigger) {
            Ok(()) => conn.interest = want,
            Err(e) => {
                log::warn!("{}: modify interest: {e}", conn.id);
                self.close(key, io_reason(&e), handler);
            }
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            high_water: self.config.high_water,
            read_chunk: self.config.read_chunk,
        }
    }
}

impl<C> Connection<C> {
    /// Gives idle buffers back, then reports what is still held.
    fn buffered_after_release(&mut self) -> usize {
        self.input.release();
        self.output.release();
        self.buffered()
    }
}

fn wants_read(flags: &Flags) -> bool {
    !flags.paused && !flags.eof && !flags.drain_then_close && flags.close.is_none()
}

/// The close a settled connection is due, if any.
fn settled_close(flags: &Flags, drained: bool, stopping: bool) -> Option<CloseReason> {
    if let Some(reason) = flags.close {
        return Some(reason);
    }
    if !drained {
        return None;
    }
    if flags.drain_then_close {
        Some(CloseReason::ClosedByHandler)
    } else if flags.eof && !flags.paused {
        Some(CloseReason::PeerClosed)
    } else if stopping {
        Some(CloseReason::ServerShutdown)
    } else {
        None
    }
}

fn wanted_interest<C>(conn: &Connection<C>, stopping: bool) -> Interest {
    let mut want = Interest::empty();
    if wants_read(&conn.flags) && !stopping {
        want |= Interest::READABLE;
    }
    if !conn.output.is_empty() {
        want |= Interest::WRITABLE;
    }
    want
}

/// Cuts frames out of the new bytes (`fresh`, still in the shared read
/// buffer) or, when `fresh` is `None`, out of the connection's input
/// buffer, and hands each to the handler. Stops early on backpressure or a
/// close; bytes not consumed from `fresh` are kept in the input buffer.
fn dispatch<C: Codec, H: Handler>(
    conn: &mut Connection<C>,
    fresh: Option<&[u8]>,
    out: &mut Vec<u8>,
    shared: &mut Shared,
    handler: &mut H,
    limits: Limits,
) {
    let Connection {
        stream,
        id,
        input,
        output,
        codec,
        flags,
        last_progress,
        ..
    } = conn;
    let data = fresh.unwrap_or(input.data());
    let mut pos = 0;
    while !flags.paused && flags.close.is_none() && !flags.drain_then_close {
        let decoded = match codec.decode(&data[pos..]) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => break,
            Err(e) => {
                log::debug!("{id}: decode: {e}");
                flags.close = Some(match e {
                    DecodeError::FrameTooLarge { .. } => CloseReason::FrameTooLarge,
                    _ => CloseReason::Malformed,
                });
                break;
            }
        };
        shared.stats.frames_in += 1;
        let frame = &data[pos..][decoded.frame];
        pos += decoded.consumed;
        let mut conn = Conn {
            id: *id,
            stream,
            out: &mut *out,
            codec: &mut *codec,
            flags: &mut *flags,
            ctl: Control {
                shared: &mut *shared,
            },
        };
        handler.on_frame(&mut conn, frame);
        if !output.is_empty() {
            // Older bytes are queued: keep the order by queueing behind them.
            output.extend(out, limits.high_water);
            out.clear();
        }
        if out.len() + output.len() >= FLUSH_AT.min(limits.high_water) {
            let mut sink = Sink {
                stream,
                output: &mut *output,
                blocked: &mut flags.write_blocked,
                progress: &mut *last_progress,
            };
            if let Err(e) = sink.flush(out, shared, limits) {
                flags.close = Some(io_reason(&e));
            } else if output.len() >= limits.high_water {
                flags.paused = true;
            }
        }
    }
    match fresh {
        Some(fresh) if flags.close.is_none() => input.extend(&fresh[pos..], limits.read_chunk),
        Some(_) => {}
        None => input.consume(pos),
    }
}

/// Writes the batched replies, then the queue, until done or `WouldBlock`.
fn flush<C>(
    conn: &mut Connection<C>,
    out: &mut Vec<u8>,
    shared: &mut Shared,
    limits: Limits,
) -> io::Result<()> {
    let mut sink = Sink {
        stream: &conn.stream,
        output: &mut conn.output,
        blocked: &mut conn.flags.write_blocked,
        progress: &mut conn.last_progress,
    };
    let wrote = sink.flush(out, shared, limits)?;
    if wrote > 0 {
        conn.last_active = shared.now();
    }
    Ok(())
}

/// The parts of a connection that writing touches.
struct Sink<'a> {
    stream: &'a TcpStream,
    /// The output queue: bytes the kernel has not taken yet.
    output: &'a mut Buffer,
    /// Set when a write meets a full socket; cleared by a writable event.
    blocked: &'a mut bool,
    /// When the queue last made progress (see `Connection::last_progress`).
    progress: &'a mut Instant,
}

impl Sink<'_> {
    /// Writes `out` (the batched replies) and then the queue, until done
    /// or the socket is full; what is left joins the queue, in order.
    /// Once a write has met a full socket nothing is written until the
    /// poller says there is room: a peer that stopped reading costs one
    /// `send` per writable event, not one per reply. Returns the bytes
    /// written.
    fn flush(
        &mut self,
        out: &mut Vec<u8>,
        shared: &mut Shared,
        limits: Limits,
    ) -> io::Result<usize> {
        let was_empty = self.output.is_empty();
        let mut wrote = 0;
        if !out.is_empty() {
            if was_empty && !*self.blocked {
                wrote = write(self.stream, out, self.blocked, &mut shared.stats)?;
                self.output.extend(&out[wrote..], limits.high_water);
            } else {
                self.output.extend(out, limits.high_water);
            }
            out.clear();
        }
        while !self.output.is_empty() && !*self.blocked {
            let n = write(
                self.stream,
                self.output.data(),
                self.blocked,
                &mut shared.stats,
            )?;
            self.output.consume(n);
            wrote += n;
        }
        shared.stats.bytes_out += wrote as u64;
        if wrote > 0 || (was_empty && !self.output.is_empty()) {
            *self.progress = shared.now();
        }
        Ok(wrote)
    }
}

/// Writes as much of `buf` as the kernel takes; a short count means the
/// socket is full, and sets `blocked`.
fn write(
    stream: &TcpStream,
    buf: &[u8],
    blocked: &mut bool,
    stats: &mut Stats,
) -> io::Result<usize> {
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

fn io_reason(e: &io::Error) -> CloseReason {
    if sys::is_reset(e) {
        CloseReason::Reset
    } else {
        CloseReason::Io(e.kind())
    }
}

/// The reason for an error event: the socket's pending error, if any.
fn error_reason(stream: &TcpStream) -> CloseReason {
    match sys::take_error(stream.as_fd()) {
        Ok(Some(e)) => io_reason(&e),
        Ok(None) => CloseReason::Reset,
        Err(e) => io_reason(&e),
    }
}
