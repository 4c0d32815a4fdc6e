//! The `Poller` trait: the contract every backend implements.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::{Events, Interest, Token, Trigger, Waker};

/// A readiness multiplexer: select, poll, epoll or io_uring behind one interface.
///
/// # The contract
///
/// - **Readiness.** An fd is readable when data or EOF is pending (or, for a
///   listener, a connection), writable when its send buffer has room. One
///   event carries both when both hold.
/// - **Triggers.** [`Trigger::Level`] reports on every `wait` while the
///   condition holds; [`Trigger::Edge`] once per new arrival (epoll and
///   uring only; the others return `ErrorKind::Unsupported`, never a silent
///   downgrade); [`Trigger::Oneshot`] once, then nothing until
///   [`modify`](Poller::modify) re-arms the fd (select and poll emulate it).
/// - **Errors and hang-ups** are reported whatever the interest, where the
///   kernel tells: a peer that closes shows readable, so a read sees EOF,
///   plus [`is_read_closed`](crate::Event::is_read_closed) on poll and
///   epoll. select has no hang-up or error bit: it reports both as the
///   readiness that was asked for, and the next read or write returns the
///   EOF or the error. One exception on epoll: a pipe whose writer closed
///   and that holds no data reports a bare hang-up (`EPOLLHUP` without
///   `EPOLLIN`), so the event has `HUP` but not `READABLE`; sockets always
///   come with both. Callers that treat
///   [`is_read_closed`](crate::Event::is_read_closed) as "read now" see
///   the EOF on every backend.
/// - **Timeouts.** `None` blocks; `Some(Duration::ZERO)` returns at once; any
///   other timeout is honoured as precisely as the kernel interface allows
///   ([`timeout_resolution`](Poller::timeout_resolution): a nanosecond for
///   poll's `ppoll`, epoll's `epoll_pwait2` and io_uring, a microsecond for
///   select), rounded *up* to that resolution, so a wait never ends early
///   on its own and a non-zero timeout never becomes a zero wait. Longer
///   than [`MAX_WAIT`](crate::MAX_WAIT) (about 24.8 days) is clamped to it.
///   Where the precise call is missing (epoll before Linux 5.11, poll
///   outside Linux, Android and the BSDs that have `ppoll`), timeouts round
///   up to the next millisecond (see [`timeout_ms`](crate::timeout_ms)).
///   The kernel adds its timer slack (50µs by default) on top.
/// - **Signals.** A signal that interrupts `wait` makes it return `Ok(())`
///   with no events; callers just loop.
/// - **Spurious events.** `wait` may report an fd that is not ready after
///   all; I/O then returns `WouldBlock`, which callers must handle.
///
/// # Closing registered fds
///
/// Deregister an fd **before** closing it: that is the caller's duty. If it
/// is not done, epoll forgets the file by itself once the last descriptor
/// for it is closed; select sees `EBADF` and poll sees `POLLNVAL`, and both
/// report one error event for the stale token, then drop the entry. Until
/// then a new fd with the same number cannot be registered (`AlreadyExists`).
/// uring reports that one error event when the fd's poll request fails
/// with `EBADF`, or when the number is registered again while a request on
/// the old file is in flight (see the evmux-uring crate docs).
///
/// # Threads
///
/// A poller is used from one thread at a time (it is `Send`, so it can move
/// to the thread that runs the loop). Its [`Waker`] is `Send + Sync` and may
/// be used from any thread.
///
/// # Examples
///
/// With whatever backend is at hand (here `P`):
///
/// ```
/// use std::io::Write;
/// use std::net::{TcpListener, TcpStream};
/// use std::time::Duration;
/// use evmux_core::{Events, Interest, Poller, Token, Trigger};
///
/// fn echo_once<P: Poller>() -> std::io::Result<()> {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let mut client = TcpStream::connect(listener.local_addr()?)?;
///     let (server, _) = listener.accept()?;
///     server.set_nonblocking(true)?;
///
///     let mut poller = P::new()?;
///     poller.register(&server, Token(1), Interest::READABLE, Trigger::Level)?;
///     client.write_all(b"hi")?;
///
///     let mut events = Events::with_capacity(16);
///     poller.wait(&mut events, Some(Duration::from_secs(5)))?;
///     assert!(events.iter().any(|e| e.token() == Token(1) && e.is_readable()));
///     poller.deregister(&server)
/// }
/// # let _ = echo_once::<evmux_core::doc_support::NoPoller>;
/// ```
pub trait Poller: Sized + Send + 'static {
    /// The backend's name: `"select"`, `"poll"`, `"epoll"` or `"uring"`.
    const NAME: &'static str;

    /// Creates a poller.
    ///
    /// # Errors
    ///
    /// The error of the creating syscall (for example `EMFILE` from
    /// `epoll_create1`).
    fn new() -> io::Result<Self>;

    /// Can this backend deliver `trigger`? Ask before trying.
    fn supports_trigger(trigger: Trigger) -> bool;

    /// The highest fd number plus one that this backend can hold
    /// (`Some(FD_SETSIZE)` for select), or `None` when only the process's
    /// fd limit applies.
    fn fd_capacity() -> Option<usize>;

    /// Starts watching `fd` for `interest`, reported as `token`.
    ///
    /// The fd should be non-blocking ([`set_nonblocking`](crate::set_nonblocking)),
    /// and must stay open until it is deregistered.
    ///
    /// # Errors
    ///
    /// - `AlreadyExists` if `fd` is registered already.
    /// - `Unsupported` if the backend cannot deliver `trigger`.
    /// - `InvalidInput` if `fd` is past [`fd_capacity`](Poller::fd_capacity),
    ///   or `token` is [`Token::RESERVED`].
    /// - `PermissionDenied` on epoll for a regular file or directory, which
    ///   epoll cannot watch; select and poll take them and always report
    ///   them ready (the message says so).
    /// - Any error of the underlying syscall.
    fn register<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()>;

    /// Changes the token, interest or trigger of a registered fd; re-arms a
    /// [`Trigger::Oneshot`] fd.
    ///
    /// # Errors
    ///
    /// - `NotFound` if `fd` is not registered.
    /// - `Unsupported` if the backend cannot deliver `trigger`.
    /// - `InvalidInput` if `token` is [`Token::RESERVED`].
    /// - Any error of the underlying syscall.
    fn modify<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()>;

    /// Stops watching `fd`. No event for it is reported after this returns.
    ///
    /// # Errors
    ///
    /// - `NotFound` if `fd` is not registered.
    /// - Any error of the underlying syscall.
    fn deregister<F: AsFd + ?Sized>(&mut self, fd: &F) -> io::Result<()>;

    /// Waits for readiness, up to `timeout`, and puts what is ready into
    /// `events` (cleared first). Allocates nothing in steady state.
    ///
    /// Returns `Ok(())` with `events` empty on timeout or when a signal
    /// interrupted the wait.
    ///
    /// # Errors
    ///
    /// The error of the waiting syscall, other than `EINTR`.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()>;

    /// The unit `wait` rounds a timeout up to on this poller: a nanosecond
    /// where the kernel takes a `timespec`, a microsecond for select's
    /// `timeval`, a millisecond on the fallback paths. The default is the
    /// conservative millisecond.
    fn timeout_resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    /// Creates this poller's [`Waker`]: waking it makes `wait` report a
    /// readable event with `token`. Pick a token no registered fd uses.
    ///
    /// # Errors
    ///
    /// - `AlreadyExists` if this poller has a waker already (clone that one).
    /// - The error of creating or registering the eventfd or pipe.
    fn waker(&mut self, token: Token) -> io::Result<Waker>;

    /// This poller's backend name. The same as [`NAME`](Poller::NAME) for
    /// a concrete backend; a poller that picks its backend at run time
    /// (the facade's `AnyPoller`) names the one it picked.
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Can this poller deliver `trigger`? The same as
    /// [`supports_trigger`](Poller::supports_trigger) for a concrete
    /// backend; a run-time choice answers for the backend it picked.
    fn has_trigger(&self, trigger: Trigger) -> bool {
        Self::supports_trigger(trigger)
    }

    /// The fd limit of this poller: [`fd_capacity`](Poller::fd_capacity)
    /// for a concrete backend, that of the picked backend for a run-time
    /// choice.
    fn fd_limit(&self) -> Option<usize> {
        Self::fd_capacity()
    }
}
