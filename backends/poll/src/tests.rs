//! Smoke tests of the poll backend's bookkeeping, over real socket pairs.

use super::*;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Instant;

const R: Interest = Interest::READABLE;
const W: Interest = Interest::WRITABLE;
const SHORT: Option<Duration> = Some(Duration::from_millis(50));

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Waits briefly and returns what was reported, as (token, readiness).
#[track_caller]
fn wait(poller: &mut PollPoller) -> Vec<(usize, Readiness)> {
    let mut events = Events::with_capacity(16);
    poller.wait(&mut events, SHORT).unwrap();
    events
        .iter()
        .map(|e| (e.token().0, e.readiness()))
        .collect()
}

#[test]
fn level_readable_reports_on_every_wait() {
    let (a, mut b) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p), vec![]);
    b.write_all(b"x").unwrap();
    assert_eq!(wait(&mut p), vec![(1, Readiness::READABLE)]);
    assert_eq!(wait(&mut p), vec![(1, Readiness::READABLE)]);
}

#[test]
fn both_bits_in_one_event_and_only_where_asked() {
    let (a, mut b) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R | W, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p), vec![(1, Readiness::WRITABLE)]);
    b.write_all(b"x").unwrap();
    let both = Readiness::READABLE | Readiness::WRITABLE;
    assert_eq!(wait(&mut p), vec![(1, both)]);
    p.modify(&a, Token(2), W, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p), vec![(2, Readiness::WRITABLE)]);
    p.modify(&a, Token(3), Interest::empty(), Trigger::Level)
        .unwrap();
    assert_eq!(wait(&mut p), vec![]);
}

#[test]
fn hangup_reported_even_with_empty_interest() {
    let (a, b) = pair();
    let (c, d) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), Interest::empty(), Trigger::Level)
        .unwrap();
    p.register(&c, Token(2), R, Trigger::Level).unwrap();
    drop(b);
    drop(d);
    let events = wait(&mut p);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], (1, Readiness::HUP));
    let (token, readiness) = events[1];
    assert_eq!(token, 2);
    assert!(readiness.contains(Readiness::HUP | Readiness::READABLE | Readiness::READ_CLOSED));
}

#[test]
fn read_closed_asked_only_with_readable_interest() {
    let (a, b) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), W, Trigger::Level).unwrap();
    b.shutdown(Shutdown::Write).unwrap();
    // Write-only: the half-close is not reported, only the room to write.
    assert_eq!(wait(&mut p), vec![(1, Readiness::WRITABLE)]);
    p.modify(&a, Token(1), R, Trigger::Level).unwrap();
    let events = wait(&mut p);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0]
        .1
        .contains(Readiness::READABLE | Readiness::READ_CLOSED));
    let mut buf = [0u8; 4];
    assert_eq!((&a).read(&mut buf).unwrap(), 0);
}

#[test]
fn oneshot_reports_once_until_rearmed() {
    let (a, mut b) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R, Trigger::Oneshot).unwrap();
    b.write_all(b"x").unwrap();
    assert_eq!(wait(&mut p), vec![(1, Readiness::READABLE)]);
    assert_eq!(wait(&mut p), vec![]);
    // Disarmed means silent, even for a hang-up.
    drop(b);
    assert_eq!(wait(&mut p), vec![]);
    let err = p.register(&a, Token(1), R, Trigger::Oneshot).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    p.modify(&a, Token(4), R, Trigger::Oneshot).unwrap();
    let events = wait(&mut p);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, 4);
    assert_eq!(wait(&mut p), vec![]);
    p.deregister(&a).unwrap();
}

#[test]
fn oneshot_switches_to_level_and_back() {
    let (a, mut b) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R, Trigger::Oneshot).unwrap();
    b.write_all(b"x").unwrap();
    assert_eq!(wait(&mut p).len(), 1);
    p.modify(&a, Token(1), R, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p).len(), 1);
    assert_eq!(wait(&mut p).len(), 1);
    p.modify(&a, Token(1), R, Trigger::Oneshot).unwrap();
    assert_eq!(wait(&mut p).len(), 1);
    assert_eq!(wait(&mut p), vec![]);
}

#[test]
fn edge_is_refused_not_downgraded() {
    let (a, _b) = pair();
    let mut p = PollPoller::new().unwrap();
    assert!(!PollPoller::supports_trigger(Trigger::Edge));
    assert!(PollPoller::supports_trigger(Trigger::Level));
    assert!(PollPoller::supports_trigger(Trigger::Oneshot));
    let err = p.register(&a, Token(1), R, Trigger::Edge).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("poll backend"), "{err}");
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    let err = p.modify(&a, Token(1), R, Trigger::Edge).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[test]
fn bookkeeping_errors_have_the_right_kinds() {
    let (a, _b) = pair();
    let mut p = PollPoller::new().unwrap();
    let kind = |r: io::Result<()>| r.unwrap_err().kind();
    assert_eq!(
        kind(p.modify(&a, Token(1), R, Trigger::Level)),
        ErrorKind::NotFound
    );
    assert_eq!(kind(p.deregister(&a)), ErrorKind::NotFound);
    let reserved = p.register(&a, Token::RESERVED, R, Trigger::Level);
    assert_eq!(kind(reserved), ErrorKind::InvalidInput);
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    let again = p.register(&a, Token(2), R, Trigger::Level);
    assert_eq!(kind(again), ErrorKind::AlreadyExists);
    let reserved = p.modify(&a, Token::RESERVED, R, Trigger::Level);
    assert_eq!(kind(reserved), ErrorKind::InvalidInput);
    p.deregister(&a).unwrap();
    assert_eq!(kind(p.deregister(&a)), ErrorKind::NotFound);
    assert_eq!(PollPoller::fd_capacity(), None);
    assert_eq!(PollPoller::NAME, "poll");
}

#[test]
fn swap_remove_keeps_the_moved_entry_reachable() {
    let (a, mut a_peer) = pair();
    let (b, _b_peer) = pair();
    let (c, mut c_peer) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    p.register(&b, Token(2), R, Trigger::Level).unwrap();
    p.register(&c, Token(3), R, Trigger::Level).unwrap();
    p.deregister(&a).unwrap();
    a_peer.write_all(b"x").unwrap();
    c_peer.write_all(b"x").unwrap();
    assert_eq!(wait(&mut p), vec![(3, Readiness::READABLE)]);
    p.modify(&c, Token(30), R, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p), vec![(30, Readiness::READABLE)]);
    p.deregister(&c).unwrap();
    assert_eq!(wait(&mut p), vec![]);
    p.deregister(&b).unwrap();
    assert_eq!(p.fds.len(), 0);
}

#[test]
fn eight_thousand_fds_report_only_the_active_one() {
    let pairs: Vec<_> = (0..4000).map(|_| pair()).collect();
    let mut p = PollPoller::new().unwrap();
    for (i, (x, y)) in pairs.iter().enumerate() {
        p.register(x, Token(2 * i), R, Trigger::Level).unwrap();
        p.register(y, Token(2 * i + 1), R, Trigger::Level).unwrap();
    }
    (&pairs[2999].0).write_all(b"x").unwrap();
    assert_eq!(wait(&mut p), vec![(5999, Readiness::READABLE)]);
}

#[test]
fn waker_wakes_a_blocked_wait_from_another_thread() {
    let (a, _b) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    let waker = p.waker(Token(99)).unwrap();
    assert_eq!(
        p.waker(Token(98)).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let handle = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        waker.wake().unwrap();
    });
    let mut events = Events::with_capacity(4);
    p.wait(&mut events, None).unwrap();
    handle.join().unwrap();
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.token().0, e.readiness()))
        .collect();
    assert_eq!(got, vec![(99, Readiness::READABLE)]);
    // Drained: the next wait is quiet.
    assert_eq!(wait(&mut p), vec![]);
}

#[test]
fn waker_created_after_registrations_keeps_them_reachable() {
    let (a, mut a_peer) = pair();
    let (b, mut b_peer) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    p.register(&b, Token(2), R, Trigger::Level).unwrap();
    let waker = p.waker(Token(99)).unwrap();
    a_peer.write_all(b"x").unwrap();
    b_peer.write_all(b"x").unwrap();
    waker.wake().unwrap();
    let mut got = wait(&mut p);
    got.sort_by_key(|e| e.0);
    let r = Readiness::READABLE;
    assert_eq!(got, vec![(1, r), (2, r), (99, r)]);
    p.deregister(&a).unwrap();
    p.modify(&b, Token(20), R, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p), vec![(20, r)]);
    p.deregister(&b).unwrap();
    assert_eq!(wait(&mut p), vec![]);
    waker.wake().unwrap();
    assert_eq!(wait(&mut p), vec![(99, r)]);
}

#[test]
fn closed_fd_reports_one_error_then_is_forgotten() {
    let (a, mut a_peer) = pair();
    let (b, mut b_peer) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    p.register(&b, Token(2), R, Trigger::Level).unwrap();
    let raw = a.into_raw_fd();
    // SAFETY: `raw` came from `into_raw_fd` and is closed exactly once here.
    unsafe { libc::close(raw) };
    let _ = a_peer.write_all(b"x");
    b_peer.write_all(b"x").unwrap();
    let mut got = wait(&mut p);
    got.sort_by_key(|e| e.0);
    assert_eq!(got, vec![(1, Readiness::ERROR), (2, Readiness::READABLE)]);
    // SAFETY: only the number is used; the poller never touches the fd.
    let stale = unsafe { BorrowedFd::borrow_raw(raw) };
    assert_eq!(
        p.deregister(&stale).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let mut buf = [0u8; 1];
    (&b).read_exact(&mut buf).unwrap();
    assert_eq!(wait(&mut p), vec![]);
    // The fd that moved in the swap-remove is still reachable.
    p.modify(&b, Token(20), W, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p), vec![(20, Readiness::WRITABLE)]);
}

#[test]
fn several_closed_fds_in_one_wait_are_all_dropped() {
    let pairs: Vec<_> = (0..5).map(|_| pair()).collect();
    let mut p = PollPoller::new().unwrap();
    for (i, (x, _)) in pairs.iter().enumerate() {
        p.register(x, Token(i), W, Trigger::Level).unwrap();
    }
    let mut raws = Vec::new();
    let mut kept = Vec::new();
    for (i, (x, y)) in pairs.into_iter().enumerate() {
        if i % 2 == 0 {
            raws.push(x.into_raw_fd());
        } else {
            kept.push(x);
            drop(y);
        }
    }
    for &raw in &raws {
        // SAFETY: each `raw` came from `into_raw_fd` and is closed once.
        unsafe { libc::close(raw) };
    }
    let mut got = wait(&mut p);
    got.sort_by_key(|e| e.0);
    let tokens: Vec<_> = got.iter().map(|e| e.0).collect();
    assert_eq!(tokens, vec![0, 1, 2, 3, 4]);
    for &(token, readiness) in &got {
        if token % 2 == 0 {
            assert_eq!(readiness, Readiness::ERROR);
        } else {
            assert!(readiness.contains(Readiness::HUP | Readiness::WRITABLE));
        }
    }
    let mut again: Vec<_> = wait(&mut p).iter().map(|e| e.0).collect();
    again.sort_unstable();
    assert_eq!(again, vec![1, 3]);
    assert_eq!(p.fds.len(), 2);
}

#[test]
fn timeout_expires_with_no_events_and_reuses_the_buffer() {
    let (a, _b) = pair();
    let mut p = PollPoller::new().unwrap();
    p.register(&a, Token(1), R, Trigger::Level).unwrap();
    let mut events = Events::with_capacity(4);
    events.push(Event::new(Token(5), Readiness::READABLE));
    let start = Instant::now();
    p.wait(&mut events, Some(Duration::from_millis(30)))
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(events.is_empty());
    assert_eq!(events.capacity(), 4);
}

#[test]
fn bare_hangup_on_a_pipe_sets_readable_for_readers() {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two fds pipe writes.
    cvt(unsafe { libc::pipe(fds.as_mut_ptr()) }).unwrap();
    // SAFETY: both fds were just returned by pipe and are owned by no one else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut p = PollPoller::new().unwrap();
    p.register(&read, Token(1), R, Trigger::Level).unwrap();
    assert_eq!(wait(&mut p), vec![]);
    // A pipe with no writer left gives POLLHUP alone, without POLLIN.
    drop(write);
    let hup = Readiness::HUP | Readiness::READABLE;
    assert_eq!(wait(&mut p), vec![(1, hup)]);
    p.modify(&read, Token(1), Interest::empty(), Trigger::Level)
        .unwrap();
    assert_eq!(wait(&mut p), vec![(1, Readiness::HUP)]);
    assert_eq!(std::fs::File::from(read).read(&mut [0u8; 4]).unwrap(), 0);
}
