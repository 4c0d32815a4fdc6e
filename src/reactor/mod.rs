//! The reactor: one event loop, a connection table, accept, read, write and
//! close, generic over the [`Poller`] backend.
//!
//! One loop turn: wait for readiness (the timeout comes from the nearest
//! deadline), handle each event (accept, read and dispatch frames, flush),
//! serve connections left over from the last turn's budget, fire due timers.

mod accept;
mod config;
mod io;
mod stats;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::codec::Codec;
use crate::conn::{CloseReason, ConnId, Connection};
use crate::handler::{Control, Handler, Shared};
use crate::timer::Due;
use crate::{Events, Poller, Token, Trigger, Waker};

pub use config::Config;
pub use stats::Stats;

/// Token layout: the waker, listeners (top bit set), and connections (slab
/// key in the low half, generation above it).
const WAKER: Token = Token(usize::MAX - 1);
const LISTENER_BIT: usize = 1 << (usize::BITS - 1);
const KEY_BITS: u32 = usize::BITS / 2;
const KEY_MASK: usize = (1 << KEY_BITS) - 1;
const GEN_MASK: u32 = ((LISTENER_BIT - 1) >> KEY_BITS) as u32;

enum Target {
    Waker,
    Listener(usize),
    Conn(usize, u32),
}

fn conn_token(key: usize, gen: u32) -> Token {
    Token(key | ((gen & GEN_MASK) as usize) << KEY_BITS)
}

fn target(token: Token) -> Target {
    match token.0 {
        t if Token(t) == WAKER => Target::Waker,
        t if t & LISTENER_BIT != 0 => Target::Listener(t & !LISTENER_BIT),
        t => Target::Conn(t & KEY_MASK, (t >> KEY_BITS) as u32),
    }
}

fn key_of(id: ConnId) -> (usize, u32) {
    (id.0 & KEY_MASK, (id.0 >> KEY_BITS) as u32)
}

/// Stops a running [`Reactor`] from any thread (or a signal-handling
/// thread): it stops accepting, flushes queued output for at most the
/// configured grace period, closes every connection and returns from
/// [`run`](Reactor::run). Cheap to clone.
#[derive(Clone, Debug)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Waker,
}

impl StopHandle {
    /// Asks the reactor to stop. Calling it again is harmless.
    ///
    /// # Errors
    ///
    /// The error of waking the poller (the flag is set regardless, and the
    /// reactor sees it at its next wake-up).
    pub fn stop(&self) -> std::io::Result<()> {
        self.flag.store(true, Ordering::Release);
        self.waker.wake()
    }
}

struct Listener {
    socket: TcpListener,
    /// Accepting was cut short by the batch cap (edge-triggered carry-over).
    ready: bool,
}

/// A TCP server's event loop: listeners, a connection table, framing by
/// codec `C`, business logic by a [`Handler`], on any [`Poller`] backend.
///
/// # Examples
///
/// A line echo server on whatever backend is the default, stopped from
/// another thread:
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use std::net::TcpStream;
/// use evmux::{codec::Lines, Config, Conn, DefaultPoller, Handler, Reactor};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_frame(&mut self, conn: &mut Conn<'_>, line: &[u8]) {
///         let _ = conn.send(line);
///     }
/// }
///
/// let mut reactor = Reactor::<DefaultPoller, _>::new(Lines::new(), Config::default())?;
/// let addr = reactor.listen("127.0.0.1:0")?;
/// let stop = reactor.stop_handle();
/// let server = std::thread::spawn(move || reactor.run(&mut Echo));
///
/// let mut client = TcpStream::connect(addr)?;
/// client.write_all(b"hello\r\nworld\n")?;
/// let mut reader = BufReader::new(client);
/// let mut line = String::new();
/// reader.read_line(&mut line)?;
/// assert_eq!(line, "hello\n");
///
/// stop.stop()?;
/// server.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Reactor<P: Poller, C: Codec + Clone> {
    poller: P,
    events: Events,
    config: Config,
    trigger: Trigger,
    codec: C,
    listeners: Vec<Listener>,
    conns: Slab<Connection<C>>,
    next_gen: u32,
    /// The shared read buffer: a read lands here when the connection has
    /// nothing buffered, so idle connections hold no input memory.
    scratch: Vec<u8>,
    /// Replies encoded during one batch, written with one `send`.
    out: Vec<u8>,
    /// Connections with input left unread after their budget (edge only).
    ready: Vec<(usize, u32)>,
    shared: Shared,
    stop_flag: Arc<AtomicBool>,
    waker: Waker,
    /// A spare fd, given up to accept-and-close when fds run out.
    reserve: Option<OwnedFd>,
    /// Set once stopping: the end of the grace period.
    stopping: Option<Instant>,
}

impl<P: Poller, C: Codec + Clone> Reactor<P, C> {
    /// Creates a reactor: the poller, its waker, and the shared buffers.
    /// Each connection gets a clone of `codec`.
    ///
    /// # Errors
    ///
    /// - `Unsupported` if the backend cannot run the configured trigger
    ///   (edge on select or poll).
    /// - `InvalidInput` for `Trigger::Oneshot`, which the reactor does not use.
    /// - The error of creating the poller or its waker.
    pub fn new(codec: C, config: Config) -> std::io::Result<Self> {
        let trigger = pick_trigger::<P>(config.trigger)?;
        let mut poller = P::new()?;
        let waker = poller.waker(WAKER)?;
        Ok(Reactor {
            poller,
            events: Events::with_capacity(1024),
            trigger,
            codec,
            listeners: Vec::new(),
            conns: Slab::new(),
            next_gen: 0,
            scratch: vec![0; config.read_chunk],
            out: Vec::new(),
            ready: Vec::new(),
            shared: Shared::default(),
            stop_flag: Arc::new(AtomicBool::new(false)),
            waker,
            reserve: crate::sys::open_reserve().ok(),
            stopping: None,
            config,
        })
    }

    /// The backend's name (`"select"`, `"poll"`, `"epoll"`, `"uring"`).
    pub fn backend(&self) -> &'static str {
        P::NAME
    }

    /// The trigger mode in use.
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// A handle that stops [`run`](Reactor::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: Arc::clone(&self.stop_flag),
            waker: self.waker.clone(),
        }
    }

    /// The counters so far (final once `run` has returned).
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The addresses being listened on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let addrs = self.listeners.iter().map(|l| l.socket.local_addr());
        addrs.filter_map(Result::ok).collect()
    }

    /// An upper bound on the user-space bytes one open connection with empty
    /// buffers costs: its slot in the connection table. Idle connections
    /// hold no buffer memory ([`Stats::buffered`] counts what they do hold).
    pub fn idle_connection_size() -> usize {
        std::mem::size_of::<Connection<C>>() + std::mem::size_of::<usize>()
    }

    /// Runs the loop until stopped by a [`StopHandle`] or
    /// [`Control::stop`]; then stops accepting, flushes queued output for
    /// at most the grace period, closes every connection and returns.
    ///
    /// # Errors
    ///
    /// Only an error of the poller's `wait` itself (not a signal, which is
    /// no error): the loop cannot go on. Per-connection errors close that
    /// connection with a [`CloseReason`] and the loop goes on.
    pub fn run<H: Handler>(&mut self, handler: &mut H) -> std::io::Result<()> {
        self.shared.now = Some(Instant::now());
        handler.on_start(&mut Control {
            shared: &mut self.shared,
        });
        loop {
            self.apply_requests(handler);
            if self.stopping.is_none() && self.stop_requested() {
                self.begin_stop(handler);
            }
            if let Some(deadline) = self.stopping {
                if self.conns.is_empty() || self.shared.now() >= deadline {
                    self.close_all(CloseReason::ServerShutdown, handler);
                    return Ok(());
                }
            }
            let timeout = self.wait_timeout();
            self.poller.wait(&mut self.events, timeout)?;
            self.shared.now = Some(Instant::now());
            for i in 0..self.events.len() {
                let event = self.events.as_slice()[i];
                self.on_event(event, handler);
            }
            self.serve_ready(handler);
            self.fire_timers(handler);
        }
    }

    fn stop_requested(&self) -> bool {
        self.shared.stop || self.stop_flag.load(Ordering::Acquire)
    }

    fn wait_timeout(&self) -> Option<Duration> {
        let carry_over = !self.ready.is_empty() || self.listeners.iter().any(|l| l.ready);
        let requests = !self.shared.to_close.is_empty() || !self.shared.outbox_ends.is_empty();
        if carry_over || requests {
            return Some(Duration::ZERO);
        }
        // The clock now, not the turn's start: the turn's work must not
        // make timers late.
        let now = Instant::now();
        let timer = self.shared.timers.timeout(now);
        let grace = self.stopping.map(|d| d.saturating_duration_since(now));
        match (timer, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_event<H: Handler>(&mut self, event: crate::Event, handler: &mut H) {
        match target(event.token()) {
            Target::Waker => {}
            Target::Listener(i) => self.accept(i, handler),
            Target::Conn(key, gen) => {
                if self.is_live(key, gen) {
                    self.conn_event(key, event, handler);
                }
                // Otherwise: a stale event for a connection closed earlier in
                // this turn, maybe with its slot or fd reused. Ignore it.
            }
        }
    }

    fn is_live(&self, key: usize, gen: u32) -> bool {
        let live = self.conns.get(key).map(|c| key_of(c.id).1);
        live == Some(gen & GEN_MASK)
    }

    fn serve_ready<H: Handler>(&mut self, handler: &mut H) {
        for i in 0..self.listeners.len() {
            if std::mem::take(&mut self.listeners[i].ready) {
                self.accept(i, handler);
            }
        }
        let ready = std::mem::take(&mut self.ready);
        for &(key, gen) in &ready {
            if self.is_live(key, gen) {
                self.conns[key].flags.ready = false;
                self.read_ready(key, false, handler);
                self.finish(key, handler);
            }
        }
        // Keep the allocation for the next turn.
        let mut ready = ready;
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    fn fire_timers<H: Handler>(&mut self, handler: &mut H) {
        let now = self.shared.now();
        while let Some((at, due)) = self.shared.timers.pop_due(now) {
            match due {
                Due::Idle { key, gen } => self.check_idle(key, gen, handler),
                Due::User(id) => {
                    let Some(&every) = self.shared.user_timers.get(&id) else {
                        continue; // cancelled
                    };
                    match every {
                        Some(every) => {
                            let next = (at + every).max(now);
                            self.shared.timers.push(next, Due::User(id));
                        }
                        None => {
                            self.shared.user_timers.remove(&id);
                        }
                    }
                    handler.on_timer(
                        &mut Control {
                            shared: &mut self.shared,
                        },
                        id,
                    );
                    self.apply_requests(handler);
                }
                Due::Listener(i) => self.resume_listener(i),
            }
        }
    }

    /// Drops heap entries of closed connections and cancelled timers once
    /// they outnumber the live ones.
    fn compact_timers(&mut self) {
        let (conns, user) = (&self.conns, &self.shared.user_timers);
        self.shared.timers.compact(|due| match *due {
            Due::Idle { key, gen } => conns.get(key).is_some_and(|c| key_of(c.id).1 == gen),
            Due::User(id) => user.contains_key(&id),
            Due::Listener(_) => true,
        });
    }

    fn check_idle<H: Handler>(&mut self, key: usize, gen: u32, handler: &mut H) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        if !self.is_live(key, gen) {
            return;
        }
        let due = self.conns[key].last_active + idle;
        if due <= self.shared.now() {
            log::debug!("{}: idle for {idle:?}, closing", self.conns[key].id);
            self.close(key, CloseReason::IdleTimeout, handler);
        } else {
            self.shared.timers.push(due, Due::Idle { key, gen });
        }
    }

    /// Carries out what handlers asked through [`Control`]: sends, then
    /// closes, by id.
    fn apply_requests<H: Handler>(&mut self, handler: &mut H) {
        self.deliver_outbox(handler);
        while let Some(id) = self.shared.to_close.pop() {
            let (key, gen) = key_of(id);
            if self.is_live(key, gen) {
                self.close(key, CloseReason::ClosedByHandler, handler);
            }
        }
    }

    /// Encodes each payload queued by [`Control::send`] with its
    /// connection's codec and writes it like a reply.
    fn deliver_outbox<H: Handler>(&mut self, handler: &mut H) {
        if self.shared.outbox_ends.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.shared.outbox);
        let ends = std::mem::take(&mut self.shared.outbox_ends);
        let mut start = 0;
        for &(id, end) in &ends {
            let payload = &bytes[start..end];
            start = end;
            let (key, gen) = key_of(id);
            if !self.is_live(key, gen) {
                continue;
            }
            let conn = &mut self.conns[key];
            if conn.flags.close.is_some() || conn.flags.drain_then_close {
                continue;
            }
            match conn.codec.encode(payload, &mut self.out) {
                Ok(()) => self.shared.stats.frames_out += 1,
                Err(e) => log::warn!("{id}: send: {e}"),
            }
            self.finish(key, handler);
        }
        // Give the allocations back, unless a callback run from here (a
        // resumed connection's frames) queued new sends meanwhile.
        if self.shared.outbox_ends.is_empty() {
            self.shared.outbox = bytes;
            self.shared.outbox.clear();
            self.shared.outbox_ends = ends;
            self.shared.outbox_ends.clear();
        }
    }

    fn begin_stop<H: Handler>(&mut self, handler: &mut H) {
        log::info!("stopping: {} connections open", self.conns.len());
        // From now, not from the start of this turn: a long handler call
        // must not eat the grace period.
        let now = Instant::now();
        self.shared.now = Some(now);
        self.stopping = Some(now + self.config.shutdown_grace);
        for listener in self.listeners.drain(..) {
            if let Err(e) = self.poller.deregister(&listener.socket) {
                log::warn!("deregister listener: {e}");
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.finish(key, handler);
        }
    }

    fn close_all<H: Handler>(&mut self, reason: CloseReason, handler: &mut H) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key, reason, handler);
        }
    }

    /// The one close path for every cause: deregister, close the fd, drop
    /// the state, then tell the handler.
    fn close<H: Handler>(&mut self, key: usize, reason: CloseReason, handler: &mut H) {
        let conn = self.conns.remove(key);
        if let Err(e) = self.poller.deregister(&conn.stream) {
            log::warn!("{}: deregister: {e}", conn.id);
        }
        let held = conn.held;
        let Connection {
            stream,
            id,
            input,
            output,
            codec,
            ..
        } = conn;
        drop(stream); // closes the fd
        drop((input, output, codec));
        self.shared.stats.account(held, 0);
        self.shared.stats.count_close(reason);
        if self.config.idle_timeout.is_some() {
            self.shared.timers.mark_stale();
            self.compact_timers();
        }
        log::debug!("{id}: closed: {reason}");
        handler.on_close(id, reason);
    }
}

fn pick_trigger<P: Poller>(asked: Option<Trigger>) -> std::io::Result<Trigger> {
    let trigger = match asked {
        Some(Trigger::Oneshot) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the reactor runs Trigger::Level or Trigger::Edge, not Oneshot",
            ))
        }
        Some(t) => t,
        None if P::supports_trigger(Trigger::Edge) => Trigger::Edge,
        None => Trigger::Level,
    };
    evmux_core::check_trigger::<P>(trigger)?;
    Ok(trigger)
}
