//! Bookkeeping and smoke tests over real socket pairs.

use super::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(5);

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

fn poller() -> EpollPoller {
    EpollPoller::new().unwrap()
}

#[track_caller]
fn wait(p: &mut EpollPoller, timeout: Duration) -> Vec<Event> {
    let mut events = Events::with_capacity(16);
    p.wait(&mut events, Some(timeout)).unwrap();
    events.as_slice().to_vec()
}

/// The one event for `token`; fails if there are none or several.
#[track_caller]
fn only(events: &[Event], token: Token) -> Readiness {
    let mine: Vec<_> = events.iter().filter(|e| e.token() == token).collect();
    assert_eq!(mine.len(), 1, "events for {token:?}: {events:?}");
    mine[0].readiness()
}

#[test]
fn readable_and_writable_come_in_one_event() {
    let (a, mut b) = pair();
    let mut p = poller();
    let both = Interest::READABLE | Interest::WRITABLE;
    p.register(&a, Token(1), both, Trigger::Level).unwrap();
    b.write_all(b"x").unwrap();
    let r = only(&wait(&mut p, LONG), Token(1));
    assert_eq!(r, Readiness::READABLE | Readiness::WRITABLE);
}

#[test]
fn level_reports_on_every_wait() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    b.write_all(b"x").unwrap();
    for _ in 0..3 {
        assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::READABLE);
    }
}

#[test]
fn readable_bit_needs_readable_interest() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    b.write_all(b"x").unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::WRITABLE);
}

#[test]
fn hangup_with_readable_interest_reads_eof() {
    let (mut a, b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    drop(b);
    let r = only(&wait(&mut p, LONG), Token(1));
    let want = Readiness::READABLE | Readiness::HUP | Readiness::READ_CLOSED;
    assert!(r.contains(want), "{r:?}");
    assert_eq!(a.read(&mut [0u8; 8]).unwrap(), 0);
}

#[test]
fn hangup_without_readable_interest_is_not_readable() {
    let (a, b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    drop(b);
    let r = only(&wait(&mut p, LONG), Token(1));
    assert!(r.contains(Readiness::HUP), "{r:?}");
    assert!(
        !r.intersects(Readiness::READABLE | Readiness::READ_CLOSED),
        "{r:?}"
    );
}

#[test]
fn empty_interest_reports_only_hangup() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::empty(), Trigger::Level)
        .unwrap();
    b.write_all(b"x").unwrap();
    assert!(wait(&mut p, SHORT).is_empty());
    drop(b);
    assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::HUP);
}

#[test]
fn write_only_interest_ignores_half_close() {
    let (a, b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    b.shutdown(Shutdown::Write).unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::WRITABLE);
}

#[test]
fn half_close_with_readable_interest_is_read_closed() {
    let (a, b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    b.shutdown(Shutdown::Write).unwrap();
    let r = only(&wait(&mut p, LONG), Token(1));
    assert_eq!(r, Readiness::READABLE | Readiness::READ_CLOSED);
}

#[test]
fn edge_does_not_repeat_until_new_data() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Edge)
        .unwrap();
    b.write_all(b"x").unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::READABLE);
    // Not drained, but no new arrival: silent.
    assert!(wait(&mut p, SHORT).is_empty());
    b.write_all(b"y").unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::READABLE);
    assert!(wait(&mut p, SHORT).is_empty());
}

#[test]
fn oneshot_is_silent_until_rearmed() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Oneshot)
        .unwrap();
    b.write_all(b"x").unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::READABLE);
    assert!(wait(&mut p, SHORT).is_empty());
    b.write_all(b"y").unwrap();
    assert!(wait(&mut p, SHORT).is_empty());
    p.modify(&a, Token(2), Interest::READABLE, Trigger::Oneshot)
        .unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(2)), Readiness::READABLE);
    assert!(wait(&mut p, SHORT).is_empty());
}

#[test]
fn disarmed_oneshot_stays_registered_and_ignores_hangup() {
    let (a, b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::WRITABLE, Trigger::Oneshot)
        .unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::WRITABLE);
    drop(b);
    assert!(wait(&mut p, SHORT).is_empty());
    let again = p.register(&a, Token(1), Interest::WRITABLE, Trigger::Oneshot);
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
    p.deregister(&a).unwrap();
    assert_eq!(p.deregister(&a).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn modify_switches_trigger_and_token() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Edge)
        .unwrap();
    b.write_all(b"x").unwrap();
    only(&wait(&mut p, LONG), Token(1));
    assert!(wait(&mut p, SHORT).is_empty());
    p.modify(&a, Token(3), Interest::READABLE, Trigger::Level)
        .unwrap();
    for _ in 0..2 {
        assert_eq!(only(&wait(&mut p, LONG), Token(3)), Readiness::READABLE);
    }
    p.modify(&a, Token(4), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(4)), Readiness::WRITABLE);
}

#[test]
fn deregister_stops_events() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    b.write_all(b"x").unwrap();
    only(&wait(&mut p, LONG), Token(1));
    p.deregister(&a).unwrap();
    assert!(wait(&mut p, SHORT).is_empty());
}

#[test]
fn duplicate_and_unknown_fds_get_the_shared_errors() {
    let (a, _b) = pair();
    let raw = a.as_raw_fd();
    let mut p = poller();
    let rw = Interest::READABLE;
    let e = p.modify(&a, Token(1), rw, Trigger::Level).unwrap_err();
    assert_eq!(e.to_string(), not_registered(raw).to_string());
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = p.deregister(&a).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    p.register(&a, Token(1), rw, Trigger::Level).unwrap();
    let e = p.register(&a, Token(2), rw, Trigger::Level).unwrap_err();
    assert_eq!(e.to_string(), already_registered(raw).to_string());
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
}

#[test]
fn reserved_token_is_refused() {
    let (a, _b) = pair();
    let mut p = poller();
    let rw = Interest::READABLE;
    let e = p.register(&a, Token::RESERVED, rw, Trigger::Level);
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);
    p.register(&a, Token(1), rw, Trigger::Level).unwrap();
    let e = p.modify(&a, Token::RESERVED, rw, Trigger::Level);
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn capabilities() {
    assert_eq!(EpollPoller::NAME, "epoll");
    assert_eq!(EpollPoller::fd_capacity(), None);
    for t in [Trigger::Level, Trigger::Edge, Trigger::Oneshot] {
        assert!(EpollPoller::supports_trigger(t));
    }
}

#[test]
fn waker_wakes_a_blocked_wait_from_another_thread() {
    let mut p = poller();
    let waker = p.waker(Token(99)).unwrap();
    let e = p.waker(Token(98)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        waker.wake().unwrap();
        waker.wake().unwrap();
    });
    let mut events = Events::with_capacity(4);
    p.wait(&mut events, None).unwrap();
    t.join().unwrap();
    assert_eq!(only(events.as_slice(), Token(99)), Readiness::READABLE);
    // Drained: the wait may have returned between the two wakes (a busy
    // machine), so one more waker event at most, then nothing.
    let rest = wait(&mut p, SHORT);
    assert!(rest.iter().all(|e| e.token() == Token(99)) && rest.len() <= 1);
    assert!(wait(&mut p, SHORT).is_empty());
}

#[test]
fn closed_without_deregister_reports_nothing() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    b.write_all(b"x").unwrap();
    drop(a);
    assert!(wait(&mut p, SHORT).is_empty());
}

#[test]
fn reused_fd_number_registers_after_close() {
    let (a, mut a_peer) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    a_peer.write_all(b"x").unwrap();
    let (c, mut c_peer) = pair();
    // dup2 closes `a`'s socket and puts `c`'s on the same number in one
    // step, so no other test thread can take the number in between.
    // SAFETY: both fds are open and owned by this test; `a` now owns the
    // number, which refers to `c`'s socket.
    cvt(unsafe { libc::dup2(c.as_raw_fd(), a.as_raw_fd()) }).unwrap();
    assert!(wait(&mut p, SHORT).is_empty());
    p.register(&a, Token(2), Interest::READABLE, Trigger::Level)
        .unwrap();
    c_peer.write_all(b"y").unwrap();
    let events = wait(&mut p, LONG);
    assert_eq!(only(&events, Token(2)), Readiness::READABLE);
    assert_eq!(events.len(), 1, "{events:?}");
}

#[test]
fn dup_keeps_a_closed_registration_alive() {
    let (a, mut b) = pair();
    let mut p = poller();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    let twin = a.try_clone().unwrap();
    drop(a);
    b.write_all(b"x").unwrap();
    assert_eq!(only(&wait(&mut p, LONG), Token(1)), Readiness::READABLE);
    // The registration is keyed by the closed number, not by `twin`.
    assert_eq!(p.deregister(&twin).unwrap_err().kind(), ErrorKind::NotFound);
    drop(twin);
    assert!(wait(&mut p, SHORT).is_empty());
}

#[test]
fn buffer_grows_when_a_wait_fills_it() {
    let (a, _b) = pair();
    let count = INITIAL_EVENTS + 44;
    let fds: Vec<_> = (0..count).map(|_| a.try_clone().unwrap()).collect();
    let mut p = poller();
    for (i, fd) in fds.iter().enumerate() {
        p.register(fd, Token(i), Interest::WRITABLE, Trigger::Oneshot)
            .unwrap();
    }
    let mut seen = vec![false; count];
    let mut events = Events::with_capacity(count);
    p.wait(&mut events, Some(LONG)).unwrap();
    assert_eq!(events.len(), INITIAL_EVENTS);
    assert_eq!(p.buf.len(), INITIAL_EVENTS * 2);
    let first = events.len();
    for e in &events {
        seen[e.token().0] = true;
    }
    p.wait(&mut events, Some(LONG)).unwrap();
    assert_eq!(first + events.len(), count);
    for e in &events {
        assert!(!seen[e.token().0], "{e:?} reported twice");
        seen[e.token().0] = true;
    }
    assert!(seen.iter().all(|s| *s));
    assert_eq!(p.buf.len(), INITIAL_EVENTS * 2);
}

#[test]
fn buffer_growth_stops_at_the_cap() {
    assert_eq!(grown_len(INITIAL_EVENTS), INITIAL_EVENTS * 2);
    assert_eq!(grown_len(MAX_EVENTS / 2), MAX_EVENTS);
    assert_eq!(grown_len(MAX_EVENTS), MAX_EVENTS);
}

#[test]
fn zero_timeout_returns_at_once_and_short_ones_are_not_early() {
    let mut p = poller();
    let start = Instant::now();
    assert!(wait(&mut p, Duration::ZERO).is_empty());
    assert!(start.elapsed() < Duration::from_millis(500));
    let start = Instant::now();
    assert!(wait(&mut p, Duration::from_micros(200)).is_empty());
    assert!(start.elapsed() >= Duration::from_micros(200));
}

#[test]
fn kernel_timespec_is_64_bit_and_exact() {
    assert_eq!(std::mem::size_of::<KernelTimespec>(), 16);
    let ts = KernelTimespec::from(Duration::new(3, 100_000_000));
    assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 100_000_000));
}

/// The fallback a kernel without epoll_pwait2 gets: epoll_wait with the
/// timeout rounded up to whole milliseconds (forced here by setting the
/// remembered answer; this kernel has the call).
#[test]
fn without_epoll_pwait2_timeouts_round_up_to_milliseconds() {
    let mut p = poller();
    assert_eq!(
        PWAIT2.load(Ordering::Relaxed),
        YES,
        "this kernel has epoll_pwait2"
    );
    assert_eq!(p.timeout_resolution(), Duration::from_nanos(1));
    PWAIT2.store(NO, Ordering::Relaxed);
    let (a, mut b) = pair();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    let resolution = p.timeout_resolution();
    let start = Instant::now();
    let quiet = wait(&mut p, Duration::from_micros(100));
    let took = start.elapsed();
    b.write_all(b"x").unwrap();
    let ready = wait(&mut p, LONG);
    PWAIT2.store(YES, Ordering::Relaxed);
    assert_eq!(resolution, Duration::from_millis(1));
    assert!(quiet.is_empty(), "{quiet:?}");
    assert!(took >= Duration::from_millis(1), "100µs took {took:?}");
    assert_eq!(only(&ready, Token(1)), Readiness::READABLE);
}

extern "C" fn ignore_signal(_: libc::c_int) {}

#[test]
fn signal_during_wait_gives_no_events() {
    // SAFETY: an all-zero sigaction is valid; the handler does nothing and
    // is async-signal-safe; both pointers are valid for the call.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        cvt(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut())).unwrap();
    }
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    // Signal repeatedly, so a signal that lands before `wait` starts does
    // not leave the wait to run out its whole timeout.
    let t = thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(50));
            // SAFETY: the test thread joins this one before it returns, so
            // `me` names a live thread.
            unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
        }
    });
    let mut p = poller();
    let mut events = Events::with_capacity(4);
    events.push(Event::new(Token(5), Readiness::READABLE));
    let start = Instant::now();
    let result = p.wait(&mut events, Some(LONG));
    done.store(true, Ordering::SeqCst);
    t.join().unwrap();
    result.unwrap();
    assert!(events.is_empty());
    assert!(start.elapsed() < LONG);
}

#[test]
fn translation_of_flags() {
    let flags = |bits: libc::c_int| bits as u32;
    let rw = Interest::READABLE | Interest::WRITABLE;
    assert_eq!(
        interest_to_epoll(rw, Trigger::Level).unwrap(),
        flags(libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT)
    );
    assert_eq!(
        interest_to_epoll(Interest::WRITABLE, Trigger::Edge).unwrap(),
        flags(libc::EPOLLOUT | libc::EPOLLET)
    );
    assert_eq!(
        interest_to_epoll(Interest::empty(), Trigger::Oneshot).unwrap(),
        flags(libc::EPOLLONESHOT)
    );
    assert_eq!(epoll_to_readiness(0), Readiness::empty());
    assert_eq!(
        epoll_to_readiness(flags(libc::EPOLLERR | libc::EPOLLOUT)),
        Readiness::ERROR | Readiness::WRITABLE
    );
    assert_eq!(
        epoll_to_readiness(flags(libc::EPOLLHUP | libc::EPOLLRDHUP)),
        Readiness::HUP | Readiness::READABLE | Readiness::READ_CLOSED
    );
}

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Counts allocations per thread so a test can check a loop makes none.
struct Counting;

// SAFETY: every call forwards to `System` with the caller's arguments, so
// `System`'s guarantees carry over; the counter touches no heap memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc`/`realloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn steady_state_wait_allocates_nothing() {
    let (a, mut b) = pair();
    let mut p = poller();
    let waker = p.waker(Token(9)).unwrap();
    p.register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    b.write_all(b"x").unwrap();
    let mut events = Events::with_capacity(4);
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        waker.wake().unwrap();
        p.wait(&mut events, Some(LONG)).unwrap();
        assert_eq!(events.len(), 2);
    }
    assert_eq!(ALLOCATIONS.with(Cell::get), before);
}

#[test]
fn regular_files_are_refused_with_advice() {
    // epoll refuses regular files with EPERM; the error says what to use.
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let mut p = poller();
    let e = p.register(&file, Token(1), Interest::READABLE, Trigger::Level);
    let e = e.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(
        e.to_string().contains("use the poll or select backend"),
        "{e}"
    );
}

/// Pins a known gap: a pipe whose writer closed reports EPOLLHUP without
/// EPOLLIN, and with no per-fd state the poller cannot tell that readable
/// interest was asked, so the event is HUP without READABLE. Sockets send
/// EPOLLIN with the hang-up and are not affected.
#[test]
fn pipe_hangup_is_hup_without_readable() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes; the flags are valid.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }).unwrap();
    // SAFETY: both fds were just returned by pipe2 and nothing else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut p = poller();
    p.register(&r, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    drop(w);
    let r = only(&wait(&mut p, LONG), Token(1));
    assert_eq!(r, Readiness::HUP);
    assert!(Event::new(Token(1), r).is_read_closed());
}
