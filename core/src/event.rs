//! `Event` and `Events`: what `wait` reports.

use crate::Token;

bitflags::bitflags! {
    /// The readiness bits of one [`Event`].
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Readiness: u8 {
        /// A read would not block: data, EOF or a pending connection.
        const READABLE = 0b0000_0001;
        /// A write would not block.
        const WRITABLE = 0b0000_0010;
        /// The socket has a pending error (`EPOLLERR`, `POLLERR`, or the fd
        /// turned out to be closed while registered).
        const ERROR = 0b0000_0100;
        /// Both directions are closed (`EPOLLHUP`, `POLLHUP`).
        const HUP = 0b0000_1000;
        /// The peer shut down its write side: a read returns EOF once the
        /// queued data is consumed (`EPOLLRDHUP`, `POLLRDHUP`).
        const READ_CLOSED = 0b0001_0000;
    }
}

/// One readiness report: a token and what is ready.
///
/// Readiness is a hint, not a promise: an operation may still return
/// `WouldBlock` (another thread got there first, or the kernel reported
/// spuriously), and callers must handle that.
///
/// # Examples
///
/// ```
/// use evmux_core::{Event, Readiness, Token};
///
/// let ev = Event::new(Token(3), Readiness::READABLE | Readiness::READ_CLOSED);
/// assert_eq!(ev.token(), Token(3));
/// assert!(ev.is_readable() && ev.is_read_closed());
/// assert!(!ev.is_writable());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    token: Token,
    readiness: Readiness,
}

impl Event {
    /// Builds an event; backends call this.
    pub fn new(token: Token, readiness: Readiness) -> Event {
        Event { token, readiness }
    }

    /// The token the fd was registered with.
    pub fn token(&self) -> Token {
        self.token
    }

    /// All readiness bits at once.
    pub fn readiness(&self) -> Readiness {
        self.readiness
    }

    /// Is a read (or accept) ready?
    pub fn is_readable(&self) -> bool {
        self.readiness.contains(Readiness::READABLE)
    }

    /// Is a write ready?
    pub fn is_writable(&self) -> bool {
        self.readiness.contains(Readiness::WRITABLE)
    }

    /// Is an error pending on the fd? Reported even when only writable (or
    /// no) interest was asked for. Read it with `SO_ERROR` or by doing I/O.
    pub fn is_error(&self) -> bool {
        self.readiness.contains(Readiness::ERROR)
    }

    /// Are both directions closed (a hang-up)?
    pub fn is_hup(&self) -> bool {
        self.readiness.contains(Readiness::HUP)
    }

    /// Has the peer closed its write side (or is the fd hung up)? A read
    /// returns EOF once buffered data is consumed.
    pub fn is_read_closed(&self) -> bool {
        self.readiness
            .intersects(Readiness::READ_CLOSED | Readiness::HUP)
    }
}

/// A reusable list of [`Event`]s filled by [`wait`](crate::Poller::wait).
///
/// `wait` clears it and refills it; the vector keeps its allocation, so a
/// loop that reuses one `Events` allocates nothing in steady state.
///
/// # Examples
///
/// ```
/// use evmux_core::{Event, Events, Readiness, Token};
///
/// let mut events = Events::with_capacity(64);
/// events.push(Event::new(Token(1), Readiness::WRITABLE));
/// assert_eq!(events.len(), 1);
/// for ev in &events {
///     assert!(ev.is_writable());
/// }
/// events.clear();
/// assert!(events.is_empty());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Events {
    list: Vec<Event>,
}

impl Events {
    /// An empty list with room for `capacity` events before it reallocates.
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            list: Vec::with_capacity(capacity),
        }
    }

    /// How many events the last `wait` reported.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if the last `wait` reported nothing (timeout or interruption).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Room before the list reallocates.
    pub fn capacity(&self) -> usize {
        self.list.capacity()
    }

    /// Forgets every event, keeping the allocation.
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Appends an event; backends call this from `wait`.
    pub fn push(&mut self, event: Event) {
        self.list.push(event);
    }

    /// Iterates over the events in the order the backend reported them.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }

    /// The events as a slice.
    pub fn as_slice(&self) -> &[Event] {
        &self.list
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}
