//! Helpers for the reactor's integration tests: a test handler that
//! records what the reactor tells it, a server running on its own thread
//! and stopped with a deadline, blocking clients with read timeouts, and a
//! few raw calls (fd numbers, thread CPU time, SIGPIPE) std does not offer.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::mem;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use evmux::codec::Codec;
use evmux::{
    CloseReason, Config, Conn, ConnId, Control, Handler, Poller, Reactor, Stats, StopHandle,
    TimerId,
};

use crate::common::{fd_lock, LONG};

// ---- test isolation -------------------------------------------------------

static GATE: RwLock<()> = RwLock::new(());

/// Held by every reactor test: they run side by side.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

/// Held by the tests that need the process to themselves: they pick fd
/// numbers, or change the SIGPIPE disposition. No other reactor test runs
/// meanwhile (and no other holder of the common fd lock).
pub struct Exclusive {
    _gate: RwLockWriteGuard<'static, ()>,
    _fds: MutexGuard<'static, ()>,
}

/// Takes the process for this test alone; see [`Exclusive`].
pub fn exclusive() -> Exclusive {
    let gate = GATE.write().unwrap_or_else(|e| e.into_inner());
    Exclusive {
        _gate: gate,
        _fds: fd_lock(),
    }
}

// ---- what the handler saw -------------------------------------------------

/// One periodic reading taken inside the reactor thread (`on_timer`).
#[derive(Copy, Clone, Debug)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// When the loop turn it was taken in began (`Control::now`).
    pub turn: Instant,
    /// CPU time the reactor thread has used so far.
    pub cpu: Duration,
    /// `Stats::buffered` then.
    pub buffered: u64,
    /// `Stats::open` then.
    pub open: u64,
    /// `Stats::writes` then.
    pub writes: u64,
    /// `Stats::frames_in` then.
    pub frames_in: u64,
}

/// Everything the test handlers record.
#[derive(Default, Debug)]
pub struct Record {
    /// `on_open`: id and peer address, in order.
    pub opened: Vec<(ConnId, SocketAddr)>,
    /// `on_close`: id, reason and when, in order.
    pub closed: Vec<(ConnId, CloseReason, Instant)>,
    /// Periodic samples (if the handler ticks).
    pub samples: Vec<Sample>,
    /// Timers fired: id and when.
    pub fired: Vec<(TimerId, Instant)>,
    /// Errors a handler ran into (a failed `send`...); tests expect none.
    pub errors: Vec<String>,
    /// When a `SLOW` request started sleeping.
    pub slow: Vec<Instant>,
}

impl Record {
    /// The close reasons reported for `id`.
    pub fn reasons(&self, id: ConnId) -> Vec<CloseReason> {
        let of_id = self.closed.iter().filter(|(c, ..)| *c == id);
        of_id.map(|&(_, reason, _)| reason).collect()
    }

    /// How many closes were reported with `reason`.
    pub fn count(&self, reason: CloseReason) -> usize {
        self.closed.iter().filter(|(_, r, _)| *r == reason).count()
    }

    /// The id opened for the client whose local address is `peer`.
    pub fn id_of(&self, peer: SocketAddr) -> Option<ConnId> {
        let found = self.opened.iter().find(|(_, p)| *p == peer);
        found.map(|&(id, _)| id)
    }
}

/// A [`Record`] shared between the reactor thread and the test, with a
/// condition variable so the test can wait for what it expects.
#[derive(Default)]
pub struct Recorder {
    rec: Mutex<Record>,
    changed: Condvar,
}

impl Recorder {
    /// A fresh, shareable recorder.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the record and wakes waiters.
    pub fn update<R>(&self, f: impl FnOnce(&mut Record) -> R) -> R {
        let out = f(&mut self.lock());
        self.changed.notify_all();
        out
    }

    /// Looks at the record.
    pub fn read<R>(&self, f: impl FnOnce(&Record) -> R) -> R {
        f(&self.lock())
    }

    /// Waits up to `timeout` for `f` to return `Some`; panics naming `what`
    /// (and showing the record) if it never does.
    #[track_caller]
    pub fn wait<R>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Record) -> Option<R>,
    ) -> R {
        let deadline = Instant::now() + timeout;
        let mut rec = self.lock();
        loop {
            if let Some(out) = f(&rec) {
                return out;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("timed out after {timeout:?} waiting for {what}; record: {rec:#?}");
            }
            rec = match self.changed.wait_timeout(rec, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Waits for `on_open` of the client whose local address is `peer`.
    #[track_caller]
    pub fn id_of(&self, peer: SocketAddr) -> ConnId {
        self.wait(&format!("on_open for {peer}"), LONG, |r| r.id_of(peer))
    }

    /// Waits until a close of `id` has been reported and returns its reason.
    #[track_caller]
    pub fn closed(&self, id: ConnId) -> CloseReason {
        let what = format!("on_close for {id}");
        self.wait(&what, LONG, |r| r.reasons(id).first().copied())
    }

    /// Waits for a sample taken after `after` that satisfies `pred`.
    #[track_caller]
    pub fn sample_after(
        &self,
        what: &str,
        after: Instant,
        pred: impl Fn(&Sample) -> bool,
    ) -> Sample {
        self.wait(what, LONG, |r| {
            let mut later = r.samples.iter().filter(|s| s.at >= after);
            later.find(|s| pred(s)).copied()
        })
    }
}

// ---- the test handler ------------------------------------------------------

/// The requests the test handler answers, one per frame:
///
/// | frame | reply |
/// |---|---|
/// | `a+b` (decimal) | the sum, in decimal |
/// | `FILL n` | `n` bytes of [`pattern`] |
/// | `KILL port` | `OK`, after asking the reactor to close the connection whose peer port is `port` |
/// | `SWAP port` | `OK`, after the same close and a new client connection made from inside the callback (handed to the test) |
/// | `BYE` | `BYE`, then [`Conn::close`] (which drops queued output) |
/// | `SLOW ms` | `OK`, after blocking the reactor thread for `ms` milliseconds |
/// | the empty frame | nothing |
/// | anything else | `ERR` |
///
/// In echo mode every frame is sent back unchanged instead.
pub struct Calc {
    rec: Arc<Recorder>,
    echo: bool,
    /// Peer port to id, kept after close on purpose: a later `KILL` for a
    /// closed connection sends a stale id.
    ids: HashMap<u16, ConnId>,
    /// Where `SWAP` connects, and where it hands the new client.
    swap: Option<(SocketAddr, Sender<TcpStream>)>,
    tick: Option<Duration>,
}

impl Calc {
    /// A calculator recording into `rec`.
    pub fn new(rec: &Arc<Recorder>) -> Calc {
        Calc {
            rec: Arc::clone(rec),
            echo: false,
            ids: HashMap::new(),
            swap: None,
            tick: None,
        }
    }

    /// An echo handler recording into `rec`.
    pub fn echo(rec: &Arc<Recorder>) -> Calc {
        Calc {
            echo: true,
            ..Calc::new(rec)
        }
    }

    /// Takes a [`Sample`] every `every`.
    pub fn tick(mut self, every: Duration) -> Calc {
        self.tick = Some(every);
        self
    }

    /// Lets `SWAP` connect to `addr` and send the new client to `to`.
    pub fn swap(mut self, addr: SocketAddr, to: Sender<TcpStream>) -> Calc {
        self.swap = Some((addr, to));
        self
    }

    fn answer(&mut self, conn: &mut Conn<'_>, frame: &[u8]) -> io::Result<()> {
        if self.echo {
            return conn.send(frame);
        }
        if frame.is_empty() {
            return Ok(());
        }
        let text = std::str::from_utf8(frame).unwrap_or("");
        if let Some((a, b)) = text.split_once('+') {
            return match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(a), Ok(b)) => conn.send((a + b).to_string().as_bytes()),
                _ => conn.send(b"ERR"),
            };
        }
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        match (verb, arg.parse::<usize>()) {
            ("FILL", Ok(n)) => conn.send(&pattern(n)),
            ("KILL", Ok(port)) => {
                self.kill(conn.control(), port as u16);
                conn.send(b"OK")
            }
            ("SWAP", Ok(port)) => {
                self.kill(conn.control(), port as u16);
                self.connect_new()?;
                conn.send(b"OK")
            }
            ("SLOW", Ok(ms)) => {
                self.rec.update(|r| r.slow.push(Instant::now()));
                thread::sleep(Duration::from_millis(ms as u64));
                conn.send(b"OK")
            }
            ("BYE", _) => {
                let sent = conn.send(b"BYE");
                conn.close();
                sent
            }
            _ => conn.send(b"ERR"),
        }
    }

    fn kill(&self, ctl: &mut Control<'_>, port: u16) {
        match self.ids.get(&port) {
            Some(&id) => ctl.close(id),
            None => self.error(format!("KILL {port}: no such connection")),
        }
    }

    /// Connects a new client while the callback runs: the connection then
    /// waits in the listener's queue and is accepted in the next turn.
    fn connect_new(&self) -> io::Result<()> {
        let Some((addr, to)) = &self.swap else {
            return Err(io::Error::new(
                ErrorKind::Unsupported,
                "SWAP without swap()",
            ));
        };
        let client = TcpStream::connect(addr)?;
        to.send(client)
            .map_err(|_| io::Error::new(ErrorKind::BrokenPipe, "SWAP: test gone"))
    }

    fn error(&self, what: String) {
        self.rec.update(|r| r.errors.push(what));
    }
}

impl Handler for Calc {
    fn on_start(&mut self, ctl: &mut Control<'_>) {
        if let Some(every) = self.tick {
            ctl.set_interval(every);
        }
    }

    fn on_open(&mut self, conn: &mut Conn<'_>) {
        match conn.peer_addr() {
            Ok(peer) => {
                self.ids.insert(peer.port(), conn.id());
                self.rec.update(|r| r.opened.push((conn.id(), peer)));
            }
            Err(e) => self.error(format!("on_open {}: peer_addr: {e}", conn.id())),
        }
    }

    fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
        if let Err(e) = self.answer(conn, frame) {
            self.error(format!("on_frame {}: {e}", conn.id()));
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, _timer: TimerId) {
        let sample = Sample {
            at: Instant::now(),
            turn: ctl.now(),
            cpu: thread_cpu_time(),
            buffered: ctl.stats().buffered,
            open: ctl.stats().open,
            writes: ctl.stats().writes,
            frames_in: ctl.stats().frames_in,
        };
        self.rec.update(|r| r.samples.push(sample));
    }

    fn on_close(&mut self, id: ConnId, reason: CloseReason) {
        let now = Instant::now();
        self.rec.update(|r| r.closed.push((id, reason, now)));
    }
}

/// `n` bytes of `a..=w`, repeating (no `X`, the tests' delimiter).
pub fn pattern(n: usize) -> Vec<u8> {
    let mut bytes = b"abcdefghijklmnopqrstuvw".repeat(n / 23 + 1);
    bytes.truncate(n);
    bytes
}

// ---- the server thread -----------------------------------------------------

/// A reactor running [`Reactor::run`] on its own thread.
pub struct Server<H: Send + 'static> {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its stop handle.
    pub stop: StopHandle,
    thread: Option<JoinHandle<io::Result<(Stats, H)>>>,
}

/// Builds a reactor on backend `P`, listens on 127.0.0.1:0, builds the
/// handler (which may want the address) and runs it on a new thread.
#[track_caller]
pub fn serve<P, C, H>(codec: C, config: Config, make: impl FnOnce(SocketAddr) -> H) -> Server<H>
where
    P: Poller + Send + 'static,
    C: Codec + Clone + Send + 'static,
    H: Handler + Send + 'static,
{
    let mut reactor = match Reactor::<P, C>::new(codec, config) {
        Ok(r) => r,
        Err(e) => panic!("{}: Reactor::new: {e}", P::NAME),
    };
    let addr = reactor
        .listen("127.0.0.1:0")
        .expect("listen on 127.0.0.1:0");
    let stop = reactor.stop_handle();
    let mut handler = make(addr);
    let thread = thread::spawn(move || {
        reactor.run(&mut handler)?;
        Ok((reactor.stats().clone(), handler))
    });
    Server {
        addr,
        stop,
        thread: Some(thread),
    }
}

impl<H: Send + 'static> Server<H> {
    /// Has `run` returned?
    pub fn has_returned(&self) -> bool {
        self.thread.as_ref().map_or(true, |t| t.is_finished())
    }

    /// Waits up to `timeout` for `run` to return (without stopping it) and
    /// returns its final stats and handler; panics if it does not return or
    /// returns an error.
    #[track_caller]
    pub fn join(mut self, timeout: Duration) -> (Stats, H) {
        let thread = self.thread.take().expect("joined twice");
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                // Leave the thread be: stopping it may not work either.
                mem::forget(thread);
                panic!("Reactor::run did not return within {timeout:?}");
            }
            thread::sleep(Duration::from_millis(2));
        }
        match thread.join() {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("Reactor::run failed: {e}"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Stops the reactor and joins it (within [`LONG`]).
    #[track_caller]
    pub fn finish(self) -> (Stats, H) {
        self.stop.stop().expect("stop");
        self.join(LONG)
    }
}

impl<H: Send + 'static> Drop for Server<H> {
    /// A test that panicked midway still stops its reactor, so no thread
    /// outlives it by much.
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self.stop.stop();
        let deadline = Instant::now() + LONG;
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
    }
}

// ---- clients ---------------------------------------------------------------

/// How a connection ended, seen from the client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A read returned 0.
    Eof,
    /// A read failed with `ECONNRESET` (the server closed with unread data).
    Reset,
}

/// A blocking client with read and write timeouts, so a reactor bug fails
/// the test instead of hanging it.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
}

impl Client {
    /// Connects to `addr` (Nagle off, 5 s timeouts).
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        Client::from_stream(stream)
    }

    /// Wraps a connected stream, setting the timeouts.
    #[track_caller]
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("set_nodelay");
        stream
            .set_read_timeout(Some(LONG))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(LONG))
            .expect("set_write_timeout");
        Client { stream }
    }

    /// The client's address, which the server sees as the peer.
    pub fn local(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    /// Writes all of `bytes`.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!(
                "client {}: write of {} bytes: {e}",
                self.local(),
                bytes.len()
            );
        }
    }

    /// Reads exactly `n` bytes.
    #[track_caller]
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        let mut got = 0;
        while got < n {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => panic!(
                    "client: EOF after {got} of {n} bytes: {}",
                    show(&buf[..got])
                ),
                Ok(k) => got += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!(
                    "client: read after {got} of {n} bytes: {e}: {}",
                    show(&buf[..got])
                ),
            }
        }
        buf
    }

    /// Reads exactly `want.len()` bytes and checks they are `want`.
    #[track_caller]
    pub fn expect(&mut self, want: &[u8]) {
        let got = self.read_n(want.len());
        assert_same(&got, want);
    }

    /// Sends `req` and expects `want` back.
    #[track_caller]
    pub fn request(&mut self, req: &[u8], want: &[u8]) {
        self.send(req);
        self.expect(want);
    }

    /// Reads until the server closes; returns what came and how it ended.
    #[track_caller]
    pub fn read_to_close(&mut self) -> (Vec<u8>, Ending) {
        let mut data = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (data, Ending::Eof),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return (data, Ending::Reset),
                Err(e) => panic!("client: waiting for close after {} bytes: {e}", data.len()),
            }
        }
    }

    /// Expects nothing more from the server but an orderly close.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        let (data, ending) = self.read_to_close();
        assert_eq!(ending, Ending::Eof, "after {}", show(&data));
        assert!(
            data.is_empty(),
            "unexpected bytes before EOF: {}",
            show(&data)
        );
    }

    /// Expects the server to drop the connection, by FIN or RST, with
    /// nothing more sent.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let (data, _) = self.read_to_close();
        assert!(
            data.is_empty(),
            "unexpected bytes before close: {}",
            show(&data)
        );
    }

    /// Shrinks the socket's receive buffer to about `bytes` (`SO_RCVBUF`;
    /// this also turns off the kernel's autotuning of it), so that replies
    /// the client does not read pile up in the server's queue sooner than
    /// in the kernel's buffers, which on loopback can hold megabytes.
    #[track_caller]
    pub fn shrink_rcvbuf(&self, bytes: usize) {
        let size = bytes as libc::c_int;
        let len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `size` is a valid int of `len` bytes that outlives the
        // call, and the fd is the open socket owned by `self.stream`.
        let ret = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                len,
            )
        };
        assert_eq!(
            ret,
            0,
            "setsockopt(SO_RCVBUF): {}",
            io::Error::last_os_error()
        );
    }

    /// Shuts down the write side (sends FIN).
    #[track_caller]
    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }
}

/// Asserts two byte strings are equal, showing where they first differ.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    let at = at.unwrap_or(got.len().min(want.len()));
    let from = at.saturating_sub(16);
    panic!(
        "bytes differ at {at} (got {} bytes, want {}): got {} want {}",
        got.len(),
        want.len(),
        show(&got[from..got.len().min(at + 32)]),
        show(&want[from..want.len().min(at + 32)]),
    );
}

/// A short printable form of some bytes.
pub fn show(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(80)];
    let more = if bytes.len() > 80 { "..." } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(head))
}

// ---- waiting ---------------------------------------------------------------

/// Polls `f` every few milliseconds until it returns `Some`, for at most
/// `timeout`; panics naming `what` if it never does.
#[track_caller]
pub fn eventually<R>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(out) = f() {
            return out;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Joins `thread`, waiting at most `timeout`.
#[track_caller]
pub fn join_within<T>(thread: JoinHandle<T>, what: &str, timeout: Duration) -> T {
    eventually(what, timeout, || thread.is_finished().then_some(()));
    match thread.join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

// ---- raw calls -------------------------------------------------------------

/// CPU time (user + system) the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a writable timespec for the duration of the call.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(ret, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One more descriptor for `/dev/null`, at the lowest free number.
pub fn filler(null: &std::fs::File) -> OwnedFd {
    crate::common::dup_at_least(null.as_fd(), 0).expect("dup /dev/null")
}

/// `/dev/null`, to duplicate into fd numbers the test wants taken.
pub fn dev_null() -> std::fs::File {
    std::fs::File::open("/dev/null").expect("open /dev/null")
}

/// Takes every free fd number below `limit`, so the next new descriptor
/// gets `limit` or above; returns the fillers (drop them to give the
/// numbers back). Only meaningful under [`exclusive`].
pub fn take_fds_below(limit: RawFd) -> Vec<OwnedFd> {
    let null = dev_null();
    let mut taken = Vec::new();
    if null.as_raw_fd() >= limit {
        return taken; // dropping `null` frees its number again
    }
    loop {
        let fd = filler(&null);
        if fd.as_raw_fd() >= limit {
            // `fd` is dropped, so that number stays free; `null` is kept,
            // or its number would be a hole.
            taken.push(OwnedFd::from(null));
            return taken;
        }
        taken.push(fd);
    }
}

/// The highest fd number open in this process (scanning with `F_GETFD`).
pub fn highest_open_fd() -> RawFd {
    let mut highest = -1;
    for fd in 0..(1 << 16) {
        // SAFETY: F_GETFD only reads the flags of whatever `fd` names; a
        // number that is not open fails with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            highest = fd;
        }
    }
    highest
}

/// Fills every hole in the fd table, so the next descriptors are handed
/// out in order above everything open now, and a number freed later is the
/// lowest free one. Returns the fillers.
pub fn fill_fd_holes() -> Vec<OwnedFd> {
    take_fds_below(highest_open_fd() + 1)
}

/// The peer address of the socket `fd`, if it is a connected IPv4 socket.
pub fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sa` and `len` are writable and `len` holds the size of `sa`;
    // on a number that is not a socket the call just fails.
    let ret =
        unsafe { libc::getpeername(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) };
    if ret != 0 || sa.sin_family != libc::AF_INET as libc::sa_family_t {
        return None;
    }
    let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
    Some(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(sa.sin_port),
    )))
}

/// The fd number of the server's end of `client`'s connection (the socket
/// in this process whose peer is the client).
pub fn server_fd_of(client: &Client) -> Option<RawFd> {
    let me = client.local();
    (0..=highest_open_fd()).find(|&fd| peer_of(fd) == Some(me))
}

/// Sets SIGPIPE back to its default action (terminate the process) until
/// dropped, so a write that raises it kills the test run. Hold
/// [`exclusive`] meanwhile: the disposition is process-wide.
pub struct SigpipeDefault {
    old: libc::sigaction,
}

impl SigpipeDefault {
    /// Installs `SIG_DFL` for SIGPIPE.
    pub fn install() -> SigpipeDefault {
        // SAFETY: sigaction is plain old data; all zeroes is a valid value.
        let mut act: libc::sigaction = unsafe { mem::zeroed() };
        act.sa_sigaction = libc::SIG_DFL;
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: both structs are valid for the call; SIG_DFL is a valid
        // disposition for SIGPIPE.
        let ret = unsafe { libc::sigaction(libc::SIGPIPE, &act, &mut old) };
        assert_eq!(ret, 0, "sigaction(SIGPIPE, SIG_DFL)");
        SigpipeDefault { old }
    }
}

impl Drop for SigpipeDefault {
    fn drop(&mut self) {
        // SAFETY: `self.old` is the action sigaction returned earlier.
        unsafe { libc::sigaction(libc::SIGPIPE, &self.old, std::ptr::null_mut()) };
    }
}

/// An int socket option of `fd` (`getsockopt`).
#[track_caller]
pub fn sockopt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are writable and `len` holds the size of
    // `value`; a wrong fd or option only makes the call fail.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "getsockopt: {}", io::Error::last_os_error());
    value
}
