//! What handlers asked through [`Control`](crate::Control), carried out
//! after the callback: sends and closes by id.

use super::{Connection, Reactor};
use crate::codec::Codec;
use crate::handler::Due;
use crate::handler::Handler;
use crate::ids::CloseReason;
use crate::Poller;

impl<P: Poller, C: Codec + Clone + 'static> Reactor<P, C> {
    /// Carries out the queued requests: opens of adopted connections,
    /// sends, then closes.
    pub(super) fn apply_requests<H: Handler>(&mut self, handler: &mut H) {
        let mut adopted = std::mem::take(&mut self.shared.adopted);
        for &id in &adopted {
            self.with_conn(id, handler, |c, io, h| c.open(io, h));
        }
        adopted.clear();
        if self.shared.adopted.is_empty() {
            self.shared.adopted = adopted; // keep the allocation
        }
        self.insert_connects();
        self.deliver_outbox(handler);
        for (id, request) in std::mem::take(&mut self.shared.by_id) {
            self.with_conn(id, handler, |c, io, h| c.by_id(request, io, h));
        }
        while let Some(id) = self.shared.to_close.pop() {
            if self.is_live(id) {
                self.close(id, CloseReason::ClosedByHandler, handler);
            }
        }
    }

    /// Puts the connections `Control::connect` started in the table, with
    /// their connect timeouts.
    fn insert_connects(&mut self) {
        for pending in std::mem::take(&mut self.shared.connects) {
            let codec = match pending.codec.map(|c| c.downcast::<C>()) {
                Some(Ok(codec)) => *codec,
                // `connect_with` checked the type already.
                Some(Err(_)) | None => self.codec.clone(),
            };
            let now = self.shared.now();
            let (id, to) = (pending.id, pending.to);
            log::debug!("{id}: connecting to {to}");
            let conn = Connection::connecting(pending.stream, id, codec, to, now);
            self.conns.insert(conn);
            self.shared.timers.push(pending.deadline, Due::Connect(id));
        }
    }

    /// Encodes each payload queued by `Control::send` with its
    /// connection's codec and writes it like a reply, including those sent
    /// by callbacks run from here (`on_drain`), so that every send comes
    /// before the requests by id made after it.
    fn deliver_outbox<H: Handler>(&mut self, handler: &mut H) {
        while !self.shared.outbox_ends.is_empty() {
            self.deliver_outbox_once(handler);
        }
    }

    fn deliver_outbox_once<H: Handler>(&mut self, handler: &mut H) {
        let bytes = std::mem::take(&mut self.shared.outbox);
        let ends = std::mem::take(&mut self.shared.outbox_ends);
        let mut start = 0;
        for &(id, end) in &ends {
            let payload = &bytes[start..end];
            start = end;
            self.shared.keys.delivered(id, payload.len());
            self.with_conn(id, handler, |c, io, h| c.push(payload, io, h));
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
}
