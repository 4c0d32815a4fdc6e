//! The backend's own bookkeeping: generations, batching, the overflow
//! path, fds closed while their poll is in flight, and the refusal when
//! io_uring is blocked. The contract itself is tests/conformance.rs's.

use super::*;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread;

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(5);
const R: Interest = Interest::READABLE;

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// A poller, or `None` (with the reason printed) where io_uring is blocked.
fn poller() -> Option<UringPoller> {
    match UringPoller::new() {
        Ok(p) => Some(p),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("uring new: {e}"),
    }
}

#[track_caller]
fn wait(p: &mut UringPoller, timeout: Duration) -> Vec<Event> {
    let mut events = Events::with_capacity(16);
    p.wait(&mut events, Some(timeout)).unwrap();
    events.as_slice().to_vec()
}

/// Completions waiting in the ring, not yet reaped.
fn in_ring(p: &mut UringPoller) -> usize {
    p.ring.completion().len()
}

#[test]
fn user_data_round_trips_and_never_collides() {
    for (fd, gen) in [(0, 0), (7, 1), (i32::MAX, u32::MAX), (1030, 0x8000_0000)] {
        let data = user_data(fd, gen);
        assert_eq!(split_user_data(data), (fd, gen));
        assert_ne!(data, WAKER);
        assert_ne!(data, IGNORE);
    }
}

/// A completion already in the completion ring when the fd is
/// deregistered, or modified to another token, is never reported.
#[test]
fn stale_completion_in_the_ring_is_dropped_by_generation() {
    let Some(mut p) = poller() else { return };
    let (a, mut b) = pair();
    b.write_all(b"x").unwrap();
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    // Submit without reaping: the ready fd's completion sits in the ring.
    p.enter(Some(Duration::ZERO)).unwrap();
    assert_eq!(in_ring(&mut p), 1);
    p.deregister(&a).unwrap();
    assert_eq!(wait(&mut p, SHORT), vec![]);

    // Stale again, and the same fd registered anew before the wait, its
    // data read away: the old completion must not pass for the new poll's.
    p.register(&a, Token(2), R, Trigger::Oneshot).unwrap();
    p.enter(Some(Duration::ZERO)).unwrap();
    assert_eq!(in_ring(&mut p), 1);
    p.deregister(&a).unwrap();
    p.register(&a, Token(2), R, Trigger::Oneshot).unwrap();
    assert_eq!((&a).read(&mut [0u8; 8]).unwrap(), 1);
    assert_eq!(wait(&mut p, SHORT), vec![]);
    b.write_all(b"y").unwrap();
    let got = wait(&mut p, LONG);
    assert_eq!(got, vec![Event::new(Token(2), Readiness::READABLE)]);
    assert_eq!((&a).read(&mut [0u8; 8]).unwrap(), 1);
    b.write_all(b"x").unwrap();
    p.deregister(&a).unwrap();

    p.register(&a, Token(2), R, Trigger::Level).unwrap();
    p.enter(Some(Duration::ZERO)).unwrap();
    assert_eq!(in_ring(&mut p), 1);
    p.modify(&a, Token(3), R, Trigger::Level).unwrap();
    for _ in 0..3 {
        let got = wait(&mut p, LONG);
        assert_eq!(got, vec![Event::new(Token(3), Readiness::READABLE)]);
    }
}

/// Interest changes are queued and go in with the next wait: a hundred
/// of them and the wait cost one io_uring_enter.
#[test]
fn interest_changes_ride_on_the_next_wait() {
    let Some(mut p) = poller() else { return };
    let (a, mut b) = pair();
    let before = p.submits;
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    for i in 0..100 {
        p.modify(&a, Token(i), R | Interest::WRITABLE, Trigger::Level)
            .unwrap();
    }
    p.modify(&a, Token(1), R, Trigger::Oneshot).unwrap();
    assert_eq!(p.submits, before, "an interest change entered the kernel");
    b.write_all(b"x").unwrap();
    let got = wait(&mut p, LONG);
    assert_eq!(got, vec![Event::new(Token(1), Readiness::READABLE)]);
    assert_eq!(p.submits, before + 1);
}

/// More registrations than the submission ring holds: it is submitted when
/// full, and every one of them is watched.
#[test]
fn a_full_submission_ring_is_submitted_on_the_spot() {
    let Some(mut p) = UringPoller::with_entries(8, 64).ok() else {
        return eprintln!("skipped: no io_uring");
    };
    let pairs: Vec<_> = (0..40).map(|_| pair()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.register(a, Token(i), R, Trigger::Level).unwrap();
    }
    assert!(p.submits >= 4, "submitted {} times", p.submits);
    for (_, b) in pairs.iter().step_by(3) {
        (&*b).write_all(b"x").unwrap();
    }
    let mut seen: Vec<usize> = wait(&mut p, LONG).iter().map(|e| e.token().0).collect();
    seen.sort();
    let want: Vec<usize> = (0..40).step_by(3).collect();
    assert_eq!(seen, want);
}

/// A completion ring far too small for one turn's completions overflows
/// (IORING_SQ_CQ_OVERFLOW); the kernel keeps the rest and `wait` flushes
/// them, so each wait still reports every ready fd, exactly once.
#[test]
fn an_overflowing_completion_ring_loses_no_event() {
    let Some(mut p) = UringPoller::with_entries(4, 8).ok() else {
        return eprintln!("skipped: no io_uring");
    };
    let n = 100;
    let pairs: Vec<_> = (0..n).map(|_| pair()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.register(a, Token(i), R, Trigger::Level).unwrap();
    }
    assert_eq!(wait(&mut p, Duration::ZERO), vec![]); // all in flight
    for (_, b) in &pairs {
        (&*b).write_all(b"x").unwrap();
    }
    // The completions are posted when we next enter: 100 into 8 entries.
    p.enter(Some(Duration::ZERO)).unwrap();
    assert!(p.ring.submission().cq_overflow(), "the CQ did not overflow");
    let mut events = Events::with_capacity(n);
    for round in 0..3 {
        p.wait(&mut events, Some(LONG)).unwrap();
        let mut seen: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        seen.sort();
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "round {round}");
    }
}

/// Completions that pile up for one edge fd between two waits make a
/// single event.
#[test]
fn edge_completions_between_waits_merge_into_one_event() {
    let Some(mut p) = poller() else { return };
    let (a, mut b) = pair();
    p.register(&a, Token(1), R, Trigger::Edge).unwrap();
    p.enter(Some(Duration::ZERO)).unwrap();
    for _ in 0..5 {
        b.write_all(b"x").unwrap();
        p.enter(Some(Duration::ZERO)).unwrap();
    }
    assert!(in_ring(&mut p) >= 2, "{} completions", in_ring(&mut p));
    let got = wait(&mut p, LONG);
    assert_eq!(got, vec![Event::new(Token(1), Readiness::READABLE)]);
    assert_eq!(wait(&mut p, SHORT), vec![]);
}

fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> OwnedFd {
    // SAFETY: `fd` is open for the call; F_DUPFD_CLOEXEC takes an int.
    let new = evmux_core::cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })
        .unwrap();
    // SAFETY: `new` was just returned by fcntl and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(new) }
}

/// An fd closed while its poll is in flight: the request holds the old
/// file open; registering a new fd under the same number finds that out,
/// cancels the old request (the old peer then sees EOF: the file is
/// released), reports one ERROR for the old token, and watches the new fd.
#[test]
fn fd_closed_in_flight_then_reused_releases_the_old_file() {
    let Some(mut p) = poller() else { return };
    let (a, mut b) = pair();
    // A number well above what parallel tests use, so it stays free.
    let old = dup_at_least(a.as_fd(), 700);
    drop(a);
    let n = old.as_raw_fd();
    p.register(&old, Token(1), R, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p, SHORT), vec![]); // in flight now
    drop(old); // the caller's bug: closed without deregistering
    let mut byte = [0u8; 1];
    assert_eq!(
        b.read(&mut byte).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the poll request keeps the old file open"
    );

    let (c, mut d) = pair();
    let new = dup_at_least(c.as_fd(), n);
    drop(c);
    assert_eq!(new.as_raw_fd(), n, "fd {n} was taken by someone else");
    p.register(&new, Token(2), R, Trigger::Level).unwrap();
    d.write_all(b"y").unwrap();
    let mut got = wait(&mut p, LONG);
    got.sort_by_key(|e| e.token());
    assert_eq!(
        got,
        vec![
            Event::new(Token(1), Readiness::ERROR),
            Event::new(Token(2), Readiness::READABLE)
        ]
    );
    assert_eq!(b.read(&mut byte).unwrap(), 0, "old file still open");
    // A true duplicate is still refused, and keeps working.
    let e = p.register(&new, Token(3), R, Trigger::Level).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        wait(&mut p, LONG),
        vec![Event::new(Token(2), Readiness::READABLE)]
    );
    p.deregister(&new).unwrap();
}

/// A level registration asked only for writes sees a half-closed socket's
/// POLLRDHUP on every arm; with a full send buffer it must sleep until the
/// next wake-up, not spin through empty waits.
#[test]
fn half_closed_with_write_interest_and_a_full_buffer_does_not_spin() {
    let Some(mut p) = poller() else { return };
    let (a, b) = pair();
    let mut chunk = vec![0u8; 65536];
    while (&a).write(&chunk).is_ok() {}
    b.shutdown(std::net::Shutdown::Write).unwrap();
    p.register(&a, Token(1), Interest::WRITABLE, Trigger::Level)
        .unwrap();
    let start = std::time::Instant::now();
    let mut waits = 0;
    while start.elapsed() < Duration::from_millis(100) {
        assert_eq!(wait(&mut p, Duration::from_millis(100)), vec![]);
        waits += 1;
    }
    assert!(waits <= 3, "{waits} waits in 100ms: spinning");
    // Room again: writable, on every wait (level).
    while (&b).read(&mut chunk).is_ok_and(|n| n > 0) {}
    for _ in 0..3 {
        let got = wait(&mut p, LONG);
        assert_eq!(got, vec![Event::new(Token(1), Readiness::WRITABLE)]);
    }
}

/// Runs `f` on a thread whose io_uring_setup fails with `errno` (a
/// seccomp filter on that thread alone).
fn with_io_uring_setup_failing<T: Send + 'static>(
    errno: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    thread::spawn(move || {
        const NR_OFFSET: u32 = 0; // seccomp_data.nr
        let filter = [
            libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: NR_OFFSET,
            },
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: libc::SYS_io_uring_setup as u32,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ERRNO | errno,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            },
        ];
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        evmux_core::cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).unwrap();
        // SAFETY: `prog` points at `filter`, both alive through the call; the
        // filter applies to this thread only (no TSYNC), which ends below.
        evmux_core::cvt(unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            )
        })
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn blocked_io_uring_is_unsupported_with_the_cause() {
    if poller().is_none() {
        return;
    }
    let e = with_io_uring_setup_failing(libc::EPERM as u32, UringPoller::new).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("EPERM"), "{e}");
    assert!(
        e.to_string().contains("seccomp") || e.to_string().contains("io_uring_disabled"),
        "{e}"
    );
    let e = with_io_uring_setup_failing(libc::ENOSYS as u32, UringPoller::new).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("ENOSYS"), "{e}");
    let e = with_io_uring_setup_failing(libc::EMFILE as u32, UringPoller::new).unwrap_err();
    assert_eq!(e.raw_os_error(), None);
    assert!(e.to_string().contains("io_uring_setup"), "{e}");
}

#[test]
fn translation_masks_what_was_not_asked() {
    let m = |bits: libc::c_short| bits as u32;
    let rw = Interest::READABLE | Interest::WRITABLE;
    assert_eq!(
        interest_to_poll(rw),
        m(libc::POLLIN | libc::POLLRDHUP | libc::POLLOUT)
    );
    assert_eq!(interest_to_poll(Interest::empty()), 0);
    // io_uring reports POLLRDHUP whatever was asked.
    assert_eq!(
        poll_to_readiness(m(libc::POLLRDHUP | libc::POLLOUT), Interest::WRITABLE),
        Readiness::WRITABLE
    );
    assert_eq!(
        poll_to_readiness(m(libc::POLLRDHUP), Interest::empty()),
        Readiness::empty()
    );
    assert_eq!(
        poll_to_readiness(m(libc::POLLHUP), R),
        Readiness::HUP | Readiness::READABLE
    );
    assert_eq!(
        poll_to_readiness(m(libc::POLLHUP | libc::POLLERR), Interest::empty()),
        Readiness::HUP | Readiness::ERROR
    );
}

/// Poll requests belong to the thread that submitted them: when it exits,
/// the kernel cancels them. A poller moved to another thread re-arms what
/// was cancelled, so nothing goes deaf.
#[test]
fn requests_cancelled_by_the_submitting_thread_exiting_are_re_armed() {
    let Some(p) = poller() else { return };
    let (a, mut b) = pair();
    let (c, mut d) = pair();
    let (a, c, mut p) = thread::spawn(move || {
        let mut p = p;
        p.register(&a, Token(1), R, Trigger::Level).unwrap();
        p.register(&c, Token(2), R, Trigger::Edge).unwrap();
        p.waker(Token(9)).unwrap().wake().unwrap();
        assert_eq!(
            wait(&mut p, LONG),
            vec![Event::new(Token(9), Readiness::READABLE)]
        );
        (a, c, p)
    })
    .join()
    .unwrap();
    b.write_all(b"x").unwrap();
    d.write_all(b"y").unwrap();
    let mut got = wait(&mut p, LONG);
    got.sort_by_key(|e| e.token());
    assert_eq!(
        got,
        vec![
            Event::new(Token(1), Readiness::READABLE),
            Event::new(Token(2), Readiness::READABLE)
        ]
    );
    drop((a, c));
}

/// A modify or deregister cancels a request in flight, whose completion
/// wakes the next wait with nothing to say; the wait goes on until its
/// timeout instead of returning early and empty.
#[test]
fn cancellation_completions_do_not_end_a_wait_early() {
    let Some(mut p) = poller() else { return };
    let (a, _b) = pair();
    let (c, _d) = pair();
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    p.register(&c, Token(2), R, Trigger::Edge).unwrap();
    assert_eq!(wait(&mut p, Duration::ZERO), vec![]); // both in flight
    p.modify(&a, Token(3), R | Interest::WRITABLE, Trigger::Edge)
        .unwrap();
    p.deregister(&c).unwrap();
    // The new registration reports writable once (edge), then silence.
    let got = wait(&mut p, LONG);
    assert_eq!(got, vec![Event::new(Token(3), Readiness::WRITABLE)]);
    p.modify(&a, Token(3), R, Trigger::Level).unwrap();
    let timeout = Duration::from_millis(100);
    let start = std::time::Instant::now();
    assert_eq!(wait(&mut p, timeout), vec![]);
    let took = start.elapsed();
    assert!(took >= timeout, "wait({timeout:?}) returned after {took:?}");
}
