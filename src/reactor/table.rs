//! The connection table: connections by slot key. Which slots are free,
//! and the serial numbers in ids, are kept by `handler::Keys`, so that a
//! handler can reserve an id while the table lends out a connection.

use super::Connection;
use crate::ids::ConnId;

pub(super) struct Table<C> {
    slots: Vec<Option<Connection<C>>>,
    len: usize,
}

impl<C> Table<C> {
    pub fn new() -> Table<C> {
        Table {
            slots: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: ConnId) -> Option<&Connection<C>> {
        let slot = self.slots.get(id.key as usize)?;
        slot.as_ref().filter(|c| c.id == id)
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Connection<C>> {
        let slot = self.slots.get_mut(id.key as usize)?;
        slot.as_mut().filter(|c| c.id == id)
    }

    /// Puts a connection in the slot its id names (reserved and empty).
    pub fn insert(&mut self, conn: Connection<C>) {
        let key = conn.id.key as usize;
        if key >= self.slots.len() {
            self.slots.resize_with(key + 1, || None);
        }
        debug_assert!(self.slots[key].is_none(), "slot {key} is taken");
        self.slots[key] = Some(conn);
        self.len += 1;
    }

    /// Takes connection `id` out, if it is there.
    pub fn remove(&mut self, id: ConnId) -> Option<Connection<C>> {
        let slot = self.slots.get_mut(id.key as usize)?;
        if !slot.as_ref().is_some_and(|c| c.id == id) {
            return None;
        }
        self.len -= 1;
        slot.take()
    }

    /// The ids of every connection.
    pub fn ids(&self) -> Vec<ConnId> {
        self.slots.iter().flatten().map(|c| c.id).collect()
    }
}
