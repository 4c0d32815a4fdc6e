//! `Waker`: wakes a `wait` blocked in another thread.
//!
//! Linux and Android use one `eventfd`; other Unixes a non-blocking pipe.
//! Wakes coalesce: the counter (or pipe) just stays readable until the
//! backend drains it inside `wait`, so a hundred wakes give one event.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use crate::{cvt, Token};

/// Wakes the poller it came from; cheap to clone, `Send` and `Sync`.
///
/// Get one from [`Poller::waker`](crate::Poller::waker). Each wake makes the
/// next (or current) `wait` report a readable event with the waker's token;
/// several wakes before that `wait` return give a single event.
#[derive(Clone, Debug)]
pub struct Waker {
    inner: Arc<WakeFd>,
}

impl Waker {
    /// Wakes the poller.
    ///
    /// # Errors
    ///
    /// The error of the underlying `write`, other than "already pending"
    /// (a full pipe or eventfd counter), which is success.
    pub fn wake(&self) -> io::Result<()> {
        self.inner.wake()
    }
}

/// The poller's end of a [`Waker`]: its fd to watch and its token.
///
/// Backends keep one of these, watch [`fd`](WakerSource::fd) for readable
/// at level trigger, and when it is ready call [`drain`](WakerSource::drain)
/// and report `Event::new(source.token(), Readiness::READABLE)`.
#[derive(Debug)]
pub struct WakerSource {
    inner: Arc<WakeFd>,
    token: Token,
}

impl WakerSource {
    /// Creates the fd pair and the first `Waker` handle for it.
    ///
    /// # Errors
    ///
    /// The error of `eventfd` or `pipe`, for example `EMFILE`.
    pub fn new(token: Token) -> io::Result<(WakerSource, Waker)> {
        let inner = Arc::new(WakeFd::new()?);
        let waker = Waker {
            inner: Arc::clone(&inner),
        };
        Ok((WakerSource { inner, token }, waker))
    }

    /// The fd that turns readable after a wake.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.read.as_fd()
    }

    /// The token events for this waker carry.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Consumes every pending wake so the fd stops being readable.
    pub fn drain(&self) {
        self.inner.drain();
    }
}

#[derive(Debug)]
struct WakeFd {
    read: OwnedFd,
    /// `None` for an eventfd, which is read and written through one fd.
    write: Option<OwnedFd>,
}

impl WakeFd {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn new() -> io::Result<WakeFd> {
        // SAFETY: eventfd takes no pointers; the flags are valid constants.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just returned by eventfd and is owned by no one else.
        let read = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(WakeFd { read, write: None })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn new() -> io::Result<WakeFd> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two fds pipe writes.
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        // SAFETY: both fds were just returned by pipe and are owned by no one else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            crate::set_nonblocking(fd.as_fd())?;
            // SAFETY: `fd` is open and owned here; FD_CLOEXEC is a valid flag.
            cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
        }
        Ok(WakeFd {
            read,
            write: Some(write),
        })
    }

    fn wake(&self) -> io::Result<()> {
        let fd = self.write.as_ref().unwrap_or(&self.read).as_raw_fd();
        let one: u64 = 1;
        // An eventfd takes exactly 8 bytes; a pipe takes any, so send the same.
        // SAFETY: `fd` is open for the life of `self`; `one` is 8 readable bytes.
        let ret = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        match cvt(ret) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.wake(),
            Err(e) => Err(e),
        }
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: the read fd is open for the life of `self`; `buf` has
            // room for the 64 bytes asked for (an eventfd read writes 8).
            let ret = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), 64) };
            match cvt(ret) {
                Ok(n) if n > 0 && self.write.is_some() => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // One eventfd read resets the counter; WouldBlock means empty.
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & libc::POLLIN != 0
    }

    #[test]
    fn wakes_coalesce_and_drain_clears() {
        let (source, waker) = WakerSource::new(Token(9)).unwrap();
        assert!(!readable(source.fd()));
        let clone = waker.clone();
        for _ in 0..100 {
            waker.wake().unwrap();
            clone.wake().unwrap();
        }
        assert!(readable(source.fd()));
        source.drain();
        assert!(!readable(source.fd()));
        assert_eq!(source.token(), Token(9));
    }
}
