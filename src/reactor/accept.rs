//! Listeners and new connections: bind (TCP or Unix-domain), take bound
//! or inherited listeners, accept in batches, adopt connected sockets,
//! refuse past capacity, survive EMFILE.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use super::{Connection, Reactor, READ};
use crate::codec::Codec;
use crate::handler::{Due, Handler};
use crate::ids::{CloseReason, ConnId};
use crate::net::{Listener, Stream};
use crate::source::Source;
use crate::{sys, Interest, Poller, Trigger};

/// How long a listener rests when fds ran out and no spare fd was left.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

/// The reactor's listeners.
pub(super) struct Listening<C> {
    slots: Vec<Slot<C>>,
}

impl<C> Default for Listening<C> {
    fn default() -> Listening<C> {
        Listening { slots: Vec::new() }
    }
}

struct Slot<C> {
    socket: Listener,
    /// The codec its connections get, if not the reactor's.
    codec: Option<C>,
    /// Accepting was cut short by the batch cap (edge-triggered carry-over).
    ready: bool,
}

impl<C> Listening<C> {
    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.slots
            .iter()
            .filter_map(|s| s.socket.local_addr())
            .collect()
    }

    pub(super) fn has_carry_over(&self) -> bool {
        self.slots.iter().any(|s| s.ready)
    }

    /// Clears and returns listener `i`'s carry-over mark.
    pub(super) fn take_ready(&mut self, i: usize) -> bool {
        self.slots
            .get_mut(i)
            .is_some_and(|s| std::mem::take(&mut s.ready))
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }
}

impl<P: Poller, C: Codec + Clone + 'static> Reactor<P, C> {
    /// Binds a non-blocking TCP listener (`SO_REUSEADDR`, close-on-exec) and
    /// starts accepting on it when [`run`](Reactor::run) runs. Port 0 picks
    /// a free port: the address actually bound is returned.
    ///
    /// # Errors
    ///
    /// The error of resolving, binding or registering the address (for
    /// example `AddrInUse`).
    pub fn listen<A: ToSocketAddrs>(&mut self, addr: A) -> io::Result<SocketAddr> {
        let socket = TcpListener::bind(addr)?;
        let local = socket.local_addr()?;
        self.listen_on(socket)?;
        Ok(local)
    }

    /// Binds a Unix-domain stream listener at `path` and accepts on it.
    ///
    /// A socket file left at `path` by a server that is gone (connecting
    /// to it is refused) is removed first; a live one, or any file that is
    /// not a socket, is left alone and reported.
    ///
    /// # Errors
    ///
    /// - `InvalidInput` for a path longer than the platform's `sun_path`
    ///   allows (the message names the limit).
    /// - `AddrInUse` if a server is listening at `path`, or `path` is a
    ///   file that is not a socket.
    /// - The error of binding or registering.
    pub fn listen_unix(&mut self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        crate::net::check_unix_path(path)?;
        crate::net::remove_stale_socket(path)?;
        let socket = UnixListener::bind(path)?;
        self.listen_on(socket)
    }

    /// Accepts on a listener bound elsewhere: with `SO_REUSEPORT`, say, or
    /// inherited from a supervisor ([`inherited_listeners`](crate::inherited_listeners)).
    /// Sets it non-blocking and close-on-exec, and sets the configured
    /// backlog.
    ///
    /// # Errors
    ///
    /// The error of preparing or registering the listener (`InvalidInput`
    /// past select's fd capacity).
    pub fn listen_on(&mut self, listener: impl Into<Listener>) -> io::Result<()> {
        self.listen_on_with(listener.into(), None)
    }

    /// [`listen_on`](Reactor::listen_on), giving the connections accepted
    /// there a clone of `codec` instead of the reactor's: one reactor can
    /// frame differently on two ports.
    ///
    /// # Errors
    ///
    /// As [`listen_on`](Reactor::listen_on).
    pub fn listen_with(&mut self, listener: impl Into<Listener>, codec: C) -> io::Result<()> {
        self.listen_on_with(listener.into(), Some(codec))
    }

    fn listen_on_with(&mut self, socket: Listener, codec: Option<C>) -> io::Result<()> {
        socket.prepare()?;
        sys::set_backlog(socket.as_fd(), self.config.backlog)?;
        let token = Source::Listener(self.listening.slots.len()).to_token();
        self.poller.register(&socket, token, READ, self.trigger)?;
        match socket.local_addr() {
            Some(addr) => log::info!(
                "listening on {addr} backend={} trigger={}",
                self.poller.name(),
                self.trigger
            ),
            None => log::info!("listening on a unix socket backend={}", self.poller.name()),
        }
        let ready = false;
        self.listening.slots.push(Slot {
            socket,
            codec,
            ready,
        });
        Ok(())
    }

    /// Takes an already connected socket (TCP or Unix-domain) as a
    /// connection: sets it non-blocking and close-on-exec, registers it,
    /// and returns its id. Its `on_open` runs on the loop thread before
    /// its first frame: at the start of [`run`](Reactor::run), or of the
    /// next turn if the loop is running.
    ///
    /// # Errors
    ///
    /// The error of preparing or registering the socket, or of the same
    /// checks an accepted connection passes (`max_connections`, select's
    /// fd capacity); the socket is closed then.
    pub fn adopt(&mut self, stream: impl Into<Stream>) -> io::Result<ConnId> {
        let stream = stream.into();
        stream.prepare()?;
        let refused = |why| io::Error::other(format!("adopt: refused: {why}"));
        let id = self
            .shared
            .keys
            .reserve()
            .ok_or_else(|| refused(TABLE_FULL.into()))?;
        if let Err((_, why)) = self.admit(&stream, id) {
            self.shared.keys.release(id.key);
            return Err(refused(why));
        }
        self.insert(stream, id, self.codec.clone());
        self.shared.adopted.push(id);
        Ok(id)
    }

    /// Accepts until `WouldBlock` or the per-turn batch cap.
    pub(super) fn accept<H: Handler>(&mut self, i: usize, handler: &mut H) {
        for _ in 0..self.config.accept_batch {
            let Some(slot) = self.listening.slots.get(i) else {
                return;
            };
            match slot.socket.accept() {
                Ok(stream) => {
                    let codec = slot.codec.as_ref().unwrap_or(&self.codec).clone();
                    self.add_conn(stream, codec, handler)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if retry_accept(&e) => continue,
                Err(e) if sys::is_fd_exhaustion(&e) => {
                    if !self.shed_one(i) {
                        return;
                    }
                }
                Err(e) => {
                    log::error!("accept: {e}; pausing the listener");
                    self.pause_listener(i);
                    return;
                }
            }
        }
        // The cap was hit: under edge no new event may come for what is
        // still queued, so serve this listener again next turn.
        if self.trigger == Trigger::Edge {
            self.listening.slots[i].ready = true;
        }
    }

    /// Out of fds: give up the spare fd, accept the pending connection and
    /// close it at once (so a level-triggered listener does not spin), then
    /// take the spare back. Without a spare, rest the listener. Returns
    /// whether accepting may go on.
    fn shed_one(&mut self, i: usize) -> bool {
        self.shared.stats.fd_exhaustion += 1;
        if self.reserve.take().is_none() {
            log::warn!("accept: out of file descriptors and no spare; pausing the listener");
            self.pause_listener(i);
            return false;
        }
        let shed = self.listening.slots[i].socket.accept();
        // Close the refused connection before taking the spare back: its
        // fd is the one the spare needs.
        let shed = shed.map(drop);
        self.reserve = sys::open_reserve().ok();
        match shed {
            Ok(()) => {
                log::warn!("accept: out of file descriptors; refused a connection");
                self.reserve.is_some()
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => {
                log::warn!("accept: out of file descriptors ({e}); pausing the listener");
                self.pause_listener(i);
                false
            }
        }
    }

    fn pause_listener(&mut self, i: usize) {
        let token = Source::Listener(i).to_token();
        let socket = &self.listening.slots[i].socket;
        let paused = self
            .poller
            .modify(socket, token, Interest::empty(), self.trigger);
        if let Err(e) = paused {
            log::error!("pause listener: {e}");
        }
        let at = self.shared.now() + EXHAUSTED_PAUSE;
        self.shared.timers.push(at, Due::Listener(i));
    }

    pub(super) fn resume_listener(&mut self, i: usize) {
        let Some(slot) = self.listening.slots.get_mut(i) else {
            return;
        };
        let token = Source::Listener(i).to_token();
        match self.poller.modify(&slot.socket, token, READ, self.trigger) {
            Ok(()) => slot.ready = true,
            Err(e) => log::error!("resume listener: {e}"),
        }
        if self.reserve.is_none() {
            self.reserve = sys::open_reserve().ok();
        }
    }

    /// Stops accepting: deregisters and closes every listener.
    pub(super) fn close_listeners(&mut self) {
        for slot in self.listening.slots.drain(..) {
            if let Err(e) = self.poller.deregister(&slot.socket) {
                log::warn!("deregister listener: {e}");
            }
        }
    }

    /// Takes a new connection into the table, or refuses it; then calls
    /// `on_open`.
    fn add_conn<H: Handler>(&mut self, stream: Stream, codec: C, handler: &mut H) {
        self.shared.stats.accepted += 1;
        let Some(id) = self.shared.keys.reserve() else {
            log::warn!("refused a connection: {TABLE_FULL}");
            self.shared.stats.count_refused(CloseReason::OverCapacity);
            return;
        };
        if let Err((reason, why)) = self.admit(&stream, id) {
            log::warn!("{id}: refused: {why}");
            drop(stream);
            self.shared.keys.release(id.key);
            self.shared.stats.count_refused(reason);
            handler.on_close(id, reason);
            return;
        }
        log::debug!("{id}: accepted from {}", PeerName(&stream));
        self.insert(stream, id, codec);
        self.with_conn(id, handler, |c, io, h| c.open(io, h));
    }

    /// Puts an admitted connection in the table, with its idle timer.
    fn insert(&mut self, stream: Stream, id: ConnId, codec: C) {
        self.tune(&stream, id);
        let now = self.shared.now();
        self.conns.insert(Connection::new(stream, id, codec, now));
        self.shared.stats.open += 1;
        if let Some(idle) = self.config.idle_timeout {
            self.shared.timers.push(now + idle, Due::Idle(id));
        }
    }

    /// Checks the connection fits (the table's key space, the configured
    /// maximum, the backend's fd capacity: select's FD_SETSIZE), then
    /// registers it.
    fn admit(&mut self, stream: &Stream, id: ConnId) -> Result<(), (CloseReason, String)> {
        let refuse = |why| Err((CloseReason::OverCapacity, why));
        if self.conns.len() >= self.config.max_connections {
            return refuse(format!(
                "{} connections open, the configured maximum",
                self.conns.len()
            ));
        }
        let fd = stream.as_fd().as_raw_fd();
        if let Some(cap) = self.poller.fd_limit().filter(|&cap| fd as usize >= cap) {
            return refuse(format!(
                "fd {fd} is beyond the {} backend's capacity ({cap})",
                self.poller.name()
            ));
        }
        let token = Source::Conn(id).to_token();
        self.poller
            .register(stream, token, READ, self.trigger)
            .map_err(|e| {
                let reason = match e.kind() {
                    io::ErrorKind::InvalidInput => CloseReason::OverCapacity,
                    kind => CloseReason::Io(kind),
                };
                (reason, format!("register: {e}"))
            })
    }

    /// Socket options for a new TCP connection (`TCP_NODELAY`, keepalive).
    fn tune(&self, stream: &Stream, id: ConnId) {
        if !stream.is_tcp() {
            return;
        }
        if self.config.nodelay {
            let _ = stream.set_nodelay();
        }
        if let Some(idle) = self.config.keepalive {
            if let Err(e) = sys::set_keepalive(stream.as_fd(), idle) {
                log::debug!("{id}: keepalive: {e}");
            }
        }
    }
}

const TABLE_FULL: &str = "the connection table is full";

/// A connection's peer, for logs: `127.0.0.1:5000`, or `a unix socket`.
struct PeerName<'a>(&'a Stream);

impl std::fmt::Display for PeerName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.peer_addr() {
            Ok(addr) => write!(f, "{addr}"),
            Err(_) => f.write_str("a unix socket"),
        }
    }
}

/// Accept errors that concern only the connection being accepted.
fn retry_accept(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}
