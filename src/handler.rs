//! `Handler`, the business logic's side of the reactor, and `Control`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::conn::{CloseReason, Conn, ConnId};
use crate::reactor::Stats;
use crate::timer::{Due, TimerId, Timers};

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

/// State shared by every callback: timers, counters, requests.
#[derive(Default)]
pub(crate) struct Shared {
    pub timers: Timers,
    /// Live handler timers and their repeat interval.
    pub user_timers: HashMap<TimerId, Option<Duration>>,
    pub next_timer: u64,
    pub stats: Stats,
    pub stop: bool,
    pub to_close: Vec<ConnId>,
    /// Payloads for `Control::send`: the bytes back to back, and where each
    /// one ends, with its connection.
    pub outbox: Vec<u8>,
    pub outbox_ends: Vec<(ConnId, usize)>,
    pub now: Option<Instant>,
}

impl Shared {
    pub fn now(&self) -> Instant {
        self.now.unwrap_or_else(Instant::now)
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
