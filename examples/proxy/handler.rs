//! The proxy's handler: each client gets an outbound connection to the
//! upstream, and bytes go both ways with backpressure across the pair.
//! Shared by `examples/proxy.rs` and `tests/proxy.rs`.
//!
//! - A send that takes the other side over its high-water mark (or is
//!   refused as full) pauses reading on this side; the other side's
//!   `on_drain` resumes it. A refused send's bytes are held here and
//!   sent first.
//! - The peer's EOF on one side becomes a `shutdown_write` on the other
//!   (after its queue drains); run the reactor with
//!   `HalfClose::KeepWriting` so the side that saw EOF stays writable.
//! - An upstream that is refused or times out closes its client.
//! - One side closed: the other is shut down (flushed, then closed).

use std::collections::HashMap;
use std::time::Duration;

use evmux::{CloseReason, Conn, ConnId, Control, Endpoint, Handler, SendError, TimerId};

/// How often sides whose peer closed are shut down (`on_close` has no
/// `Control`, so they are collected there and handled on a timer).
const SWEEP: Duration = Duration::from_millis(10);

/// One side of a pair: the other side's id, and bytes for it that it
/// refused (sent first once it drains).
struct Side {
    peer: ConnId,
    held: Vec<u8>,
    /// This side's peer sent EOF while bytes were held: pass it on once
    /// they are sent.
    eof_pending: bool,
}

impl Side {
    fn new(peer: ConnId) -> Side {
        Side {
            peer,
            held: Vec::new(),
            eof_pending: false,
        }
    }
}

/// A TCP or Unix-domain proxy to one upstream.
pub struct Proxy {
    upstream: Endpoint,
    connect_timeout: Duration,
    sides: HashMap<ConnId, Side>,
    /// Sides whose peer closed, to shut down at the next sweep.
    orphans: Vec<ConnId>,
}

impl Proxy {
    /// A proxy to `upstream`, giving up a connect after `connect_timeout`.
    pub fn new(upstream: Endpoint, connect_timeout: Duration) -> Proxy {
        Proxy {
            upstream,
            connect_timeout,
            sides: HashMap::new(),
            orphans: Vec::new(),
        }
    }

    /// Sends the bytes `from` held for its peer; true once none are left.
    fn send_held(&mut self, ctl: &mut Control<'_>, from: ConnId) -> bool {
        let Some(side) = self.sides.get_mut(&from) else {
            return true;
        };
        if !side.held.is_empty() {
            match ctl.send(side.peer, &side.held) {
                Ok(()) => side.held.clear(),
                Err(SendError::Full) => return false,
                Err(SendError::Closed) => side.held.clear(),
            }
        }
        if std::mem::take(&mut side.eof_pending) {
            ctl.shutdown_write(side.peer);
        }
        true
    }
}

impl Handler for Proxy {
    fn on_start(&mut self, ctl: &mut Control<'_>) {
        ctl.set_interval(SWEEP);
    }

    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let client = conn.id();
        let upstream = self.upstream.clone();
        match conn.control().connect(upstream, self.connect_timeout) {
            Ok(up) => {
                self.sides.insert(client, Side::new(up));
                self.sides.insert(up, Side::new(client));
            }
            Err(e) => {
                log::warn!(
                    "{client}: upstream {}: {e}; closing the client",
                    self.upstream
                );
                conn.close();
            }
        }
    }

    fn on_connect_failed(&mut self, ctl: &mut Control<'_>, up: ConnId, error: std::io::Error) {
        if let Some(side) = self.sides.remove(&up) {
            log::warn!("{}: upstream: {error}; closing the client", side.peer);
            self.sides.remove(&side.peer);
            ctl.close(side.peer);
        }
    }

    fn on_frame(&mut self, conn: &mut Conn<'_>, bytes: &[u8]) {
        let Some(side) = self.sides.get_mut(&conn.id()) else {
            conn.close();
            return;
        };
        let peer = side.peer;
        let ctl = conn.control();
        match ctl.send(peer, bytes) {
            Ok(()) if ctl.can_send(peer).is_ok() => {}
            Ok(()) => conn.pause_reading(), // until the peer's on_drain
            Err(SendError::Full) => {
                side.held.extend_from_slice(bytes);
                conn.pause_reading();
            }
            Err(SendError::Closed) => conn.shutdown(),
        }
    }

    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        let Some(feeder) = self.sides.get(&conn.id()).map(|s| s.peer) else {
            return;
        };
        if self.send_held(conn.control(), feeder) {
            conn.control().resume_reading(feeder);
        }
    }

    fn on_eof(&mut self, conn: &mut Conn<'_>) {
        let Some(side) = self.sides.get_mut(&conn.id()) else {
            conn.shutdown();
            return;
        };
        if side.held.is_empty() {
            let peer = side.peer;
            conn.control().shutdown_write(peer);
        } else {
            side.eof_pending = true;
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, _: TimerId) {
        for orphan in self.orphans.drain(..) {
            if self.sides.remove(&orphan).is_some() {
                ctl.shutdown(orphan);
            }
        }
    }

    fn on_close(&mut self, id: ConnId, reason: CloseReason) {
        if let Some(side) = self.sides.remove(&id) {
            log::debug!("{id}: closed ({reason}); shutting {} down", side.peer);
            self.orphans.push(side.peer);
        }
    }
}
