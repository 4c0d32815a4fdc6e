//! The reactor's integration tests: real TCP clients on 127.0.0.1 against a
//! `Reactor` running on its own thread, every scenario written once over
//! `P: Poller` and a `Trigger`, and instantiated by `reactor_tests!` into one
//! module per backend and trigger (`select_level`, `poll_level`,
//! `epoll_level`, `epoll_edge`, `uring_level`, `uring_edge`), so a failure reads
//! `epoll_edge::half_close_flushes_replies`.
//!
//! The handler is a small calculator (`a+b` answers the sum; see
//! `reactor_util::Calc`) framed by `Delimited::new(b"X")`. Every wait is
//! bounded: clients have 5 s read timeouts and reactors are joined with a
//! deadline.

mod common;
mod reactor_util;

use std::fmt::Write as _;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::{raise_fd_limit, require_fd_limit, set_linger_zero, LONG};
use evmux::codec::{Delimited, DEFAULT_MAX_FRAME};
use evmux::{CloseReason, Config, Conn, Control, Handler, Poller, Reactor, TimerId, Trigger};
use reactor_util::*;

/// The backends the scenarios run on.
trait Backend: Poller + Send + 'static {}
impl<P: Poller + Send + 'static> Backend for P {}

fn codec() -> Delimited {
    Delimited::new(b"X").expect("delimiter X")
}

fn config(trigger: Trigger) -> Config {
    Config::default().trigger(trigger)
}

/// A calculator server on `P` with `config`; `tick` adds periodic samples.
fn calc<P: Backend>(config: Config, tick: Option<Duration>) -> (Server<Calc>, Arc<Recorder>) {
    calc_with::<P>(codec(), config, tick)
}

/// [`calc`] with its own codec (a larger maximum frame, say).
fn calc_with<P: Backend>(
    codec: Delimited,
    config: Config,
    tick: Option<Duration>,
) -> (Server<Calc>, Arc<Recorder>) {
    let rec = Recorder::new();
    let handler = match tick {
        Some(every) => Calc::new(&rec).tick(every),
        None => Calc::new(&rec),
    };
    let server = serve::<P, _, _>(codec, config, |_| handler);
    (server, rec)
}

/// `n` pipelined sums and their answers.
fn sums(n: u64) -> (Vec<u8>, Vec<u8>) {
    let (mut req, mut want) = (String::new(), String::new());
    for i in 0..n {
        let _ = write!(req, "{i}+{}X", 3 * i);
        let _ = write!(want, "{}X", 4 * i);
    }
    (req.into_bytes(), want.into_bytes())
}

/// `FILL n` replies: the payload and its delimiter.
fn filled(n: usize) -> Vec<u8> {
    let mut reply = pattern(n);
    reply.push(b'X');
    reply
}

#[track_caller]
fn assert_no_handler_errors(rec: &Recorder) {
    let errors = rec.read(|r| r.errors.clone());
    assert!(errors.is_empty(), "handler errors: {errors:?}");
}

// ---- 1. answers ----------------------------------------------------------

fn answers_pipelined_and_split<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let (server, rec) = calc::<P>(config(trigger), None);
    let mut c = Client::connect(server.addr);
    c.request(b"100+98X14+23X", b"198X37X");

    let (req, want) = sums(1000);
    c.request(&req, &want);

    // One byte per segment (Nagle is off), with pauses so they really
    // arrive in separate reads.
    let split = b"123456+654321X";
    for (i, byte) in split.iter().enumerate() {
        c.send(&[*byte]);
        if i % 2 == 1 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    c.expect(b"777777X");

    let (stats, _) = server.finish();
    c.expect_eof();
    assert_eq!(stats.frames_in, 1003);
    assert_eq!(stats.frames_out, 1003);
    assert_eq!(stats.bytes_in, (13 + req.len() + split.len()) as u64);
    assert_eq!(stats.bytes_out, (7 + want.len() + 7) as u64);
    assert_eq!((stats.accepted, stats.open), (1, 0));
    assert_eq!(stats.closed(CloseReason::ServerShutdown), 1);
    assert_eq!(stats.closed_total(), 1);
    assert_no_handler_errors(&rec);
}

// ---- 2. oversized frame --------------------------------------------------

fn oversized_frame_closes_only_its_connection<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let rec = Recorder::new();
    let codec = codec().max_frame(1024);
    let server = serve::<P, _, _>(codec, config(trigger), |_| Calc::new(&rec));
    let mut before = Client::connect(server.addr);
    before.request(b"1+1X", b"2X");
    // A payload of exactly the maximum is still a frame.
    let mut max = vec![b'0'; 1021];
    max.extend_from_slice(b"1+1X");
    before.request(&max, b"2X");

    let mut bad = Client::connect(server.addr);
    let bad_id = rec.id_of(bad.local());
    bad.send(&[b'7'; 10 * 1024]);
    bad.expect_closed();
    assert_eq!(rec.closed(bad_id), CloseReason::FrameTooLarge);

    before.request(b"2+2X", b"4X");
    let mut after = Client::connect(server.addr);
    after.request(b"3+3X", b"6X");
    before.request(b"4+4X", b"8X");

    let (stats, _) = server.finish();
    assert_eq!(
        rec.read(|r| r.reasons(bad_id)),
        [CloseReason::FrameTooLarge]
    );
    assert_eq!(stats.closed(CloseReason::FrameTooLarge), 1);
    assert_eq!(stats.closed(CloseReason::ServerShutdown), 2);
    assert_eq!(stats.closed_total(), 3);
    assert_eq!(stats.frames_in, 5);
    assert_no_handler_errors(&rec);
}

/// Regression: replies batched for a connection that is then closed
/// without flushing (a frame too large later in the same read, or a
/// handler's `close` after `send`) were left in the reactor's shared
/// batch buffer and written to the next connection that flushed.
fn closing_with_batched_replies_leaks_nothing<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let rec = Recorder::new();
    let codec = codec().max_frame(1024);
    let server = serve::<P, _, _>(codec, config(trigger), |_| Calc::new(&rec));
    let mut bystander = Client::connect(server.addr);
    bystander.request(b"1+1X", b"2X");

    // One read holds a good frame, then an oversized one.
    let mut bad = Client::connect(server.addr);
    let bad_id = rec.id_of(bad.local());
    let mut req = b"20+2X".to_vec();
    req.extend_from_slice(&[b'7'; 2048]);
    bad.send(&req);
    let (got, _) = bad.read_to_close();
    assert!(got.is_empty() || got == b"22X", "bad got {}", show(&got));
    assert_eq!(rec.closed(bad_id), CloseReason::FrameTooLarge);
    bystander.request(b"3+3X", b"6X");

    // The handler sends, then closes now.
    let mut rude = Client::connect(server.addr);
    let rude_id = rec.id_of(rude.local());
    rude.send(b"BYEX");
    let (got, _) = rude.read_to_close();
    assert!(got.is_empty() || got == b"BYEX", "rude got {}", show(&got));
    assert_eq!(rec.closed(rude_id), CloseReason::ClosedByHandler);
    bystander.request(b"4+4X", b"8X");

    let (stats, _) = server.finish();
    bystander.expect_eof();
    assert_eq!(stats.closed(CloseReason::FrameTooLarge), 1);
    assert_eq!(stats.closed(CloseReason::ClosedByHandler), 1);
    assert_no_handler_errors(&rec);
}

// ---- 3. half-close -------------------------------------------------------

fn half_close_flushes_replies<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let rec = Recorder::new();
    let codec = codec().max_frame(1 << 20);
    // No backpressure here (it would hold the EOF back until the queue is
    // nearly empty): the EOF is read while megabytes are queued.
    let config = config(trigger).high_water(64 << 20);
    let server = serve::<P, _, _>(codec, config, |_| Calc::new(&rec));
    let mut c = Client::connect(server.addr);
    c.shrink_rcvbuf(64 * 1024);
    let id = rec.id_of(c.local());
    // 100 requests; every tenth, the last among them, asks for 800 kB: 8 MB
    // of replies, more than the kernel's buffers hold (about 4 MB).
    let (mut req, mut want) = (Vec::new(), Vec::new());
    for i in 0..100u64 {
        if i % 10 == 9 {
            req.extend_from_slice(b"FILL 800000X");
            want.extend_from_slice(&filled(800_000));
        } else {
            req.extend_from_slice(format!("{i}+{i}X").as_bytes());
            want.extend_from_slice(format!("{}X", 2 * i).as_bytes());
        }
    }
    c.send(&req);
    c.shutdown_write();
    thread::sleep(Duration::from_millis(100));
    let (got, ending) = c.read_to_close();
    assert_same(&got, &want);
    assert_eq!(ending, Ending::Eof);
    assert_eq!(rec.closed(id), CloseReason::PeerClosed);

    let (stats, _) = server.finish();
    assert_eq!(stats.closed(CloseReason::PeerClosed), 1);
    assert_eq!(stats.closed_total(), 1);
    assert_eq!(stats.frames_in, 100);
    assert_eq!(stats.bytes_out, want.len() as u64);
    assert_no_handler_errors(&rec);
}

// ---- 4. idle timeout -----------------------------------------------------

fn idle_timeout_closes_silent_connections<P: Backend>(trigger: Trigger) {
    const IDLE: Duration = Duration::from_millis(200);
    let _g = shared();
    let (server, rec) = calc::<P>(config(trigger).idle_timeout(Some(IDLE)), None);
    let start = Instant::now();
    let mut silent = Client::connect(server.addr);
    let silent_id = rec.id_of(silent.local());
    let mut busy = Client::connect(server.addr);
    let busy_id = rec.id_of(busy.local());
    let mut trickle = Client::connect(server.addr);
    let trickle_id = rec.id_of(trickle.local());

    // The busy client talks every 50 ms for 600 ms: never idle for 200 ms.
    // The trickle client only sends (a digit of a long number each time,
    // so it gets no reply): reading counts as traffic too.
    let mut digits = 0;
    for i in 0u64.. {
        if start.elapsed() >= Duration::from_millis(600) {
            break;
        }
        busy.request(
            format!("{i}+1X").as_bytes(),
            format!("{}X", i + 1).as_bytes(),
        );
        trickle.send(b"1");
        digits += 1;
        thread::sleep(Duration::from_millis(50));
    }
    let not_closed = |id| rec.read(|r| r.reasons(id).is_empty());
    assert!(not_closed(trickle_id), "trickle client closed");
    let ones: u64 = "1".repeat(digits).parse().expect("digits");
    trickle.request(b"+1X", format!("{}X", ones + 1).as_bytes());
    assert!(
        rec.read(|r| r.reasons(busy_id).is_empty()),
        "busy client closed"
    );
    let last_sent = Instant::now();
    busy.request(b"1+1X", b"2X");

    // The silent one was closed after 200 ms, and well before 2 s.
    assert_eq!(rec.closed(silent_id), CloseReason::IdleTimeout);
    let at = |id| rec.read(|r| r.closed.iter().find(|c| c.0 == id).map(|c| c.2));
    let lived = at(silent_id).expect("closed") - start;
    assert!(
        lived >= IDLE && lived < Duration::from_secs(2),
        "silent lived {lived:?}"
    );
    silent.expect_eof();

    // Now the busy one goes quiet too.
    assert_eq!(rec.closed(busy_id), CloseReason::IdleTimeout);
    let quiet = at(busy_id).expect("closed") - last_sent;
    assert!(
        quiet >= IDLE && quiet < Duration::from_secs(2),
        "busy quiet {quiet:?}"
    );
    busy.expect_eof();
    assert_eq!(rec.closed(trickle_id), CloseReason::IdleTimeout);
    trickle.expect_eof();

    let (stats, _) = server.finish();
    assert_eq!(stats.closed(CloseReason::IdleTimeout), 3);
    assert_eq!(stats.closed_total(), 3);
    assert_eq!(stats.open, 0);
    assert_no_handler_errors(&rec);
}

// ---- 5. stop handle ------------------------------------------------------

fn stop_handle_closes_everything<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let (server, rec) = calc::<P>(config(trigger), None);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(server.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.request(format!("{i}+0X").as_bytes(), format!("{i}X").as_bytes());
    }
    let ids: Vec<_> = clients.iter().map(|c| rec.id_of(c.local())).collect();

    // Let the loop go back to waiting, with nothing due for 60 s: only the
    // stop handle's wake-up can end that wait in time.
    thread::sleep(Duration::from_millis(50));
    let stop = server.stop.clone();
    stop.stop().expect("stop");
    stop.stop().expect("stopping twice is harmless");
    let (stats, _) = server.join(Duration::from_secs(1));
    stop.stop()
        .expect("stopping after run returned is harmless");

    for c in &mut clients {
        c.expect_eof();
    }
    for id in ids {
        assert_eq!(rec.read(|r| r.reasons(id)), [CloseReason::ServerShutdown]);
    }
    assert_eq!(stats.open, 0);
    assert_eq!(stats.closed(CloseReason::ServerShutdown), 3);
    assert_eq!(stats.closed_total(), 3);
    assert_no_handler_errors(&rec);
}

/// The size of a reply that does not fit in the kernel's buffers: on
/// loopback the server's send buffer alone autotunes to about 4 MB (the
/// `tcp_wmem` maximum), so a 4 MiB reply would leave the reactor's queue
/// almost empty and a stop would have nothing to flush.
const BIG: usize = 16 << 20;

/// A server whose one client asked for a 16 MiB reply and reads none of it
/// yet; returns once much of it waits in the reactor's queue.
fn big_reply_queued<P: Backend>(
    trigger: Trigger,
    grace: Duration,
) -> (Server<Calc>, Arc<Recorder>, Client) {
    let rec = Recorder::new();
    let codec = codec().max_frame(2 * BIG);
    let config = config(trigger).shutdown_grace(grace);
    let server = serve::<P, _, _>(codec, config, |_| {
        Calc::new(&rec).tick(Duration::from_millis(2))
    });
    let mut c = Client::connect(server.addr);
    c.shrink_rcvbuf(64 * 1024);
    rec.id_of(c.local());
    let asked = Instant::now();
    c.send(format!("FILL {BIG}X").as_bytes());
    // The kernel's socket buffers hold part of it; the rest (at least
    // 4 MiB) must be in the connection's output queue, or the test would
    // not show that stop flushes.
    rec.sample_after("4 MiB queued", asked, |s| s.buffered >= 4 << 20);
    (server, rec, c)
}

fn stop_flushes_queued_output<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let (server, rec, mut c) = big_reply_queued::<P>(trigger, Duration::from_secs(5));
    let id = rec.id_of(c.local());
    server.stop.stop().expect("stop");
    server.stop.stop().expect("stop again");
    // A slow reader, well within the grace period.
    thread::sleep(Duration::from_millis(100));
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read after {} bytes: {e}", got.len()),
        }
        thread::sleep(Duration::from_millis(1));
    }
    assert_same(&got, &filled(BIG));
    let (stats, _) = server.join(LONG);
    assert_eq!(rec.read(|r| r.reasons(id)), [CloseReason::ServerShutdown]);
    assert_eq!(stats.bytes_out, BIG as u64 + 1);
    assert_eq!(stats.open, 0);
    assert_no_handler_errors(&rec);
}

fn stop_gives_up_after_grace<P: Backend>(trigger: Trigger) {
    const GRACE: Duration = Duration::from_millis(300);
    let _g = shared();
    let (server, rec, mut c) = big_reply_queued::<P>(trigger, GRACE);
    let id = rec.id_of(c.local());
    // Stop between short turns (the one that queued the reply is long in
    // a debug build; stopping during a long turn is the next test).
    let now = Instant::now();
    rec.sample_after("a later turn", now, |s| s.turn >= now);
    let stopped = Instant::now();
    server.stop.stop().expect("stop");
    let (stats, _) = server.join(LONG);
    let took = stopped.elapsed();
    assert!(
        took >= GRACE - Duration::from_millis(10),
        "run returned after {took:?}"
    );
    assert!(took < Duration::from_secs(2), "run returned after {took:?}");
    assert_eq!(rec.read(|r| r.reasons(id)), [CloseReason::ServerShutdown]);
    // What the kernel held arrives, then the end; the queue was dropped.
    let (got, _) = c.read_to_close();
    assert!(got.len() < BIG, "got {} bytes", got.len());
    assert_same(&got, &filled(BIG)[..got.len()]);
    assert_eq!(stats.open, 0);
}

/// The grace period runs from the stop request, even when the request
/// arrives late in a long loop turn (here a handler blocking for 400 ms,
/// and the stop 200 ms into it). Counting the grace from the start of that
/// turn would give up about 100 ms after the request instead of 300 ms.
fn grace_counts_from_the_stop_request<P: Backend>(trigger: Trigger) {
    const GRACE: Duration = Duration::from_millis(300);
    let _g = shared();
    let (server, rec, _c) = big_reply_queued::<P>(trigger, GRACE);
    let mut slow = Client::connect(server.addr);
    slow.send(b"SLOW 400X");
    let began = rec.wait("SLOW to start", LONG, |r| r.slow.first().copied());
    thread::sleep(Duration::from_millis(200).saturating_sub(began.elapsed()));
    let stopped = Instant::now();
    server.stop.stop().expect("stop");
    server.join(LONG);
    let took = stopped.elapsed();
    assert!(
        took >= GRACE - Duration::from_millis(10),
        "a stop requested {:?} into a long turn gave up after {took:?}, not {GRACE:?}",
        stopped - began
    );
    slow.expect(b"OKX");
    slow.expect_eof();
}

// ---- 6. stale events -----------------------------------------------------

/// A connection closed and a new one accepted on the same fd in one loop
/// turn: the new one gets nothing of the old one's.
///
/// Arrangement: B is paused with work pending (256 `FILL` replies it never
/// reads, frames left in its input buffer, a partial frame). A's `SWAP`
/// asks the reactor to close B and, from inside the callback, connects C,
/// which waits in the listen queue. In the next turn the reactor closes B
/// (before waiting), then accepts C: with the fd table's holes filled, C
/// gets B's fd number (the test checks it did), and B's freed slot in the
/// connection table (the slab hands out the last freed key; ids are opaque,
/// so that is not checked). Then A sends `KILL` for B again: a stale id,
/// naming B's fd and slot, which C now holds.
///
/// If tokens and ids had no generation (the fd or slab key alone), the
/// stale `KILL` would close C: its `3+3` would get EOF instead of `6`, and
/// `on_close` would report C as `ClosedByHandler`. A reactor that kept
/// per-slot or per-fd buffers across the reuse would hand B's leftover
/// `FILL` frames and its `1000+` to C: C would read pattern bytes or a
/// wrong sum, and its stream at EOF would not be exactly its own replies.
fn fd_reused_in_one_turn_gets_nothing_stale<P: Backend>(trigger: Trigger) {
    let _x = exclusive();
    let holes = fill_fd_holes();
    let rec = Recorder::new();
    let (to_test, new_clients) = mpsc::channel();
    let config = config(trigger).high_water(64 * 1024);
    let server = serve::<P, _, _>(codec(), config, |addr| {
        Calc::new(&rec)
            .tick(Duration::from_millis(2))
            .swap(addr, to_test)
    });
    let mut a = Client::connect(server.addr);
    a.request(b"1+1X", b"2X");
    let mut b = Client::connect(server.addr);
    b.shrink_rcvbuf(64 * 1024);
    let b_id = rec.id_of(b.local());
    let since = Instant::now();
    b.send(&b"FILL 65536X".repeat(256)); // 16 MiB of replies
    b.send(b"1000+");
    rec.sample_after("B paused on backpressure", since, |s| {
        s.buffered >= 64 * 1024
    });
    let b_fd = server_fd_of(&b).expect("B's server end");
    let b_port = b.local().port();

    a.request(format!("SWAP {b_port}X").as_bytes(), b"OKX");
    let c = new_clients.recv_timeout(LONG).expect("SWAP made a client");
    let mut c = Client::from_stream(c);
    let c_id = rec.id_of(c.local());
    assert_eq!(rec.closed(b_id), CloseReason::ClosedByHandler);
    assert_ne!(c_id, b_id, "ids are never reused");
    assert_eq!(server_fd_of(&c), Some(b_fd), "setup: C should get B's fd");
    c.request(b"1+1X2+2X", b"2X4X");

    a.request(format!("KILL {b_port}X").as_bytes(), b"OKX");
    c.request(b"3+3X", b"6X");
    a.request(b"5+5X", b"10X");

    let (data, _) = b.read_to_close();
    let b_replies = filled(65536).repeat(256);
    assert_same(&data, &b_replies[..data.len().min(b_replies.len())]);
    let (stats, _) = server.finish();
    c.expect_eof();
    drop(holes);
    assert_eq!(
        rec.read(|r| r.reasons(b_id)),
        [CloseReason::ClosedByHandler]
    );
    assert_eq!(rec.read(|r| r.reasons(c_id)), [CloseReason::ServerShutdown]);
    assert_eq!(stats.closed(CloseReason::ClosedByHandler), 1);
    assert_eq!(stats.closed(CloseReason::ServerShutdown), 2);
    assert_no_handler_errors(&rec);
}

// ---- 7. select's FD_SETSIZE ----------------------------------------------

fn fds_past_fd_setsize<P: Backend>(trigger: Trigger) {
    let _x = exclusive();
    require_fd_limit(2048);
    let select = P::fd_capacity() == Some(1024);
    let (server, rec) = calc::<P>(config(trigger), None);
    let mut served: Vec<Client> = (0..3).map(|_| Client::connect(server.addr)).collect();
    for c in &mut served {
        c.request(b"1+2X", b"3X");
    }

    // Take every number below 1022: the next client lands on 1022 and its
    // server end on 1023, the last fd select can watch; later ones above.
    let fillers = take_fds_below(1022);
    let mut edge = Client::connect(server.addr);
    assert_eq!(edge.stream.as_raw_fd(), 1022, "setup: client fd");
    edge.request(b"5+5X", b"10X");
    assert_eq!(server_fd_of(&edge), Some(1023), "setup: server fd");
    served.push(edge);

    let mut refused = Vec::new();
    for i in 0..3u64 {
        let mut c = Client::connect(server.addr);
        assert!(
            c.stream.as_raw_fd() >= 1024,
            "setup: client fd {}",
            c.stream.as_raw_fd()
        );
        if select {
            c.expect_eof(); // closed at once, never served
            refused.push(c);
            continue;
        }
        c.request(
            format!("{i}+1X").as_bytes(),
            format!("{}X", i + 1).as_bytes(),
        );
        let fd = server_fd_of(&c).expect("server end");
        assert!(fd >= 1024, "setup: server fd {fd}");
        served.push(c);
    }
    let want = if select { 3 } else { 0 };
    let what = format!("{want} OverCapacity closes");
    rec.wait(&what, LONG, |r| {
        (r.count(CloseReason::OverCapacity) == want).then_some(())
    });

    // Everyone admitted is still served.
    for (i, c) in served.iter_mut().enumerate() {
        c.request(
            format!("{i}+{i}X").as_bytes(),
            format!("{}X", 2 * i).as_bytes(),
        );
    }
    drop(fillers);
    let (stats, _) = server.finish();
    for c in &mut served {
        c.expect_eof();
    }
    let opened = rec.read(|r| r.opened.len());
    assert_eq!(
        opened,
        served.len(),
        "on_open is not called for refused ones"
    );
    assert_eq!(stats.accepted, 7);
    assert_eq!(stats.closed(CloseReason::OverCapacity), want as u64);
    assert_eq!(
        stats.closed(CloseReason::ServerShutdown),
        served.len() as u64
    );
    assert_eq!(stats.open, 0);
    assert_eq!(refused.len(), want);
    assert_no_handler_errors(&rec);
}

// ---- 8. a client that never reads ----------------------------------------

const HIGH_WATER: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;
const ECHO_FRAME: usize = 16 * 1024;
const ECHO_FRAMES: usize = 2048; // 32 MiB of requests, and of replies

/// Echo frame `i`: its number, then filler; `X` is the delimiter.
fn echo_frame(frame: &mut [u8], i: usize) {
    frame[..8].copy_from_slice(format!("{i:08}").as_bytes());
}

fn echo_template() -> Vec<u8> {
    let mut frame = pattern(ECHO_FRAME);
    frame.push(b'X');
    frame
}

/// Waits until `progress` stops moving short of `total`; returns where.
fn wait_for_stall(progress: &AtomicU64, total: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut since) = (u64::MAX, Instant::now());
    loop {
        let now = progress.load(Ordering::Acquire);
        assert!(
            now < total,
            "the writer never blocked: the server read all {total} bytes"
        );
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_millis(500) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the writer kept going ({now} bytes)"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn never_reading_client_is_bounded<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let rec = Recorder::new();
    let config = config(trigger)
        .high_water(HIGH_WATER)
        .read_chunk(READ_CHUNK);
    let server = serve::<P, _, _>(codec(), config, |_| Calc::echo(&rec));
    let mut c = Client::connect(server.addr);
    let mut stream = c.stream.try_clone().expect("try_clone");
    let progress = Arc::new(AtomicU64::new(0));
    let written = Arc::clone(&progress);
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let mut frame = echo_template();
        for i in 0..ECHO_FRAMES {
            echo_frame(&mut frame, i);
            std::io::Write::write_all(&mut stream, &frame)?;
            written.fetch_add(frame.len() as u64, Ordering::Release);
        }
        Ok(())
    });
    let total = (ECHO_FRAMES * (ECHO_FRAME + 1)) as u64;
    let stalled = wait_for_stall(&progress, total);

    // Now read: every reply comes back intact and in order.
    let mut want = echo_template();
    for i in 0..ECHO_FRAMES {
        echo_frame(&mut want, i);
        let got = c.read_n(want.len());
        if got != want {
            assert_same(&got, &want);
        }
    }
    join_within(writer, "the writer", LONG).expect("writer");
    let (stats, _) = server.finish();
    c.expect_eof();

    // What the reactor may hold, from its documented behaviour: reading
    // pauses at the first frame that takes the output queue to the
    // high-water mark, so output is at most high_water + one frame (a
    // frame is at most max_frame; the queue doubles only up to high_water,
    // then grows exactly); the input buffer stays near one read chunk
    // while frames are shorter than that. A second read chunk is slack for
    // a partial frame kept across reads. (Measured: about 330 kB.)
    let bound = HIGH_WATER + 2 * READ_CHUNK + DEFAULT_MAX_FRAME;
    assert!(
        stats.peak_buffered <= bound as u64,
        "peak_buffered {} > {bound} (writer blocked after {stalled} of {total} bytes)",
        stats.peak_buffered
    );
    assert!(
        stats.peak_buffered >= HIGH_WATER as u64,
        "the queue never filled"
    );
    assert_eq!(stats.frames_in, ECHO_FRAMES as u64);
    assert_eq!(stats.frames_out, ECHO_FRAMES as u64);
    assert_eq!((stats.bytes_in, stats.bytes_out), (total, total));
    assert_eq!(stats.buffered, 0);
    assert_no_handler_errors(&rec);
}

// ---- 9. idle connection cost ---------------------------------------------

fn idle_connections_hold_no_buffers<P: Backend>(trigger: Trigger) {
    const CLIENTS: usize = 100;
    let _g = shared();
    let size = Reactor::<P, Delimited>::idle_connection_size();
    assert!(size <= 256, "an idle connection costs {size} bytes");
    raise_fd_limit().expect("raise RLIMIT_NOFILE");
    let (server, rec) = calc::<P>(config(trigger), Some(Duration::from_millis(5)));
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(server.addr)).collect();
    // Half a request each: the partial frames must be held (and counted).
    let since = Instant::now();
    for c in &mut clients {
        c.send(b"12+");
    }
    let what = "100 partial requests held";
    rec.sample_after(what, since, |s| s.open == 100 && s.buffered >= 3 * 100);
    for c in &mut clients {
        c.request(b"34X", b"46X");
    }
    // Every reply is out, so the turn that wrote the last one has settled
    // every connection: any sample from now on sees them all idle.
    let idle = Instant::now();
    let s = rec.sample_after("a sample after the last reply", idle, |_| true);
    assert_eq!(s.open, CLIENTS as u64);
    assert_eq!(s.buffered, 0, "idle connections still hold buffers");

    let (stats, _) = server.finish();
    assert_eq!(stats.buffered, 0);
    assert!(stats.peak_buffered >= 3 * 100);
    assert_no_handler_errors(&rec);
}

// ---- 10. triggers --------------------------------------------------------

fn triggers_are_checked<P: Backend>(trigger: Trigger) {
    let _g = shared();
    match Reactor::<P, _>::new(codec(), config(trigger)) {
        Ok(r) => {
            assert_eq!((r.trigger(), r.backend()), (trigger, P::NAME));
        }
        Err(e) => panic!("{trigger:?} on {}: {e}", P::NAME),
    }
    match Reactor::<P, _>::new(codec(), config(Trigger::Edge)) {
        Ok(r) => {
            assert!(
                P::supports_trigger(Trigger::Edge),
                "edge accepted by {}",
                P::NAME
            );
            assert_eq!(r.trigger(), Trigger::Edge);
        }
        Err(e) => {
            assert!(
                !P::supports_trigger(Trigger::Edge),
                "{} refused edge: {e}",
                P::NAME
            );
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("{} backend", P::NAME)), "{msg}");
        }
    }
    let default = Reactor::<P, _>::new(codec(), Config::default()).map(|r| r.trigger());
    let want = if P::supports_trigger(Trigger::Edge) {
        Trigger::Edge
    } else {
        Trigger::Level
    };
    assert_eq!(default.ok(), Some(want));
    match Reactor::<P, _>::new(codec(), config(Trigger::Oneshot)) {
        Ok(_) => panic!("oneshot accepted"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
    }
}

// ---- 11. an idle loop sleeps ---------------------------------------------

fn idle_loop_does_not_spin<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let (server, rec) = calc::<P>(config(trigger), Some(Duration::from_millis(50)));
    // Each connection has read and written once, so a writable interest
    // left on after the reply would make a level-triggered loop spin.
    let mut clients: Vec<Client> = (0..50).map(|_| Client::connect(server.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.request(
            format!("{i}+{i}X").as_bytes(),
            format!("{}X", 2 * i).as_bytes(),
        );
    }
    let quiet = Instant::now();
    thread::sleep(Duration::from_millis(600));
    let (first, last) = rec.read(|r| {
        let mut after = r.samples.iter().filter(|s| s.at >= quiet);
        (after.next().copied(), r.samples.last().copied())
    });
    let (first, last) = (first.expect("samples"), last.expect("samples"));
    let wall = last.at - first.at;
    let cpu = last.cpu - first.cpu;
    assert!(
        wall >= Duration::from_millis(400),
        "samples span only {wall:?}"
    );
    assert!(
        cpu < Duration::from_millis(50),
        "the loop used {cpu:?} of CPU in {wall:?} with 50 idle connections"
    );
    let (stats, _) = server.finish();
    assert_eq!(stats.closed(CloseReason::ServerShutdown), 50);
}

// ---- 12. handler timers --------------------------------------------------

/// Sets a one-shot timer, an interval it cancels after five ticks, a timer
/// it cancels before it fires, and a last one that stops the reactor.
struct Clock {
    rec: Arc<Recorder>,
    start: Option<Instant>,
    once: Option<TimerId>,
    every: Option<TimerId>,
    doomed: Option<TimerId>,
    end: Option<TimerId>,
    ticks: u32,
    /// Cancelling `doomed`, twice.
    cancel_doomed: (bool, bool),
    /// Cancelling `once` from its own callback (it has fired).
    cancel_once: Option<bool>,
    /// Cancelling `every` from its fifth tick.
    cancel_every: Option<bool>,
}

impl Handler for Clock {
    fn on_start(&mut self, ctl: &mut Control<'_>) {
        self.start = Some(ctl.now());
        self.once = Some(ctl.set_timer(Duration::from_millis(100)));
        self.every = Some(ctl.set_interval(Duration::from_millis(30)));
        let doomed = ctl.set_timer(Duration::from_millis(50));
        self.cancel_doomed = (ctl.cancel_timer(doomed), ctl.cancel_timer(doomed));
        self.doomed = Some(doomed);
        self.end = Some(ctl.set_timer(Duration::from_millis(400)));
    }

    fn on_frame(&mut self, _conn: &mut Conn<'_>, _frame: &[u8]) {}

    fn on_timer(&mut self, ctl: &mut Control<'_>, timer: TimerId) {
        let now = Instant::now();
        self.rec.update(|r| r.fired.push((timer, now)));
        if Some(timer) == self.once {
            self.cancel_once = Some(ctl.cancel_timer(timer));
        }
        if Some(timer) == self.every {
            self.ticks += 1;
            if self.ticks == 5 {
                self.cancel_every = Some(ctl.cancel_timer(timer));
            }
        }
        if Some(timer) == self.end {
            ctl.stop();
        }
    }
}

fn handler_timers_fire_and_cancel<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let rec = Recorder::new();
    let clock = Clock {
        rec: Arc::clone(&rec),
        start: None,
        once: None,
        every: None,
        doomed: None,
        end: None,
        ticks: 0,
        cancel_doomed: (false, false),
        cancel_once: None,
        cancel_every: None,
    };
    let server = serve::<P, _, _>(codec(), config(trigger), |_| clock);
    // The `end` timer stops it.
    let (_, clock) = server.join(Duration::from_secs(3));
    let start = clock.start.expect("on_start ran");
    let fired = rec.read(|r| r.fired.clone());
    let at = |id: Option<TimerId>| -> Vec<Duration> {
        let of = fired.iter().filter(|(t, _)| Some(*t) == id);
        of.map(|&(_, when)| when - start).collect()
    };
    let ms = Duration::from_millis;
    let once = at(clock.once);
    assert!(
        once.len() == 1 && once[0] >= ms(100),
        "one-shot fired at {once:?}"
    );
    let every = at(clock.every);
    assert_eq!(
        every.len(),
        5,
        "interval fired at {every:?} (cancelled after 5)"
    );
    for (k, when) in every.iter().enumerate() {
        assert!(
            *when >= ms(30) * (k as u32 + 1),
            "tick {k} at {when:?}: {every:?}"
        );
    }
    assert!(at(clock.doomed).is_empty(), "a cancelled timer fired");
    assert_eq!(at(clock.end).len(), 1);
    assert_eq!(clock.cancel_doomed, (true, false));
    assert_eq!(clock.cancel_once, Some(false), "a fired one-shot is gone");
    assert_eq!(clock.cancel_every, Some(true));
}

// ---- 13. reset mid-stream ------------------------------------------------

fn reset_mid_stream<P: Backend>(trigger: Trigger) {
    let _x = exclusive();
    // A write to a reset socket that raised SIGPIPE would now kill the run.
    let _sigpipe = SigpipeDefault::install();
    let config = config(trigger).high_water(256 * 1024);
    let (server, rec) = calc::<P>(config, Some(Duration::from_millis(2)));
    let mut other = Client::connect(server.addr);
    other.request(b"1+1X", b"2X");
    let requests = b"FILL 65536X".repeat(128); // 8 MiB of replies
    for round in 0..3u64 {
        let mut victim = Client::connect(server.addr);
        victim.shrink_rcvbuf(64 * 1024);
        let id = rec.id_of(victim.local());
        let since = Instant::now();
        victim.send(&requests);
        match round {
            // Reset while replies wait in the output queue.
            0 => drop(rec.sample_after("replies queued", since, |s| s.buffered > 0)),
            // Reset while the server may still be reading and replying.
            1 => {}
            // Reset in the middle of taking replies.
            _ => drop(victim.read_n(100_000)),
        }
        set_linger_zero(victim.stream.as_fd()).expect("SO_LINGER 0");
        drop(victim);
        let reason = rec.closed(id);
        assert!(
            matches!(reason, CloseReason::Reset | CloseReason::PeerClosed),
            "round {round}: {reason:?}"
        );
        let sum = round + 10;
        other.request(
            format!("{round}+10X").as_bytes(),
            format!("{sum}X").as_bytes(),
        );
    }
    let (stats, _) = server.finish();
    other.expect_eof();
    let gone = stats.closed(CloseReason::Reset) + stats.closed(CloseReason::PeerClosed);
    assert_eq!(gone, 3, "{stats}");
    assert_eq!(stats.closed(CloseReason::ServerShutdown), 1);
    assert_no_handler_errors(&rec);
}

// ---- 18. a stalled reader (regression: one send() per incoming frame) -----

/// 8 MB of replies: more than loopback's kernel buffers hold, so several
/// megabytes stay in the reactor's queue while the client does not read.
const STALL_FILLS: usize = 10;
const STALL_FILL: usize = 800_000;

/// A calculator with no backpressure in the way (the queue may hold all
/// 8 MB) and a sample every 10 ms, and a client that asked for 8 MB of
/// replies and reads none of them: the reactor's last write met a full
/// socket. Returns once the reactor holds output it could not send.
fn stalled_reader<P: Backend>(config: Config) -> (Server<Calc>, Arc<Recorder>, Client) {
    let (server, rec) = calc_with::<P>(
        codec().max_frame(4 << 20),
        config.high_water(64 << 20),
        Some(Duration::from_millis(10)),
    );
    let mut c = Client::connect(server.addr);
    c.shrink_rcvbuf(16 * 1024);
    let fills = format!("FILL {STALL_FILL}X").repeat(STALL_FILLS);
    c.send(fills.as_bytes());
    rec.sample_after("8 MB of replies queued", Instant::now(), |s| {
        s.frames_in == STALL_FILLS as u64 && s.buffered > 1 << 20
    });
    (server, rec, c)
}

/// Reads the 8 MB the stalled client asked for, checking every byte.
#[track_caller]
fn read_the_fills(c: &mut Client) {
    let want = filled(STALL_FILL);
    for _ in 0..STALL_FILLS {
        let got = c.read_n(want.len());
        if got != want {
            assert_same(&got, &want);
        }
    }
}

/// Regression (the stalled-reader bug): once the queue was past 64 KiB,
/// every frame dispatched tried a `send` although the last one had met a
/// full socket and no writable event had come since: a client streaming
/// empty frames at a stalled queue cost one failed `send` per byte and
/// pinned the core. Now a blocked connection is written to only after the
/// poller reports it writable: 20,000 frames cost a handful of sends.
fn stalled_reader_costs_no_send_per_frame<P: Backend>(trigger: Trigger) {
    const FRAMES: u64 = 20_000;
    let _g = shared();
    let (server, rec, mut c) = stalled_reader::<P>(config(trigger));
    let before = rec.sample_after("a sample", Instant::now(), |_| true);
    for _ in 0..FRAMES / 1000 {
        c.send(&[b'X'; 1000]);
        thread::sleep(Duration::from_millis(1));
    }
    let after = rec.sample_after("the empty frames read", Instant::now(), |s| {
        s.frames_in == STALL_FILLS as u64 + FRAMES
    });
    let sends = after.writes - before.writes;
    assert!(
        sends <= 20,
        "{sends} sends for {FRAMES} frames at a stalled queue (want O(writable events))"
    );
    read_the_fills(&mut c);
    let (stats, _) = server.finish();
    c.expect_eof();
    assert_eq!(stats.bytes_out, (STALL_FILLS * (STALL_FILL + 1)) as u64);
    assert_no_handler_errors(&rec);
}

/// While one connection floods empty frames at a stalled queue, another
/// client's round trips stay fast (before the fix: 39 ms p50 on epoll,
/// 109 ms on poll, in release builds).
fn good_client_is_served_beside_a_flood<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let (server, rec, mut flooder) = stalled_reader::<P>(config(trigger));
    let mut stream = flooder.stream.try_clone().expect("try_clone");
    let stop = Arc::new(AtomicU64::new(0));
    let stopped = Arc::clone(&stop);
    // About 1 MB/s of empty frames, in 4 KiB writes.
    let flood = thread::spawn(move || {
        while stopped.load(Ordering::Acquire) == 0 {
            if std::io::Write::write_all(&mut stream, &[b'X'; 4096]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(4));
        }
    });
    thread::sleep(Duration::from_millis(100));
    let mut good = Client::connect(server.addr);
    let mut times = Vec::new();
    for i in 0..200u64 {
        let start = Instant::now();
        good.request(
            format!("{i}+1X").as_bytes(),
            format!("{}X", i + 1).as_bytes(),
        );
        times.push(start.elapsed());
    }
    stop.store(1, Ordering::Release);
    join_within(flood, "the flooder", LONG);
    times.sort();
    let (p50, p99) = (times[100], times[198]);
    assert!(
        p99 < Duration::from_millis(20),
        "round trip p50 {p50:?} p99 {p99:?} beside the flood"
    );
    read_the_fills(&mut flooder);
    let (stats, _) = server.finish();
    assert!(stats.writes < 10_000, "{stats}");
    assert_no_handler_errors(&rec);
}

/// A client that stops reading is closed as a slow consumer once its
/// queued output has made no progress for the stall timeout; one that
/// reads slowly but steadily is left alone.
fn stall_timeout_closes_a_stopped_reader<P: Backend>(trigger: Trigger) {
    const STALL: Duration = Duration::from_millis(300);
    let _g = shared();
    let config = config(trigger).stall_timeout(Some(STALL));
    let (server, rec, mut stopped) = stalled_reader::<P>(config);
    let stopped_id = rec.id_of(stopped.local());
    let queued = Instant::now();

    // A steady reader: 64 KiB every 50 ms of a 4 MB reply.
    let mut steady = Client::connect(server.addr);
    steady.shrink_rcvbuf(16 * 1024);
    let steady_id = rec.id_of(steady.local());
    steady.send(b"FILL 4000000X");
    let want = filled(4_000_000);
    let mut got = Vec::new();
    while got.len() < want.len() {
        let n = (want.len() - got.len()).min(64 * 1024);
        got.extend(steady.read_n(n));
        thread::sleep(Duration::from_millis(50));
    }
    assert_same(&got, &want);
    assert!(
        rec.read(|r| r.reasons(steady_id).is_empty()),
        "the steady reader was closed"
    );

    assert_eq!(rec.closed(stopped_id), CloseReason::SlowConsumer);
    let at = rec.read(|r| r.closed.iter().find(|c| c.0 == stopped_id).map(|c| c.2));
    let waited = at.expect("closed") - queued;
    assert!(
        waited < STALL * 10,
        "closed {waited:?} after its output stalled"
    );
    // What the kernel held for it still arrives; the rest was dropped.
    let (got, _) = stopped.read_to_close();
    let all = filled(STALL_FILL).repeat(STALL_FILLS);
    assert!(got.len() < all.len(), "the stopped reader got everything");
    assert_same(&got, &all[..got.len()]);
    let (stats, _) = server.finish();
    assert_eq!(stats.closed(CloseReason::SlowConsumer), 1);
    assert_no_handler_errors(&rec);
}

/// Regression: the idle timer counted only what the reactor read and
/// wrote, so a client still reading a reply the kernel held for it (the
/// reactor had nothing left to write) was closed as idle mid-transfer.
/// The kernel's unacknowledged bytes going down now count as traffic.
fn idle_timeout_counts_bytes_the_kernel_still_sends<P: Backend>(trigger: Trigger) {
    const IDLE: Duration = Duration::from_millis(300);
    if cfg!(not(any(target_os = "linux", target_os = "android"))) {
        eprintln!("skipped: the kernel's unacknowledged bytes are read on Linux only");
        return;
    }
    let _g = shared();
    let config = config(trigger).idle_timeout(Some(IDLE));
    let (server, rec) = calc_with::<P>(codec().max_frame(4 << 20), config, None);
    let mut c = Client::connect(server.addr);
    c.shrink_rcvbuf(16 * 1024);
    let id = rec.id_of(c.local());
    // 2 MB read at about 200 kB/s: ten seconds of transfer, most of it
    // sitting in the kernel's buffers once the reactor has written it.
    c.send(b"FILL 2000000X");
    let want = filled(2_000_000);
    let mut got = Vec::new();
    let started = Instant::now();
    while got.len() < want.len() && started.elapsed() < Duration::from_secs(3) {
        let n = (want.len() - got.len()).min(8 * 1024);
        got.extend(c.read_n(n));
        thread::sleep(Duration::from_millis(40));
    }
    let reasons = rec.read(|r| r.reasons(id));
    assert!(
        reasons.is_empty(),
        "closed as {reasons:?} after {} of {} bytes, while reading",
        got.len(),
        want.len()
    );
    assert_same(&got, &want[..got.len()]);
    // Once the client stops reading for good, the connection is idle.
    assert_eq!(rec.closed(id), CloseReason::IdleTimeout);
    let (stats, _) = server.finish();
    assert_eq!(stats.closed(CloseReason::IdleTimeout), 1);
    assert_no_handler_errors(&rec);
}

/// `Config::keepalive` turns TCP keepalive on, with its timing, on every
/// accepted socket; without it the kernel's default (off) stays.
fn keepalive_is_set_on_accepted_sockets<P: Backend>(trigger: Trigger) {
    let _g = shared();
    let with = config(trigger).keepalive(Some(Duration::from_secs(9)));
    for (config, want) in [(config(trigger), 0), (with, 1)] {
        let (server, rec) = calc::<P>(config, None);
        let mut c = Client::connect(server.addr);
        c.request(b"1+1X", b"2X");
        let fd = server_fd_of(&c).expect("the server's end of the connection");
        assert_eq!(sockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE), want);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if want == 1 {
            assert_eq!(sockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 9);
            assert_eq!(sockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 3);
            assert_eq!(sockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 3);
        }
        server.finish();
        assert_no_handler_errors(&rec);
    }
}

// ---- one module per backend and trigger ----------------------------------

macro_rules! reactor_tests {
    ($module:ident, $poller:ty, $trigger:expr) => {
        mod $module {
            reactor_tests!(@cases $poller, $trigger;
                answers_pipelined_and_split,
                oversized_frame_closes_only_its_connection,
                closing_with_batched_replies_leaks_nothing,
                half_close_flushes_replies,
                idle_timeout_closes_silent_connections,
                stop_handle_closes_everything,
                stop_flushes_queued_output,
                stop_gives_up_after_grace,
                grace_counts_from_the_stop_request,
                fd_reused_in_one_turn_gets_nothing_stale,
                fds_past_fd_setsize,
                never_reading_client_is_bounded,
                idle_connections_hold_no_buffers,
                triggers_are_checked,
                idle_loop_does_not_spin,
                handler_timers_fire_and_cancel,
                reset_mid_stream,
                stalled_reader_costs_no_send_per_frame,
                good_client_is_served_beside_a_flood,
                stall_timeout_closes_a_stopped_reader,
                idle_timeout_counts_bytes_the_kernel_still_sends,
                keepalive_is_set_on_accepted_sockets,
            );
        }
    };
    (@cases $poller:ty, $trigger:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if !crate::common::backend_available::<$poller>() {
                    return;
                }
                super::$case::<$poller>($trigger);
            }
        )*
    };
}

evmux::for_each_trigger!(reactor_tests);
