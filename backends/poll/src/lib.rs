//! The `poll(2)` backend of evmux: [`PollPoller`].
//!
//! The poller keeps a `Vec<pollfd>` that goes straight to `poll(2)`, a
//! parallel vector of slots (token, interest, trigger, real fd) and an
//! fd-to-index map, so register, modify and deregister are O(1).
//!
//! - **Cost per `wait`:** O(registered fds). The kernel scans every entry,
//!   then the poller walks the array until it has seen every ready entry.
//!   Fine for hundreds of fds; prefer epoll for many mostly idle ones.
//! - **Timeouts:** to the nanosecond through `ppoll` on Linux, Android,
//!   FreeBSD and DragonFly; elsewhere `poll`'s milliseconds, rounded up.
//! - **Fd limit:** none of its own ([`fd_capacity`](Poller::fd_capacity) is
//!   `None`); only `RLIMIT_NOFILE` applies.
//! - **Triggers:** level, and oneshot emulated: after one report the entry's
//!   fd is set negative, which `poll` skips, until `modify` re-arms it.
//!   Edge is refused with `ErrorKind::Unsupported`.
//! - **Read-closed:** `POLLRDHUP` (Linux and Android only) is asked for only
//!   with readable interest, so a write-only registration of a half-closed
//!   socket does not fire forever.
//! - **A registered fd closed without deregistering** (the caller's bug):
//!   `poll` reports `POLLNVAL`; the poller reports one event with
//!   [`Readiness::ERROR`] for the stale token and drops the entry, so the
//!   loop neither spins nor hangs. Until that `wait`, registering a new fd
//!   with the same number fails with `AlreadyExists`.
//!
//! # Examples
//!
//! ```
//! use std::io::Write;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//! use evmux_core::{Events, Interest, Poller, Token, Trigger};
//! use evmux_poll::PollPoller;
//!
//! let (a, mut b) = UnixStream::pair()?;
//! a.set_nonblocking(true)?;
//!
//! let mut poller = PollPoller::new()?;
//! poller.register(&a, Token(7), Interest::READABLE, Trigger::Level)?;
//! b.write_all(b"ping")?;
//!
//! let mut events = Events::with_capacity(8);
//! poller.wait(&mut events, Some(Duration::from_secs(5)))?;
//! assert_eq!(events.len(), 1);
//! let ev = events.iter().next().unwrap();
//! assert_eq!(ev.token(), Token(7));
//! assert!(ev.is_readable() && !ev.is_writable());
//!
//! poller.deregister(&a)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr;
use std::time::Duration;

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly"
)))]
use evmux_core::timeout_ms;
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly"
))]
use evmux_core::timeout_timespec;
use evmux_core::{
    already_registered, check_token, check_trigger, cvt, interrupted_is_empty, not_registered,
    waker_exists, Event, Events, Interest, Poller, Readiness, Token, Trigger, Waker, WakerSource,
};

/// `POLLRDHUP` where the kernel has it; elsewhere nothing is asked or seen.
#[cfg(any(target_os = "linux", target_os = "android"))]
const POLLRDHUP: libc::c_short = libc::POLLRDHUP;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const POLLRDHUP: libc::c_short = 0;

/// Does this OS have `ppoll`, whose `timespec` timeout counts nanoseconds?
const HAS_PPOLL: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly"
));

/// "No entry" in the fd-to-index map.
const NONE: u32 = u32::MAX;

/// Where the waker's entry lives once there is one; registered fds follow.
const WAKER_POS: usize = 0;

/// What the poller knows about one entry, at the same index as its pollfd.
#[derive(Clone, Copy, Debug)]
struct Slot {
    token: Token,
    interest: Interest,
    trigger: Trigger,
    /// The real fd. The pollfd's copy is negative while a oneshot entry is
    /// disarmed, which is the one place the armed state is kept.
    fd: RawFd,
}

/// A [`Poller`] over `poll(2)`.
///
/// See the [crate docs](crate) for costs and behaviour.
pub struct PollPoller {
    /// Handed to `poll(2)` as is.
    fds: Vec<libc::pollfd>,
    /// Parallel to `fds`.
    slots: Vec<Slot>,
    /// Indexed by fd number: the entry's position in `fds`, or `NONE`.
    /// The waker's fd is not in it, so callers cannot reach that entry.
    index: Vec<u32>,
    /// The waker's read end, watched at `WAKER_POS` once created.
    waker: Option<WakerSource>,
    /// Scratch for `wait`: positions of closed fds, dropped after the walk.
    closed: Vec<usize>,
}

impl fmt::Debug for PollPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollPoller")
            .field("entries", &self.fds.len())
            .field("waker", &self.waker)
            .finish()
    }
}

impl PollPoller {
    /// The entry position of `fd`, if it is registered.
    fn find(&self, fd: RawFd) -> Option<usize> {
        let key = usize::try_from(fd).ok()?;
        match self.index.get(key) {
            Some(&pos) if pos != NONE => Some(pos as usize),
            _ => None,
        }
    }

    /// Points `fd`'s map entry at `pos` (or at nothing, with `NONE`).
    fn set_index(&mut self, fd: RawFd, pos: u32) {
        // Registered fds were checked non-negative in `register`.
        let key = fd as usize;
        if key >= self.index.len() {
            self.index.resize(key + 1, NONE);
        }
        self.index[key] = pos;
    }

    /// Appends an entry; returns its position.
    fn push(&mut self, slot: Slot) -> usize {
        self.fds.push(libc::pollfd {
            fd: slot.fd,
            events: interest_to_poll(slot.interest),
            revents: 0,
        });
        self.slots.push(slot);
        self.slots.len() - 1
    }

    /// Swap-removes the entry at `pos` and repoints the entry that moved.
    fn remove(&mut self, pos: usize) {
        let gone = self.slots.swap_remove(pos);
        self.fds.swap_remove(pos);
        self.set_index(gone.fd, NONE);
        if let Some(moved) = self.slots.get(pos).copied() {
            // Entry counts are bounded by RLIMIT_NOFILE, far below u32::MAX.
            self.set_index(moved.fd, pos as u32);
        }
    }

    /// Reports the ready entries among the first `ready` with revents set.
    fn collect(&mut self, ready: usize, events: &mut Events) {
        let mut seen = 0;
        for pos in 0..self.fds.len() {
            if seen == ready {
                break;
            }
            let revents = self.fds[pos].revents;
            if revents == 0 {
                continue;
            }
            seen += 1;
            match &self.waker {
                Some(source) if pos == WAKER_POS => {
                    source.drain();
                    events.push(Event::new(source.token(), Readiness::READABLE));
                    continue;
                }
                _ => {}
            }
            let slot = self.slots[pos];
            if revents & libc::POLLNVAL != 0 {
                // Closed while registered: say so once, drop it after the walk.
                events.push(Event::new(slot.token, Readiness::ERROR));
                self.closed.push(pos);
                continue;
            }
            let readiness = poll_to_readiness(revents, slot.interest);
            if readiness.is_empty() {
                continue;
            }
            events.push(Event::new(slot.token, readiness));
            if slot.trigger == Trigger::Oneshot {
                // poll skips negative fds, so not even POLLHUP comes back.
                self.fds[pos].fd = -1;
            }
        }
    }

    /// One `ppoll` (to the nanosecond) over every entry.
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "dragonfly"
    ))]
    fn poll(&mut self, timeout: Option<Duration>) -> io::Result<libc::c_int> {
        let len = self.fds.len() as libc::nfds_t;
        let ts = timeout_timespec(timeout);
        let ts_ptr = ts
            .as_ref()
            .map_or(ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `self.fds` holds `len` initialised pollfds and is neither
        // moved nor resized during the call; ppoll writes only their revents
        // (with `len` 0 it reads nothing through the pointer); `ts_ptr` is
        // null or points at `ts`, alive here; a null sigmask keeps ours.
        cvt(unsafe { libc::ppoll(self.fds.as_mut_ptr(), len, ts_ptr, ptr::null()) })
    }

    /// One `poll` (to the millisecond, rounded up) over every entry.
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "dragonfly"
    )))]
    fn poll(&mut self, timeout: Option<Duration>) -> io::Result<libc::c_int> {
        let len = self.fds.len() as libc::nfds_t;
        // SAFETY: `self.fds` holds `len` initialised pollfds and is neither
        // moved nor resized during the call; poll writes only their revents
        // (with `len` 0 it reads nothing through the pointer).
        cvt(unsafe { libc::poll(self.fds.as_mut_ptr(), len, timeout_ms(timeout)) })
    }

    /// Drops the entries `collect` found closed, highest position first so
    /// that no swap-remove moves another closed entry.
    fn drop_closed(&mut self) {
        while let Some(pos) = self.closed.pop() {
            self.remove(pos);
        }
    }
}

impl Poller for PollPoller {
    const NAME: &'static str = "poll";

    fn new() -> io::Result<Self> {
        Ok(PollPoller {
            fds: Vec::new(),
            slots: Vec::new(),
            index: Vec::new(),
            waker: None,
            closed: Vec::new(),
        })
    }

    fn supports_trigger(trigger: Trigger) -> bool {
        matches!(trigger, Trigger::Level | Trigger::Oneshot)
    }

    fn fd_capacity() -> Option<usize> {
        None
    }

    /// A nanosecond where `ppoll` exists, else poll's millisecond.
    fn timeout_resolution(&self) -> Duration {
        if HAS_PPOLL {
            Duration::from_nanos(1)
        } else {
            Duration::from_millis(1)
        }
    }

    fn register<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        check_token(token)?;
        check_trigger::<PollPoller>(trigger)?;
        let fd = fd.as_fd().as_raw_fd();
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("poll register: fd {fd} is negative"),
            ));
        }
        if self.find(fd).is_some() {
            return Err(already_registered(fd));
        }
        let pos = self.push(Slot {
            token,
            interest,
            trigger,
            fd,
        });
        self.set_index(fd, pos as u32);
        Ok(())
    }

    fn modify<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        check_token(token)?;
        check_trigger::<PollPoller>(trigger)?;
        let fd = fd.as_fd().as_raw_fd();
        let pos = self.find(fd).ok_or_else(|| not_registered(fd))?;
        self.slots[pos] = Slot {
            token,
            interest,
            trigger,
            fd,
        };
        // Re-arms a disarmed oneshot entry as well.
        self.fds[pos] = libc::pollfd {
            fd,
            events: interest_to_poll(interest),
            revents: 0,
        };
        Ok(())
    }

    fn deregister<F: AsFd + ?Sized>(&mut self, fd: &F) -> io::Result<()> {
        let fd = fd.as_fd().as_raw_fd();
        let pos = self.find(fd).ok_or_else(|| not_registered(fd))?;
        self.remove(pos);
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let ready = interrupted_is_empty(self.poll(timeout))?;
        if ready > 0 {
            self.collect(ready, events);
            self.drop_closed();
        }
        Ok(())
    }

    fn waker(&mut self, token: Token) -> io::Result<Waker> {
        if self.waker.is_some() {
            return Err(waker_exists());
        }
        let (source, waker) = WakerSource::new(token)?;
        let fd = source.fd().as_raw_fd();
        // A stale entry with this number belongs to an fd the caller closed
        // without deregistering; it must not report the waker's wakes.
        if let Some(stale) = self.find(fd) {
            self.remove(stale);
        }
        let last = self.push(Slot {
            token,
            interest: Interest::READABLE,
            trigger: Trigger::Level,
            fd,
        });
        // Move the waker to WAKER_POS; whatever was there goes to the end.
        self.fds.swap(WAKER_POS, last);
        self.slots.swap(WAKER_POS, last);
        if last != WAKER_POS {
            self.set_index(self.slots[last].fd, last as u32);
        }
        self.waker = Some(source);
        Ok(waker)
    }
}

/// Refuses what poll cannot deliver (edge triggering).
/// The `events` mask for `interest`; empty interest asks for nothing, and
/// poll still reports errors and hang-ups.
fn interest_to_poll(interest: Interest) -> libc::c_short {
    let mut events = 0;
    if interest.is_readable() {
        events |= libc::POLLIN | POLLRDHUP;
    }
    if interest.is_writable() {
        events |= libc::POLLOUT;
    }
    events
}

/// Translates `revents`; READABLE and WRITABLE only where asked for, and
/// READABLE along with a hang-up so the caller's read sees EOF.
fn poll_to_readiness(revents: libc::c_short, interest: Interest) -> Readiness {
    let mut readiness = Readiness::empty();
    if revents & libc::POLLIN != 0 {
        readiness |= Readiness::READABLE;
    }
    if revents & libc::POLLOUT != 0 {
        readiness |= Readiness::WRITABLE;
    }
    if revents & libc::POLLERR != 0 {
        readiness |= Readiness::ERROR;
    }
    if revents & libc::POLLHUP != 0 {
        readiness |= Readiness::HUP | Readiness::READABLE;
    }
    if revents & POLLRDHUP != 0 {
        readiness |= Readiness::READ_CLOSED | Readiness::READABLE;
    }
    if !interest.is_readable() {
        readiness.remove(Readiness::READABLE);
    }
    if !interest.is_writable() {
        readiness.remove(Readiness::WRITABLE);
    }
    readiness
}

#[cfg(test)]
mod tests;
