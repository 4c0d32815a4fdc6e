//! The policy every backend shares: the syscall wrapper, `set_nonblocking`,
//! timeout conversion, EINTR during `wait`, and error constructors.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use crate::{Token, Trigger};

/// A return value whose `-1` means "look at `errno`".
pub trait IsMinusOne: Copy {
    /// True for the failure value.
    fn is_minus_one(self) -> bool;
}

macro_rules! impl_is_minus_one {
    ($($t:ty),*) => {$(
        impl IsMinusOne for $t {
            fn is_minus_one(self) -> bool {
                self == -1
            }
        }
    )*};
}

impl_is_minus_one!(i32, i64, isize);

/// Turns a libc return of `-1` into `io::Error::last_os_error()`.
///
/// # Errors
///
/// Whatever `errno` holds when `ret` is `-1`.
///
/// # Examples
///
/// ```
/// use evmux_core::cvt;
///
/// // SAFETY: getpid has no preconditions.
/// let pid = cvt(unsafe { libc::getpid() }).unwrap();
/// assert!(pid > 0);
/// // SAFETY: closing an fd number that is not open is harmless; it fails with EBADF.
/// let err = cvt(unsafe { libc::close(-1) }).unwrap_err();
/// assert_eq!(err.raw_os_error(), Some(libc::EBADF));
/// ```
pub fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Puts `fd` in non-blocking mode, leaving its other status flags alone
/// (`fcntl(F_GETFL)` then `fcntl(F_SETFL, flags | O_NONBLOCK)`).
///
/// # Errors
///
/// The error of either `fcntl` call.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
///
/// let (a, _b) = UnixStream::pair()?;
/// evmux_core::set_nonblocking(a.as_fd())?;
/// let err = std::io::Read::read(&mut &a, &mut [0u8; 1]).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: `raw` comes from a live `BorrowedFd`; F_GETFL takes no pointer.
    let flags = cvt(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above; F_SETFL takes an int argument.
    cvt(unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// The longest single wait in milliseconds (`i32::MAX`, about 24.8 days).
/// A longer timeout is clamped to it; `wait` then returns with no events
/// and the caller's loop waits again.
pub const MAX_WAIT_MS: i32 = i32::MAX;

/// [`MAX_WAIT_MS`] as a `Duration`: the longest single wait on every
/// backend, whatever unit its kernel interface takes.
pub const MAX_WAIT: Duration = Duration::from_millis(MAX_WAIT_MS as u64);

/// Clamps a `wait` timeout to [`MAX_WAIT`]; `None` (block) stays `None`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use evmux_core::{clamp_timeout, MAX_WAIT};
///
/// assert_eq!(clamp_timeout(None), None);
/// assert_eq!(clamp_timeout(Some(Duration::from_nanos(1))), Some(Duration::from_nanos(1)));
/// assert_eq!(clamp_timeout(Some(Duration::MAX)), Some(MAX_WAIT));
/// ```
pub fn clamp_timeout(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|d| d.min(MAX_WAIT))
}

/// Converts a `wait` timeout to the milliseconds `poll(2)` and
/// `epoll_wait(2)` take, for the kernels where nothing finer exists.
///
/// `None` is `-1` (block); `Duration::ZERO` is `0` (return at once); any
/// other duration rounds *up* to the next millisecond, so a 100µs timer
/// never turns into a busy loop of zero waits; anything past
/// [`MAX_WAIT_MS`] (up to `Duration::MAX`) is clamped, never wrapped.
/// Backends use the finer [`timeout_timespec`] or [`timeout_timeval`]
/// where their kernel interface takes one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use evmux_core::timeout_ms;
///
/// assert_eq!(timeout_ms(None), -1);
/// assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
/// assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
/// assert_eq!(timeout_ms(Some(Duration::from_micros(1500))), 2);
/// assert_eq!(timeout_ms(Some(Duration::MAX)), i32::MAX);
/// ```
pub fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(MAX_WAIT_MS as u128) as libc::c_int
        }
    }
}

/// Converts a `wait` timeout to the `timeval` select takes, to the
/// microsecond: a duration with a fraction of a microsecond rounds *up*
/// (so it is never early, and a non-zero timeout never becomes a zero
/// wait), and anything past [`MAX_WAIT`] is clamped. `None` means block (a
/// null pointer).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use evmux_core::timeout_timeval;
///
/// let tv = timeout_timeval(Some(Duration::from_nanos(1))).unwrap();
/// assert_eq!((tv.tv_sec, tv.tv_usec), (0, 1));
/// let tv = timeout_timeval(Some(Duration::from_micros(3100))).unwrap();
/// assert_eq!((tv.tv_sec, tv.tv_usec), (0, 3100));
/// assert!(timeout_timeval(None).is_none());
/// ```
pub fn timeout_timeval(timeout: Option<Duration>) -> Option<libc::timeval> {
    let d = clamp_timeout(timeout)?;
    let us = d.as_nanos().div_ceil(1_000);
    Some(libc::timeval {
        tv_sec: (us / 1_000_000) as libc::time_t,
        tv_usec: (us % 1_000_000) as libc::suseconds_t,
    })
}

/// Converts a `wait` timeout to a `timespec` (for `ppoll(2)`), to the
/// nanosecond, clamped to [`MAX_WAIT`]. `None` means block (a null
/// pointer); zero stays zero and a non-zero duration stays non-zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use evmux_core::timeout_timespec;
///
/// let ts = timeout_timespec(Some(Duration::from_micros(100))).unwrap();
/// assert_eq!((ts.tv_sec, ts.tv_nsec), (0, 100_000));
/// let ts = timeout_timespec(Some(Duration::MAX)).unwrap();
/// assert_eq!(ts.tv_sec as i64, i64::from(i32::MAX) / 1000);
/// ```
pub fn timeout_timespec(timeout: Option<Duration>) -> Option<libc::timespec> {
    let d = clamp_timeout(timeout)?;
    Some(libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    })
}

/// Applies the shared EINTR policy to the result of a waiting syscall: a
/// signal that interrupts `wait` is `Ok(0)` (no events), not an error the
/// caller must special-case.
///
/// # Errors
///
/// Any error other than `ErrorKind::Interrupted`, unchanged.
pub fn interrupted_is_empty(result: io::Result<libc::c_int>) -> io::Result<usize> {
    match result {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// `ErrorKind::Unsupported`: `backend` cannot deliver `trigger`.
pub fn unsupported_trigger(backend: &str, trigger: Trigger) -> io::Error {
    let mode = match trigger {
        Trigger::Level => "level-triggered",
        Trigger::Edge => "edge-triggered",
        Trigger::Oneshot => "oneshot",
    };
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{mode} mode is not supported by the {backend} backend; \
             use level-triggered mode, or the epoll or uring backend"
        ),
    )
}

/// Checks that backend `P` can deliver `trigger`, in the words every
/// backend uses.
///
/// # Errors
///
/// [`unsupported_trigger`] when `P::supports_trigger(trigger)` is false.
pub fn check_trigger<P: crate::Poller>(trigger: Trigger) -> io::Result<()> {
    if P::supports_trigger(trigger) {
        Ok(())
    } else {
        Err(unsupported_trigger(P::NAME, trigger))
    }
}

/// `ErrorKind::AlreadyExists`: `fd` is registered already.
pub fn already_registered(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("fd {fd} is already registered; use modify to change its interest"),
    )
}

/// `ErrorKind::NotFound`: `fd` is not registered.
pub fn not_registered(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("fd {fd} is not registered with this poller"),
    )
}

/// `ErrorKind::InvalidInput`: `fd` is past what the backend can hold.
pub fn beyond_capacity(fd: RawFd, limit: usize, backend: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("fd {fd} is beyond {what} ({limit}), the {backend} backend's limit"),
    )
}

/// Checks that `token` is not [`Token::RESERVED`], which backends use
/// internally (epoll stores it in `data.u64` for the waker).
///
/// # Errors
///
/// `ErrorKind::InvalidInput` for `Token::RESERVED`.
pub fn check_token(token: Token) -> io::Result<()> {
    if token == Token::RESERVED {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "token usize::MAX is reserved for the poller's own use; pick another",
        ));
    }
    Ok(())
}

/// `ErrorKind::AlreadyExists`: the poller already has a waker.
pub fn waker_exists() -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        "this poller already has a waker; clone the one it returned",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_and_clamp() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(999))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1001))), 2);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), i32::MAX);
        assert_eq!(timeout_ms(Some(Duration::MAX)), i32::MAX);
    }

    #[test]
    fn timeval_is_to_the_microsecond_rounded_up() {
        assert!(timeout_timeval(None).is_none());
        let tv = timeout_timeval(Some(Duration::ZERO)).unwrap();
        assert_eq!((tv.tv_sec, tv.tv_usec), (0, 0));
        // A tiny non-zero timeout stays non-zero.
        let tv = timeout_timeval(Some(Duration::from_nanos(1))).unwrap();
        assert_eq!((tv.tv_sec, tv.tv_usec), (0, 1));
        let tv = timeout_timeval(Some(Duration::from_nanos(100_001))).unwrap();
        assert_eq!((tv.tv_sec, tv.tv_usec), (0, 101));
        let tv = timeout_timeval(Some(Duration::from_millis(2500))).unwrap();
        assert_eq!((tv.tv_sec, tv.tv_usec), (2, 500_000));
        let tv = timeout_timeval(Some(Duration::from_micros(999_999_999))).unwrap();
        assert_eq!((tv.tv_sec, tv.tv_usec), (999, 999_999));
        let tv = timeout_timeval(Some(Duration::MAX)).unwrap();
        assert_eq!(tv.tv_sec, libc::time_t::from(i32::MAX / 1000));
        assert_eq!(tv.tv_usec, ((i32::MAX % 1000) * 1000) as libc::suseconds_t);
    }

    #[test]
    fn timespec_is_exact_and_clamped() {
        assert!(timeout_timespec(None).is_none());
        let ts = timeout_timespec(Some(Duration::ZERO)).unwrap();
        assert_eq!((ts.tv_sec, ts.tv_nsec), (0, 0));
        let ts = timeout_timespec(Some(Duration::from_nanos(1))).unwrap();
        assert_eq!((ts.tv_sec, ts.tv_nsec), (0, 1));
        let ts = timeout_timespec(Some(Duration::new(3, 100_000_000))).unwrap();
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 100_000_000));
        for huge in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_millis(1 << 32),
        ] {
            let ts = timeout_timespec(Some(huge)).unwrap();
            assert_eq!(ts.tv_sec, libc::time_t::from(i32::MAX / 1000));
            let nsec: libc::c_long = ts.tv_nsec;
            assert_eq!(nsec, (i32::MAX % 1000) as libc::c_long * 1_000_000);
        }
    }

    #[test]
    fn eintr_is_no_events() {
        let e = io::Error::from_raw_os_error(libc::EINTR);
        assert_eq!(interrupted_is_empty(Err(e)).unwrap(), 0);
        let e = io::Error::from_raw_os_error(libc::EBADF);
        assert!(interrupted_is_empty(Err(e)).is_err());
    }

    #[test]
    fn edge_error_names_backend() {
        let e = unsupported_trigger("select", Trigger::Edge);
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("select backend"), "{e}");
    }
}
