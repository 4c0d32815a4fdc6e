//! Listeners: bind, accept in batches, refuse past capacity, survive EMFILE.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use super::{conn_token, Listener, Reactor, GEN_MASK, KEY_MASK, LISTENER_BIT};
use crate::codec::Codec;
use crate::conn::{CloseReason, ConnId, Connection, Flags};
use crate::handler::Handler;
use crate::timer::Due;
use crate::{sys, Interest, Poller, Token, Trigger};

/// How long a listener rests when fds ran out and no spare fd was left.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

impl<P: Poller, C: Codec + Clone> Reactor<P, C> {
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
        sys::set_backlog(&socket, self.config.backlog)?;
        socket.set_nonblocking(true)?;
        let token = Token(LISTENER_BIT | self.listeners.len());
        self.poller
            .register(&socket, token, Interest::READABLE, self.trigger)?;
        let local = socket.local_addr()?;
        log::info!(
            "listening on {local} backend={} trigger={:?}",
            P::NAME,
            self.trigger
        );
        self.listeners.push(Listener {
            socket,
            ready: false,
        });
        Ok(local)
    }

    /// Accepts until `WouldBlock` or the per-turn batch cap.
    pub(super) fn accept<H: Handler>(&mut self, i: usize, handler: &mut H) {
        for _ in 0..self.config.accept_batch {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match sys::accept(&listener.socket) {
                Ok(stream) => self.add_conn(stream, handler),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    _ if sys::is_fd_exhaustion(&e) => {
                        if !self.shed_one(i) {
                            return;
                        }
                    }
                    _ => {
                        log::error!("accept: {e}; pausing the listener");
                        self.pause_listener(i);
                        return;
                    }
                },
            }
        }
        // The cap was hit: under edge no new event may come for what is
        // still queued, so serve this listener again next turn.
        if self.trigger == Trigger::Edge {
            self.listeners[i].ready = true;
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
        let shed = sys::accept(&self.listeners[i].socket);
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
        let listener = &self.listeners[i];
        let token = Token(LISTENER_BIT | i);
        let paused = self
            .poller
            .modify(&listener.socket, token, Interest::empty(), self.trigger);
        if let Err(e) = paused {
            log::error!("pause listener: {e}");
        }
        let at = self.shared.now() + EXHAUSTED_PAUSE;
        self.shared.timers.push(at, Due::Listener(i));
    }

    pub(super) fn resume_listener(&mut self, i: usize) {
        let Some(listener) = self.listeners.get_mut(i) else {
            return;
        };
        let token = Token(LISTENER_BIT | i);
        let resumed = self
            .poller
            .modify(&listener.socket, token, Interest::READABLE, self.trigger);
        match resumed {
            Ok(()) => listener.ready = true,
            Err(e) => log::error!("resume listener: {e}"),
        }
        if self.reserve.is_none() {
            self.reserve = sys::open_reserve().ok();
        }
    }

    fn add_conn<H: Handler>(&mut self, stream: TcpStream, handler: &mut H) {
        self.shared.stats.accepted += 1;
        self.next_gen = self.next_gen.wrapping_add(1) & GEN_MASK;
        let key = self.conns.vacant_key();
        let id = ConnId(conn_token(key, self.next_gen).0);
        if let Err(why) = self.admit(&stream, key) {
            log::warn!("{id}: refused: {why}");
            drop(stream);
            self.shared.stats.count_refused(CloseReason::OverCapacity);
            handler.on_close(id, CloseReason::OverCapacity);
            return;
        }
        if self.config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        if let Some(idle) = self.config.keepalive {
            if let Err(e) = sys::set_keepalive(stream.as_fd(), idle) {
                log::debug!("{id}: keepalive: {e}");
            }
        }
        let token = Token(id.0);
        if let Err(e) = self
            .poller
            .register(&stream, token, Interest::READABLE, self.trigger)
        {
            let reason = match e.kind() {
                io::ErrorKind::InvalidInput => CloseReason::OverCapacity,
                kind => CloseReason::Io(kind),
            };
            log::warn!("{id}: register: {e}");
            drop(stream);
            self.shared.stats.count_refused(reason);
            handler.on_close(id, reason);
            return;
        }
        self.conns.insert(Connection {
            stream,
            id,
            input: Default::default(),
            output: Default::default(),
            codec: self.codec.clone(),
            last_active: self.shared.now(),
            last_progress: self.shared.now(),
            unacked: 0,
            interest: Interest::READABLE,
            flags: Flags::default(),
            held: 0,
        });
        self.shared.stats.open += 1;
        if let Some(idle) = self.config.idle_timeout {
            let gen = self.next_gen;
            self.shared
                .timers
                .push(self.shared.now() + idle, Due::Idle { key, gen });
        }
        self.open(key, handler);
    }

    /// Checks the connection fits: the table's key space, the configured
    /// maximum, and the backend's fd capacity (select's FD_SETSIZE).
    fn admit(&self, stream: &TcpStream, key: usize) -> Result<(), String> {
        if key > KEY_MASK {
            return Err(format!("connection table full ({KEY_MASK} slots)"));
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(format!(
                "{} connections open, the configured maximum",
                self.conns.len()
            ));
        }
        let fd = stream.as_raw_fd();
        match P::fd_capacity() {
            Some(cap) if fd as usize >= cap => Err(format!(
                "fd {fd} is beyond the {} backend's capacity ({cap})",
                P::NAME
            )),
            _ => Ok(()),
        }
    }
}
