//! The conformance suite: the `Poller` contract, written once over
//! `P: Poller` and run on every compiled backend by `conformance!`, one
//! module per backend (`select::oneshot_rearm`, `epoll::edge_register`...).
//!
//! Where a backend cannot do something (edge triggering on select and poll,
//! error bits on select), the test asserts the documented answer instead of
//! skipping.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use evmux::{Event, Interest, Poller, Readiness, Token, Trigger};

const R: Interest = Interest::READABLE;
const W: Interest = Interest::WRITABLE;
const T1: Token = Token(1);
const T2: Token = Token(2);
const WAKE: Token = Token(usize::MAX - 1);

/// Does this backend report error and hang-up bits? select has none.
fn has_error_bits<P: Poller>() -> bool {
    P::NAME != "select"
}

/// Does this backend deliver edge triggering? epoll (EPOLLET) and
/// io_uring (multishot poll).
fn has_edge<P: Poller>() -> bool {
    matches!(P::NAME, "epoll" | "uring")
}

/// Does this backend report `READ_CLOSED` (POLLRDHUP / EPOLLRDHUP)?
fn has_read_closed<P: Poller>() -> bool {
    has_error_bits::<P>() && cfg!(any(target_os = "linux", target_os = "android"))
}

fn is_readable(e: &Event) -> bool {
    e.is_readable()
}

fn is_writable(e: &Event) -> bool {
    e.is_writable()
}

fn read_all_now(mut s: &std::os::unix::net::UnixStream) -> usize {
    let mut buf = [0u8; 256];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return total,
            Err(e) => panic!("read: {e}"),
        }
    }
}

// ---- 1. readiness -------------------------------------------------------

fn readable_when_data_pending<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    assert_no_event(&mut poller, &mut events, T1, SHORT);
    b.write_all(b"ping").unwrap();
    let ev = wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    assert_eq!(ev.readiness(), Readiness::READABLE, "{ev:?}");
}

fn readable_on_eof<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (mut a, b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    drop(b);
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    assert_eq!(
        a.read(&mut [0u8; 16]).unwrap(),
        0,
        "read after peer drop is EOF"
    );
}

fn writable_when_buffer_has_room<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    // Data is pending too, but only writable interest is asked.
    b.write_all(b"ping").unwrap();
    poller.register(&a, T1, W, Trigger::Level).unwrap();
    let ev = wait_for(&mut poller, &mut events, T1, is_writable, LONG);
    assert_eq!(ev.readiness(), Readiness::WRITABLE, "{ev:?}");
}

fn both_bits_in_one_event<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    b.write_all(b"ping").unwrap();
    poller.register(&a, T1, R | W, Trigger::Level).unwrap();
    // wait_for checks "one event per token per wait" on every wait.
    let ev = wait_for(
        &mut poller,
        &mut events,
        T1,
        |e| e.is_readable() && e.is_writable(),
        LONG,
    );
    assert_eq!(
        ev.readiness(),
        Readiness::READABLE | Readiness::WRITABLE,
        "{ev:?}"
    );
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(
        got,
        [Event::new(T1, Readiness::READABLE | Readiness::WRITABLE)]
    );
}

// ---- 2. triggers --------------------------------------------------------

fn level_repeats<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    b.write_all(b"ping").unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    for i in 0..3 {
        let got = wait_once(&mut poller, &mut events, LONG);
        assert_eq!(got, [Event::new(T1, Readiness::READABLE)], "wait {i}");
    }
}

/// The answer a backend without edge triggering must give.
#[track_caller]
fn assert_edge_refused<P: Poller>(result: std::io::Result<()>) {
    assert_err(
        result,
        ErrorKind::Unsupported,
        &format!("{} backend", P::NAME),
    );
}

fn edge_register<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    assert_eq!(P::supports_trigger(Trigger::Edge), has_edge::<P>());
    if !P::supports_trigger(Trigger::Edge) {
        assert_edge_refused::<P>(poller.register(&a, T1, R, Trigger::Edge));
        // Refused means not registered at all, not downgraded to level.
        assert_err(poller.deregister(&a), ErrorKind::NotFound, "not registered");
        b.write_all(b"x").unwrap();
        assert_no_events(&mut poller, &mut events, SHORT);
        return;
    }
    poller.register(&a, T1, R, Trigger::Edge).unwrap();
    b.write_all(b"x").unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    // Still unread, but no new arrival: silent.
    assert_no_event(&mut poller, &mut events, T1, SHORT);
    b.write_all(b"y").unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    assert_no_event(&mut poller, &mut events, T1, SHORT);
    assert_eq!(read_all_now(&a), 2);
}

fn edge_modify<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    b.write_all(b"x").unwrap();
    if !P::supports_trigger(Trigger::Edge) {
        assert_edge_refused::<P>(poller.modify(&a, T1, R, Trigger::Edge));
        // The level registration is untouched.
        for _ in 0..2 {
            let got = wait_once(&mut poller, &mut events, LONG);
            assert_eq!(got, [Event::new(T1, Readiness::READABLE)]);
        }
        poller.deregister(&a).unwrap();
        return;
    }
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    poller.modify(&a, T2, R, Trigger::Edge).unwrap();
    // Switching to edge arms it once for what is already there.
    wait_for(&mut poller, &mut events, T2, is_readable, LONG);
    assert_no_events(&mut poller, &mut events, SHORT);
    b.write_all(b"y").unwrap();
    wait_for(&mut poller, &mut events, T2, is_readable, LONG);
    assert_no_events(&mut poller, &mut events, SHORT);
}

// ---- 3. oneshot ---------------------------------------------------------

fn oneshot_rearm<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Oneshot).unwrap();
    b.write_all(b"ping").unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    // Data still pending, but disarmed.
    assert_no_event(&mut poller, &mut events, T1, SHORT);
    assert_err(
        poller.register(&a, T1, R, Trigger::Oneshot),
        ErrorKind::AlreadyExists,
        &format!("fd {}", a.as_raw_fd()),
    );
    poller.modify(&a, T1, R, Trigger::Oneshot).unwrap();
    let ev = wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    assert_eq!(ev.readiness(), Readiness::READABLE);
    assert_no_event(&mut poller, &mut events, T1, SHORT);
    // Oneshot -> Level through modify: now reported on every wait.
    poller.modify(&a, T2, R, Trigger::Level).unwrap();
    for _ in 0..2 {
        let got = wait_once(&mut poller, &mut events, LONG);
        assert_eq!(got, [Event::new(T2, Readiness::READABLE)]);
    }
    // Level -> Oneshot again, fire, and deregister while disarmed.
    poller.modify(&a, T1, R, Trigger::Oneshot).unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    poller.deregister(&a).unwrap();
    assert_err(poller.deregister(&a), ErrorKind::NotFound, "not registered");
}

fn oneshot_disarmed_ignores_hangup<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    poller.register(&a, T1, R | W, Trigger::Oneshot).unwrap();
    b.write_all(b"ping").unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    // Disarmed: not even the hang-up (POLLHUP/EPOLLHUP) may come through.
    drop(b);
    assert_no_event(&mut poller, &mut events, T1, SHORT);
    poller.modify(&a, T1, R, Trigger::Oneshot).unwrap();
    let ev = wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    if has_read_closed::<P>() {
        assert!(ev.is_read_closed(), "{ev:?}");
    }
    assert_no_event(&mut poller, &mut events, T1, SHORT);
}

// ---- 4. modify ----------------------------------------------------------

fn modify_interest_both_ways<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    b.write_all(b"ping").unwrap();
    let only = |r: Readiness| move |e: &Event| e.readiness() == r;

    poller.register(&a, T1, R, Trigger::Level).unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);

    // R -> W: data is still pending, yet only writable is reported.
    poller.modify(&a, T1, W, Trigger::Level).unwrap();
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(got, [Event::new(T1, Readiness::WRITABLE)], "R -> W");

    // W -> R.
    poller.modify(&a, T1, R, Trigger::Level).unwrap();
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(got, [Event::new(T1, Readiness::READABLE)], "W -> R");

    // R|W -> empty: a healthy socket reports nothing.
    poller.modify(&a, T1, R | W, Trigger::Level).unwrap();
    wait_for(
        &mut poller,
        &mut events,
        T1,
        only(Readiness::READABLE | Readiness::WRITABLE),
        LONG,
    );
    poller
        .modify(&a, T1, Interest::empty(), Trigger::Level)
        .unwrap();
    assert_no_events(&mut poller, &mut events, SHORT);

    // empty -> R.
    poller.modify(&a, T1, R, Trigger::Level).unwrap();
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(got, [Event::new(T1, Readiness::READABLE)], "empty -> R");
}

fn modify_changes_token<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    b.write_all(b"ping").unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    poller.modify(&a, T2, R, Trigger::Level).unwrap();
    for _ in 0..3 {
        let got = wait_once(&mut poller, &mut events, LONG);
        assert_eq!(got, [Event::new(T2, Readiness::READABLE)]);
    }
}

// ---- 5. deregister ------------------------------------------------------

fn deregister_stops_events<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    let (c, mut d) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    poller.register(&c, T2, R, Trigger::Level).unwrap();
    b.write_all(b"ping").unwrap();
    d.write_all(b"ping").unwrap();
    wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    poller.deregister(&a).unwrap();
    // The other registration still works; the deregistered one is silent.
    wait_for(&mut poller, &mut events, T2, is_readable, LONG);
    assert_no_event(&mut poller, &mut events, T1, SHORT);
    poller.deregister(&c).unwrap();
    assert_no_events(&mut poller, &mut events, SHORT);
}

// ---- 6. hang-up and errors ---------------------------------------------

fn check_peer_close<P: Poller>(ev: Event) {
    assert!(ev.is_readable(), "{ev:?}");
    if has_read_closed::<P>() {
        assert!(ev.readiness().contains(Readiness::READ_CLOSED), "{ev:?}");
    } else if !has_error_bits::<P>() {
        // select documents that it cannot tell a close from data.
        assert_eq!(ev.readiness(), Readiness::READABLE, "{ev:?}");
        assert!(!ev.is_read_closed());
    }
}

fn peer_close_unix<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (mut a, b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    drop(b);
    let ev = wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    check_peer_close::<P>(ev);
    assert_eq!(a.read(&mut [0u8; 8]).unwrap(), 0);
}

fn peer_close_tcp<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (client, mut server) = tcp_pair();
    poller.register(&server, T1, R, Trigger::Level).unwrap();
    drop(client);
    let ev = wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    check_peer_close::<P>(ev);
    assert_eq!(server.read(&mut [0u8; 8]).unwrap(), 0);
}

fn pipe_eof_is_readable<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (r, w) = pipe();
    poller.register(&r, T1, R, Trigger::Level).unwrap();
    assert_eq!(write_fd(w.as_fd(), b"x").unwrap(), 1);
    drop(w);
    // Data and EOF: readable (and HUP where the backend can tell).
    let ev = wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    if has_error_bits::<P>() {
        assert!(ev.is_hup(), "{ev:?}");
    }
    assert_eq!(read_fd(r.as_fd(), &mut [0u8; 8]).unwrap(), 1);
    // Only EOF left (Linux then reports POLLHUP without POLLIN): a read
    // would return 0 at once. poll and select still say readable; epoll
    // keeps no per-fd interest to add READABLE to a bare EPOLLHUP, so it
    // says HUP alone, which `is_read_closed` covers (documented in the
    // Poller contract). Either way the caller is told to read.
    let ev = wait_for(&mut poller, &mut events, T1, |_| true, LONG);
    if P::NAME == "epoll" {
        assert!(ev.is_hup() && ev.is_read_closed(), "{ev:?}");
    } else {
        assert!(ev.is_readable(), "EOF pending but not readable: {ev:?}");
    }
    assert_eq!(read_fd(r.as_fd(), &mut [0u8; 8]).unwrap(), 0);
}

/// RDHUP is asked only with readable interest: a half-closed socket does
/// not fire for an empty or write-only registration.
fn half_close_needs_read_interest<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (client, server) = tcp_pair();
    poller
        .register(&server, T1, Interest::empty(), Trigger::Level)
        .unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_no_events(&mut poller, &mut events, SHORT);
    poller.modify(&server, T1, W, Trigger::Level).unwrap();
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(got, [Event::new(T1, Readiness::WRITABLE)]);
    poller.modify(&server, T1, R, Trigger::Level).unwrap();
    let ev = wait_for(&mut poller, &mut events, T1, is_readable, LONG);
    check_peer_close::<P>(ev);
}

/// A TCP pair whose client closes with a RST (SO_LINGER 0).
fn reset_pair() -> std::net::TcpStream {
    let (client, server) = tcp_pair();
    set_linger_zero(client.as_fd()).unwrap();
    drop(client);
    server
}

#[track_caller]
fn assert_broken(err: std::io::Error) {
    let code = err.raw_os_error();
    assert!(
        code == Some(libc::ECONNRESET) || code == Some(libc::EPIPE),
        "expected ECONNRESET or EPIPE, got {err:?}"
    );
}

fn reset_seen_with_write_interest<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let server = reset_pair();
    poller.register(&server, T1, W, Trigger::Level).unwrap();
    if has_error_bits::<P>() {
        // What Linux reports for a reset socket: POLLOUT|POLLERR|POLLHUP.
        let ev = wait_for(
            &mut poller,
            &mut events,
            T1,
            |e| e.is_error() || e.is_hup(),
            LONG,
        );
        let expect = Readiness::WRITABLE | Readiness::ERROR | Readiness::HUP;
        assert_eq!(ev.readiness(), expect, "{ev:?}");
        assert_broken(send_nosignal(server.as_fd(), b"x").unwrap_err());
        return;
    }
    // select: writable, and the write tells. The RST may land a moment
    // after the first writable report, so retry a send that still succeeds.
    let deadline = Instant::now() + LONG;
    loop {
        let ev = wait_for(&mut poller, &mut events, T1, is_writable, LONG);
        assert_eq!(ev.readiness(), Readiness::WRITABLE, "{ev:?}");
        match send_nosignal(server.as_fd(), b"x") {
            Ok(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(_) => panic!("send kept succeeding on a reset socket"),
            Err(e) => return assert_broken(e),
        }
    }
}

fn reset_seen_with_empty_interest<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let server = reset_pair();
    poller
        .register(&server, T1, Interest::empty(), Trigger::Level)
        .unwrap();
    if has_error_bits::<P>() {
        let ev = wait_for(
            &mut poller,
            &mut events,
            T1,
            |e| e.is_error() || e.is_hup(),
            LONG,
        );
        assert_eq!(ev.readiness(), Readiness::ERROR | Readiness::HUP, "{ev:?}");
    } else {
        // select cannot watch an fd with no interest: documented silence.
        assert_no_events(&mut poller, &mut events, SHORT);
    }
}

fn connect_refused<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let sock = nonblocking_connect(closed_port()).unwrap();
    poller.register(&sock, T1, W, Trigger::Level).unwrap();
    let ev = wait_for(&mut poller, &mut events, T1, is_writable, LONG);
    if has_error_bits::<P>() {
        let expect = Readiness::WRITABLE | Readiness::ERROR | Readiness::HUP;
        assert_eq!(ev.readiness(), expect, "{ev:?}");
    } else {
        assert_eq!(ev.readiness(), Readiness::WRITABLE, "{ev:?}");
    }
    assert_eq!(so_error(sock.as_fd()).unwrap(), libc::ECONNREFUSED);
    poller.deregister(&sock).unwrap();
}

// ---- 7. timeouts and the waker -------------------------------------------

fn zero_timeout_returns_at_once<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, _b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    let (got, took) = timed(|| wait_once(&mut poller, &mut events, Duration::ZERO));
    assert!(got.is_empty(), "{got:?}");
    assert!(took < Duration::from_millis(50), "zero wait took {took:?}");
    // A zero that became 1ms would make these take >= 100ms.
    let (_, took) = timed(|| {
        for _ in 0..100 {
            wait_once(&mut poller, &mut events, Duration::ZERO);
        }
    });
    assert!(
        took < Duration::from_millis(100),
        "100 zero waits took {took:?}"
    );
}

/// No wait returns before its timeout, however short (a wait that ended
/// early would make a timer loop spin), and non-zero never means zero.
fn short_timeouts_are_never_early<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, _b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    for (timeout, times) in [
        (Duration::from_nanos(1), 20),
        (Duration::from_micros(1), 20),
        (Duration::from_micros(100), 20),
        (Duration::from_micros(1500), 10),
    ] {
        for _ in 0..times {
            let (got, took) = timed(|| wait_once(&mut poller, &mut events, timeout));
            assert!(got.is_empty(), "{got:?}");
            assert!(took >= timeout, "wait({timeout:?}) returned after {took:?}");
        }
    }
}

/// How late `wait(timeout)` returns, at the median of `times` waits; fails
/// if any returns early.
fn median_lateness<P: Poller>(poller: &mut P, timeout: Duration, times: usize) -> Duration {
    let mut events = events();
    let mut late: Vec<Duration> = (0..times)
        .map(|_| {
            let (got, took) = timed(|| wait_once(poller, &mut events, timeout));
            assert!(got.is_empty(), "{got:?}");
            assert!(took >= timeout, "wait({timeout:?}) returned after {took:?}");
            took - timeout
        })
        .collect();
    late.sort();
    late[times / 2]
}

/// Timeouts keep the kernel interface's precision: a 100µs and a 3.1ms
/// wait are late by under 200µs at the median (a millisecond-rounding
/// backend is late by 0.9ms for both), and none is early.
fn timeouts_are_precise<P: Poller>() {
    let mut poller = new_poller::<P>();
    let resolution = poller.timeout_resolution();
    if resolution >= Duration::from_millis(1) {
        eprintln!(
            "skipped: {}: timeouts round up to {resolution:?} on this system (fallback path)",
            P::NAME
        );
        return;
    }
    let (a, _b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    for timeout in [Duration::from_micros(100), Duration::from_micros(3100)] {
        let median = median_lateness(&mut poller, timeout, 200);
        assert!(
            median < Duration::from_micros(200),
            "{}: wait({timeout:?}) is late by {median:?} at the median",
            P::NAME
        );
    }
}

/// Wakes `waker` from another thread after `delay`.
fn wake_later(waker: &evmux::Waker, delay: Duration) -> thread::JoinHandle<()> {
    let waker = waker.clone();
    thread::spawn(move || {
        thread::sleep(delay);
        waker.wake().unwrap();
    })
}

const WAKE_DELAY: Duration = Duration::from_millis(100);
const WAKE_FLOOR: Duration = Duration::from_millis(80);

/// One wait with `timeout` that a wake after 100ms must end with the
/// waker's event, having really blocked until then. A watchdog signal
/// turns a wait that ignores the wake into a failure instead of a hang.
fn wait_is_woken<P: Poller>(poller: &mut P, waker: &evmux::Waker, timeout: Option<Duration>) {
    let mut events = events();
    let watchdog = Interrupter::start(LONG);
    let helper = wake_later(waker, WAKE_DELAY);
    let (res, took) = timed(|| poller.wait(&mut events, timeout));
    watchdog.stop();
    helper.join().unwrap();
    res.unwrap_or_else(|e| panic!("wait({timeout:?}): {e}"));
    let got = collected(&events);
    assert_eq!(
        got,
        [Event::new(WAKE, Readiness::READABLE)],
        "wait({timeout:?}) after {took:?}"
    );
    assert!(
        took >= WAKE_FLOOR,
        "wait({timeout:?}) returned after {took:?}"
    );
    assert!(took < LONG, "wait({timeout:?}) took {took:?}");
}

fn huge_timeouts_do_not_overflow<P: Poller>() {
    let mut poller = new_poller::<P>();
    let waker = poller.waker(WAKE).unwrap();
    wait_is_woken(&mut poller, &waker, Some(Duration::MAX));
    wait_is_woken(&mut poller, &waker, Some(Duration::from_secs(u64::MAX)));
    wait_is_woken(
        &mut poller,
        &waker,
        Some(Duration::from_secs(i32::MAX as u64)),
    );
    // 2^32 ms: truncated to 32 bits it would be a zero wait.
    wait_is_woken(&mut poller, &waker, Some(Duration::from_millis(1 << 32)));
}

fn no_timeout_blocks_until_woken<P: Poller>() {
    let mut poller = new_poller::<P>();
    let (a, _b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    let waker = poller.waker(WAKE).unwrap();
    wait_is_woken(&mut poller, &waker, None);
    // Drained: the next wait sees nothing.
    assert_no_events(&mut poller, &mut events(), SHORT);
}

fn wakes_coalesce<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let waker = poller.waker(WAKE).unwrap();
    let other = waker.clone();
    for _ in 0..50 {
        waker.wake().unwrap();
        other.wake().unwrap();
    }
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(got, [Event::new(WAKE, Readiness::READABLE)]);
    assert_no_events(&mut poller, &mut events, SHORT);
    // And it still works after draining.
    waker.wake().unwrap();
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(got, [Event::new(WAKE, Readiness::READABLE)]);
}

fn waker_and_fd_in_one_wait<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    let waker = poller.waker(WAKE).unwrap();
    b.write_all(b"x").unwrap();
    waker.wake().unwrap();
    let mut got = wait_once(&mut poller, &mut events, LONG);
    got.sort_by_key(|e| e.token());
    let expect = [
        Event::new(T1, Readiness::READABLE),
        Event::new(WAKE, Readiness::READABLE),
    ];
    assert_eq!(got, expect);
}

fn second_waker_already_exists<P: Poller>() {
    let mut poller = new_poller::<P>();
    let _waker = poller.waker(WAKE).unwrap();
    assert_err(poller.waker(Token(100)), ErrorKind::AlreadyExists, "waker");
}

// ---- 8. signals ---------------------------------------------------------

fn signal_interrupts_wait<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, _b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    // Signals every 100ms from 100ms on, so one that lands just before the
    // wait starts does not fail the test.
    let interrupter = Interrupter::start(WAKE_DELAY);
    let (res, took) = timed(|| poller.wait(&mut events, Some(Duration::from_secs(10))));
    interrupter.stop();
    res.unwrap_or_else(|e| panic!("an interrupted wait must be Ok, got {e:?}"));
    assert!(events.is_empty(), "{:?}", collected(&events));
    assert!(
        took >= WAKE_FLOOR,
        "returned after {took:?}, before any signal"
    );
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: the signal did not end the wait"
    );
}

// ---- 9. bookkeeping errors ----------------------------------------------

fn duplicate_register_already_exists<P: Poller>() {
    let mut poller = new_poller::<P>();
    let (a, _b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    let fd = format!("fd {}", a.as_raw_fd());
    assert_err(
        poller.register(&a, T2, W, Trigger::Level),
        ErrorKind::AlreadyExists,
        &fd,
    );
    poller.deregister(&a).unwrap();
}

fn unknown_fd_not_found<P: Poller>() {
    let mut poller = new_poller::<P>();
    let (a, _b) = unix_pair();
    let (c, _d) = unix_pair();
    poller.register(&c, T2, R, Trigger::Level).unwrap();
    let fd = format!("fd {}", a.as_raw_fd());
    assert_err(
        poller.modify(&a, T1, R, Trigger::Level),
        ErrorKind::NotFound,
        &fd,
    );
    assert_err(poller.deregister(&a), ErrorKind::NotFound, &fd);
}

fn deregister_twice_not_found<P: Poller>() {
    let mut poller = new_poller::<P>();
    let (a, _b) = unix_pair();
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    poller.deregister(&a).unwrap();
    let fd = format!("fd {}", a.as_raw_fd());
    assert_err(poller.deregister(&a), ErrorKind::NotFound, &fd);
    // And it can come back.
    poller.register(&a, T1, R, Trigger::Level).unwrap();
}

fn reserved_token_invalid<P: Poller>() {
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    let reserved = "reserved";
    assert_err(
        poller.register(&a, Token::RESERVED, R, Trigger::Level),
        ErrorKind::InvalidInput,
        reserved,
    );
    // Refused means not registered.
    assert_err(poller.deregister(&a), ErrorKind::NotFound, "not registered");
    poller.register(&a, T1, R, Trigger::Level).unwrap();
    assert_err(
        poller.modify(&a, Token::RESERVED, R, Trigger::Level),
        ErrorKind::InvalidInput,
        reserved,
    );
    // The registration keeps its token.
    b.write_all(b"x").unwrap();
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(got, [Event::new(T1, Readiness::READABLE)]);
}

// ---- 10. an fd closed while registered ------------------------------------

/// An fd number far above what other tests use concurrently, so nobody
/// reuses it while it is closed (with the fd lock held), yet below
/// FD_SETSIZE for select.
const STALE_FD_MIN: i32 = 900;

fn closed_while_registered<P: Poller>() {
    let _guard = fd_lock();
    require_fd_limit(STALE_FD_MIN as u64 + 64);
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    let high = dup_at_least(a.as_fd(), STALE_FD_MIN).unwrap();
    drop(a);
    let n = high.as_raw_fd();
    poller.register(&high, T1, R, Trigger::Level).unwrap();
    b.write_all(b"x").unwrap();
    drop(high); // The caller's bug: closed without deregistering.

    if P::NAME == "epoll" {
        let quiet = Duration::from_millis(200);
        let (got, took) = timed(|| wait_once(&mut poller, &mut events, quiet));
        assert!(got.is_empty(), "epoll forgets a closed file: {got:?}");
        assert!(
            took >= quiet * 3 / 4,
            "wait({quiet:?}) returned after {took:?}: spinning?"
        );
    } else {
        let got = wait_once(&mut poller, &mut events, LONG);
        assert_eq!(
            got,
            [Event::new(T1, Readiness::ERROR)],
            "one ERROR for the stale token"
        );
        // No spin: the next wait blocks for its whole timeout, quietly.
        let (got, took) = timed(|| wait_once(&mut poller, &mut events, SHORT));
        assert!(got.is_empty(), "{got:?}");
        assert!(
            took >= Duration::from_millis(45),
            "second wait returned after {took:?}"
        );
    }

    // A new socket gets the same fd number and its own token's events.
    let (c, mut d) = unix_pair();
    let reused = dup_at_least(c.as_fd(), n).unwrap();
    drop(c);
    assert_eq!(reused.as_raw_fd(), n, "fd {n} was taken by someone else");
    poller.register(&reused, T2, R, Trigger::Level).unwrap();
    d.write_all(b"y").unwrap();
    for _ in 0..2 {
        let got = wait_once(&mut poller, &mut events, LONG);
        assert_eq!(got, [Event::new(T2, Readiness::READABLE)]);
    }
    poller.deregister(&reused).unwrap();
}

// ---- 11. many fds --------------------------------------------------------

const MANY: usize = 8000;

fn many_fds_one_active<P: Poller>() {
    let _guard = fd_lock();
    require_fd_limit(2 * MANY as u64 + 256);
    let mut poller = new_poller::<P>();
    let mut events = events();
    let waker = poller.waker(WAKE).unwrap();

    // (registered, peer) pairs. select can only take fds below FD_SETSIZE
    // (minus a little slack), so it registers both ends of as many pairs as
    // fit; poll and epoll take MANY pairs and register one end of each.
    let mut socks = Vec::new();
    let mut registered = Vec::new();
    let limit = P::fd_capacity().map(|cap| cap as i32 - 16);
    while registered.len() < MANY {
        let (a, b) = unix_pair();
        match limit {
            Some(max) if a.as_raw_fd().max(b.as_raw_fd()) >= max => break,
            Some(_) => {
                registered.push(socks.len());
                registered.push(socks.len() + 1);
            }
            None => registered.push(socks.len()),
        }
        socks.push(a);
        socks.push(b);
    }
    if limit.is_none() {
        assert_eq!(registered.len(), MANY);
    } else {
        assert!(registered.len() >= 500, "only {} fds fit", registered.len());
    }
    // Highest fd first: the first registration sets select's max fd, and
    // later lower ones must not lower it.
    for &i in registered.iter().rev() {
        poller
            .register(&socks[i], Token(i), R, Trigger::Level)
            .unwrap();
    }
    assert_no_events(&mut poller, &mut events, SHORT);

    // The pair holding the middle registered fd; write from its partner.
    let active = registered[registered.len() / 2];
    (&socks[active ^ 1]).write_all(b"x").unwrap();
    for _ in 0..2 {
        let got = wait_once(&mut poller, &mut events, LONG);
        assert_eq!(got, [Event::new(Token(active), Readiness::READABLE)]);
    }
    waker.wake().unwrap();
    let mut got = wait_once(&mut poller, &mut events, LONG);
    got.sort_by_key(|e| e.token());
    assert_eq!(
        got,
        [
            Event::new(Token(active), Readiness::READABLE),
            Event::new(WAKE, Readiness::READABLE)
        ]
    );

    // In registration order: each removal is of an early entry, so a
    // swap-remove moves the last one into its place every time.
    for &i in registered.iter().rev() {
        poller.deregister(&socks[i]).unwrap();
    }
    assert_no_events(&mut poller, &mut events, SHORT);
}

// ---- 12. FD_SETSIZE ------------------------------------------------------

fn fd_beyond_fd_setsize<P: Poller>() {
    let _guard = fd_lock();
    require_fd_limit(1100);
    let mut poller = new_poller::<P>();
    let mut events = events();
    let (a, mut b) = unix_pair();
    let high = dup_at_least(a.as_fd(), 1030).unwrap();
    drop(a);
    assert_eq!(high.as_raw_fd(), 1030, "fd 1030 was taken by someone else");
    if P::NAME == "select" {
        assert_eq!(P::fd_capacity(), Some(1024));
        let err = poller.register(&high, T1, R, Trigger::Level).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let expect = "fd 1030 is beyond FD_SETSIZE (1024), the select backend's limit";
        assert_eq!(err.to_string(), expect);
        // Nothing was set: the poller still works.
        let (c, mut d) = unix_pair();
        poller.register(&c, T2, R, Trigger::Level).unwrap();
        d.write_all(b"x").unwrap();
        b.write_all(b"x").unwrap();
        let got = wait_once(&mut poller, &mut events, LONG);
        assert_eq!(got, [Event::new(T2, Readiness::READABLE)]);
        return;
    }
    assert_eq!(P::fd_capacity(), None);
    poller.register(&high, T1, R, Trigger::Level).unwrap();
    b.write_all(b"x").unwrap();
    let got = wait_once(&mut poller, &mut events, LONG);
    assert_eq!(got, [Event::new(T1, Readiness::READABLE)]);
    poller.deregister(&high).unwrap();
}

// ---- 13. facts -----------------------------------------------------------

fn name_and_capabilities<P: Poller>(module: &str) {
    assert_eq!(P::NAME, module);
    assert!(P::supports_trigger(Trigger::Level));
    assert!(P::supports_trigger(Trigger::Oneshot));
    assert_eq!(P::supports_trigger(Trigger::Edge), has_edge::<P>());
    let capacity = if module == "select" { Some(1024) } else { None };
    assert_eq!(P::fd_capacity(), capacity);
}

// ---- one module per backend ------------------------------------------------

macro_rules! conformance {
    ($module:ident, $variant:ident, $poller:ty) => {
        mod $module {
            #[test]
            fn name_and_capabilities() {
                if !super::backend_available::<$poller>() {
                    return;
                }
                super::name_and_capabilities::<$poller>(stringify!($module));
            }
            conformance!(@cases $poller;
                readable_when_data_pending,
                readable_on_eof,
                writable_when_buffer_has_room,
                both_bits_in_one_event,
                level_repeats,
                edge_register,
                edge_modify,
                oneshot_rearm,
                oneshot_disarmed_ignores_hangup,
                modify_interest_both_ways,
                modify_changes_token,
                deregister_stops_events,
                peer_close_unix,
                peer_close_tcp,
                pipe_eof_is_readable,
                half_close_needs_read_interest,
                reset_seen_with_write_interest,
                reset_seen_with_empty_interest,
                connect_refused,
                zero_timeout_returns_at_once,
                short_timeouts_are_never_early,
                timeouts_are_precise,
                huge_timeouts_do_not_overflow,
                no_timeout_blocks_until_woken,
                wakes_coalesce,
                waker_and_fd_in_one_wait,
                second_waker_already_exists,
                signal_interrupts_wait,
                duplicate_register_already_exists,
                unknown_fd_not_found,
                deregister_twice_not_found,
                reserved_token_invalid,
                closed_while_registered,
                many_fds_one_active,
                fd_beyond_fd_setsize,
            );
        }
    };
    (@cases $poller:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if !super::backend_available::<$poller>() {
                    return;
                }
                super::$case::<$poller>();
            }
        )*
    };
}

evmux::for_each_backend!(conformance);

/// Where io_uring is blocked, every uring case says so and is skipped:
/// this binary is run again for two uring cases under a seccomp filter
/// that fails `io_uring_setup` with EPERM (as a container's policy does).
#[cfg(evmux_uring)]
#[test]
fn uring_blocked_is_reported_skipped() {
    use std::process::Command;

    if !backend_available::<evmux::UringPoller>() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.args([
        "--exact",
        "uring::readable_when_data_pending",
        "uring::level_repeats",
        "--test-threads",
        "1",
        "--nocapture",
    ]);
    deny_syscalls(&mut child, &[libc::SYS_io_uring_setup]);
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 passed"), "{stdout}");
    let skipped = "skipped: the uring backend cannot run here: io_uring_setup: refused (EPERM)";
    assert_eq!(stderr.matches(skipped).count(), 2, "{stderr}");
}
