//! The epoll backend of evmux: `EpollPoller`, Linux and Android only.
//!
//! The kernel keeps the interest list, so `register`, `modify` and
//! `deregister` are one `epoll_ctl` each and `wait` is one `epoll_wait`
//! whose cost is O(ready fds), not O(registered fds). There is no fd limit
//! beyond the process's own. It is the only backend with
//! [edge triggering](evmux_core::Trigger::Edge) (`EPOLLET`); `Level` and
//! `Oneshot` (`EPOLLONESHOT`, re-armed by `modify`) work too.
//!
//! Timeouts count nanoseconds through `epoll_pwait2` (Linux 5.11+, called
//! through `syscall(2)`); where the kernel lacks it (`ENOSYS`, or `EPERM`
//! from a seccomp filter older than the call) the first poller finds out,
//! and every wait after that uses `epoll_wait` with the timeout rounded up
//! to the next millisecond.
//!
//! The poller keeps no per-fd state: the token travels in the kernel's
//! `epoll_event.data`, and the only memory it owns is the event buffer,
//! reused by every `wait` and doubled (up to 65536 entries) after a wait
//! that filled it. One consequence: a hung-up socket with readable interest
//! reports READABLE with HUP (the kernel sends EPOLLIN too), but a pipe
//! whose writer closed reports HUP alone; check
//! [`is_read_closed`](evmux_core::Event::is_read_closed), which covers both.
//!
//! # Closing a registered fd
//!
//! Deregister before closing. If an fd is closed while registered, epoll
//! drops the registration by itself once the *last* descriptor for that
//! open file is closed: nothing is reported, no event comes afterwards,
//! and a new fd that reuses the number registers normally. But if another
//! descriptor still refers to the same open file (a `dup`, a `fork`ed
//! child, an fd passed over a socket), the registration survives the close:
//! events keep arriving with the old token, and `deregister` can no longer
//! name it. That is why deregister-before-close is the caller's duty.
//!
//! # Examples
//!
//! ```
//! # #[cfg(any(target_os = "linux", target_os = "android"))]
//! # fn main() -> std::io::Result<()> {
//! use std::io::Write;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//! use evmux_core::{Events, Interest, Poller, Token, Trigger};
//! use evmux_epoll::EpollPoller;
//!
//! let (mut ours, theirs) = UnixStream::pair()?;
//! theirs.set_nonblocking(true)?;
//!
//! let mut poller = EpollPoller::new()?;
//! poller.register(&theirs, Token(7), Interest::READABLE, Trigger::Level)?;
//! ours.write_all(b"ping")?;
//!
//! let mut events = Events::with_capacity(64);
//! poller.wait(&mut events, Some(Duration::from_secs(5)))?;
//! assert!(events.iter().any(|e| e.token() == Token(7) && e.is_readable()));
//!
//! poller.deregister(&theirs)?;
//! # Ok(())
//! # }
//! # #[cfg(not(any(target_os = "linux", target_os = "android")))]
//! # fn main() {}
//! ```
#![cfg(any(target_os = "linux", target_os = "android"))]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use evmux_core::{
    already_registered, check_token, clamp_timeout, cvt, interrupted_is_empty, not_registered,
    timeout_ms, unsupported_trigger, waker_exists, Event, Events, Interest, Poller, Readiness,
    Token, Trigger, Waker, WakerSource,
};

/// Entries in the event buffer of a new poller.
const INITIAL_EVENTS: usize = 256;
/// The buffer stops doubling here.
const MAX_EVENTS: usize = 65536;
/// `data.u64` of the waker's registration; `check_token` keeps users off it.
const WAKER_DATA: u64 = Token::RESERVED.0 as u64;

/// A [`Poller`] over Linux `epoll`.
///
/// See the [crate docs](crate) for its costs and for what happens to an fd
/// closed while registered.
pub struct EpollPoller {
    epfd: OwnedFd,
    /// Kept at full length; the kernel writes the first `n` entries.
    buf: Vec<libc::epoll_event>,
    waker: Option<WakerSource>,
}

impl Poller for EpollPoller {
    const NAME: &'static str = "epoll";

    fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; EPOLL_CLOEXEC is a valid flag.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by epoll_create1 and nothing else owns it.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut poller = EpollPoller {
            epfd,
            buf: vec![empty_event(); INITIAL_EVENTS],
            waker: None,
        };
        if PWAIT2.load(Ordering::Relaxed) == UNKNOWN {
            // Nothing is registered yet, so this zero wait reports nothing;
            // it only finds out whether the kernel has epoll_pwait2.
            poller.epoll_wait(Some(Duration::ZERO))?;
        }
        Ok(poller)
    }

    fn supports_trigger(trigger: Trigger) -> bool {
        matches!(trigger, Trigger::Level | Trigger::Edge | Trigger::Oneshot)
    }

    fn fd_capacity() -> Option<usize> {
        None
    }

    /// A nanosecond with `epoll_pwait2`, a millisecond without it.
    fn timeout_resolution(&self) -> Duration {
        if PWAIT2.load(Ordering::Relaxed) == NO {
            Duration::from_millis(1)
        } else {
            Duration::from_nanos(1)
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
        let flags = interest_to_epoll(interest, trigger)?;
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_fd(), flags, token.0 as u64)
    }

    fn modify<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        check_token(token)?;
        let flags = interest_to_epoll(interest, trigger)?;
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_fd(), flags, token.0 as u64)
    }

    fn deregister<F: AsFd + ?Sized>(&mut self, fd: &F) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_fd(), 0, 0)
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        // The buffer never exceeds MAX_EVENTS entries, so this cannot truncate.
        let n = interrupted_is_empty(self.epoll_wait(timeout))?;
        for ev in &self.buf[..n] {
            translate(ev, self.waker.as_ref(), events);
        }
        if n == self.buf.len() {
            self.grow();
        }
        Ok(())
    }

    fn waker(&mut self, token: Token) -> io::Result<Waker> {
        if self.waker.is_some() {
            return Err(waker_exists());
        }
        let (source, waker) = WakerSource::new(token)?;
        let flags = libc::EPOLLIN as u32;
        self.ctl(libc::EPOLL_CTL_ADD, source.fd(), flags, WAKER_DATA)?;
        self.waker = Some(source);
        Ok(waker)
    }
}

impl std::fmt::Debug for EpollPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollPoller")
            .field("epfd", &self.epfd)
            .field("buffer_len", &self.buf.len())
            .field("waker", &self.waker)
            .finish()
    }
}

impl EpollPoller {
    /// One `epoll_ctl`, with EEXIST and ENOENT turned into the messages
    /// every backend gives, and EPERM (a regular file) explained.
    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, flags: u32, data: u64) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        // DEL ignores the event, but kernels before 2.6.9 wanted a valid pointer.
        let mut ev = libc::epoll_event {
            events: flags,
            u64: data,
        };
        // SAFETY: `self.epfd` is an open epoll fd owned by `self`; `raw` comes
        // from a live `BorrowedFd`; `ev` is a valid epoll_event for the call.
        let ret = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, raw, &mut ev) };
        match cvt(ret) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::EEXIST) => Err(already_registered(raw)),
                Some(libc::ENOENT) => Err(not_registered(raw)),
                Some(libc::EPERM) => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "epoll cannot watch fd {raw}, a regular file or directory (EPERM); \
                         use the poll or select backend, where such files always read ready"
                    ),
                )),
                _ => Err(e),
            },
        }
    }

    /// One wait into `self.buf`: `epoll_pwait2` (a `timespec`, to the
    /// nanosecond) unless the kernel lacks it, then `epoll_wait` with the
    /// timeout rounded up to milliseconds.
    fn epoll_wait(&mut self, timeout: Option<Duration>) -> io::Result<libc::c_int> {
        if PWAIT2.load(Ordering::Relaxed) != NO {
            match self.epoll_pwait2(timeout) {
                // ENOSYS: before Linux 5.11. EPERM: a seccomp filter that
                // predates the syscall. Either way, for good.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    PWAIT2.store(NO, Ordering::Relaxed);
                }
                result => {
                    if PWAIT2.load(Ordering::Relaxed) == UNKNOWN {
                        PWAIT2.store(YES, Ordering::Relaxed);
                    }
                    return result;
                }
            }
        }
        // The buffer never exceeds MAX_EVENTS entries, so this cannot truncate.
        let cap = self.buf.len() as libc::c_int;
        // SAFETY: `self.epfd` is an open epoll fd owned by `self`; `self.buf`
        // holds `cap` initialised entries and outlives the call, and the
        // kernel writes at most `cap` of them.
        cvt(unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.buf.as_mut_ptr(),
                cap,
                timeout_ms(timeout),
            )
        })
    }

    /// `epoll_pwait2` through `syscall(2)`: glibc only wraps it from 2.35.
    fn epoll_pwait2(&mut self, timeout: Option<Duration>) -> io::Result<libc::c_int> {
        let cap = self.buf.len() as libc::c_int;
        let ts = clamp_timeout(timeout).map(KernelTimespec::from);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const KernelTimespec);
        // SAFETY: as in `epoll_wait` for the fd and the buffer; `ts_ptr` is
        // null (block) or points at `ts`, a `struct __kernel_timespec`
        // alive here; a null sigmask (size 0) leaves ours alone.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.epfd.as_raw_fd(),
                self.buf.as_mut_ptr(),
                cap,
                ts_ptr,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        // At most `cap` events, so the count fits a c_int.
        cvt(ret).map(|n| n as libc::c_int)
    }

    /// Doubles the event buffer after a wait that filled it, up to
    /// `MAX_EVENTS`.
    fn grow(&mut self) {
        let len = grown_len(self.buf.len());
        self.buf.resize(len, empty_event());
    }
}

/// Whether the kernel has `epoll_pwait2`: found out by the first poller
/// and remembered for the process.
static PWAIT2: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// The kernel's `struct __kernel_timespec`: 64-bit fields on every target,
/// unlike `libc::timespec` on 32-bit ones.
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

impl From<Duration> for KernelTimespec {
    fn from(d: Duration) -> KernelTimespec {
        KernelTimespec {
            // Clamped to MAX_WAIT by the caller, so far below i64::MAX.
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        }
    }
}

/// The size of the event buffer after one that was `len` entries filled up.
fn grown_len(len: usize) -> usize {
    (len * 2).min(MAX_EVENTS)
}

fn empty_event() -> libc::epoll_event {
    libc::epoll_event { events: 0, u64: 0 }
}

/// Pushes the event for one kernel entry: the waker's (after draining it)
/// or a registered fd's.
fn translate(ev: &libc::epoll_event, waker: Option<&WakerSource>, events: &mut Events) {
    // Copy the fields out: `epoll_event` is packed on some targets.
    let (flags, data) = (ev.events, ev.u64);
    match waker {
        Some(source) if data == WAKER_DATA => {
            source.drain();
            events.push(Event::new(source.token(), Readiness::READABLE));
        }
        _ => events.push(Event::new(Token(data as usize), epoll_to_readiness(flags))),
    }
}

/// The `epoll_event.events` flags for an interest and trigger.
///
/// `EPOLLRDHUP` is asked for only with readable interest: a write-only,
/// level-triggered registration of a half-closed socket would otherwise
/// fire on every wait.
fn interest_to_epoll(interest: Interest, trigger: Trigger) -> io::Result<u32> {
    let mut flags = 0;
    if interest.is_readable() {
        flags |= libc::EPOLLIN | libc::EPOLLRDHUP;
    }
    if interest.is_writable() {
        flags |= libc::EPOLLOUT;
    }
    flags |= match trigger {
        Trigger::Level => 0,
        Trigger::Edge => libc::EPOLLET,
        Trigger::Oneshot => libc::EPOLLONESHOT,
        other => return Err(unsupported_trigger(EpollPoller::NAME, other)),
    };
    Ok(flags as u32)
}

/// The readiness for the flags `epoll_wait` returned.
///
/// The kernel masks EPOLLIN and EPOLLRDHUP by what was asked, so either one
/// means readable interest was set; EPOLLERR and EPOLLHUP come regardless.
/// A hung-up socket with readable interest comes with EPOLLIN (and
/// EPOLLRDHUP), so it reads as READABLE. A pipe whose writer closed sends
/// EPOLLHUP alone once it is empty: that is HUP without READABLE, since
/// nothing here can tell whether readable interest was asked.
fn epoll_to_readiness(flags: u32) -> Readiness {
    let has = |bit: libc::c_int| flags & bit as u32 != 0;
    let mut r = Readiness::empty();
    if has(libc::EPOLLIN) || has(libc::EPOLLRDHUP) {
        r |= Readiness::READABLE;
    }
    if has(libc::EPOLLOUT) {
        r |= Readiness::WRITABLE;
    }
    if has(libc::EPOLLERR) {
        r |= Readiness::ERROR;
    }
    if has(libc::EPOLLHUP) {
        r |= Readiness::HUP;
    }
    if has(libc::EPOLLRDHUP) {
        r |= Readiness::READ_CLOSED;
    }
    r
}

#[cfg(test)]
mod tests;
