//! The adversarial suite: clients that lie, stall, vanish and flood, and a
//! server that must lose nothing and never fall over.
//!
//! Every scenario is written once over `P: Poller` and run by
//! `every_backend!` in one module per backend and trigger (`select_level`,
//! `poll_level`, `epoll_level`, `epoll_edge`), against an in-test
//! calculator over `Delimited::new(b"X")` on 127.0.0.1. Each asserts exact
//! outcomes: replies, close reasons, counters, memory.
//!
//! The scenarios that use many fds, time or CPU hold `common::fd_lock()`,
//! so they run one at a time and never push another test's fds past
//! select's FD_SETSIZE.
//!
//! The `framing` module holds the property tests the codecs' own unit tests
//! do not already cover: exact-maximum / maximum-plus-one as a property of
//! every codec, and arbitrary bytes through the public API.

mod adversarial_util;
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

use adversarial_util::*;
use common::{fd_lock, require_fd_limit, set_linger_zero};
use evmux::{CloseReason, Poller, Reactor, Trigger};

// ---- 1. reset mid-stream ------------------------------------------------------

static SIGPIPE_COUNTER: Once = Once::new();

/// A client pipelines requests without reading until the server holds
/// replies it cannot send, then resets the connection (SO_LINGER 0); a
/// second does the same after shutting down its write side first (the
/// server's socket is then in CLOSE_WAIT, where a reset makes the next
/// send fail with EPIPE, the error that raises SIGPIPE without
/// MSG_NOSIGNAL). The server closes both as reset, raises no SIGPIPE, and
/// goes on serving.
fn reset_mid_stream<P: Poller>(trigger: Trigger, _: &str) {
    let _fds = fd_lock();
    SIGPIPE_COUNTER.call_once(|| count_signals(libc::SIGPIPE).expect("SIGPIPE handler"));
    let sigpipes = signals_seen(libc::SIGPIPE);
    let config = base_config().high_water(64 * 1024);
    let calc = Calc::publishing(Some(Duration::from_millis(5)));
    let server = Server::start_with::<P>(trigger, config, calc);

    let mut others = Vec::new();
    for (k, half_close_first) in [false, true].into_iter().enumerate() {
        reset_with_replies_queued(&server, half_close_first);
        let closed = eventually(PATIENCE, || server.probe().closes.len() == 2 * k + 1);
        assert!(closed, "the reset connection was never closed");
        let reason = server.probe().closes[2 * k].1;
        assert!(
            matches!(reason, CloseReason::Reset | CloseReason::PeerClosed),
            "a reset (half-closed first: {half_close_first}) closed as {reason:?}"
        );
        let mut next = Client::connect(server.addr);
        assert_eq!(next.call("20+22"), "42", "the server goes on after a reset");
        drop(next);
        assert!(eventually(PATIENCE, || server.probe().closes.len() == 2 * k + 2));
        others.push(server.probe().closes[2 * k + 1].1);
    }
    let (stats, calc) = server.finish();

    assert_eq!(signals_seen(libc::SIGPIPE), sigpipes, "SIGPIPE was raised");
    assert_eq!(others, [CloseReason::PeerClosed; 2]);
    assert_eq!(
        (stats.accepted, stats.open, stats.closed_total()),
        (4, 0, 4)
    );
    assert_eq!(calc.double_closes + calc.frames_after_close, 0);
}

/// Connects, pipelines `1+1` without reading until 16 KiB more replies are
/// queued in the server than before, then (after a half-close if asked)
/// resets the connection.
fn reset_with_replies_queued(server: &Server, half_close_first: bool) {
    // Each "1+1" earns the 2-byte reply "2X": what was answered but not
    // written is queued in the server (or was dropped with an earlier
    // connection, hence the baseline).
    let unsent = |s: &evmux::Stats| (s.frames_out * 2) as i64 - s.bytes_out as i64;
    let base = unsent(&server.probe().stats);
    let stream = connect_small_rcvbuf(server.addr, 4096).expect("connect");
    stream.set_nonblocking(true).expect("nonblocking");
    let requests = b"1+1X".repeat(16 * 1024);
    let mut offset = 0;
    let queued = eventually(Duration::from_secs(30), || {
        if half_close_first {
            // Whole steps, each delivered before the next, so the server
            // has every byte (and can get the FIN) when it stops reading.
            write_fully(&stream, &requests);
            let delivered = eventually(PATIENCE, || unsent_bytes(&stream).ok() == Some(0));
            assert!(delivered, "the server stopped taking requests");
        } else {
            while let Ok(n) = (&stream).write(&requests[offset..]) {
                offset = (offset + n) % requests.len();
            }
        }
        unsent(&server.probe().stats) - base >= 16 * 1024
    });
    assert!(queued, "the server never had 16 KiB of replies queued");
    if half_close_first {
        stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
        thread::sleep(Duration::from_millis(50)); // the FIN lands: CLOSE_WAIT
    }
    set_linger_zero(stream.as_fd()).expect("SO_LINGER 0");
    drop(stream);
}

/// Writes all of `bytes` to a non-blocking stream, waiting out WouldBlock.
fn write_fully(stream: &TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match (&*stream).write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("write requests: {e}"),
        }
    }
}

// ---- 2. half-close --------------------------------------------------------------

/// Clients send 100 pipelined requests and shut down their write side at
/// once: each receives all 100 replies, in order, then EOF.
fn half_close<P: Poller>(trigger: Trigger, _: &str) {
    let _fds = fd_lock();
    let server = Server::start::<P>(trigger, base_config());
    let batch: String = (0..100).map(|i| format!("{i}*3X")).collect();
    // Several at once: the more connections, the likelier that a request
    // batch and its FIN arrive before the server reads.
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(server.addr)).collect();
    for c in &mut clients {
        c.stream
            .write_all(batch.as_bytes())
            .expect("write the batch");
        c.stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
    }
    for (k, c) in clients.iter_mut().enumerate() {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        for i in 0..100 {
            assert_eq!(
                c.reply(),
                Reply::Frame((i * 3).to_string()),
                "client {k} reply {i}"
            );
        }
        assert_eq!(
            c.reply(),
            Reply::Closed,
            "client {k}: EOF after the last reply"
        );
    }
    let (stats, calc) = server.finish();
    assert_eq!(calc.count(CloseReason::PeerClosed), 20, "{:?}", calc.closes);
    assert_eq!((stats.frames_in, stats.frames_out), (2000, 2000));
}

// ---- 3. slowloris ---------------------------------------------------------------

/// 200 clients each send half a frame and stall: all are closed by the idle
/// timeout, none before it, while a well-behaved client is served
/// throughout with normal latency.
fn slowloris<P: Poller>(trigger: Trigger, _: &str) {
    let _fds = fd_lock();
    let idle = Duration::from_millis(1000);
    let server = Server::start::<P>(trigger, base_config().idle_timeout(Some(idle)));
    let mut good = Client::connect(server.addr);
    let start = Instant::now();
    let mut slow: Vec<Client> = (0..200)
        .map(|_| {
            let mut c = Client::connect(server.addr);
            c.stream.write_all(b"12+").expect("half a frame");
            c
        })
        .collect();

    let mut worst = Duration::ZERO;
    let mut first_close = None;
    let mut calls = 0i64;
    while start.elapsed() < idle + Duration::from_millis(600) {
        let sent = Instant::now();
        assert_eq!(good.call(&format!("{calls}+1")), (calls + 1).to_string());
        worst = worst.max(sent.elapsed());
        calls += 1;
        if first_close.is_none() && !server.probe().closes.is_empty() {
            first_close = Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    for (k, c) in slow.iter_mut().enumerate() {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        assert_eq!(c.reply(), Reply::Closed, "slow client {k} was never closed");
    }
    assert_eq!(good.call("6*7"), "42", "the good client is still served");
    let (stats, calc) = server.finish();

    let first_close = first_close.expect("a close was seen while the good client ran");
    assert!(
        first_close >= idle,
        "a slow client was closed after {first_close:?}"
    );
    assert!(
        worst < Duration::from_millis(250),
        "the good client waited {worst:?} for a reply"
    );
    assert_eq!(
        calc.count(CloseReason::IdleTimeout),
        200,
        "{:?}",
        calc.closes
    );
    assert_eq!(stats.closed(CloseReason::IdleTimeout), 200);
    assert_eq!(
        calc.count(CloseReason::ServerShutdown),
        1,
        "the good client"
    );
}

// ---- 4. oversized frame ---------------------------------------------------------

/// One client sends 10 MiB with no delimiter: it is closed with
/// FrameTooLarge once the 64 KiB limit is crossed, the server never buffers
/// more than a few reads of it, and 50 other clients get correct replies
/// all the while.
fn oversized_frame<P: Poller>(trigger: Trigger, _: &str) {
    let _fds = fd_lock();
    let server = Server::start::<P>(trigger, base_config());
    let addr = server.addr;
    let flood = thread::spawn(move || flood_without_delimiter(addr, 10 << 20));
    let good: Vec<_> = (0..50)
        .map(|k: i64| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..40i64 {
                    assert_eq!(c.call(&format!("{k}*{i}")), (k * i).to_string());
                    thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    let (sent, error) = flood.join().expect("flood thread");
    for g in good {
        g.join()
            .expect("a well-behaved client got a wrong or no reply");
    }
    assert!(eventually(PATIENCE, || server.probe().closes.len() == 51));
    let (stats, calc) = server.finish();

    let error = error.expect("all 10 MiB went through: the server kept reading");
    assert!(
        is_reset(&error),
        "the flood ended with {error:?} after {sent} bytes"
    );
    assert_eq!(
        calc.count(CloseReason::FrameTooLarge),
        1,
        "{:?}",
        calc.closes
    );
    assert_eq!(calc.count(CloseReason::PeerClosed), 50);
    assert!(
        stats.peak_buffered <= 256 * 1024,
        "the server buffered {} bytes of an oversized frame",
        stats.peak_buffered
    );
    assert!(
        stats.bytes_in < 1 << 20,
        "the server read {} bytes",
        stats.bytes_in
    );
    assert_eq!(stats.frames_in, 50 * 40);
}

/// Writes `total` bytes of digits with no delimiter; returns how many went
/// through and the error that stopped it, if any.
fn flood_without_delimiter(addr: SocketAddr, total: usize) -> (usize, Option<std::io::Error>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
    let chunk = [b'7'; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        match stream.write(&chunk[..chunk.len().min(total - sent)]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (sent, Some(e)),
        }
    }
    (sent, None)
}

// ---- 5. slow reader -------------------------------------------------------------

/// A client pipelines requests and does not read: the server's memory for
/// it stays under the high-water mark plus one read buffer, reading from
/// it pauses, and it resumes when the client reads, every reply intact and
/// in order.
fn slow_reader<P: Poller>(trigger: Trigger, _: &str) {
    let _fds = fd_lock();
    // Replies of about 20 bytes: enough in all to outgrow the kernel's
    // socket buffers (the server's send buffer grows to 4 MiB here).
    const N: usize = 400_000;
    let (high, chunk) = (64 * 1024, 16 * 1024);
    let config = base_config()
        .high_water(high)
        .low_water(16 * 1024)
        .read_chunk(chunk);
    let calc = Calc::publishing(Some(Duration::from_millis(5)));
    let server = Server::start_with::<P>(trigger, config, calc);
    let stream = connect_small_rcvbuf(server.addr, 8192).expect("connect");
    let mut reader = Client::from_stream(stream.try_clone().expect("clone"));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = Arc::clone(&written);
        thread::spawn(move || write_requests(stream, N, &written))
    };

    let stalled = wait_for_stall(
        &written,
        Duration::from_millis(300),
        Duration::from_secs(30),
    );
    let so_far = written.load(Ordering::SeqCst);
    assert!(
        stalled && so_far < N,
        "the writer never stalled ({so_far} of {N} written): {:?}",
        server.probe().stats
    );
    let before = server.probe().stats.clone();
    thread::sleep(Duration::from_millis(300));
    let after = server.probe().stats.clone();
    assert_eq!(before.bytes_in, after.bytes_in, "the server kept reading");
    // High water plus one read buffer, plus a partial request carried over.
    let bound = (high + chunk + 1024) as u64;
    assert!(
        after.peak_buffered <= bound,
        "held {} > {bound}",
        after.peak_buffered
    );

    for i in 0..N {
        let want = (i as i64).wrapping_mul(FACTOR).to_string();
        let got = reader.reply();
        if got != Reply::Frame(want.clone()) {
            panic!("reply {i}: got {got:?}, want {want}");
        }
    }
    writer.join().expect("writer");
    reader.stream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(reader.reply(), Reply::Closed, "no extra replies");
    let (stats, _) = server.finish();
    assert!(
        stats.peak_buffered <= bound,
        "held {} > {bound}",
        stats.peak_buffered
    );
    assert_eq!((stats.frames_in, stats.frames_out), (N as u64, N as u64));
}

/// The multiplier of the slow reader's requests.
const FACTOR: i64 = 100_000_000_000_000;

/// Writes `n` requests `i*FACTOR` in 4 KiB batches, counting in `written`
/// how many went out.
fn write_requests(mut stream: TcpStream, n: usize, written: &AtomicUsize) {
    let mut batch = Vec::with_capacity(8192);
    for i in 0..n {
        write!(batch, "{i}*{FACTOR}X").expect("write to a Vec");
        if batch.len() >= 4096 || i + 1 == n {
            stream.write_all(&batch).expect("write requests");
            batch.clear();
            written.store(i + 1, Ordering::SeqCst);
        }
    }
}

/// Waits until `counter` has not moved for `quiet`; false if it still moves
/// after `within`, or reached nothing at all.
fn wait_for_stall(counter: &AtomicUsize, quiet: Duration, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut last = counter.load(Ordering::SeqCst);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        let now = counter.load(Ordering::SeqCst);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet && now > 0 {
            return true;
        }
    }
    false
}

// ---- 6. fd exhaustion -----------------------------------------------------------

/// The variable that turns a re-executed test binary into the server.
const CHILD_ENV: &str = "EVMUX_CHILD_SERVER";
/// The fd limit of the child server.
const CHILD_FDS: u64 = 128;

/// A server limited to 128 fds faces 300 clients at once: it does not spin,
/// refuses the excess promptly (reserve fd: accept and close), serves the
/// ones it holds, and accepts new ones once others close.
fn fd_exhaustion<P: Poller>(trigger: Trigger, name: &str) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        return child_server::<P>(trigger);
    }
    let _fds = fd_lock();
    require_fd_limit(1024);
    let mut child = Child::spawn(name);
    let addr = child.addr;

    let started = Instant::now();
    let mut clients: Vec<Client> = (0..300).map(|_| Client::connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&format!("{i}+1"));
    }
    // Each client is served or refused within 3 s in all; one neither is
    // left waiting (counted, and failed after the CPU check below).
    let deadline = started + Duration::from_secs(3);
    let (mut held, mut waiting) = (Vec::new(), 0);
    for (i, mut c) in clients.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.max(Duration::from_millis(10));
        c.stream.set_read_timeout(Some(timeout)).expect("timeout");
        match c.try_reply() {
            Ok(Reply::Frame(r)) => {
                assert_eq!(r, (i + 1).to_string());
                c.stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
                held.push(c);
            }
            Ok(Reply::Closed) => {}
            Err(_) => waiting += 1,
        }
    }
    let first = held.len();
    assert!(
        (64..CHILD_FDS as usize).contains(&first),
        "served {first} of 300 under a limit of {CHILD_FDS} fds"
    );
    // Out of fds, with nothing to do: the server must not spin.
    let cpu = |c: &mut Client| c.call("CPU").parse::<u64>().expect("micros");
    let before = cpu(&mut held[0]);
    thread::sleep(Duration::from_millis(500));
    let spent = Duration::from_micros(cpu(&mut held[0]) - before);
    assert!(
        spent < Duration::from_millis(100),
        "the server burned {spent:?} of CPU in 500 ms out of fds: it spins"
    );
    assert_eq!(waiting, 0, "clients neither served nor refused after 3 s");
    for c in &mut held {
        assert_eq!(c.call("2*21"), "42", "a held connection is still served");
    }

    held.truncate(held.len() - 20);
    for k in 0..20 {
        let mut c = retry_until_served(addr, k);
        assert_eq!(c.call("1+1"), "2");
        held.push(c);
    }
    held[0].send("STOP");
    let report = child.finish();
    assert!(report.fd_exhaustion > 0, "{report:?}");
    assert_eq!(report.accepted, first as u64 + 20, "{report:?}");
    assert!(
        report.cpu < Duration::from_millis(500),
        "the server burned {:?} of CPU: it spins on EMFILE",
        report.cpu
    );
}

/// Connects until the server accepts: a refusal is fine while the closes
/// that free fds are in flight, but not for long.
fn retry_until_served(addr: SocketAddr, k: usize) -> Client {
    for _ in 0..40 {
        let mut c = Client::connect(addr);
        c.send(&format!("{k}+100"));
        match c.reply() {
            Reply::Frame(r) => {
                assert_eq!(r, (k + 100).to_string());
                return c;
            }
            Reply::Closed => thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("the server never accepted again after connections closed");
}

/// The child's side: a calculator under a 128-fd limit that prints its port,
/// then (after a `STOP` frame) its stats and CPU time.
fn child_server<P: Poller>(trigger: Trigger) {
    limit_fds(CHILD_FDS).expect("setrlimit RLIMIT_NOFILE");
    let config = base_config().trigger(trigger);
    let mut reactor = Reactor::<P, _>::new(codec(), config).expect("reactor");
    let addr = reactor.listen("127.0.0.1:0").expect("listen");
    // Never outlive a parent that died without sending STOP.
    let stop = reactor.stop_handle();
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(60));
        let _ = stop.stop();
    });
    println!("\nEVMUX-PORT {}", addr.port());
    std::io::stdout().flush().expect("flush");
    reactor.run(&mut Calc::default()).expect("run");
    let s = reactor.stats();
    println!("\nEVMUX-STATS {} {}", s.accepted, s.fd_exhaustion);
    println!("\nEVMUX-CPU {}", cpu_time().as_micros());
}

/// What the child server reported when it stopped.
#[derive(Debug)]
struct ChildReport {
    accepted: u64,
    fd_exhaustion: u64,
    cpu: Duration,
}

/// The test binary re-executed as a server.
struct Child {
    process: std::process::Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Child {
    fn spawn(name: &str) -> Child {
        // /proc/self/exe still runs this binary if a rebuild replaced the
        // file meanwhile; elsewhere, take the path.
        let exe = if cfg!(target_os = "linux") {
            "/proc/self/exe".into()
        } else {
            std::env::current_exe().expect("current_exe")
        };
        let mut process = Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, name)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the child server");
        let stdout = process.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut child = Child {
            process,
            lines,
            addr: "127.0.0.1:0".parse().expect("an address"),
        };
        let port: u16 = child.words("EVMUX-PORT")[0].parse().expect("a port");
        child.addr.set_port(port);
        child
    }

    /// The words after `tag` on the next line that has `tag`.
    fn words(&mut self, tag: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!("the child server never printed {tag}");
            };
            if let Some(at) = line.find(tag) {
                let rest = &line[at + tag.len()..];
                return rest.split_whitespace().map(str::to_string).collect();
            }
        }
    }

    /// Waits for the child's report and its exit.
    fn finish(&mut self) -> ChildReport {
        let count = |w: &String| w.parse::<u64>().expect("a number");
        let stats: Vec<u64> = self.words("EVMUX-STATS").iter().map(count).collect();
        let cpu = count(&self.words("EVMUX-CPU")[0]);
        let status = self.process.wait().expect("wait for the child");
        assert!(status.success(), "the child server failed: {status}");
        ChildReport {
            accepted: stats[0],
            fd_exhaustion: stats[1],
            cpu: Duration::from_micros(cpu),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

// ---- 7. select's limit ------------------------------------------------------------

/// 1,100 clients push the server's fds past FD_SETSIZE. select refuses the
/// ones it cannot watch, cleanly (closed at once, counted as OverCapacity)
/// and serves the ones it holds; the other backends serve every one.
fn fds_past_fd_setsize<P: Poller>(trigger: Trigger, _: &str) {
    let _fds = fd_lock();
    require_fd_limit(4096);
    const N: usize = 1100;
    let server = Server::start::<P>(trigger, base_config());
    // The first 300 are each answered before the next connects, so their
    // server-side fds are below FD_SETSIZE however slowly the server
    // accepts on a busy machine (client and server fds share one table).
    let mut clients = Vec::new();
    for i in 0..N {
        let mut c = Client::connect(server.addr);
        if i < 300 {
            assert_eq!(c.call("1+1"), "2", "one of the first 300 was refused");
        }
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&format!("{i}-1"));
    }
    let mut held = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        match c.reply() {
            Reply::Frame(r) => {
                assert_eq!(r, (i as i64 - 1).to_string());
                held.push(c);
            }
            Reply::Closed => {}
        }
    }
    for c in &mut held {
        assert_eq!(c.call("-4*-4"), "16", "a held connection is still served");
    }
    let served = held.len();
    drop(held);
    assert!(eventually(PATIENCE, || server.probe().closes.len() == N));
    let (stats, calc) = server.finish();

    let refused = N - served;
    assert_eq!(stats.accepted, N as u64);
    assert_eq!(stats.closed(CloseReason::OverCapacity), refused as u64);
    assert_eq!(calc.count(CloseReason::OverCapacity), refused);
    assert_eq!(calc.count(CloseReason::PeerClosed), served);
    assert_eq!(calc.opened, served as u64, "on_open only for admitted ones");
    match P::fd_capacity() {
        Some(_) => assert!(
            refused > 0 && served >= 300,
            "select served {served} and refused {refused}"
        ),
        None => assert_eq!(refused, 0, "{} refused connections", P::NAME),
    }
}

// ---- 8. signals -------------------------------------------------------------------

/// A burst of signals at the reactor's thread while it serves pipelined
/// load: no error surfaces from `run`, no reply is lost or wrong.
fn signal_storm<P: Poller>(trigger: Trigger, _: &str) {
    let _fds = fd_lock();
    count_signals(libc::SIGUSR1).expect("SIGUSR1 handler");
    let seen_before = signals_seen(libc::SIGUSR1);
    let server = Server::start::<P>(trigger, base_config());
    let target = server.pthread();
    let done = Arc::new(AtomicBool::new(false));
    let signaller = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut sent = 0u64;
            while !done.load(Ordering::SeqCst) {
                signal_thread(target, libc::SIGUSR1).expect("pthread_kill");
                sent += 1;
                thread::sleep(Duration::from_micros(50));
            }
            sent
        })
    };
    let load = Load {
        conns: 50,
        requests: 400,
        threads: 2,
        seed: 0x5167,
        deadline: Duration::from_secs(60),
    };
    let tally = run_load(server.addr, &load);
    done.store(true, Ordering::SeqCst);
    let sent = signaller.join().expect("signaller");
    let (stats, _) = server.finish();

    assert_eq!(tally, perfect(&load), "under {sent} signals");
    assert_eq!(stats.frames_in, 50 * 400);
    let caught = signals_seen(libc::SIGUSR1) - seen_before;
    assert!(
        sent >= 200 && caught >= 200,
        "sent {sent}, caught {caught}: too few to mean much"
    );
}

/// The tally of a load with every reply right.
fn perfect(load: &Load) -> Tally {
    Tally {
        right: (load.conns * load.requests) as u64,
        clean_eof: load.conns as u64,
        ..Tally::default()
    }
}

// ---- 9. stale events ----------------------------------------------------------------

/// A connection closes and another is accepted (onto the same fd and table
/// slot, usually in the same loop turn): the new one never gets the old
/// one's data, events or close. Run many rounds to hit the same-turn case.
fn stale_events<P: Poller>(trigger: Trigger, _: &str) {
    let _fds = fd_lock();
    const ROUNDS: usize = 100;
    let server = Server::start::<P>(trigger, base_config());
    let mut control = Client::connect(server.addr);
    for r in 0..ROUNDS {
        let mut old = Client::connect(server.addr);
        assert_eq!(old.call(&format!("NAME a{r}")), "OK");
        assert_eq!(old.call("5+5"), "10");
        // "Q" closes it; what follows on it must never be answered, on it
        // or on the connection that takes its place.
        old.stream.write_all(b"QX7+7X").expect("write");
        // Even rounds race the new connection against the close (same loop
        // turn, when the backend reports the old one first); odd rounds
        // wait for the close, so the new one surely takes its slot and fd.
        let new = |server: &Server| {
            let mut new = Client::connect(server.addr);
            new.send("1+2");
            new
        };
        let mut racing = (r % 2 == 0).then(|| new(&server));
        assert_eq!(old.reply(), Reply::Closed, "round {r}: old connection");
        let mut new = racing.take().unwrap_or_else(|| new(&server));
        assert_eq!(
            new.reply(),
            Reply::Frame("3".into()),
            "round {r}: new connection"
        );
        // Closing the old id again must not touch the new connection.
        assert_eq!(control.call(&format!("KILL a{r}")), "OK");
        assert_eq!(
            new.call("2+2"),
            "4",
            "round {r}: a stale close hit the new one"
        );
    }
    drop(control);
    assert!(eventually(PATIENCE, || server.probe().closes.len() == 2 * ROUNDS + 1));
    let (stats, calc) = server.finish();
    assert_eq!(
        calc.count(CloseReason::ClosedByHandler),
        ROUNDS,
        "{:?}",
        calc.closes
    );
    assert_eq!(calc.count(CloseReason::PeerClosed), ROUNDS + 1);
    assert_eq!(calc.frames_after_close, 0, "frames for a closed connection");
    assert_eq!(calc.double_closes, 0, "a connection closed twice");
    // Per round: NAME, 5+5, Q (7+7 dropped), 1+2, KILL, 2+2.
    assert_eq!(stats.frames_in, 6 * ROUNDS as u64);
}

// ---- 10. soak -----------------------------------------------------------------------

/// The soak: 2,000 connections (select: as many as fit below FD_SETSIZE)
/// each pipelining 500 random requests, every reply checked. About 25 s
/// for all four backend modules in a debug build on 2 cores.
fn soak<P: Poller>(trigger: Trigger, _: &str) {
    soak_with::<P>(trigger, 2000, 500);
}

/// The long soak, ten times the requests: 2,000 connections x 5,000.
/// Run it with `cargo test --release --test adversarial -- --ignored`.
fn soak_long<P: Poller>(trigger: Trigger, _: &str) {
    soak_with::<P>(trigger, 2000, 5000);
}

fn soak_with<P: Poller>(trigger: Trigger, conns: usize, requests: usize) {
    let _fds = fd_lock();
    require_fd_limit(2 * conns as u64 + 256);
    // Clients and server share this process's fds: two per connection.
    let conns = match P::fd_capacity() {
        Some(cap) => conns.min(cap / 2 - 40),
        None => conns,
    };
    let server = Server::start::<P>(trigger, base_config());
    let load = Load {
        conns,
        requests,
        threads: 2,
        seed: 0x50a4 ^ conns as u64,
        deadline: Duration::from_secs(100 + (conns * requests / 50_000) as u64),
    };
    let tally = run_load(server.addr, &load);
    assert!(eventually(PATIENCE, || server.probe().closes.len() == conns));
    let (stats, calc) = server.finish();
    assert_eq!(tally, perfect(&load), "{} connections x {requests}", conns);
    let total = (conns * requests) as u64;
    assert_eq!((stats.frames_in, stats.frames_out), (total, total));
    assert_eq!(stats.accepted, conns as u64);
    assert_eq!(calc.count(CloseReason::PeerClosed), conns);
}

// ---- one module per backend and trigger ----------------------------------------------

macro_rules! every_backend {
    ($module:ident, $poller:ty, $trigger:expr) => {
        mod $module {
            every_backend!(@cases $module, $poller, $trigger;
                reset_mid_stream,
                half_close,
                slowloris,
                oversized_frame,
                slow_reader,
                fd_exhaustion,
                fds_past_fd_setsize,
                signal_storm,
                stale_events,
                soak,
            );

            #[test]
            #[ignore = "long soak; run: cargo test --release --test adversarial -- --ignored"]
            fn soak_long() {
                super::soak_long::<$poller>($trigger, "");
            }
        }
    };
    (@cases $module:ident, $poller:ty, $trigger:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if !crate::common::backend_available::<$poller>() {
                    return;
                }
                let name = concat!(stringify!($module), "::", stringify!($case));
                super::$case::<$poller>($trigger, name);
            }
        )*
    };
}

evmux::for_each_trigger!(every_backend);

// ---- property tests of the framing layer ------------------------------------------

mod framing {
    //! What the codecs' own proptests (in src/codec) leave out: the exact
    //! maximum accepted and one byte more rejected, as a property of every
    //! limited codec under any cut, with rejection before the body is
    //! buffered; and bytes of the full 0..=255 range through the public API.

    use evmux::codec::{Codec, DecodeError, Delimited, LengthPrefixed, Lines, Raw};
    use proptest::prelude::*;

    /// What decoding a stream fed in chunks gave.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        frames: Vec<Vec<u8>>,
        error: Option<DecodeError>,
        /// Bytes fed when the error came (or in all).
        fed: usize,
    }

    /// Feeds `chunks` one by one, running the reactor's decode loop after
    /// each and checking `Decoded`'s promises; stops at the first error.
    fn feed<'a, C: Codec + ?Sized>(
        codec: &mut C,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Outcome {
        let mut input: Vec<u8> = Vec::new();
        let mut start = 0;
        let mut out = Outcome {
            frames: Vec::new(),
            error: None,
            fed: 0,
        };
        for chunk in chunks {
            input.extend_from_slice(chunk);
            out.fed += chunk.len();
            loop {
                let unread = &input[start..];
                match codec.decode(unread) {
                    Ok(Some(d)) => {
                        assert!(d.consumed >= 1 && d.consumed <= unread.len(), "{d:?}");
                        assert!(d.frame.start <= d.frame.end && d.frame.end <= d.consumed);
                        out.frames.push(unread[d.frame].to_vec());
                        start += d.consumed;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        out.error = Some(e);
                        return out;
                    }
                }
            }
        }
        out
    }

    fn cut<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for c in cuts {
            chunks.push(&stream[from..c]);
            from = c;
        }
        chunks.push(&stream[from..]);
        chunks
    }

    /// The limited codecs, each with `max`, and how to frame a payload
    /// by hand (encode refuses payloads over the maximum).
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Delimited(&'static [u8]),
        Lines,
        LengthPrefixed,
    }

    impl Kind {
        fn codec(self, max: usize) -> Box<dyn Codec> {
            match self {
                Kind::Delimited(d) => Box::new(Delimited::new(d).unwrap().max_frame(max)),
                Kind::Lines => Box::new(Lines::new().max_frame(max)),
                Kind::LengthPrefixed => Box::new(LengthPrefixed::new().max_frame(max)),
            }
        }

        fn frame(self, payload: &[u8], out: &mut Vec<u8>) {
            match self {
                Kind::Delimited(d) => {
                    out.extend_from_slice(payload);
                    out.extend_from_slice(d);
                }
                Kind::Lines => {
                    out.extend_from_slice(payload);
                    out.extend_from_slice(b"\r\n");
                }
                Kind::LengthPrefixed => {
                    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                    out.extend_from_slice(payload);
                }
            }
        }

        /// The most bytes a codec may need to see to reject a frame one
        /// byte over `max`: the body plus its framing, never more.
        fn reject_within(self, max: usize) -> usize {
            match self {
                Kind::Delimited(d) => max + d.len(),
                Kind::Lines => max + 2,
                Kind::LengthPrefixed => 4,
            }
        }
    }

    fn any_kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Delimited(b"X")),
            Just(Kind::Delimited(b"\r\n")),
            Just(Kind::Delimited(b"<END>")),
            Just(Kind::Lines),
            Just(Kind::LengthPrefixed),
        ]
    }

    /// Payload bytes that contain no delimiter (nor `\r`, `\n`, `<`).
    fn filler(len: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(&b"0123456789+-*ab"[..]), len)
    }

    fn cuts() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(any::<usize>(), 0..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A payload of exactly `max` is one frame, whatever the cuts, and
        /// the frame after it still decodes.
        #[test]
        fn payload_of_exactly_max_is_accepted(
            kind in any_kind(),
            (max, payload) in (0..300usize).prop_flat_map(|m| (Just(m), filler(m))),
            cuts in cuts(),
        ) {
            let mut stream = Vec::new();
            kind.frame(&payload, &mut stream);
            kind.frame(b"", &mut stream);
            let out = feed(&mut *kind.codec(max), cut(&stream, &cuts));
            prop_assert_eq!(out.error, None);
            prop_assert_eq!(out.frames, vec![payload, Vec::new()]);
        }

        /// A payload of `max + 1` is rejected as FrameTooLarge, with no
        /// frame, whatever the cuts, and before more than its own framed
        /// length is fed (the rest of a 10x longer stream is never needed).
        #[test]
        fn payload_one_over_max_is_rejected_early(
            kind in any_kind(),
            (max, payload) in (0..300usize).prop_flat_map(|m| (Just(m), filler(m + 1))),
            cuts in cuts(),
        ) {
            let mut stream = Vec::new();
            kind.frame(&payload, &mut stream);
            let want = Some(DecodeError::FrameTooLarge { max });
            let out = feed(&mut *kind.codec(max), cut(&stream, &cuts));
            prop_assert_eq!(&out.frames, &Vec::<Vec<u8>>::new());
            prop_assert_eq!(&out.error, &want);

            let mut long = payload.clone();
            long.resize(10 * (max + 1), b'7');
            let mut framed = Vec::new();
            kind.frame(&long, &mut framed);
            let out = feed(&mut *kind.codec(max), framed.chunks(1));
            prop_assert_eq!(&out.error, &want);
            prop_assert!(out.fed <= kind.reject_within(max), "fed {} bytes", out.fed);
        }

        /// Any bytes at all, cut anywhere: no panic, `Decoded`'s promises
        /// hold (checked in `feed`), and the cut does not change the result.
        #[test]
        fn arbitrary_bytes_decode_alike_however_cut(
            kind in any_kind(),
            max in 0..64usize,
            stream in prop::collection::vec(any::<u8>(), 0..600),
            cuts in cuts(),
        ) {
            let whole = feed(&mut *kind.codec(max), [&stream[..]]);
            let pieces = feed(&mut *kind.codec(max), cut(&stream, &cuts));
            prop_assert_eq!(&pieces.frames, &whole.frames);
            prop_assert_eq!(&pieces.error, &whole.error);
            let raw = feed(&mut Raw, cut(&stream, &cuts));
            prop_assert_eq!(raw.error, None);
            prop_assert_eq!(raw.frames.concat(), stream);
        }
    }
}
