//! Deadlines: handler timers, idle and stall checks, paused listeners.
//! Entries are checked lazily when they pop (see `crate::timer`).

use super::Reactor;
use crate::codec::Codec;
use crate::handler::{Control, Due, Handler};
use crate::ids::{CloseReason, ConnId, TimerId};
use crate::Poller;

impl<P: Poller, C: Codec + Clone + 'static> Reactor<P, C> {
    pub(super) fn fire_timers<H: Handler>(&mut self, handler: &mut H) {
        let now = self.shared.now();
        while let Some((at, due)) = self.shared.timers.pop_due(now) {
            match due {
                Due::Idle(id) => self.check_idle(id, handler),
                Due::Stall(id) => self.check_stall(id, handler),
                Due::User(timer) => self.fire_user(timer, at, handler),
                Due::Listener(i) => self.resume_listener(i),
                Due::Connect(id) => self.check_connect(id, handler),
            }
        }
    }

    /// Fires a handler's timer (unless cancelled), re-arming an interval.
    fn fire_user<H: Handler>(&mut self, timer: TimerId, at: std::time::Instant, handler: &mut H) {
        let now = self.shared.now();
        let Some(&every) = self.shared.user_timers.get(&timer) else {
            return; // cancelled
        };
        match every {
            Some(every) => self
                .shared
                .timers
                .push((at + every).max(now), Due::User(timer)),
            None => {
                self.shared.user_timers.remove(&timer);
            }
        }
        let mut ctl = Control {
            shared: &mut self.shared,
            registry: &mut self.poller,
        };
        handler.on_timer(&mut ctl, timer);
        self.apply_requests(handler);
    }

    /// Drops heap entries of closed connections and cancelled timers once
    /// they outnumber the live ones.
    pub(super) fn compact_timers(&mut self) {
        let (conns, user) = (&self.conns, &self.shared.user_timers);
        self.shared.timers.compact(|due| match *due {
            Due::Idle(id) => conns.get(id).is_some(),
            Due::Stall(id) => conns.get(id).is_some_and(|c| c.flags.stall_armed),
            Due::Connect(id) => conns.get(id).is_some_and(|c| c.connecting.is_some()),
            Due::User(timer) => user.contains_key(&timer),
            Due::Listener(_) => true,
        });
    }

    /// Closes a connection with no traffic for the idle timeout; otherwise
    /// checks again when it would be due.
    fn check_idle<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        let now = self.shared.now();
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.connecting.is_some() {
            self.shared.timers.push(now + idle, Due::Idle(id));
            return; // the connect timeout governs until it connects
        }
        let mut due = conn.last_active + idle;
        if due <= now && conn.peer_took_bytes(now) {
            due = now + idle;
        }
        if due <= now {
            log::debug!("{id}: idle for {idle:?}, closing");
            self.close(id, CloseReason::IdleTimeout, handler);
        } else {
            self.shared.timers.push(due, Due::Idle(id));
        }
    }

    /// Closes a connection whose queued output made no progress for the
    /// stall timeout; otherwise checks again when it would be due.
    fn check_stall<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(stall) = self.config.stall_timeout else {
            return;
        };
        let now = self.shared.now();
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.flags.stall_armed = false;
        if !conn.has_output() {
            return; // drained: the next queued byte arms a new check
        }
        let mut due = conn.last_progress() + stall;
        if due <= now && conn.peer_took_bytes(now) {
            due = now + stall;
        }
        if due <= now {
            log::debug!("{id}: output stalled for {stall:?}, closing");
            self.close(id, CloseReason::SlowConsumer, handler);
        } else {
            conn.flags.stall_armed = true;
            self.shared.timers.push(due, Due::Stall(id));
        }
    }

    /// Gives up an outbound connection still connecting at its deadline.
    fn check_connect<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        if self.conns.get(id).is_some_and(|c| c.connecting.is_some()) {
            let reason = CloseReason::Io(std::io::ErrorKind::TimedOut);
            self.close(id, reason, handler);
        }
    }
}
