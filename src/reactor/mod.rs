//! The reactor: one event loop over any [`Poller`], its connection table,
//! listeners, timers and the one close path.
//!
//! This module owns the turn and everything that touches the poller or
//! the table: register, modify and deregister happen only here and in
//! `accept.rs`, and every close goes through [`Reactor::close`]. The
//! pieces it drives are nouns of their own: a [`Connection`] works on one
//! connection and returns a [`Step`]; [`Source`] is the token layout;
//! `timers.rs` fires deadlines, `requests.rs` carries out what handlers
//! asked by id, `accept.rs` owns the listeners.
//!
//! One turn: wait (the timeout comes from the nearest deadline), handle
//! each event, serve connections left over from the last turn's budget,
//! fire due timers.

mod accept;
mod connection;
mod requests;
mod table;
mod timers;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::Codec;
use crate::config::Config;
use crate::handler::{Control, Handler, Shared};
use crate::ids::{CloseReason, ConnId, SourceId};
use crate::source::Source;
use crate::stats::Stats;
use crate::{Event, Events, Interest, Poller, Trigger, Waker};
use accept::Listening;
use connection::{io_reason, Connection, Io, Next, Step};
use table::Table;

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
    pub fn stop(&self) -> io::Result<()> {
        self.flag.store(true, Ordering::Release);
        self.waker.wake()
    }
}

/// A server's event loop: listeners (TCP or Unix-domain), a connection
/// table, framing by codec `C`, business logic by a [`Handler`], on any
/// [`Poller`] backend.
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
pub struct Reactor<P: Poller, C: Codec + Clone + 'static> {
    poller: P,
    events: Events,
    config: Config,
    trigger: Trigger,
    codec: C,
    listening: Listening<C>,
    conns: Table<C>,
    /// The shared read buffer (see [`Io::scratch`]).
    scratch: Vec<u8>,
    /// Replies encoded during one batch, written with one `send`.
    out: Vec<u8>,
    /// Connections with input left unread after their budget (edge only).
    ready: Vec<ConnId>,
    shared: Shared,
    stop_flag: Arc<AtomicBool>,
    waker: Waker,
    /// A spare fd, given up to accept-and-close when fds run out.
    reserve: Option<OwnedFd>,
    /// Set once stopping: the end of the grace period.
    stopping: Option<Instant>,
}

impl<P: Poller, C: Codec + Clone + 'static> Reactor<P, C> {
    /// Creates a reactor: the poller, its waker, and the shared buffers.
    /// Each connection gets a clone of `codec`.
    ///
    /// # Errors
    ///
    /// - `Unsupported` if the backend cannot run the configured trigger
    ///   (edge on select or poll).
    /// - `InvalidInput` for `Trigger::Oneshot`, which the reactor does not use.
    /// - The error of creating the poller or its waker.
    pub fn new(codec: C, config: Config) -> io::Result<Self> {
        Self::with_poller(P::new()?, codec, config)
    }

    /// Creates a reactor on a poller made by the caller: a backend picked
    /// at run time (an [`AnyPoller`](crate::AnyPoller) for a
    /// [`Backend`](crate::Backend) read from a flag), or one created with
    /// options of its own.
    ///
    /// # Errors
    ///
    /// As [`new`](Reactor::new), but for creating the poller. A poller
    /// that has made its waker already gives `AlreadyExists`.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux::{codec::Lines, AnyPoller, Backend, Config, Reactor};
    ///
    /// let backend: Backend = "poll".parse()?;
    /// let poller = AnyPoller::with_backend(backend)?;
    /// let reactor = Reactor::with_poller(poller, Lines::new(), Config::default())?;
    /// assert_eq!(reactor.backend(), "poll");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_poller(mut poller: P, codec: C, config: Config) -> io::Result<Self> {
        let trigger = pick_trigger(&poller, config.trigger)?;
        let waker = poller.waker(Source::Waker.to_token())?;
        Ok(Reactor {
            poller,
            events: Events::with_capacity(1024),
            trigger,
            codec,
            listening: Listening::default(),
            conns: Table::new(),
            scratch: vec![0; config.read_chunk],
            out: Vec::new(),
            ready: Vec::new(),
            shared: Shared::new(trigger, config.high_water, std::any::TypeId::of::<C>()),
            stop_flag: Arc::new(AtomicBool::new(false)),
            waker,
            reserve: crate::sys::open_reserve().ok(),
            stopping: None,
            config,
        })
    }

    /// The backend's name (`"select"`, `"poll"`, `"epoll"`, `"uring"`):
    /// the one really in use, also when `P` is an
    /// [`AnyPoller`](crate::AnyPoller).
    pub fn backend(&self) -> &'static str {
        self.poller.name()
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

    /// The TCP addresses being listened on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listening.local_addrs()
    }

    /// An upper bound on the user-space bytes one open connection with empty
    /// buffers costs: its slot in the connection table. Idle connections
    /// hold no buffer memory ([`Stats::buffered`] counts what they do hold).
    pub fn idle_connection_size() -> usize {
        std::mem::size_of::<Option<Connection<C>>>() + std::mem::size_of::<u32>()
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
    pub fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        self.shared.now = Some(Instant::now());
        handler.on_start(&mut Control {
            shared: &mut self.shared,
            registry: &mut self.poller,
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
        if !self.ready.is_empty() || self.listening.has_carry_over() || self.shared.has_requests() {
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

    fn on_event<H: Handler>(&mut self, event: Event, handler: &mut H) {
        match Source::from_token(event.token()) {
            Some(Source::Listener(i)) => self.accept(i, handler),
            Some(Source::Conn(id)) => {
                self.with_conn(id, handler, |c, io, h| c.on_event(event, io, h))
            }
            Some(Source::User(id)) => self.on_ready(id, event, handler),
            // The waker only wakes the loop.
            Some(Source::Waker) | None => {}
        }
    }

    /// Runs `work` on connection `id` if it is still live, then applies
    /// the step it returns. An id that is not live (a stale event for a
    /// connection closed earlier, maybe with its slot or fd reused) is
    /// ignored.
    fn with_conn<H: Handler>(
        &mut self,
        id: ConnId,
        handler: &mut H,
        work: impl FnOnce(&mut Connection<C>, &mut Io<'_>, &mut H) -> Step,
    ) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut io = Io {
            scratch: &mut self.scratch,
            out: &mut self.out,
            shared: &mut self.shared,
            registry: &mut self.poller,
            config: &self.config,
            stopping: self.stopping.is_some(),
        };
        let step = work(conn, &mut io, handler);
        self.apply(id, step, handler);
    }

    /// Carries out a connection's step: queue it for the next turn under
    /// edge, then switch its interest or close it.
    fn apply<H: Handler>(&mut self, id: ConnId, step: Step, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if step.again && self.trigger == Trigger::Edge && !conn.flags.ready {
            conn.flags.ready = true;
            self.ready.push(id);
        }
        match step.next {
            Next::Keep(want) if want == conn.interest => {}
            Next::Keep(want) => {
                let token = Source::Conn(id).to_token();
                match self.poller.modify(&conn.stream, token, want, self.trigger) {
                    Ok(()) => conn.interest = want,
                    Err(e) => {
                        log::warn!("{id}: modify interest: {e}");
                        self.close(id, io_reason(&e), handler);
                    }
                }
            }
            Next::Close(reason) => self.close(id, reason, handler),
        }
    }

    /// Is `id` a live connection?
    fn is_live(&self, id: ConnId) -> bool {
        self.conns.get(id).is_some()
    }

    /// Reports a watched fd's readiness, unless it was unwatched (maybe
    /// earlier in this turn, with its fd reused).
    fn on_ready<H: Handler>(&mut self, id: SourceId, event: Event, handler: &mut H) {
        let watched = self.shared.watches.get(id.key as usize);
        if !watched.is_some_and(|w| w.gen == id.gen) {
            return;
        }
        let mut ctl = Control {
            shared: &mut self.shared,
            registry: &mut self.poller,
        };
        handler.on_ready(&mut ctl, id, event.readiness());
    }

    fn serve_ready<H: Handler>(&mut self, handler: &mut H) {
        for i in 0..self.listening.len() {
            if self.listening.take_ready(i) {
                self.accept(i, handler);
            }
        }
        let mut ready = std::mem::take(&mut self.ready);
        for &id in &ready {
            self.with_conn(id, handler, |c, io, h| c.serve_again(io, h));
        }
        // Keep the allocation for the next turn.
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    fn begin_stop<H: Handler>(&mut self, handler: &mut H) {
        log::info!("stopping: {} connections open", self.conns.len());
        // From now, not from the start of this turn: a long handler call
        // must not eat the grace period.
        let now = Instant::now();
        self.shared.now = Some(now);
        self.stopping = Some(now + self.config.shutdown_grace);
        self.close_listeners();
        for id in self.conn_ids() {
            self.with_conn(id, handler, |c, io, h| c.settle(io, h));
        }
    }

    fn close_all<H: Handler>(&mut self, reason: CloseReason, handler: &mut H) {
        for id in self.conn_ids() {
            self.close(id, reason, handler);
        }
    }

    fn conn_ids(&self) -> Vec<ConnId> {
        self.conns.ids()
    }

    /// The one close path for every cause: deregister, close the fd, drop
    /// the state, free the slot, then tell the handler (`on_close`, or
    /// `on_connect_failed` for a connection that never connected).
    fn close<H: Handler>(&mut self, id: ConnId, reason: CloseReason, handler: &mut H) {
        let Some(conn) = self.conns.remove(id) else {
            return;
        };
        if let Err(e) = self.poller.deregister(&conn.stream) {
            log::warn!("{id}: deregister: {e}");
        }
        let (held, stall_armed) = (conn.held, conn.flags.stall_armed);
        let connecting = conn.connecting.as_deref().cloned();
        drop(conn); // closes the fd, frees the buffers
        self.shared.keys.release(id.key);
        self.shared.stats.account(held, 0);
        let stale = usize::from(self.config.idle_timeout.is_some()) + usize::from(stall_armed);
        (0..stale).for_each(|_| self.shared.timers.mark_stale());
        self.compact_timers();
        match connecting {
            Some(to) => self.fail_connect(id, &to, reason, handler),
            None => {
                self.shared.stats.count_close(reason);
                log::debug!("{id}: closed: {reason}");
                handler.on_close(id, reason);
            }
        }
    }

    /// Tells the handler an outbound connection never connected.
    fn fail_connect<H: Handler>(
        &mut self,
        id: ConnId,
        to: &crate::Endpoint,
        reason: CloseReason,
        handler: &mut H,
    ) {
        self.shared.stats.connect_failed += 1;
        let kind = match reason {
            CloseReason::Io(kind) => kind,
            CloseReason::Reset => io::ErrorKind::ConnectionReset,
            _ => io::ErrorKind::ConnectionAborted,
        };
        let why = match reason {
            CloseReason::Io(_) | CloseReason::Reset => kind.to_string(),
            other => format!("given up before it connected ({other})"),
        };
        let error = io::Error::new(kind, format!("connect to {to}: {why}"));
        log::debug!("{id}: {error}");
        let mut ctl = Control {
            shared: &mut self.shared,
            registry: &mut self.poller,
        };
        handler.on_connect_failed(&mut ctl, id, error);
    }
}

fn pick_trigger<P: Poller>(poller: &P, asked: Option<Trigger>) -> io::Result<Trigger> {
    let trigger = match asked {
        Some(Trigger::Oneshot) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the reactor runs Trigger::Level or Trigger::Edge, not Oneshot",
            ))
        }
        Some(t) => t,
        None if poller.has_trigger(Trigger::Edge) => Trigger::Edge,
        None => Trigger::Level,
    };
    if poller.has_trigger(trigger) {
        Ok(trigger)
    } else {
        Err(evmux_core::unsupported_trigger(poller.name(), trigger))
    }
}

/// Waits for readability only: what a new connection starts with.
const READ: Interest = Interest::READABLE;
