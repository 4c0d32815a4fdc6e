//! Helpers shared by the integration tests: socket pairs, waiting for events
//! while tolerating spurious wake-ups, fd limits, and a few raw socket calls
//! std does not offer (non-blocking connect, `SO_LINGER`, `SO_ERROR`).
//!
//! Every helper is generic over [`Poller`], so any test file can `mod common;`.
#![allow(dead_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use evmux::{Event, Events, Poller, Token};

/// How long to wait for something that must happen (generous: the machine
/// is shared and noisy; a passing test never waits this long).
pub const LONG: Duration = Duration::from_secs(5);

/// How long to watch for something that must not happen.
pub const SHORT: Duration = Duration::from_millis(50);

/// A connected, non-blocking Unix stream pair.
#[track_caller]
pub fn unix_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("set_nonblocking");
    b.set_nonblocking(true).expect("set_nonblocking");
    (a, b)
}

/// A connected TCP pair over 127.0.0.1: `(client, server)`, both
/// non-blocking, Nagle off.
#[track_caller]
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let client = TcpStream::connect(listener.local_addr().expect("local_addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_nonblocking(true).expect("set_nonblocking");
        s.set_nodelay(true).expect("set_nodelay");
    }
    (client, server)
}

/// Can backend `P` run on this machine? `false` only when `P::new()` is
/// refused with `Unsupported` (io_uring blocked by the kernel, a sysctl or
/// a seccomp filter); the test is then reported skipped, with the reason,
/// on stderr. Any other failure of `new` panics.
#[track_caller]
pub fn backend_available<P: Poller>() -> bool {
    match P::new() {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            eprintln!("skipped: the {} backend cannot run here: {e}", P::NAME);
            false
        }
        Err(e) => panic!("{}: new: {e}", P::NAME),
    }
}

/// A fresh poller of type `P`.
#[track_caller]
pub fn new_poller<P: Poller>() -> P {
    match P::new() {
        Ok(p) => p,
        Err(e) => panic!("{}: new: {e}", P::NAME),
    }
}

/// An event list with room for the usual handful of events.
pub fn events() -> Events {
    Events::with_capacity(64)
}

/// The events of the last wait, copied out.
pub fn collected(events: &Events) -> Vec<Event> {
    events.iter().copied().collect()
}

/// Asserts the contract's "at most one event per token per wait".
#[track_caller]
pub fn assert_unique_tokens(events: &Events) {
    let list = events.as_slice();
    for (i, e) in list.iter().enumerate() {
        let again = list[i + 1..].iter().any(|o| o.token() == e.token());
        assert!(
            !again,
            "token {:?} reported twice in one wait: {list:?}",
            e.token()
        );
    }
}

/// One `wait` with `timeout`, which must succeed; returns its events.
#[track_caller]
pub fn wait_once<P: Poller>(poller: &mut P, events: &mut Events, timeout: Duration) -> Vec<Event> {
    if let Err(e) = poller.wait(events, Some(timeout)) {
        panic!("{}: wait({timeout:?}) failed: {e}", P::NAME);
    }
    assert_unique_tokens(events);
    collected(events)
}

/// Waits (repeatedly, up to `timeout`) until an event for `token` satisfies
/// `pred`, and returns it. Wake-ups with no events, events for other tokens
/// and events for `token` that do not satisfy `pred` yet are tolerated.
#[track_caller]
pub fn wait_for<P: Poller>(
    poller: &mut P,
    events: &mut Events,
    token: Token,
    pred: impl Fn(&Event) -> bool,
    timeout: Duration,
) -> Event {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        for e in wait_once(poller, events, left) {
            if e.token() == token && pred(&e) {
                return e;
            }
            seen.push(e);
        }
        if Instant::now() >= deadline {
            panic!(
                "{}: no matching event for {token:?} within {timeout:?}; saw {seen:?}",
                P::NAME
            );
        }
    }
}

/// A test on one event, as `expect_events` takes it.
pub type EventPred<'a> = &'a dyn Fn(&Event) -> bool;

/// Waits until every `(token, pred)` in `expected` has been matched by some
/// event, tolerating spurious and unrelated events; returns the matching
/// events in the order of `expected`.
#[track_caller]
pub fn expect_events<P: Poller>(
    poller: &mut P,
    events: &mut Events,
    expected: &[(Token, EventPred<'_>)],
    timeout: Duration,
) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut found: Vec<Option<Event>> = vec![None; expected.len()];
    let mut seen = Vec::new();
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        for e in wait_once(poller, events, left) {
            for (slot, (token, pred)) in found.iter_mut().zip(expected) {
                if slot.is_none() && e.token() == *token && pred(&e) {
                    *slot = Some(e);
                }
            }
            seen.push(e);
        }
        if found.iter().any(Option::is_none) && Instant::now() >= deadline {
            let missing: Vec<Token> = found
                .iter()
                .zip(expected)
                .filter(|(f, _)| f.is_none())
                .map(|(_, (t, _))| *t)
                .collect();
            panic!(
                "{}: no event for {missing:?} within {timeout:?}; saw {seen:?}",
                P::NAME
            );
        }
    }
    found.into_iter().flatten().collect()
}

/// Keeps waiting for `period` and asserts no event for `token` shows up.
#[track_caller]
pub fn assert_no_event<P: Poller>(
    poller: &mut P,
    events: &mut Events,
    token: Token,
    period: Duration,
) {
    let deadline = Instant::now() + period;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let got = wait_once(poller, events, left);
        if let Some(e) = got.iter().find(|e| e.token() == token) {
            panic!("{}: unexpected event {e:?} (all: {got:?})", P::NAME);
        }
    }
}

/// Keeps waiting for `period` and asserts no event at all shows up.
#[track_caller]
pub fn assert_no_events<P: Poller>(poller: &mut P, events: &mut Events, period: Duration) {
    let deadline = Instant::now() + period;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let got = wait_once(poller, events, left);
        assert!(got.is_empty(), "{}: unexpected events {got:?}", P::NAME);
    }
}

/// Asserts `result` is an error of `kind` whose message contains `needle`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(result: io::Result<T>, kind: io::ErrorKind, needle: &str) {
    match result {
        Ok(v) => panic!("expected {kind:?} error containing {needle:?}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "wrong kind for error {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = get_nofile()?;
    let hard = lim.rlim_max;
    if lim.rlim_cur < hard {
        // An infinite hard limit is not a valid soft limit everywhere (macOS
        // caps it at OPEN_MAX); 1M is more than any test needs.
        lim.rlim_cur = if hard == libc::RLIM_INFINITY {
            1 << 20
        } else {
            hard
        };
        // SAFETY: `lim` is a valid rlimit for the duration of the call.
        evmux::cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok(get_nofile()?.rlim_cur as u64)
}

fn get_nofile() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a writable rlimit for the duration of the call.
    evmux::cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok(lim)
}

/// Raises the fd limit and fails the test, naming what is needed, if it
/// cannot reach `needed` descriptors.
#[track_caller]
pub fn require_fd_limit(needed: u64) -> u64 {
    let have = raise_fd_limit().expect("getrlimit/setrlimit RLIMIT_NOFILE");
    assert!(
        have >= needed,
        "this test needs RLIMIT_NOFILE >= {needed} but the hard limit allows only {have}; \
         raise it (ulimit -Hn {needed} as root, or LimitNOFILE= / limits.conf)"
    );
    have
}

static FD_LOCK: Mutex<()> = Mutex::new(());

/// Held by tests that use many fds or pick specific high fd numbers, so two
/// of them never run at once in one process. A panic in another holder
/// (a failed test) does not poison it for the rest.
pub fn fd_lock() -> MutexGuard<'static, ()> {
    FD_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Duplicates `fd` to the lowest free number `>= min` (close-on-exec).
pub fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is open for the call; F_DUPFD_CLOEXEC takes an int.
    let new = evmux::cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: `new` was just returned by fcntl and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The address of a 127.0.0.1 port nobody listens on (bound, then freed).
pub fn closed_port() -> SocketAddrV4 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    match listener.local_addr().expect("local_addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => panic!("bound v4, got {a}"),
    }
}

/// Starts a non-blocking TCP connect to `addr`; the connect is in progress
/// (`EINPROGRESS`) or already failed when this returns.
pub fn nonblocking_connect(addr: SocketAddrV4) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let raw = evmux::cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) })?;
    // SAFETY: `raw` was just returned by socket and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    evmux::set_nonblocking(fd.as_fd())?;
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr = libc::in_addr {
        s_addr: u32::from(*addr.ip()).to_be(),
    };
    let len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sa` is a sockaddr_in of `len` bytes that outlives the call.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            len,
        )
    };
    match evmux::cvt(ret) {
        Ok(_) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

/// A non-blocking pipe: `(read end, write end)`.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two fds pipe writes.
    evmux::cvt(unsafe { libc::pipe(fds.as_mut_ptr()) }).expect("pipe");
    // SAFETY: both fds were just returned by pipe and are owned by no one else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    evmux::set_nonblocking(r.as_fd()).expect("set_nonblocking");
    evmux::set_nonblocking(w.as_fd()).expect("set_nonblocking");
    (r, w)
}

/// One `read(2)` from `fd`.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes during the call.
    let ret = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    evmux::cvt(ret).map(|n| n as usize)
}

/// One `write(2)` to `fd`.
pub fn write_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for `buf.len()` bytes during the call.
    let ret = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    evmux::cvt(ret).map(|n| n as usize)
}

/// Reads and clears the socket's pending error (`SO_ERROR`); 0 for none.
pub fn so_error(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are writable and sized for SO_ERROR's int.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    evmux::cvt(ret)?;
    Ok(err)
}

/// Sets `SO_LINGER` to {on, 0 s}: closing the socket then sends a RST.
pub fn set_linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: `linger` is a valid struct of `len` bytes that outlives the call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            len,
        )
    };
    evmux::cvt(ret).map(drop)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
// Elsewhere the Rust runtime already ignores SIGPIPE.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const NOSIGNAL: libc::c_int = 0;

/// `send` that reports a broken connection as `EPIPE` instead of raising
/// SIGPIPE.
pub fn send_nosignal(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for `buf.len()` bytes during the call.
    let ret = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), NOSIGNAL) };
    evmux::cvt(ret).map(|n| n as usize)
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs a handler that does nothing for `sig`, without `SA_RESTART`, so
/// a blocking syscall it interrupts fails with `EINTR`.
pub fn install_noop_handler(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: sigaction is plain old data; all zeroes is a valid value.
    let mut act: libc::sigaction = unsafe { mem::zeroed() };
    act.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    act.sa_flags = 0;
    // SAFETY: `act.sa_mask` is a valid sigset_t inside `act`.
    evmux::cvt(unsafe { libc::sigemptyset(&mut act.sa_mask) })?;
    // SAFETY: `act` is fully initialised and the handler is async-signal-safe
    // (it does nothing); a null old-action pointer is allowed.
    evmux::cvt(unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) })?;
    Ok(())
}

/// Interrupts the thread that started it with `SIGUSR1` (no-op handler, no
/// `SA_RESTART`) after a delay, then every 100ms, until stopped or dropped.
///
/// The signal test uses it to interrupt a wait; tests of blocking waits use
/// it as a watchdog, so a backend that would block forever makes the test
/// fail instead of hang.
pub struct Interrupter {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Interrupter {
    /// Starts signalling the calling thread once `after` has passed.
    pub fn start(after: Duration) -> Interrupter {
        install_noop_handler(libc::SIGUSR1).expect("sigaction SIGUSR1");
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = thread::spawn(move || {
            let start = Instant::now();
            let mut next = after;
            while !flag.load(Ordering::SeqCst) {
                if start.elapsed() >= next {
                    // SAFETY: `target` is alive: it joins this thread (in
                    // `stop` or `drop`) before it can exit.
                    let ret = unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
                    assert_eq!(ret, 0, "pthread_kill");
                    next += Duration::from_millis(100);
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        Interrupter {
            done,
            thread: Some(thread),
        }
    }

    /// Stops signalling and waits for the signalling thread to end.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let res = t.join();
            if !thread::panicking() {
                res.expect("interrupter thread panicked");
            }
        }
    }
}

impl Drop for Interrupter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Runs `f` and returns its result with how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Makes `child` run with each system call in `calls` failing with EPERM,
/// as a container's seccomp policy does (the filter is installed in the
/// forked child before exec, and survives the exec).
#[cfg(target_os = "linux")]
pub fn deny_syscalls(child: &mut std::process::Command, calls: &[libc::c_long]) {
    use std::os::unix::process::CommandExt;

    // A = seccomp_data.nr; for each call: if A == nr return EPERM; allow.
    let mut filter = vec![bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0)];
    let deny = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    for &nr in calls {
        filter.push(bpf(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            nr as u32,
        ));
        filter.push(bpf(libc::BPF_RET | libc::BPF_K, 0, 0, deny));
    }
    filter.push(bpf(
        libc::BPF_RET | libc::BPF_K,
        0,
        0,
        libc::SECCOMP_RET_ALLOW,
    ));
    // SAFETY: the hook runs in the forked child before exec and makes only
    // prctl calls (async-signal-safe syscalls) on memory moved into the
    // closure; the filter outlives the calls and survives the exec.
    unsafe {
        child.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            evmux::cvt(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            evmux::cvt(libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ))?;
            Ok(())
        });
    }
}

#[cfg(target_os = "linux")]
fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}
