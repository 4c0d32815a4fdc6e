//! Smoke tests of the select backend's bookkeeping, on real socket pairs.

use super::*;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Instant;

const SHORT: Option<Duration> = Some(Duration::from_millis(50));
const LONG: Option<Duration> = Some(Duration::from_secs(5));

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

fn wait(poller: &mut SelectPoller, timeout: Option<Duration>) -> Vec<Event> {
    let mut events = Events::with_capacity(16);
    poller.wait(&mut events, timeout).unwrap();
    events.as_slice().to_vec()
}

fn ev(token: usize, readiness: Readiness) -> Event {
    Event::new(Token(token), readiness)
}

#[test]
fn level_readable_reported_until_drained() {
    let (a, mut b) = pair();
    let mut p = SelectPoller::new().unwrap();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    assert_eq!(wait(&mut p, SHORT), vec![]);
    b.write_all(b"x").unwrap();
    assert_eq!(wait(&mut p, LONG), vec![ev(1, Readiness::READABLE)]);
    assert_eq!(wait(&mut p, LONG), vec![ev(1, Readiness::READABLE)]);
    (&a).read_exact(&mut [0u8; 1]).unwrap();
    assert_eq!(wait(&mut p, SHORT), vec![]);
}

#[test]
fn both_ready_gives_one_event() {
    let (a, mut b) = pair();
    let mut p = SelectPoller::new().unwrap();
    let both = Interest::READABLE | Interest::WRITABLE;
    p.register(&a, Token(2), both, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p, LONG), vec![ev(2, Readiness::WRITABLE)]);
    b.write_all(b"x").unwrap();
    let rw = Readiness::READABLE | Readiness::WRITABLE;
    assert_eq!(wait(&mut p, LONG), vec![ev(2, rw)]);
}

#[test]
fn every_ready_fd_is_reported_in_one_wait() {
    let pairs: Vec<_> = (0..3).map(|_| pair()).collect();
    let mut p = SelectPoller::new().unwrap();
    for (i, (a, _)) in pairs.iter().enumerate() {
        let both = Interest::READABLE | Interest::WRITABLE;
        p.register(a, Token(i), both, Trigger::Level).unwrap();
    }
    (&pairs[1].1).write_all(b"x").unwrap();
    let mut got = wait(&mut p, LONG);
    got.sort_by_key(|e| e.token());
    let rw = Readiness::READABLE | Readiness::WRITABLE;
    let want = vec![
        ev(0, Readiness::WRITABLE),
        ev(1, rw),
        ev(2, Readiness::WRITABLE),
    ];
    assert_eq!(got, want);
}

#[test]
fn readiness_only_for_interest_asked() {
    let (a, mut b) = pair();
    b.write_all(b"x").unwrap();
    let mut p = SelectPoller::new().unwrap();
    p.register(&a, Token(3), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    assert_eq!(wait(&mut p, LONG), vec![ev(3, Readiness::WRITABLE)]);
    p.modify(&a, Token(3), Interest::empty(), Trigger::Level)
        .unwrap();
    assert_eq!(wait(&mut p, SHORT), vec![]);
}

#[test]
fn peer_close_shows_readable() {
    let (a, b) = pair();
    let mut p = SelectPoller::new().unwrap();
    p.register(&a, Token(4), Interest::READABLE, Trigger::Level)
        .unwrap();
    drop(b);
    assert_eq!(wait(&mut p, LONG), vec![ev(4, Readiness::READABLE)]);
    assert_eq!((&a).read(&mut [0u8; 1]).unwrap(), 0);
}

#[test]
fn oneshot_reports_once_until_rearmed() {
    let (a, mut b) = pair();
    b.write_all(b"x").unwrap();
    let mut p = SelectPoller::new().unwrap();
    p.register(&a, Token(5), Interest::READABLE, Trigger::Oneshot)
        .unwrap();
    assert_eq!(wait(&mut p, LONG), vec![ev(5, Readiness::READABLE)]);
    assert_eq!(wait(&mut p, SHORT), vec![]);
    let err = p
        .register(&a, Token(5), Interest::READABLE, Trigger::Oneshot)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    p.modify(&a, Token(6), Interest::READABLE, Trigger::Oneshot)
        .unwrap();
    assert_eq!(wait(&mut p, LONG), vec![ev(6, Readiness::READABLE)]);
    assert_eq!(wait(&mut p, SHORT), vec![]);
    p.modify(&a, Token(6), Interest::READABLE, Trigger::Level)
        .unwrap();
    assert_eq!(wait(&mut p, LONG), vec![ev(6, Readiness::READABLE)]);
    assert_eq!(wait(&mut p, LONG), vec![ev(6, Readiness::READABLE)]);
    p.deregister(&a).unwrap();
    assert_eq!(wait(&mut p, SHORT), vec![]);
}

#[test]
fn edge_is_refused_everywhere() {
    let (a, _b) = pair();
    let mut p = SelectPoller::new().unwrap();
    assert!(!SelectPoller::supports_trigger(Trigger::Edge));
    assert!(SelectPoller::supports_trigger(Trigger::Oneshot));
    let err = p
        .register(&a, Token(1), Interest::READABLE, Trigger::Edge)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(p.entries.is_empty());
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    let err = p
        .modify(&a, Token(1), Interest::READABLE, Trigger::Edge)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[test]
fn bookkeeping_errors_have_the_right_kind() {
    let (a, b) = pair();
    let mut p = SelectPoller::new().unwrap();
    let err = p.deregister(&a).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = p
        .modify(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = p
        .register(&a, Token::RESERVED, Interest::READABLE, Trigger::Level)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    let err = p
        .modify(&a, Token::RESERVED, Interest::READABLE, Trigger::Level)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = p
        .register(&a, Token(2), Interest::READABLE, Trigger::Level)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    p.register(&b, Token(2), Interest::READABLE, Trigger::Level)
        .unwrap();
    p.deregister(&a).unwrap();
    let err = p.deregister(&a).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(SelectPoller::fd_capacity(), Some(1024));
    assert_eq!(SelectPoller::NAME, "select");
}

/// Raises the soft RLIMIT_NOFILE to at least `want`.
fn raise_nofile(want: libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to write into.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }).unwrap();
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // SAFETY: `lim` is a valid rlimit to read from.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }).unwrap();
    }
}

#[test]
fn fd_beyond_fd_setsize_is_refused() {
    raise_nofile(1031);
    let (a, _b) = pair();
    // SAFETY: `a` is open; F_DUPFD returns a new fd we then own.
    let raw = cvt(unsafe { libc::fcntl(a.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 1030) }).unwrap();
    assert_eq!(raw, 1030);
    // SAFETY: `raw` was just returned by fcntl and nobody else owns it.
    let high = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut p = SelectPoller::new().unwrap();
    let err = p
        .register(&high, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "fd 1030 is beyond FD_SETSIZE (1024), the select backend's limit"
    );
    assert_eq!(p.max_fd, -1);
    let err = p.deregister(&high).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn max_fd_and_index_follow_removals() {
    // Sorted: parallel tests may free a low fd between two `pair` calls.
    let mut pairs: Vec<_> = (0..3).map(|_| pair()).collect();
    pairs.sort_by_key(|(a, _)| a.as_raw_fd());
    let fds: Vec<RawFd> = pairs.iter().map(|(a, _)| a.as_raw_fd()).collect();
    let mut p = SelectPoller::new().unwrap();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.register(a, Token(i), Interest::READABLE, Trigger::Level)
            .unwrap();
    }
    let (lo, mid, hi) = (fds[0], fds[1], fds[2]);
    assert!(lo < mid && mid < hi);
    assert_eq!(p.max_fd, hi);

    // Removing a non-max fd leaves max_fd; the last entry moves into its place.
    p.deregister(&pairs[0].0).unwrap();
    assert_eq!(p.max_fd, hi);
    assert_eq!(p.entries[0].fd.0, hi);
    assert_eq!(p.index[hi as usize], Some(0));
    assert_eq!(p.index[mid as usize], Some(1));
    assert_eq!(p.index[lo as usize], None);

    // Removing the max walks down to the next registered fd.
    p.deregister(&pairs[2].0).unwrap();
    assert_eq!(p.max_fd, mid);
    assert_eq!(p.index[mid as usize], Some(0));
    p.deregister(&pairs[1].0).unwrap();
    assert_eq!(p.max_fd, -1);

    // The moved entry still reports under its own token.
    p.register(&pairs[0].0, Token(10), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    p.register(&pairs[1].0, Token(11), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    p.deregister(&pairs[0].0).unwrap();
    assert_eq!(wait(&mut p, LONG), vec![ev(11, Readiness::WRITABLE)]);
}

#[test]
fn closed_while_registered_reports_error_once() {
    let (a, _b) = pair();
    let (c, _d) = pair();
    let mut p = SelectPoller::new().unwrap();
    // Parallel tests open and close fds too: move ours up high, where no
    // other test's new fd will take its number once it is closed.
    // SAFETY: `a` is open; F_DUPFD_CLOEXEC returns a new fd we then own.
    let raw = cvt(unsafe { libc::fcntl(a.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 900) }).unwrap();
    drop(a);
    // SAFETY: `raw` is open until the close below; the borrow ends before it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    p.register(&borrowed, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    p.register(&c, Token(2), Interest::READABLE, Trigger::Level)
        .unwrap();
    // SAFETY: we own `raw` (from fcntl) and close it exactly once.
    cvt(unsafe { libc::close(raw) }).unwrap();

    assert_eq!(wait(&mut p, LONG), vec![ev(1, Readiness::ERROR)]);
    assert_eq!(p.index[raw as usize], None);
    assert_eq!(p.entries.len(), 1);
    let start = Instant::now();
    assert_eq!(wait(&mut p, SHORT), vec![]);
    assert!(start.elapsed() >= Duration::from_millis(40));

    // The number is free again: a new fd there is a stranger, then welcome.
    // SAFETY: `c` is open and `raw` is closed; dup2 gives us a new fd `raw`.
    cvt(unsafe { libc::dup2(c.as_raw_fd(), raw) }).unwrap();
    // SAFETY: `raw` was just created by dup2 and nobody else owns it.
    let reused = unsafe { OwnedFd::from_raw_fd(raw) };
    assert_eq!(
        p.deregister(&reused).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    p.register(&reused, Token(3), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    assert_eq!(wait(&mut p, LONG), vec![ev(3, Readiness::WRITABLE)]);
}

#[test]
fn waker_wakes_a_blocked_wait_from_another_thread() {
    let mut p = SelectPoller::new().unwrap();
    let waker = p.waker(Token(99)).unwrap();
    let err = p.waker(Token(98)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let waker_fd = p.waker.as_ref().unwrap().fd().as_raw_fd();
    // SAFETY: the waker fd stays open as long as `p`; only its number is used.
    let borrowed = unsafe { BorrowedFd::borrow_raw(waker_fd) };
    assert_eq!(
        p.deregister(&borrowed).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let handle = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        waker.wake().unwrap();
        waker.wake().unwrap();
    });
    assert_eq!(wait(&mut p, None), vec![ev(99, Readiness::READABLE)]);
    handle.join().unwrap();
    // Drained: nothing more until the next wake.
    assert_eq!(wait(&mut p, SHORT), vec![]);
}

extern "C" fn ignore_signal(_: libc::c_int) {}

#[test]
fn signal_during_wait_is_no_events() {
    // SAFETY: `act` is zeroed then filled; the handler is async-signal-safe
    // (it does nothing) and SA_RESTART is off so select sees EINTR.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
        cvt(libc::sigaction(libc::SIGUSR1, &act, ptr::null_mut())).unwrap();
    }
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let (a, _b) = pair();
    let mut p = SelectPoller::new().unwrap();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    let handle = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        // SAFETY: `me` is the test thread, alive until it joins us.
        unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
    });
    let start = Instant::now();
    assert_eq!(wait(&mut p, LONG), vec![]);
    assert!(start.elapsed() < Duration::from_secs(4));
    handle.join().unwrap();
}

#[test]
fn timeout_is_honoured() {
    let mut p = SelectPoller::new().unwrap();
    let start = Instant::now();
    assert_eq!(wait(&mut p, Some(Duration::from_millis(30))), vec![]);
    assert!(start.elapsed() >= Duration::from_millis(30));
    // A sub-microsecond timeout rounds up to 1µs, never down to zero.
    let start = Instant::now();
    assert_eq!(wait(&mut p, Some(Duration::from_nanos(1))), vec![]);
    assert!(start.elapsed() >= Duration::from_micros(1));
    assert_eq!(p.timeout_resolution(), Duration::from_micros(1));
    let start = Instant::now();
    assert_eq!(wait(&mut p, Some(Duration::ZERO)), vec![]);
    assert!(start.elapsed() < Duration::from_millis(20));
}

#[test]
fn steady_state_wait_keeps_the_events_allocation() {
    let (a, _b) = pair();
    let mut p = SelectPoller::new().unwrap();
    p.register(&a, Token(1), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    let mut events = Events::with_capacity(4);
    events.push(ev(0, Readiness::READABLE));
    let cap = events.capacity();
    for _ in 0..3 {
        p.wait(&mut events, LONG).unwrap();
        assert_eq!(events.as_slice(), &[ev(1, Readiness::WRITABLE)]);
        assert_eq!(events.capacity(), cap);
    }
}

#[test]
fn write_set_is_passed_only_while_someone_wants_writes() {
    let mut poller = SelectPoller::new().unwrap();
    let (a, _a2) = pair();
    let (b, _b2) = pair();
    poller
        .register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    assert_eq!(poller.writers, 0);
    let both = Interest::READABLE | Interest::WRITABLE;
    poller
        .register(&b, Token(2), both, Trigger::Oneshot)
        .unwrap();
    assert_eq!(poller.writers, 1);
    assert_eq!(
        wait(&mut poller, Some(Duration::ZERO)),
        [ev(2, Readiness::WRITABLE)]
    );
    // The oneshot disarmed itself: no writer left, and a is still watched.
    assert_eq!(poller.writers, 0);
    poller.modify(&b, Token(2), both, Trigger::Level).unwrap();
    poller
        .modify(&a, Token(1), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    assert_eq!(poller.writers, 2);
    poller.deregister(&b).unwrap();
    assert_eq!(poller.writers, 1);
    assert_eq!(
        wait(&mut poller, Some(Duration::ZERO)),
        [ev(1, Readiness::WRITABLE)]
    );
    poller
        .modify(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    assert_eq!(poller.writers, 0);
    assert!(wait(&mut poller, Some(Duration::ZERO)).is_empty());
}
