//! The proxy (examples/proxy/handler.rs, run in-process on a reactor
//! thread) and the hooks it is built on, on every backend and trigger:
//! byte-exact streams, bounded memory against a reader that stops (either
//! side), a refused upstream, half-closes passed on, no fd leak; and
//! `on_drain` after `SendError::Full`, `pause_reading` / `resume_reading`,
//! `on_eof` with `HalfClose::KeepWriting`, `shutdown_write`.

mod common;
#[allow(dead_code)]
#[path = "../examples/proxy/handler.rs"]
mod handler;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::closed_port;
use evmux::codec::{Lines, Raw};
use evmux::{
    CloseReason, Config, Conn, ConnId, Control, Endpoint, HalfClose, Handler, Poller, Reactor,
    SendError, Stats, StopHandle, TimerId, Trigger,
};

const PATIENCE: Duration = Duration::from_secs(20);
const HIGH_WATER: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;

// ---- running the proxy ----------------------------------------------------

/// A proxy reactor on its own thread.
struct Running {
    addr: SocketAddr,
    stop: StopHandle,
    thread: JoinHandle<std::io::Result<Stats>>,
}

impl Running {
    #[track_caller]
    fn finish(self) -> Stats {
        self.stop.stop().expect("stop");
        self.thread.join().expect("proxy thread").expect("run")
    }
}

fn proxy<P: Poller>(trigger: Trigger, upstream: SocketAddr) -> Running {
    let config = Config::default()
        .trigger(trigger)
        .high_water(HIGH_WATER)
        .read_chunk(READ_CHUNK)
        .half_close(HalfClose::KeepWriting);
    let mut reactor = Reactor::<P, Raw>::new(Raw, config).expect("reactor");
    let addr = reactor.listen("127.0.0.1:0").expect("listen");
    let stop = reactor.stop_handle();
    let mut handler = handler::Proxy::new(Endpoint::Tcp(upstream), Duration::from_secs(5));
    let thread = thread::spawn(move || {
        reactor.run(&mut handler)?;
        Ok(reactor.stats().clone())
    });
    Running { addr, stop, thread }
}

/// A thread-per-connection echo server; counts the bytes it wrote back.
fn echo_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echoed = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&echoed);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let count = Arc::clone(&count);
            thread::spawn(move || {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, echoed)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the proxy");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s
}

/// Deterministic bytes, different per stream.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// The bound the issue sets on the proxy's buffers for `pairs` pairs:
/// (high water + one read chunk) x 2 per pair, plus a small constant.
fn buffer_bound(pairs: u64) -> u64 {
    pairs * 2 * (HIGH_WATER + READ_CHUNK) as u64 + 64 * 1024
}

/// Waits until `count` stops moving for `quiet`; returns its value then.
fn settles(count: &AtomicU64, quiet: Duration) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    let mut last = count.load(Ordering::Relaxed);
    loop {
        thread::sleep(quiet);
        let now = count.load(Ordering::Relaxed);
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "still moving: {now}");
        last = now;
    }
}

/// A writer thread pushing `total` bytes to `stream`; counts what it wrote.
fn writer(mut stream: TcpStream, total: usize) -> (Arc<AtomicU64>, JoinHandle<()>) {
    let wrote = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&wrote);
    let thread = thread::spawn(move || {
        let chunk = vec![7u8; 16 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            match stream.write(&chunk[..n]) {
                Ok(n) => {
                    left -= n;
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
    });
    (wrote, thread)
}

// ---- the proxy ---------------------------------------------------------------

/// `streams` concurrent streams of `size` bytes each come back through the
/// proxy and an echo server byte-exact.
fn streams_come_back_byte_exact<P: Poller>(trigger: Trigger, streams: u64, size: usize) {
    let (up, _) = echo_server();
    let running = proxy::<P>(trigger, up);
    let clients: Vec<_> = (0..streams)
        .map(|i| {
            let addr = running.addr;
            thread::spawn(move || {
                let data = pattern(i, size);
                let want = hash(&data);
                let mut s = connect(addr);
                let mut w = s.try_clone().expect("clone");
                let sender = thread::spawn(move || {
                    w.write_all(&data).expect("write");
                    w.shutdown(Shutdown::Write).expect("shutdown");
                });
                let mut back = Vec::with_capacity(size);
                if let Err(e) = s.read_to_end(&mut back) {
                    let sent = sender.is_finished();
                    panic!(
                        "stream {i}: {e} after {} of {size} bytes (all sent: {sent})",
                        back.len()
                    );
                }
                sender.join().expect("sender");
                assert_eq!(back.len(), size, "stream {i}");
                assert_eq!(hash(&back), want, "stream {i} differs");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client");
    }
    let stats = running.finish();
    assert_eq!(stats.connected, streams);
}

fn twenty_streams_of_5mb<P: Poller>(trigger: Trigger) {
    streams_come_back_byte_exact::<P>(trigger, 20, 5 << 20);
}

/// A client that writes and never reads: the proxy's buffers stay bounded
/// and the echo upstream's sends stall.
fn client_that_never_reads<P: Poller>(trigger: Trigger) {
    let (up, echoed) = echo_server();
    let running = proxy::<P>(trigger, up);
    let s = connect(running.addr);
    let (wrote, _w) = writer(s.try_clone().expect("clone"), 64 << 20);
    let stalled = settles(&echoed, Duration::from_millis(300));
    let sent = settles(&wrote, Duration::from_millis(300));
    assert!(sent < 64 << 20, "the client's writes never stalled");
    let stats = running.finish();
    drop(s);
    assert!(
        stats.peak_buffered <= buffer_bound(1),
        "peak_buffered {} over {} (echoed {stalled}, sent {sent})",
        stats.peak_buffered,
        buffer_bound(1)
    );
}

/// An upstream that accepts and never reads: the proxy's buffers stay
/// bounded and the client's writes stall.
fn upstream_that_never_reads<P: Poller>(trigger: Trigger) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = listener.local_addr().expect("addr");
    let held = thread::spawn(move || listener.accept().map(|(s, _)| s));
    let running = proxy::<P>(trigger, up);
    let s = connect(running.addr);
    let (wrote, _w) = writer(s.try_clone().expect("clone"), 64 << 20);
    let sent = settles(&wrote, Duration::from_millis(300));
    assert!(sent < 64 << 20, "the client's writes never stalled");
    let _upstream = held.join().expect("accept thread").expect("accept");
    let stats = running.finish();
    drop(s);
    assert!(
        stats.peak_buffered <= buffer_bound(1),
        "peak_buffered {} over {} (sent {sent})",
        stats.peak_buffered,
        buffer_bound(1)
    );
}

/// An upstream nobody listens on: the client is closed.
fn upstream_refused_closes_the_client<P: Poller>(trigger: Trigger) {
    let running = proxy::<P>(trigger, SocketAddr::V4(closed_port()));
    let mut s = connect(running.addr);
    let mut buf = [0; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the client was not closed: {other:?}"),
    }
    let stats = running.finish();
    assert_eq!(stats.connect_failed, 1);
}

/// The client's half-close reaches the upstream, which still answers;
/// and the upstream's half-close reaches the client, which still sends.
fn half_close_passed_on_both_ways<P: Poller>(trigger: Trigger) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = listener.local_addr().expect("addr");
    let upstream = thread::spawn(move || {
        // First: read to EOF, then answer and close.
        let (mut a, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        a.read_to_end(&mut got).expect("read to EOF");
        a.write_all(b"answer after your EOF").expect("answer");
        drop(a);
        // Second: say it all and half-close first, then read to EOF.
        let (mut b, _) = listener.accept().expect("accept");
        b.write_all(b"banner").expect("banner");
        b.shutdown(Shutdown::Write).expect("shutdown");
        let mut late = Vec::new();
        b.read_to_end(&mut late).expect("read to EOF");
        (got, late)
    });
    let running = proxy::<P>(trigger, up);

    let mut a = connect(running.addr);
    a.write_all(b"request").expect("write");
    a.shutdown(Shutdown::Write).expect("shutdown");
    let mut answer = Vec::new();
    a.read_to_end(&mut answer).expect("answer then EOF");
    assert_eq!(answer, b"answer after your EOF");

    let mut b = connect(running.addr);
    let mut banner = Vec::new();
    b.read_to_end(&mut banner).expect("banner then EOF");
    assert_eq!(banner, b"banner");
    b.write_all(b"late words").expect("write after EOF");
    b.shutdown(Shutdown::Write).expect("shutdown");

    let (got, late) = upstream.join().expect("upstream");
    assert_eq!(got, b"request");
    assert_eq!(late, b"late words");
    running.finish();
}

/// How many fds this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// 2,000 connect/close cycles through the proxy leave no fd behind.
fn no_fd_leak_after_2000_cycles<P: Poller>(trigger: Trigger) {
    let (up, _) = echo_server();
    let running = proxy::<P>(trigger, up);
    let before = open_fds();
    for i in 0..2000u32 {
        let mut s = connect(running.addr);
        s.write_all(&i.to_le_bytes()).expect("write");
        let mut back = [0; 4];
        s.read_exact(&mut back).expect("echo");
        assert_eq!(back, i.to_le_bytes());
    }
    let deadline = Instant::now() + PATIENCE;
    while open_fds() > before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let after = open_fds();
    let stats = running.finish();
    assert!(after <= before, "fds: {before} before, {after} after");
    assert_eq!(stats.connected, 2000);
}

// ---- the hooks ---------------------------------------------------------------

/// What the hook handler saw.
#[derive(Debug, PartialEq)]
enum Seen {
    Open(ConnId),
    Frame(ConnId, Vec<u8>),
    Full(usize),
    Drained(ConnId),
    Eof(ConnId),
    Closed(ConnId, CloseReason),
    Refused(SendError),
}

/// Line-framed: `fill` pushes 16 KiB frames to the first connection until
/// refused; `pause` pauses this connection for 200 ms (resumed by id);
/// `fin` answers `ok` and shuts the writing side down; on EOF it answers
/// `late` 50 ms later by id, then shuts down.
struct Hooks {
    to: Sender<Seen>,
    first: Option<ConnId>,
    pending: Vec<(TimerId, ConnId, bool)>,
}

impl Hooks {
    fn seen(&self, what: Seen) {
        let _ = self.to.send(what);
    }
}

impl Handler for Hooks {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.first.get_or_insert(conn.id());
        self.seen(Seen::Open(conn.id()));
    }

    fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
        self.seen(Seen::Frame(conn.id(), frame.to_vec()));
        match frame {
            b"fill" => {
                let target = self.first.expect("a first connection");
                let chunk = vec![b'x'; 16 * 1024];
                let mut sent = 0;
                loop {
                    match conn.control().send(target, &chunk) {
                        Ok(()) => sent += 1,
                        Err(e) => {
                            self.seen(Seen::Refused(e));
                            break;
                        }
                    }
                }
                self.seen(Seen::Full(sent));
            }
            b"pause" => {
                conn.pause_reading();
                let timer = conn.control().set_timer(Duration::from_millis(200));
                self.pending.push((timer, conn.id(), false));
            }
            b"fin" => {
                conn.send(b"ok").expect("send before FIN");
                conn.shutdown_write();
                assert!(conn.send(b"no").is_err(), "a send after shutdown_write");
            }
            _ => {}
        }
    }

    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        self.seen(Seen::Drained(conn.id()));
    }

    fn on_eof(&mut self, conn: &mut Conn<'_>) {
        self.seen(Seen::Eof(conn.id()));
        let timer = conn.control().set_timer(Duration::from_millis(50));
        self.pending.push((timer, conn.id(), true));
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, timer: TimerId) {
        let Some(i) = self.pending.iter().position(|p| p.0 == timer) else {
            return;
        };
        let (_, id, eof) = self.pending.remove(i);
        if eof {
            if let Err(e) = ctl.send(id, b"late") {
                self.seen(Seen::Refused(e));
            }
            ctl.shutdown(id);
        } else {
            ctl.resume_reading(id);
        }
    }

    fn on_close(&mut self, id: ConnId, reason: CloseReason) {
        self.seen(Seen::Closed(id, reason));
    }
}

struct HookRun {
    addr: SocketAddr,
    stop: StopHandle,
    seen: Receiver<Seen>,
}

impl HookRun {
    #[track_caller]
    fn wait<R>(&self, what: &str, mut pick: impl FnMut(&Seen) -> Option<R>) -> R {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(seen) => {
                    if let Some(out) = pick(&seen) {
                        return out;
                    }
                }
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }
}

impl Drop for HookRun {
    fn drop(&mut self) {
        let _ = self.stop.stop();
    }
}

fn hooks<P: Poller>(trigger: Trigger, half_close: HalfClose) -> HookRun {
    let config = Config::default()
        .trigger(trigger)
        .high_water(HIGH_WATER)
        .half_close(half_close);
    let mut reactor = Reactor::<P, Lines>::new(Lines::new(), config).expect("reactor");
    let addr = reactor.listen("127.0.0.1:0").expect("listen");
    let stop = reactor.stop_handle();
    let (to, seen) = mpsc::channel();
    let mut handler = Hooks {
        to,
        first: None,
        pending: Vec::new(),
    };
    thread::spawn(move || reactor.run(&mut handler));
    HookRun { addr, stop, seen }
}

fn opened(run: &HookRun) -> ConnId {
    run.wait("on_open", |s| match s {
        Seen::Open(id) => Some(*id),
        _ => None,
    })
}

/// Sends to a connection that does not read are refused with `Full` near
/// the high-water mark; once it reads, `on_drain` fires for it.
fn full_then_on_drain<P: Poller>(trigger: Trigger) {
    let run = hooks::<P>(trigger, HalfClose::Close);
    let mut slow = connect(run.addr);
    let target = opened(&run);
    let mut feeder = connect(run.addr);
    feeder.write_all(b"fill\n").expect("write");
    let refused = run.wait("a refusal", |s| match s {
        Seen::Refused(e) => Some(*e),
        Seen::Drained(_) => panic!("on_drain before any refusal"),
        _ => None,
    });
    assert_eq!(refused, SendError::Full);
    let sent = run.wait("the count", |s| match s {
        Seen::Full(n) => Some(*n),
        _ => None,
    });
    assert_eq!(
        sent * 16 * 1024,
        HIGH_WATER,
        "taken until the high-water mark"
    );
    let reader = thread::spawn(move || {
        let mut buf = vec![0; sent * 16 * 1024];
        slow.read_exact(&mut buf).expect("the pushed bytes");
        slow
    });
    let drained = run.wait("on_drain", |s| match s {
        Seen::Drained(id) => Some(*id),
        _ => None,
    });
    assert_eq!(drained, target);
    let _slow = reader.join().expect("reader");
}

/// A paused connection's frames wait until it is resumed by id; under edge
/// triggering the bytes that came meanwhile are read without a new edge.
fn pause_then_resume<P: Poller>(trigger: Trigger) {
    let run = hooks::<P>(trigger, HalfClose::Close);
    let mut c = connect(run.addr);
    let id = opened(&run);
    let start = Instant::now();
    c.write_all(b"pause\n").expect("write");
    run.wait("the pause frame", |s| match s {
        Seen::Frame(_, f) if f == b"pause" => Some(()),
        _ => None,
    });
    c.write_all(b"held\n").expect("write while paused");
    let frame = run.wait("the held frame", |s| match s {
        Seen::Frame(got, f) if *got == id => Some(f.clone()),
        _ => None,
    });
    assert_eq!(frame, b"held");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "read while paused"
    );
}

/// Under `KeepWriting` the handler hears `on_eof` and can still answer
/// after it (here from a timer, by id), then shut down.
fn on_eof_then_reply_in_keep_writing<P: Poller>(trigger: Trigger) {
    let run = hooks::<P>(trigger, HalfClose::KeepWriting);
    let mut c = connect(run.addr);
    let id = opened(&run);
    c.write_all(b"question\n").expect("write");
    c.shutdown(Shutdown::Write).expect("shutdown");
    run.wait("on_eof", |s| match s {
        Seen::Eof(got) if *got == id => Some(()),
        Seen::Closed(got, r) if *got == id => panic!("closed at EOF: {r}"),
        _ => None,
    });
    let mut reply = String::new();
    c.read_to_string(&mut reply)
        .expect("the late reply, then EOF");
    assert_eq!(reply, "late\n");
}

/// Under `Close` the same connection closes at EOF: the late send is
/// refused as `Closed`.
fn eof_closes_by_default<P: Poller>(trigger: Trigger) {
    let run = hooks::<P>(trigger, HalfClose::Close);
    let mut c = connect(run.addr);
    let id = opened(&run);
    c.shutdown(Shutdown::Write).expect("shutdown");
    run.wait("the close", |s| match s {
        Seen::Closed(got, CloseReason::PeerClosed) if *got == id => Some(()),
        _ => None,
    });
    let refused = run.wait("the refused late send", |s| match s {
        Seen::Refused(e) => Some(*e),
        _ => None,
    });
    assert_eq!(refused, SendError::Closed);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).expect("EOF");
    assert!(rest.is_empty());
}

/// `shutdown_write`: the peer gets the reply and EOF, can still send, and
/// the connection closes once the peer's EOF comes too.
fn shutdown_write_keeps_reading<P: Poller>(trigger: Trigger) {
    let run = hooks::<P>(trigger, HalfClose::Close);
    let c = connect(run.addr);
    let id = opened(&run);
    let mut w = c.try_clone().expect("clone");
    w.write_all(b"fin\n").expect("write");
    let mut r = BufReader::new(c);
    let mut all = String::new();
    r.read_to_string(&mut all).expect("ok, then EOF");
    assert_eq!(all, "ok\n");
    w.write_all(b"after\n")
        .expect("write after the server's FIN");
    let after = run.wait("the frame after FIN", |s| match s {
        Seen::Frame(got, f) if *got == id && f != b"fin" => Some(f.clone()),
        Seen::Closed(got, r) if *got == id => panic!("closed early: {r}"),
        _ => None,
    });
    assert_eq!(after, b"after");
    w.shutdown(Shutdown::Write).expect("shutdown");
    let reason = run.wait("the close", |s| match s {
        Seen::Closed(got, r) if *got == id => Some(*r),
        _ => None,
    });
    assert_eq!(reason, CloseReason::PeerClosed);
    let mut line = String::new();
    assert_eq!(r.read_line(&mut line).expect("EOF"), 0);
}

// ---- one module per backend and trigger -----------------------------------

macro_rules! proxy_tests {
    ($module:ident, $poller:ty, $trigger:expr) => {
        mod $module {
            proxy_tests!(@cases $poller, $trigger;
                twenty_streams_of_5mb,
                client_that_never_reads,
                upstream_that_never_reads,
                upstream_refused_closes_the_client,
                half_close_passed_on_both_ways,
                no_fd_leak_after_2000_cycles,
                full_then_on_drain,
                pause_then_resume,
                on_eof_then_reply_in_keep_writing,
                eof_closes_by_default,
                shutdown_write_keeps_reading,
            );

            #[test]
            #[ignore = "50 MB per stream: long; run with --ignored"]
            fn twenty_streams_of_50mb() {
                let _fds = crate::common::fd_lock();
                super::streams_come_back_byte_exact::<$poller>($trigger, 20, 50 << 20);
            }
        }
    };
    (@cases $poller:ty, $trigger:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                // One at a time: one counts the process's fds.
                let _fds = crate::common::fd_lock();
                super::$case::<$poller>($trigger);
            }
        )*
    };
}

evmux::for_each_trigger!(proxy_tests);
