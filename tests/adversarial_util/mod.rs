//! Helpers for the adversarial suite: an in-test calculator handler, a
//! harness that runs a reactor on its own thread, blocking clients, the
//! non-blocking load driver, the child-process server and a few raw socket
//! and signal calls.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use evmux::codec::Delimited;
use evmux::{
    CloseReason, Config, Conn, ConnId, Control, Events, Handler, Interest, Poller, Reactor, Stats,
    StopHandle, TimerId, Token, Trigger,
};

/// How long a client waits for something that must happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The calculator's framing: requests and replies end with `X`.
pub fn codec() -> Delimited {
    Delimited::new(b"X").expect("non-empty delimiter")
}

// ---- the calculator ---------------------------------------------------------

/// `a+b`, `a-b` or `a*b` over i64 with wrapping arithmetic; `None` for
/// anything else.
pub fn eval(request: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(request).ok()?;
    // Skip the first byte so a leading minus sign is not the operator.
    let at = 1 + text.get(1..)?.find(['+', '-', '*'])?;
    let a: i64 = text[..at].parse().ok()?;
    let b: i64 = text[at + 1..].parse().ok()?;
    Some(match text.as_bytes()[at] {
        b'+' => a.wrapping_add(b),
        b'-' => a.wrapping_sub(b),
        _ => a.wrapping_mul(b),
    })
}

/// What the handler shows the test while the reactor runs.
#[derive(Default)]
pub struct Probe {
    /// The reactor's counters, copied at every tick of the publish timer.
    pub stats: Stats,
    /// Every close so far, in order.
    pub closes: Vec<(ConnId, CloseReason)>,
}

/// The calculator handler. Frames: `a+b` / `a-b` / `a*b` (reply: the
/// result), `Q` (close now), `STOP` (stop the reactor), `NAME n` (remember
/// this connection as `n`, reply `OK`), `KILL n` (close the connection
/// named `n` through `Control::close`, reply `OK`), `CPU` (reply: this
/// process's CPU time so far, in microseconds); anything else: `ERR`.
#[derive(Default)]
pub struct Calc {
    /// Every close, in order.
    pub closes: Vec<(ConnId, CloseReason)>,
    /// Connections opened.
    pub opened: u64,
    /// Frames delivered for a connection after its `on_close`: must stay 0.
    pub frames_after_close: u64,
    /// Closes reported twice for one id: must stay 0.
    pub double_closes: u64,
    closed: HashSet<ConnId>,
    names: HashMap<Vec<u8>, ConnId>,
    probe: Arc<Mutex<Probe>>,
    publish_every: Option<Duration>,
}

impl Calc {
    /// A calculator that copies the reactor's stats into the probe every
    /// `every` (if given).
    pub fn publishing(every: Option<Duration>) -> Calc {
        Calc {
            publish_every: every,
            ..Calc::default()
        }
    }

    /// How many closes had `reason`.
    pub fn count(&self, reason: CloseReason) -> usize {
        self.closes.iter().filter(|(_, r)| *r == reason).count()
    }

    fn reply(conn: &mut Conn<'_>, payload: &[u8]) {
        if let Err(e) = conn.send(payload) {
            panic!("{}: send {:?}: {e}", conn.id(), payload.escape_ascii());
        }
    }

    fn answer(conn: &mut Conn<'_>, frame: &[u8]) {
        let Some(value) = eval(frame) else {
            return Calc::reply(conn, b"ERR");
        };
        let mut buf = [0u8; 24];
        let mut cursor = io::Cursor::new(&mut buf[..]);
        write!(cursor, "{value}").expect("an i64 fits in 24 bytes");
        let len = cursor.position() as usize;
        Calc::reply(conn, &buf[..len]);
    }
}

impl Handler for Calc {
    fn on_start(&mut self, ctl: &mut Control<'_>) {
        if let Some(every) = self.publish_every {
            ctl.set_interval(every);
        }
    }

    fn on_open(&mut self, _conn: &mut Conn<'_>) {
        self.opened += 1;
    }

    fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
        if self.closed.contains(&conn.id()) {
            self.frames_after_close += 1;
        }
        match frame {
            b"Q" => conn.close(),
            b"STOP" => conn.control().stop(),
            b"CPU" => {
                let micros = cpu_time().as_micros().to_string();
                Calc::reply(conn, micros.as_bytes());
            }
            _ if frame.starts_with(b"NAME ") => {
                self.names.insert(frame[5..].to_vec(), conn.id());
                Calc::reply(conn, b"OK");
            }
            _ if frame.starts_with(b"KILL ") => {
                if let Some(&id) = self.names.get(&frame[5..]) {
                    conn.control().close(id);
                }
                Calc::reply(conn, b"OK");
            }
            _ => Calc::answer(conn, frame),
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, _timer: TimerId) {
        self.probe().stats = ctl.stats().clone();
    }

    fn on_close(&mut self, id: ConnId, reason: CloseReason) {
        if !self.closed.insert(id) {
            self.double_closes += 1;
        }
        self.closes.push((id, reason));
        self.probe().closes.push((id, reason));
    }
}

impl Calc {
    fn probe(&self) -> MutexGuard<'_, Probe> {
        self.probe.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// ---- the server harness -----------------------------------------------------

/// A reactor running the calculator on its own thread, on 127.0.0.1.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<(Stats, Calc)>>>,
    probe: Arc<Mutex<Probe>>,
}

impl Server {
    /// Starts a calculator on backend `P` with `trigger` and `config`.
    #[track_caller]
    pub fn start<P: Poller>(trigger: Trigger, config: Config) -> Server {
        Server::start_with::<P>(trigger, config, Calc::default())
    }

    /// Starts `calc` on backend `P` with `trigger` and `config`.
    #[track_caller]
    pub fn start_with<P: Poller>(trigger: Trigger, config: Config, calc: Calc) -> Server {
        let probe = Arc::clone(&calc.probe);
        let (tx, rx) = mpsc::channel();
        let config = config.trigger(trigger);
        let thread = std::thread::Builder::new()
            .name(format!("reactor-{}", P::NAME))
            .spawn(move || serve::<P>(config, calc, tx))
            .expect("spawn the reactor thread");
        let (addr, stop) = match rx.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => panic!("{} reactor: new/listen: {e}", P::NAME),
            Err(_) => panic!("{} reactor thread died before listening", P::NAME),
        };
        Server {
            addr,
            stop,
            thread: Some(thread),
            probe,
        }
    }

    /// The stats and closes the handler published so far.
    pub fn probe(&self) -> MutexGuard<'_, Probe> {
        self.probe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reactor thread, for `pthread_kill`.
    pub fn pthread(&self) -> libc::pthread_t {
        self.thread.as_ref().expect("running").as_pthread_t()
    }

    /// Stops the reactor and returns its final stats and handler; panics if
    /// `run` returned an error.
    #[track_caller]
    pub fn finish(mut self) -> (Stats, Calc) {
        self.stop.stop().expect("stop the reactor");
        let thread = self.thread.take().expect("running");
        match thread.join() {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => panic!("Reactor::run returned an error: {e}"),
            Err(_) => panic!("the reactor thread panicked"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.stop.stop();
            let _ = thread.join();
        }
    }
}

type Started = io::Result<(SocketAddr, StopHandle)>;

fn serve<P: Poller>(
    config: Config,
    mut calc: Calc,
    started: mpsc::Sender<Started>,
) -> io::Result<(Stats, Calc)> {
    let made = Reactor::<P, _>::new(codec(), config).and_then(|mut reactor| {
        let addr = reactor.listen((Ipv4Addr::LOCALHOST, 0))?;
        Ok((reactor, addr))
    });
    let mut reactor = match made {
        Ok((reactor, addr)) => {
            let _ = started.send(Ok((addr, reactor.stop_handle())));
            reactor
        }
        Err(e) => {
            let kind = e.kind();
            let _ = started.send(Err(e));
            return Err(kind.into());
        }
    };
    reactor.run(&mut calc)?;
    Ok((reactor.stats().clone(), calc))
}

/// The config every test starts from: no idle timeout (tests that want one
/// set it), a short grace so a failing test stops fast.
pub fn base_config() -> Config {
    Config::default()
        .idle_timeout(None)
        .shutdown_grace(Duration::from_secs(2))
}

// ---- blocking clients -------------------------------------------------------

/// A blocking calculator client with read and write timeouts.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// What a read for a reply found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// One reply, without its `X`.
    Frame(String),
    /// The server closed: EOF, or a reset.
    Closed,
}

impl Client {
    /// Connects, with timeouts of [`PATIENCE`].
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, PATIENCE)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// Wraps a connected stream, setting timeouts of [`PATIENCE`].
    #[track_caller]
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one request (the `X` is added).
    #[track_caller]
    pub fn send(&mut self, request: &str) {
        let mut frame = request.as_bytes().to_vec();
        frame.push(b'X');
        if let Err(e) = self.stream.write_all(&frame) {
            panic!("send {request:?}: {e}");
        }
    }

    /// Reads the next reply, or learns that the server closed. Panics on a
    /// timeout or on bytes left over at EOF.
    #[track_caller]
    pub fn reply(&mut self) -> Reply {
        match self.try_reply() {
            Ok(reply) => reply,
            Err(e) => panic!("waiting for a reply: {e}"),
        }
    }

    /// Like [`reply`](Client::reply), but a timeout (or another error that
    /// is not a reset) is returned instead of panicking.
    #[track_caller]
    pub fn try_reply(&mut self) -> io::Result<Reply> {
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'X') {
                let frame: Vec<u8> = self.buf.drain(..=at).collect();
                let text = String::from_utf8_lossy(&frame[..at]).into_owned();
                return Ok(Reply::Frame(text));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "EOF inside a reply: {:?}", self.buf);
                    return Ok(Reply::Closed);
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_reset(&e) => return Ok(Reply::Closed),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `request` and returns its reply; panics if the server closed.
    #[track_caller]
    pub fn call(&mut self, request: &str) -> String {
        self.send(request);
        match self.reply() {
            Reply::Frame(text) => text,
            Reply::Closed => panic!("server closed instead of answering {request:?}"),
        }
    }

    /// Asserts the server closes this connection without another reply.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let got = self.reply();
        assert_eq!(got, Reply::Closed, "expected the server to close");
    }
}

/// True for the errors a client sees when the server reset or vanished.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// A blocking TCP connection to `addr` whose receive buffer was set to
/// `rcvbuf` bytes before connecting (so the window stays small).
pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: i32) -> io::Result<TcpStream> {
    // SAFETY: socket takes no pointers.
    let raw = evmux::cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) })?;
    // SAFETY: `raw` was just returned by socket and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_int_opt(&fd, libc::SO_RCVBUF, rcvbuf)?;
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "ipv4 only"));
    };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sa` is a sockaddr_in of `len` bytes that outlives the call.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            len,
        )
    };
    evmux::cvt(ret)?;
    Ok(TcpStream::from(fd))
}

/// Bytes written to `stream` that the peer has not acknowledged yet
/// (`SIOCOUTQ`): zero once everything, and a FIN after it, can go out.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn unsent_bytes(stream: &TcpStream) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer, and
    // `n` outlives the call; the fd is open for the life of `stream`.
    let ret = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    evmux::cvt(ret)?;
    Ok(n as usize)
}

fn set_int_opt(fd: &OwnedFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is an int of `len` bytes that outlives the call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            len,
        )
    };
    evmux::cvt(ret).map(drop)
}

/// Polls `cond` every 10 ms until it holds or `within` passes; returns
/// whether it held.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- signals ----------------------------------------------------------------

static SIGNALS_SEEN: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn slot(sig: libc::c_int) -> usize {
    match sig {
        libc::SIGPIPE => 0,
        libc::SIGUSR1 => 1,
        _ => 2,
    }
}

extern "C" fn count_signal(sig: libc::c_int) {
    // Only an atomic add: async-signal-safe.
    SIGNALS_SEEN[slot(sig)].fetch_add(1, Ordering::Relaxed);
}

/// Installs a handler that counts `sig` (SIGPIPE or SIGUSR1), without
/// `SA_RESTART`, so a blocking call it interrupts fails with EINTR.
pub fn count_signals(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: sigaction is plain old data; all zeroes is a valid value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `act.sa_mask` is a valid sigset_t inside `act`.
    evmux::cvt(unsafe { libc::sigemptyset(&mut act.sa_mask) })?;
    // SAFETY: `act` is fully initialised and the handler only does an
    // atomic add; a null old-action pointer is allowed.
    evmux::cvt(unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) })?;
    Ok(())
}

/// How many times `sig` was caught since [`count_signals`].
pub fn signals_seen(sig: libc::c_int) -> u64 {
    SIGNALS_SEEN[slot(sig)].load(Ordering::Relaxed)
}

/// Sends `sig` to one thread of this process.
pub fn signal_thread(thread: libc::pthread_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: `thread` is a joinable thread that has not been joined, so its
    // id is valid; the signal has a handler installed.
    let ret = unsafe { libc::pthread_kill(thread, sig) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// User plus system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is writable for the call.
    let ret = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(ret, 0, "getrusage: {}", io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Sets both soft and hard `RLIMIT_NOFILE` of this process to `n`.
pub fn limit_fds(n: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    evmux::cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }).map(drop)
}

// ---- the load driver ----------------------------------------------------------

/// A pipelined calculator load: `conns` connections, each sending
/// `requests` random requests at once and checking every reply.
#[derive(Clone, Debug)]
pub struct Load {
    /// Connections in all.
    pub conns: usize,
    /// Requests per connection.
    pub requests: usize,
    /// Client threads, each driving its share of the connections.
    pub threads: usize,
    /// The PRNG seed; each connection derives its own stream.
    pub seed: u64,
    /// Give up (counting what is missing as lost) after this long.
    pub deadline: Duration,
}

/// What a load saw: every reply checked against the expected result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Replies equal to the expected result, in order.
    pub right: u64,
    /// Replies that were wrong (or not a number).
    pub wrong: u64,
    /// Replies never received (the connection closed or time ran out).
    pub lost: u64,
    /// Bytes received after the last expected reply (duplicates).
    pub extra: u64,
    /// Connections the server closed cleanly after the client's EOF.
    pub clean_eof: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.right += other.right;
        self.wrong += other.wrong;
        self.lost += other.lost;
        self.extra += other.extra;
        self.clean_eof += other.clean_eof;
    }
}

/// xorshift64*: a tiny deterministic PRNG for operands.
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (zero is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random operand, of any length from 1 to 19 digits, either sign.
    pub fn operand(&mut self) -> i64 {
        let bits = self.next();
        let shift = bits % 63;
        (self.next() as i64) >> shift
    }
}

/// Runs `load` against `addr` and adds up what every connection saw.
pub fn run_load(addr: SocketAddr, load: &Load) -> Tally {
    let threads: Vec<_> = (0..load.threads)
        .map(|t| {
            let share = load.conns / load.threads + usize::from(t < load.conns % load.threads);
            let load = load.clone();
            std::thread::spawn(move || drive(addr, share, t as u64, &load))
        })
        .collect();
    let mut total = Tally::default();
    for thread in threads {
        total.add(&thread.join().expect("load thread"));
    }
    total
}

struct LoadConn {
    stream: TcpStream,
    out: Vec<u8>,
    written: usize,
    expected: Vec<i64>,
    got: usize,
    inbuf: Vec<u8>,
    tally: Tally,
    done: bool,
}

impl LoadConn {
    fn new(stream: TcpStream, rng: &mut Rng, requests: usize) -> LoadConn {
        let mut out = Vec::with_capacity(requests * 24);
        let mut expected = Vec::with_capacity(requests);
        for _ in 0..requests {
            let (a, b) = (rng.operand(), rng.operand());
            let op = ["+", "-", "*"][(rng.next() % 3) as usize];
            write!(out, "{a}{op}{b}X").expect("write to a Vec");
            expected.push(eval(format!("{a}{op}{b}").as_bytes()).expect("valid request"));
        }
        LoadConn {
            stream,
            out,
            written: 0,
            expected,
            got: 0,
            inbuf: Vec::new(),
            tally: Tally::default(),
            done: false,
        }
    }

    /// Writes what the socket takes; true once everything is written.
    fn write_some(&mut self) -> bool {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return true, // the read side will see the close
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        true
    }

    /// Reads what is there; true once the server closed.
    fn read_some(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.finish(true);
                    return true;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    self.check_replies();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.finish(false);
                    return true;
                }
            }
        }
    }

    fn check_replies(&mut self) {
        let mut start = 0;
        while let Some(at) = self.inbuf[start..].iter().position(|&b| b == b'X') {
            let reply = &self.inbuf[start..start + at];
            start += at + 1;
            let Some(&want) = self.expected.get(self.got) else {
                self.tally.extra += at as u64 + 1;
                continue;
            };
            self.got += 1;
            let value = std::str::from_utf8(reply)
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            if value == Some(want) {
                self.tally.right += 1;
            } else {
                self.tally.wrong += 1;
            }
        }
        self.inbuf.drain(..start);
    }

    fn finish(&mut self, eof: bool) {
        self.done = true;
        self.tally.lost += (self.expected.len() - self.got) as u64;
        self.tally.extra += self.inbuf.len() as u64;
        if eof && self.got == self.expected.len() && self.inbuf.is_empty() {
            self.tally.clean_eof += 1;
        }
    }
}

/// One client thread: connects `n` sockets, then drives them all with a
/// level-triggered `DefaultPoller` until each server side has closed.
fn drive(addr: SocketAddr, n: usize, thread: u64, load: &Load) -> Tally {
    let mut rng = Rng::new(load.seed ^ (thread << 32));
    let mut conns: Vec<LoadConn> = (0..n)
        .map(|_| {
            let stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("load connect");
            stream.set_nonblocking(true).expect("nonblocking");
            stream.set_nodelay(true).expect("nodelay");
            LoadConn::new(stream, &mut rng, load.requests)
        })
        .collect();
    let mut poller = evmux::DefaultPoller::new().expect("client poller");
    for (i, c) in conns.iter().enumerate() {
        let both = Interest::READABLE | Interest::WRITABLE;
        poller
            .register(&c.stream, Token(i), both, Trigger::Level)
            .expect("register");
    }
    let deadline = Instant::now() + load.deadline;
    let mut open = n;
    let mut events = Events::with_capacity(1024);
    while open > 0 && Instant::now() < deadline {
        poller
            .wait(&mut events, Some(Duration::from_millis(100)))
            .expect("client wait");
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.done {
                continue;
            }
            if ev.is_writable() && c.written < c.out.len() && c.write_some() {
                poller
                    .modify(&c.stream, ev.token(), Interest::READABLE, Trigger::Level)
                    .expect("modify");
            }
            if (ev.is_readable() || ev.is_read_closed() || ev.is_error()) && c.read_some() {
                poller.deregister(&c.stream).expect("deregister");
                open -= 1;
            }
        }
    }
    let mut total = Tally::default();
    for c in &mut conns {
        if !c.done {
            c.finish(false);
        }
        total.add(&c.tally);
    }
    total
}
