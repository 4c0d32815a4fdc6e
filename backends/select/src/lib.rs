//! The `select(2)` backend of evmux: [`SelectPoller`].
//!
//! # Cost and limits
//!
//! - **Per `wait`**: two `fd_set` copies (128 bytes each), then the kernel
//!   scans every fd number below the highest registered one, O(max fd), and
//!   the poller walks its registered fds, O(registered), stopping as soon
//!   as every ready bit is accounted for. Registration changes are O(1),
//!   except deregistering the highest fd, which walks down to the next one.
//! - **fd limit**: `FD_SETSIZE` (1024). `register` refuses an fd at or above
//!   it with `ErrorKind::InvalidInput`, whatever `RLIMIT_NOFILE` allows.
//! - **Triggers**: [`Trigger::Level`], and [`Trigger::Oneshot`] emulated by
//!   taking the fd out of the sets after its event. [`Trigger::Edge`] is
//!   refused with `ErrorKind::Unsupported`.
//!
//! # What select cannot say
//!
//! select has no error or hang-up bit. A socket error or a peer that closes
//! shows as readable (or writable) for the interest that was asked, and the
//! next read or write returns the EOF or the error: events from this backend
//! never carry `ERROR`, `HUP` or `READ_CLOSED`, except the `ERROR` below.
//! An fd registered with an empty interest is in neither set, so nothing at
//! all is reported for it, errors included.
//!
//! # A registered fd that is closed
//!
//! Closing an fd without deregistering it is the caller's bug. select then
//! fails with `EBADF` for the whole call; this backend finds the closed fds
//! (`fcntl(F_GETFD)` fails with `EBADF`), reports one
//! [`Readiness::ERROR`] event for each stale token, forgets them, and
//! returns `Ok`. The next `wait` runs normally. An fd in neither set (empty
//! interest, or a disarmed oneshot) is invisible to select, so it is only
//! found at the next `EBADF`; until then its number stays taken and
//! `register` of a new fd with that number gives `AlreadyExists`. Should the
//! number be reused before `wait` runs, select cannot tell, and the new
//! file's readiness is reported under the old token.
//!
//! # Examples
//!
//! ```
//! use std::io::Write;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//! use evmux_core::{Events, Interest, Poller, Token, Trigger};
//! use evmux_select::SelectPoller;
//!
//! let (a, mut b) = UnixStream::pair()?;
//! a.set_nonblocking(true)?;
//!
//! let mut poller = SelectPoller::new()?;
//! poller.register(&a, Token(7), Interest::READABLE, Trigger::Level)?;
//! b.write_all(b"ping")?;
//!
//! let mut events = Events::with_capacity(8);
//! poller.wait(&mut events, Some(Duration::from_secs(5)))?;
//! assert_eq!(events.len(), 1);
//! let ev = events.iter().next().unwrap();
//! assert!(ev.token() == Token(7) && ev.is_readable());
//! poller.deregister(&a)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr;
use std::time::Duration;

use evmux_core::{
    already_registered, beyond_capacity, check_token, check_trigger, cvt, interrupted_is_empty,
    not_registered, timeout_timeval, waker_exists, Event, Events, Interest, Poller, Readiness,
    Token, Trigger, Waker, WakerSource,
};

/// A poller built on `select(2)`; see the [crate docs](crate) for its costs
/// and limits.
#[derive(Debug)]
pub struct SelectPoller {
    /// Master sets: what the next `wait` asks about.
    read_set: libc::fd_set,
    write_set: libc::fd_set,
    /// Working sets: copies of the masters that `select` overwrites.
    ready_read: libc::fd_set,
    ready_write: libc::fd_set,
    /// Every registered fd, the waker's included, in no particular order.
    entries: Vec<Entry>,
    /// fd number to position in `entries`; FD_SETSIZE slots.
    index: Box<[Option<usize>]>,
    /// Highest fd in `index`, or -1 when empty.
    max_fd: RawFd,
    /// How many fds are in `write_set`; with none, select gets a null
    /// write set and skips copying and scanning one.
    writers: usize,
    waker: Option<WakerSource>,
}

/// One registered fd. The waker's entry has `token == Token::RESERVED`,
/// which `check_token` keeps callers from using.
#[derive(Debug, Clone, Copy)]
struct Entry {
    fd: Slot,
    token: Token,
    interest: Interest,
    trigger: Trigger,
    armed: bool,
}

/// An fd number known to be in `0..FD_SETSIZE`, so the FD_* macros may
/// touch it. Build it only with `Slot::new`, which checks the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot(RawFd);

impl Slot {
    fn new(fd: RawFd) -> Option<Slot> {
        let in_range = usize::try_from(fd).is_ok_and(|n| n < libc::FD_SETSIZE);
        in_range.then_some(Slot(fd))
    }

    fn checked(fd: RawFd) -> io::Result<Slot> {
        Slot::new(fd)
            .ok_or_else(|| beyond_capacity(fd, libc::FD_SETSIZE, SelectPoller::NAME, "FD_SETSIZE"))
    }

    fn index(self) -> usize {
        self.0 as usize
    }
}

impl SelectPoller {
    /// Position in `entries` of a caller's registered fd; never the waker's.
    fn find(&self, fd: RawFd) -> Option<usize> {
        let slot = Slot::new(fd)?;
        let i = self.index[slot.index()]?;
        (self.entries[i].token != Token::RESERVED).then_some(i)
    }

    fn insert(&mut self, entry: Entry) {
        self.index[entry.fd.index()] = Some(self.entries.len());
        self.entries.push(entry);
        self.max_fd = self.max_fd.max(entry.fd.0);
        self.arm(entry.fd, entry.interest);
    }

    /// Forgets `entries[i]`: out of the sets, swap-removed, `max_fd` fixed.
    fn remove(&mut self, i: usize) -> Entry {
        let gone = self.entries.swap_remove(i);
        self.index[gone.fd.index()] = None;
        if let Some(moved) = self.entries.get(i) {
            self.index[moved.fd.index()] = Some(i);
        }
        self.arm(gone.fd, Interest::empty());
        if gone.fd.0 == self.max_fd {
            self.max_fd = self.highest_below(gone.fd.0);
        }
        gone
    }

    /// The highest registered fd below `fd`, or -1.
    fn highest_below(&self, fd: RawFd) -> RawFd {
        (0..fd)
            .rev()
            .find(|&n| self.index[n as usize].is_some())
            .unwrap_or(-1)
    }

    /// Puts `fd` in exactly the master sets `interest` asks for.
    fn arm(&mut self, fd: Slot, interest: Interest) {
        set_bit(&mut self.read_set, fd, interest.is_readable());
        let was_writer = is_set(&self.write_set, fd);
        set_bit(&mut self.write_set, fd, interest.is_writable());
        match (was_writer, interest.is_writable()) {
            (false, true) => self.writers += 1,
            (true, false) => self.writers -= 1,
            _ => {}
        }
    }

    /// The token events for `entry` carry: the waker's own for its entry.
    fn event_token(&self, entry: &Entry) -> Token {
        match &self.waker {
            Some(source) if entry.token == Token::RESERVED => source.token(),
            _ => entry.token,
        }
    }

    /// Reports the entries select marked ready, `ready` bits in all.
    fn collect(&mut self, events: &mut Events, mut ready: usize) {
        for i in 0..self.entries.len() {
            if ready == 0 {
                break;
            }
            let entry = self.entries[i];
            if !entry.armed {
                continue;
            }
            let readiness = sets_to_readiness(&self.ready_read, &self.ready_write, entry.fd);
            if !readiness.is_empty() {
                ready = ready.saturating_sub(readiness.bits().count_ones() as usize);
                self.report(events, i, readiness);
            }
        }
    }

    fn report(&mut self, events: &mut Events, i: usize, readiness: Readiness) {
        let entry = self.entries[i];
        if entry.token == Token::RESERVED {
            if let Some(source) = &self.waker {
                source.drain();
            }
        }
        events.push(Event::new(self.event_token(&entry), readiness));
        if entry.trigger == Trigger::Oneshot {
            self.arm(entry.fd, Interest::empty());
            self.entries[i].armed = false;
        }
    }

    /// After `EBADF` from select: one ERROR event per fd closed behind our
    /// back, and forget it, so the next `wait` does not fail again.
    fn reap_closed(&mut self, events: &mut Events) {
        let mut i = 0;
        while i < self.entries.len() {
            let entry = self.entries[i];
            if is_closed(entry.fd) {
                events.push(Event::new(self.event_token(&entry), Readiness::ERROR));
                self.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn select(&mut self, timeout: Option<Duration>) -> io::Result<libc::c_int> {
        self.ready_read = self.read_set;
        // With no writers the master is all zero, so the working copy reads
        // as "nothing writable" without select touching it.
        self.ready_write = self.write_set;
        let write_ptr = match self.writers {
            0 => ptr::null_mut(),
            _ => &mut self.ready_write as *mut libc::fd_set,
        };
        let mut tv = timeout_timeval(timeout);
        let tv_ptr = tv
            .as_mut()
            .map_or(ptr::null_mut(), |t| t as *mut libc::timeval);
        // SAFETY: the working sets are owned by `self` and live through the
        // call (`write_ptr` is null or points at one); `max_fd + 1 <=
        // FD_SETSIZE` because every fd in them passed `Slot::checked`;
        // `tv_ptr` is null or points at `tv`, alive here.
        cvt(unsafe {
            libc::select(
                self.max_fd + 1,
                &mut self.ready_read,
                write_ptr,
                ptr::null_mut(),
                tv_ptr,
            )
        })
    }
}

impl Poller for SelectPoller {
    const NAME: &'static str = "select";

    fn new() -> io::Result<SelectPoller> {
        Ok(SelectPoller {
            read_set: empty_set(),
            write_set: empty_set(),
            ready_read: empty_set(),
            ready_write: empty_set(),
            entries: Vec::new(),
            index: vec![None; libc::FD_SETSIZE].into_boxed_slice(),
            max_fd: -1,
            writers: 0,
            waker: None,
        })
    }

    fn supports_trigger(trigger: Trigger) -> bool {
        matches!(trigger, Trigger::Level | Trigger::Oneshot)
    }

    fn fd_capacity() -> Option<usize> {
        Some(libc::FD_SETSIZE)
    }

    /// select's `timeval` counts microseconds.
    fn timeout_resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn register<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        check_token(token)?;
        check_trigger::<SelectPoller>(trigger)?;
        let raw = fd.as_fd().as_raw_fd();
        let slot = Slot::checked(raw)?;
        if self.index[slot.index()].is_some() {
            return Err(already_registered(raw));
        }
        self.insert(Entry {
            fd: slot,
            token,
            interest,
            trigger,
            armed: true,
        });
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
        check_trigger::<SelectPoller>(trigger)?;
        let raw = fd.as_fd().as_raw_fd();
        let i = self.find(raw).ok_or_else(|| not_registered(raw))?;
        let entry = &mut self.entries[i];
        *entry = Entry {
            token,
            interest,
            trigger,
            armed: true,
            ..*entry
        };
        let slot = entry.fd;
        self.arm(slot, interest);
        Ok(())
    }

    fn deregister<F: AsFd + ?Sized>(&mut self, fd: &F) -> io::Result<()> {
        let raw = fd.as_fd().as_raw_fd();
        let i = self.find(raw).ok_or_else(|| not_registered(raw))?;
        self.remove(i);
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let ready = match self.select(timeout) {
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
                self.reap_closed(events);
                return Ok(());
            }
            result => interrupted_is_empty(result)?,
        };
        self.collect(events, ready);
        Ok(())
    }

    fn waker(&mut self, token: Token) -> io::Result<Waker> {
        if self.waker.is_some() {
            return Err(waker_exists());
        }
        let (source, waker) = WakerSource::new(token)?;
        let raw = source.fd().as_raw_fd();
        let slot = Slot::checked(raw)?;
        if self.index[slot.index()].is_some() {
            // A stale entry: its fd was closed unregistered and the number
            // reused by the waker just now.
            return Err(already_registered(raw));
        }
        self.insert(Entry {
            fd: slot,
            token: Token::RESERVED,
            interest: Interest::READABLE,
            trigger: Trigger::Level,
            armed: true,
        });
        self.waker = Some(source);
        Ok(waker)
    }
}

/// What the working sets say about `fd`.
fn sets_to_readiness(read: &libc::fd_set, write: &libc::fd_set, fd: Slot) -> Readiness {
    let mut readiness = Readiness::empty();
    readiness.set(Readiness::READABLE, is_set(read, fd));
    readiness.set(Readiness::WRITABLE, is_set(write, fd));
    readiness
}

fn empty_set() -> libc::fd_set {
    let mut set = MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO writes the whole set through a valid, aligned pointer,
    // after which every bit is initialised.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

/// Sets or clears `fd`'s bit in `set`.
fn set_bit(set: &mut libc::fd_set, fd: Slot, on: bool) {
    if on {
        // SAFETY: a `Slot` is in 0..FD_SETSIZE, so the bit is inside `set`.
        unsafe { libc::FD_SET(fd.0, set) };
    } else {
        // SAFETY: as above.
        unsafe { libc::FD_CLR(fd.0, set) };
    }
}

fn is_set(set: &libc::fd_set, fd: Slot) -> bool {
    // SAFETY: a `Slot` is in 0..FD_SETSIZE, so the bit is inside `set`.
    unsafe { libc::FD_ISSET(fd.0, set) }
}

/// True if `fd` is not an open descriptor (`fcntl(F_GETFD)` gives EBADF).
fn is_closed(fd: Slot) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags and takes no pointer;
    // on a closed fd number it fails with EBADF and touches nothing.
    let ret = cvt(unsafe { libc::fcntl(fd.0, libc::F_GETFD) });
    matches!(ret, Err(e) if e.raw_os_error() == Some(libc::EBADF))
}

#[cfg(test)]
mod tests;
