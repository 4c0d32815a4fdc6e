//! A load generator for the example servers (echo, calc, ping) and any
//! server that speaks one of their protocols on 127.0.0.1.
//!
//! ```text
//! $ cargo run --release --example loadgen -- --addr 127.0.0.1:7878 \
//!       --mode echo --connections 100 --pipeline 16 --size 64 --duration 10
//! ```
//!
//! Each of `--connections` connections keeps `--pipeline` requests in
//! flight; every reply is checked against the request that caused it, and
//! a wrong reply, a missing one (connection closed, or not back within
//! the drain time after the run) or a connection the server drops is an
//! error: counted, reported, and the exit status is 1. `--idle` more
//! connections are opened first and left idle for the whole run; at the
//! end each is checked still open.
//!
//! Modes: `echo` sends `--size` bytes of a pattern that changes with every
//! request and expects them back; `calc` sends `a+bX` and expects the sum
//! then `X` (`--size` is ignored); `ping` sends `PING\r\n` and expects
//! `+PONG\r\n`.
//!
//! Latency runs from the moment a request is queued for writing to the
//! moment its whole reply has been read, so it includes waiting behind
//! the requests ahead of it in the pipeline. The last line of output is
//! one `RESULT key=value ...` line for scripts (benches/e2e.sh).
//!
//! Bounded by design: it talks only to loopback addresses, every connect
//! has a timeout, `--duration` is capped at 600 s, and replies still
//! missing 5 s after the run count as errors rather than being waited on.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use evmux::{DefaultPoller, Events, Interest, Poller, Token, Trigger};
use hdrhistogram::Histogram;

#[path = "../benches/support/fd_limit.rs"]
mod fd_limit;
use fd_limit::raise_fd_limit;

/// The longest run `--duration` accepts, in seconds.
const MAX_DURATION: u64 = 600;
/// How long a single connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the replies still in flight after the run.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest single `wait`, so phase changes are seen in time.
const TICK: Duration = Duration::from_millis(50);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// fds kept free for stdio, the poller and the like.
const SPARE_FDS: u64 = 32;

/// Drives a server with pipelined requests and checks every reply.
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Args {
    /// The server's address (loopback only)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7878")]
    addr: SocketAddr,

    /// Active connections
    #[arg(long, value_name = "C", default_value_t = 100)]
    connections: usize,

    /// Requests in flight per connection
    #[arg(long, value_name = "D", default_value_t = 16)]
    pipeline: usize,

    /// Payload bytes per echo request
    #[arg(long, value_name = "S", default_value_t = 64)]
    size: usize,

    /// Seconds of measured load (at most 600)
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    duration: u64,

    /// Seconds of load before measuring starts
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    warmup: u64,

    /// The protocol to speak
    #[arg(long, value_enum, default_value = "echo")]
    mode: Mode,

    /// Extra connections opened first and left idle for the whole run
    #[arg(long, value_name = "N", default_value_t = 0)]
    idle: usize,
}

/// `--mode`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Raw bytes, sent back as they are
    Echo,
    /// `a+bX` answered with `<sum>X`
    Calc,
    /// `PING\r\n` answered with `+PONG\r\n`
    Ping,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Calc => "calc",
            Mode::Ping => "ping",
        }
    }

    /// Appends request number `seq` to `out`.
    fn request(self, seq: u64, size: usize, out: &mut Vec<u8>) {
        match self {
            Mode::Echo => out.extend((0..size).map(|i| pattern(seq, i))),
            Mode::Calc => {
                let (a, b) = operands(seq);
                let _ = write!(Text(out), "{a}+{b}X");
            }
            Mode::Ping => out.extend_from_slice(b"PING\r\n"),
        }
    }

    /// Writes the reply request `seq` must get into `out` (cleared first).
    fn reply(self, seq: u64, size: usize, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Mode::Echo => self.request(seq, size, out),
            Mode::Calc => {
                let (a, b) = operands(seq);
                let _ = write!(Text(out), "{}X", a + b);
            }
            Mode::Ping => out.extend_from_slice(b"+PONG\r\n"),
        }
    }
}

/// Byte `i` of echo request `seq`: differs between neighbouring requests,
/// so a reply that is shifted, repeated or swapped does not match.
fn pattern(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8
}

/// Calc operands for request `seq`, one of them negative now and then.
fn operands(seq: u64) -> (i64, i64) {
    let a = (seq % 1_000_003) as i64;
    let b = (seq.wrapping_mul(2_654_435_761) % 999_983) as i64 - 500_000;
    (a, b)
}

/// `fmt::Write` into a byte vector, so formatting needs no `String`.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Where the run is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Load, not measured.
    Warmup,
    /// Load, measured.
    Measure,
    /// No new requests; waiting for the ones in flight.
    Drain,
}

/// What went wrong, by kind.
#[derive(Default, Debug)]
struct Errors {
    /// Replies that did not match their request.
    wrong: u64,
    /// Requests whose reply never came (connection lost or drain timeout).
    missing: u64,
    /// Active connections the server closed or reset.
    closed: u64,
}

impl Errors {
    fn total(&self) -> u64 {
        self.wrong + self.missing + self.closed
    }
}

/// One active connection.
struct Conn {
    stream: TcpStream,
    /// Bytes queued for the socket; `out[sent..]` is still to go.
    out: Vec<u8>,
    sent: usize,
    /// Bytes read and not yet matched to a request.
    inbuf: Vec<u8>,
    /// Requests in flight, oldest first: (seq, queued at).
    flight: VecDeque<(u64, Instant)>,
    next_seq: u64,
    /// Writable interest is on.
    want_write: bool,
    alive: bool,
}

/// The whole run's state.
struct Load {
    mode: Mode,
    size: usize,
    pipeline: usize,
    phase: Phase,
    conns: Vec<Conn>,
    poller: DefaultPoller,
    hist: Histogram<u64>,
    /// Replies verified during `Measure`.
    measured: u64,
    errors: Errors,
    /// Scratch: the reply the head request expects.
    expect: Vec<u8>,
    /// Scratch: one read's worth of bytes.
    chunk: Vec<u8>,
}

impl Load {
    /// Queues requests until `pipeline` are in flight, then writes.
    fn fill(&mut self, i: usize, now: Instant) -> io::Result<()> {
        let (mode, size, depth) = (self.mode, self.size, self.pipeline);
        let conn = &mut self.conns[i];
        if self.phase != Phase::Drain {
            while conn.flight.len() < depth {
                let seq = conn.next_seq;
                conn.next_seq += 1;
                mode.request(seq, size, &mut conn.out);
                conn.flight.push_back((seq, now));
            }
        }
        self.flush(i)
    }

    /// Writes what is queued; turns writable interest on while some is
    /// left and off once all is gone.
    fn flush(&mut self, i: usize) -> io::Result<()> {
        let conn = &mut self.conns[i];
        while conn.sent < conn.out.len() {
            match (&conn.stream).write(&conn.out[conn.sent..]) {
                Ok(n) => conn.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if conn.sent == conn.out.len() {
            conn.out.clear();
            conn.sent = 0;
        }
        let want = !conn.out.is_empty();
        if want != conn.want_write {
            conn.want_write = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let conn = &self.conns[i];
            self.poller
                .modify(&conn.stream, Token(i), interest, Trigger::Level)?;
        }
        Ok(())
    }

    /// Reads what is there and matches it against the requests in flight.
    /// Returns false once the server has closed the connection.
    fn read(&mut self, i: usize, now: Instant) -> io::Result<bool> {
        loop {
            let n = match (&self.conns[i].stream).read(&mut self.chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let conn = &mut self.conns[i];
            conn.inbuf.extend_from_slice(&self.chunk[..n]);
            if !self.verify(i, now) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong reply"));
            }
            if n < self.chunk.len() {
                return Ok(true);
            }
        }
    }

    /// Pops every request whose reply is complete in `inbuf`; false on a
    /// reply that differs from what its request asks for.
    fn verify(&mut self, i: usize, now: Instant) -> bool {
        let conn = &mut self.conns[i];
        let mut used = 0;
        while let Some(&(seq, queued)) = conn.flight.front() {
            self.mode.reply(seq, self.size, &mut self.expect);
            let have = &conn.inbuf[used..];
            let len = self.expect.len().min(have.len());
            if have[..len] != self.expect[..len] {
                self.errors.wrong += 1;
                conn.flight.pop_front();
                return false;
            }
            if len < self.expect.len() {
                break;
            }
            used += len;
            conn.flight.pop_front();
            if self.phase == Phase::Measure {
                self.measured += 1;
                let ns = now.duration_since(queued).as_nanos();
                self.hist.saturating_record(ns.min(u64::MAX as u128) as u64);
            }
        }
        if conn.flight.is_empty() && used < conn.inbuf.len() {
            // Bytes nobody asked for.
            self.errors.wrong += 1;
            return false;
        }
        conn.inbuf.drain(..used);
        true
    }

    /// Gives up on a connection: its requests in flight are missing.
    fn kill(&mut self, i: usize, why: &io::Error) {
        let conn = &mut self.conns[i];
        if !conn.alive {
            return;
        }
        conn.alive = false;
        self.errors.missing += conn.flight.len() as u64;
        conn.flight.clear();
        if why.kind() != io::ErrorKind::InvalidData {
            self.errors.closed += 1;
        }
        eprintln!("loadgen: connection {i}: {why}; dropped");
        let _ = self.poller.deregister(&conn.stream);
    }

    /// Handles one readiness event.
    fn on_event(&mut self, i: usize, readable: bool, now: Instant) {
        if !self.conns.get(i).is_some_and(|c| c.alive) {
            return;
        }
        let mut result = Ok(());
        if readable {
            result = match self.read(i, now) {
                Ok(true) => Ok(()),
                Ok(false) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed by the server",
                )),
                Err(e) => Err(e),
            };
        }
        if result.is_ok() {
            result = self.fill(i, now);
        }
        if let Err(e) = result {
            self.kill(i, &e);
        }
    }

    /// Requests still waiting for a reply, over live connections.
    fn in_flight(&self) -> usize {
        let live = self.conns.iter().filter(|c| c.alive);
        live.map(|c| c.flight.len()).sum()
    }

    /// Runs the event loop until `until`, or, while draining, until nothing
    /// is in flight.
    fn run_until(&mut self, until: Instant, events: &mut Events) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if now >= until || (self.phase == Phase::Drain && self.in_flight() == 0) {
                return Ok(());
            }
            self.poller.wait(events, Some(TICK.min(until - now)))?;
            let now = Instant::now();
            for ev in events.iter() {
                self.on_event(ev.token().0, ev.is_readable(), now);
            }
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Refuses flags that would leave loopback or run unbounded.
fn check(args: &Args, fd_limit: u64) -> io::Result<()> {
    if !args.addr.ip().is_loopback() {
        return Err(invalid(format!(
            "--addr {}: only loopback addresses are allowed",
            args.addr
        )));
    }
    if args.duration == 0 || args.duration > MAX_DURATION {
        let d = args.duration;
        return Err(invalid(format!(
            "--duration {d}: must be 1..={MAX_DURATION}"
        )));
    }
    if args.warmup > MAX_DURATION {
        return Err(invalid(format!(
            "--warmup {}: at most {MAX_DURATION}",
            args.warmup
        )));
    }
    if args.connections == 0 || args.pipeline == 0 || args.size == 0 {
        return Err(invalid(
            "--connections, --pipeline and --size must be at least 1".into(),
        ));
    }
    let need = (args.connections + args.idle) as u64 + SPARE_FDS;
    if need > fd_limit {
        return Err(invalid(format!(
            "{} connections need about {need} fds; RLIMIT_NOFILE allows {fd_limit}",
            args.connections + args.idle
        )));
    }
    Ok(())
}

fn connect(addr: SocketAddr, what: &str, n: usize) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| io::Error::new(e.kind(), format!("connect {what} #{n} to {addr}: {e}")))
}

fn open_idle(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    (0..n)
        .map(|i| connect(addr, "idle connection", i))
        .collect()
}

fn open_active(args: &Args, poller: &mut DefaultPoller) -> io::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let stream = connect(args.addr, "connection", i)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        poller.register(&stream, Token(i), Interest::READABLE, Trigger::Level)?;
        conns.push(Conn {
            stream,
            out: Vec::new(),
            sent: 0,
            inbuf: Vec::new(),
            flight: VecDeque::with_capacity(args.pipeline),
            next_seq: 0,
            want_write: false,
            alive: true,
        });
    }
    Ok(conns)
}

/// How many idle connections the server closed (or broke) during the run.
fn idle_closed(idle: &[TcpStream]) -> io::Result<usize> {
    let mut closed = 0;
    let mut byte = [0u8; 1];
    for s in idle {
        s.set_nonblocking(true)?;
        match (&*s).read(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    Ok(closed)
}

/// Latency quantile in microseconds.
fn quantile_us(hist: &Histogram<u64>, q: f64) -> f64 {
    hist.value_at_quantile(q) as f64 / 1000.0
}

fn report(args: &Args, load: &Load, idle_closed: usize, secs: f64) {
    let rps = load.measured as f64 / secs;
    let h = &load.hist;
    let e = &load.errors;
    let (p50, p99, p999) = (
        quantile_us(h, 0.5),
        quantile_us(h, 0.99),
        quantile_us(h, 0.999),
    );
    let max = h.max() as f64 / 1000.0;
    println!(
        "{} requests in {secs:.2} s: {rps:.0} requests/s; latency p50 {p50:.1} us, \
         p99 {p99:.1} us, p999 {p999:.1} us, max {max:.1} us",
        load.measured
    );
    println!(
        "errors: {} ({} wrong replies, {} missing replies, {} connections closed); \
         idle connections closed by the server: {idle_closed} of {}",
        e.total(),
        e.wrong,
        e.missing,
        e.closed,
        args.idle
    );
    println!(
        "RESULT mode={} connections={} pipeline={} size={} idle={} secs={secs:.2} \
         requests={} rps={rps:.0} p50_us={p50:.1} p99_us={p99:.1} p999_us={p999:.1} \
         max_us={max:.1} errors={} wrong={} missing={} closed={} idle_closed={idle_closed}",
        args.mode.name(),
        args.connections,
        args.pipeline,
        args.size,
        args.idle,
        load.measured,
        e.total(),
        e.wrong,
        e.missing,
        e.closed,
    );
}

fn run(args: &Args) -> io::Result<bool> {
    let limit = raise_fd_limit()?;
    check(args, limit)?;
    let idle = open_idle(args.addr, args.idle)?;
    let mut poller = DefaultPoller::new()?;
    let conns = open_active(args, &mut poller)?;
    let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| invalid(format!("histogram: {e}")))?;
    let mut load = Load {
        mode: args.mode,
        size: args.size,
        pipeline: args.pipeline,
        phase: Phase::Warmup,
        conns,
        poller,
        hist,
        measured: 0,
        errors: Errors::default(),
        expect: Vec::new(),
        chunk: vec![0; READ_CHUNK],
    };
    let mut events = Events::with_capacity(args.connections.min(1024));
    let start = Instant::now();
    for i in 0..load.conns.len() {
        load.on_event(i, false, start);
    }
    let warm_end = start + Duration::from_secs(args.warmup);
    load.run_until(warm_end, &mut events)?;
    load.phase = Phase::Measure;
    let measure_start = Instant::now();
    load.run_until(
        measure_start + Duration::from_secs(args.duration),
        &mut events,
    )?;
    let secs = measure_start.elapsed().as_secs_f64();
    load.phase = Phase::Drain;
    load.run_until(Instant::now() + DRAIN_TIMEOUT, &mut events)?;
    load.errors.missing += load.in_flight() as u64;
    let closed = idle_closed(&idle)?;
    report(args, &load, closed, secs);
    Ok(load.errors.total() == 0 && closed == 0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            ExitCode::FAILURE
        }
    }
}
