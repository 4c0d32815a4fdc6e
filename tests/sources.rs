//! Connections of every kind, on every backend and trigger: outbound
//! connects (TCP and Unix-domain), Unix-domain listeners, listeners bound
//! elsewhere (`listen_on`, two reactors sharing a port with
//! SO_REUSEPORT), adopted sockets, and user fds (`Control::watch`).
//!
//! Each scenario runs a reactor on its own thread with a scripted handler
//! that reports what it saw over a channel; every wait is bounded.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{closed_port, pipe, read_fd, write_fd};
use evmux::codec::Lines;
use evmux::{
    CloseReason, Config, Conn, ConnId, Control, Endpoint, Handler, Interest, Poller, Reactor,
    Readiness, SourceId, StopHandle, TimerId, Trigger,
};

const PATIENCE: Duration = Duration::from_secs(10);

/// What the scripted handler saw.
#[derive(Debug)]
enum Seen {
    Open(ConnId),
    Connected(ConnId),
    Failed(ConnId, ErrorKind, String),
    Frame(ConnId, Vec<u8>),
    Ready(SourceId, Readiness),
    Closed(ConnId, #[allow(dead_code)] CloseReason),
    Started(Vec<ConnId>),
}

type Script = Box<dyn FnMut(&mut Control<'_>) -> Vec<ConnId> + Send>;
type OnReady = Box<dyn FnMut(&mut Control<'_>, SourceId) + Send>;

/// Echoes every line, reports everything, and runs a script at start, on
/// each timer, and on each readiness of a watched fd.
struct Scripted {
    to: Sender<Seen>,
    /// Outbound connections: their frames are reported, not echoed.
    outbound: Vec<ConnId>,
    start: Option<Script>,
    tick: Option<Script>,
    ready: Option<OnReady>,
}

impl Scripted {
    fn new(to: Sender<Seen>) -> Scripted {
        Scripted {
            to,
            outbound: Vec::new(),
            start: None,
            tick: None,
            ready: None,
        }
    }

    fn seen(&self, what: Seen) {
        let _ = self.to.send(what);
    }
}

impl Handler for Scripted {
    fn on_start(&mut self, ctl: &mut Control<'_>) {
        if let Some(start) = self.start.as_mut() {
            let ids = start(ctl);
            self.seen(Seen::Started(ids));
        }
    }

    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.seen(Seen::Open(conn.id()));
    }

    fn on_connect(&mut self, conn: &mut Conn<'_>) {
        self.outbound.push(conn.id());
        self.seen(Seen::Connected(conn.id()));
    }

    fn on_connect_failed(&mut self, _: &mut Control<'_>, id: ConnId, error: std::io::Error) {
        self.seen(Seen::Failed(id, error.kind(), error.to_string()));
    }

    fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
        self.seen(Seen::Frame(conn.id(), frame.to_vec()));
        if !self.outbound.contains(&conn.id()) {
            let _ = conn.send(frame);
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, _: TimerId) {
        if let Some(tick) = self.tick.as_mut() {
            tick(ctl);
        }
    }

    fn on_ready(&mut self, ctl: &mut Control<'_>, source: SourceId, readiness: Readiness) {
        self.seen(Seen::Ready(source, readiness));
        if let Some(ready) = self.ready.as_mut() {
            ready(ctl, source);
        }
    }

    fn on_close(&mut self, id: ConnId, reason: CloseReason) {
        self.seen(Seen::Closed(id, reason));
    }
}

/// A reactor running a [`Scripted`] handler on its own thread.
struct Running {
    stop: StopHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    seen: Receiver<Seen>,
}

impl Running {
    /// Waits for the next report that `pick` accepts, skipping others.
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

    /// The ids `on_start`'s script returned.
    #[track_caller]
    fn started(&self) -> Vec<ConnId> {
        self.wait("on_start", |s| match s {
            Seen::Started(ids) => Some(ids.clone()),
            _ => None,
        })
    }

    /// Everything reported within `quiet` from now.
    fn drain(&self, quiet: Duration) -> Vec<Seen> {
        let mut all = Vec::new();
        while let Ok(seen) = self.seen.recv_timeout(quiet) {
            all.push(seen);
        }
        all
    }

    #[track_caller]
    fn finish(mut self) {
        self.stop.stop().expect("stop");
        let thread = self.thread.take().expect("running");
        let deadline = Instant::now() + PATIENCE;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "the reactor did not stop");
            thread::sleep(Duration::from_millis(2));
        }
        thread.join().expect("reactor thread").expect("run");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.stop();
    }
}

fn run_reactor<P: Poller + Send + 'static>(
    reactor: Reactor<P, Lines>,
    handler: Scripted,
    seen: Receiver<Seen>,
) -> Running {
    let (mut reactor, mut handler) = (reactor, handler);
    let stop = reactor.stop_handle();
    let thread = thread::spawn(move || reactor.run(&mut handler));
    Running {
        stop,
        thread: Some(thread),
        seen,
    }
}

fn reactor<P: Poller>(trigger: Trigger) -> Reactor<P, Lines> {
    let config = Config::default().trigger(trigger);
    Reactor::new(Lines::new(), config).expect("Reactor::new")
}

/// A blocking line-echo server on 127.0.0.1 for one connection; returns
/// its address and a thread that hands back everything it received.
fn upstream() -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        echo_lines(stream)
    });
    (addr, thread)
}

/// Echoes lines back until EOF; returns what came.
fn echo_lines<S: Read + Write>(stream: S) -> Vec<u8> {
    let mut reader = BufReader::new(stream);
    let mut all = Vec::new();
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return all,
            Ok(_) => {
                all.extend_from_slice(&line);
                if reader.get_mut().write_all(&line).is_err() {
                    return all;
                }
            }
        }
    }
}

/// A TCP listener whose accept queue is full (backlog 0, never accepted),
/// so a new connect to it neither succeeds nor fails: its SYN is dropped.
fn full_backlog() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen only reads its arguments; the fd is a bound socket.
    let ret = unsafe { libc::listen(listener.as_raw_fd(), 0) };
    assert_eq!(ret, 0, "listen(0)");
    let addr = listener.local_addr().expect("addr");
    let mut held = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut => return (listener, held),
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!("the backlog never filled");
}

fn temp_socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evmux-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// How many fds this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

// ---- outbound connections -------------------------------------------------

/// A connect's `on_connect` comes before any frame from it, and frames
/// sent before it connected go out first, in order.
fn connect_queues_frames_until_connected<P: Poller + Send + 'static>(trigger: Trigger) {
    let (addr, upstream) = upstream();
    let (to, seen) = mpsc::channel();
    let mut handler = Scripted::new(to);
    handler.start = Some(Box::new(move |ctl| {
        let id = ctl.connect(addr, PATIENCE).expect("connect");
        for line in [&b"first"[..], b"second", b"third"] {
            ctl.send(id, line).expect("queued until connected");
        }
        vec![id]
    }));
    let running = run_reactor(reactor::<P>(trigger), handler, seen);
    let id = running.started()[0];
    let first = running.wait("connect or frame", |s| match s {
        Seen::Connected(c) | Seen::Frame(c, _) if *c == id => Some(matches!(s, Seen::Connected(_))),
        _ => None,
    });
    assert!(first, "a frame came before on_connect");
    let mut echoed = Vec::new();
    while echoed.len() < 3 {
        echoed.push(running.wait("an echoed frame", |s| match s {
            Seen::Frame(c, f) if *c == id => Some(f.clone()),
            _ => None,
        }));
    }
    assert_eq!(echoed, [&b"first"[..], b"second", b"third"]);
    running.finish();
    assert_eq!(
        upstream.join().expect("upstream"),
        b"first\nsecond\nthird\n"
    );
}

/// A refused connect fails with `ConnectionRefused`, and only
/// `on_connect_failed` is called for it.
fn connect_refused_is_reported<P: Poller + Send + 'static>(trigger: Trigger) {
    let addr = SocketAddr::V4(closed_port());
    let (to, seen) = mpsc::channel();
    let mut handler = Scripted::new(to);
    handler.start = Some(Box::new(move |ctl| {
        vec![ctl.connect(addr, PATIENCE).expect("connect")]
    }));
    let running = run_reactor(reactor::<P>(trigger), handler, seen);
    let id = running.started()[0];
    let (kind, message) = running.wait("on_connect_failed", |s| match s {
        Seen::Failed(c, kind, m) if *c == id => Some((*kind, m.clone())),
        Seen::Connected(c) if *c == id => panic!("connected to a closed port"),
        _ => None,
    });
    assert_eq!(kind, ErrorKind::ConnectionRefused, "{message}");
    assert!(message.contains(&addr.to_string()), "{message}");
    let rest = running.drain(Duration::from_millis(100));
    assert!(
        !rest
            .iter()
            .any(|s| matches!(s, Seen::Closed(c, _) if *c == id)),
        "on_close after on_connect_failed: {rest:?}"
    );
    running.finish();
}

/// A connect that gets no answer (its SYN dropped by a full backlog) fails
/// with `TimedOut` once its timeout passes, not before.
fn connect_times_out<P: Poller + Send + 'static>(trigger: Trigger) {
    let (listener, _held) = full_backlog();
    let addr = listener.local_addr().expect("addr");
    let (to, seen) = mpsc::channel();
    let mut handler = Scripted::new(to);
    let timeout = Duration::from_millis(300);
    handler.start = Some(Box::new(move |ctl| {
        vec![ctl.connect(addr, timeout).expect("connect")]
    }));
    let started = Instant::now();
    let running = run_reactor(reactor::<P>(trigger), handler, seen);
    let id = running.started()[0];
    let kind = running.wait("on_connect_failed", |s| match s {
        Seen::Failed(c, kind, _) if *c == id => Some(*kind),
        Seen::Connected(c) if *c == id => panic!("connected through a full backlog"),
        _ => None,
    });
    let waited = started.elapsed();
    assert_eq!(kind, ErrorKind::TimedOut);
    assert!(
        waited >= timeout && waited < PATIENCE,
        "gave up after {waited:?}"
    );
    running.finish();
}

/// A connection closed while connecting is given up (`ConnectionAborted`)
/// and leaves no fd behind.
fn close_while_connecting<P: Poller + Send + 'static>(trigger: Trigger) {
    let (listener, _held) = full_backlog();
    let addr = listener.local_addr().expect("addr");
    let before = open_fds();
    let (to, seen) = mpsc::channel();
    let mut handler = Scripted::new(to);
    let pending = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let ids = std::sync::Arc::clone(&pending);
    handler.start = Some(Box::new(move |ctl| {
        let id = ctl.connect(addr, PATIENCE).expect("connect");
        ids.lock().unwrap().push(id);
        ctl.set_timer(Duration::from_millis(50));
        vec![id]
    }));
    let ids = std::sync::Arc::clone(&pending);
    handler.tick = Some(Box::new(move |ctl| {
        for &id in ids.lock().unwrap().iter() {
            ctl.close(id);
        }
        Vec::new()
    }));
    let running = run_reactor(reactor::<P>(trigger), handler, seen);
    let id = running.started()[0];
    let kind = running.wait("on_connect_failed", |s| match s {
        Seen::Failed(c, kind, _) if *c == id => Some(*kind),
        Seen::Closed(c, _) if *c == id => panic!("on_close for a connection never made"),
        _ => None,
    });
    assert_eq!(kind, ErrorKind::ConnectionAborted);
    running.finish();
    let after = open_fds();
    assert!(after <= before, "fds: {before} before, {after} after");
}

/// `Control::connect` to a Unix-domain socket path.
fn connect_over_a_unix_socket<P: Poller + Send + 'static>(trigger: Trigger) {
    let path = temp_socket_path(&format!("up-{}-{trigger:?}", P::NAME));
    let listener = UnixListener::bind(&path).expect("bind unix");
    let upstream = thread::spawn(move || echo_lines(listener.accept().expect("accept").0));
    let (to, seen) = mpsc::channel();
    let mut handler = Scripted::new(to);
    let target = Endpoint::Unix(path.clone());
    handler.start = Some(Box::new(move |ctl| {
        let id = ctl.connect(target.clone(), PATIENCE).expect("connect");
        ctl.send(id, b"over unix").expect("queued");
        vec![id]
    }));
    let running = run_reactor(reactor::<P>(trigger), handler, seen);
    let id = running.started()[0];
    let echoed = running.wait("the echo", |s| match s {
        Seen::Frame(c, f) if *c == id => Some(f.clone()),
        Seen::Failed(_, _, m) => panic!("{m}"),
        _ => None,
    });
    assert_eq!(echoed, b"over unix");
    running.finish();
    assert_eq!(upstream.join().expect("upstream"), b"over unix\n");
    let _ = std::fs::remove_file(&path);
}

/// 300 connect-then-close cycles leave the fd count where it was.
fn connect_churn_leaks_no_fd<P: Poller + Send + 'static>(trigger: Trigger) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let before = open_fds();
    let (to, seen) = mpsc::channel();
    let mut handler = Scripted::new(to);
    handler.start = Some(Box::new(move |ctl| {
        ctl.set_interval(Duration::from_millis(1));
        Vec::new()
    }));
    let mut made = 0;
    handler.tick = Some(Box::new(move |ctl| {
        if made < 300 {
            made += 1;
            if let Ok(id) = ctl.connect(addr, PATIENCE) {
                ctl.close(id);
            }
        }
        Vec::new()
    }));
    let running = run_reactor(reactor::<P>(trigger), handler, seen);
    running.started();
    let mut given_up = 0;
    while given_up < 300 {
        running.wait("300 connects given up", |s| match s {
            Seen::Failed(..) => Some(()),
            _ => None,
        });
        given_up += 1;
    }
    running.finish();
    drop(listener);
    let after = open_fds();
    assert!(after <= before, "fds: {before} before, {after} after");
}

// ---- listeners ------------------------------------------------------------

/// A Unix-domain listener serves like a TCP one; a stale socket file is
/// replaced, a live one and a non-socket file are refused, a path past
/// `sun_path` is `InvalidInput` naming the limit.
fn unix_listener_serves_and_guards_its_path<P: Poller + Send + 'static>(trigger: Trigger) {
    let path = temp_socket_path(&format!("srv-{}-{trigger:?}", P::NAME));
    drop(UnixListener::bind(&path).expect("bind a soon-stale socket"));
    assert!(path.exists(), "the stale socket file stays behind");

    let mut r = reactor::<P>(trigger);
    r.listen_unix(&path)
        .expect("listen over a stale socket file");
    let mut live = reactor::<P>(trigger);
    let err = live.listen_unix(&path).expect_err("a live socket is taken");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");

    let file = temp_socket_path(&format!("file-{}-{trigger:?}", P::NAME));
    std::fs::write(&file, b"keep me").expect("write");
    let err = live.listen_unix(&file).expect_err("not a socket");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
    let long = std::env::temp_dir().join("x".repeat(200));
    let err = live.listen_unix(&long).expect_err("too long");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("limit"), "{err}");

    let (to, seen) = mpsc::channel();
    let running = run_reactor(r, Scripted::new(to), seen);
    let mut client = UnixStream::connect(&path).expect("connect");
    client.set_read_timeout(Some(PATIENCE)).expect("timeout");
    client.write_all(b"hello unix\n").expect("write");
    let mut reply = [0; 11];
    client.read_exact(&mut reply).expect("the echo");
    assert_eq!(&reply, b"hello unix\n");
    running.finish();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&file);
}

/// A TCP listener bound with `SO_REUSEPORT`, as a supervisor would.
fn reuseport_listener(addr: SocketAddr) -> TcpListener {
    // SAFETY: socket takes no pointers.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(raw >= 0, "socket");
    // SAFETY: `raw` was just returned by socket and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let on: libc::c_int = 1;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: `on` is an int of `len` bytes that outlives the call.
        let ret = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                opt,
                (&on as *const libc::c_int).cast(),
                len,
            )
        };
        assert_eq!(ret, 0, "setsockopt");
    }
    let SocketAddr::V4(v4) = addr else {
        panic!("v4 only")
    };
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    let salen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sa` is a sockaddr_in of `salen` bytes for the call.
    let ret = unsafe { libc::bind(raw, (&sa as *const libc::sockaddr_in).cast(), salen) };
    assert_eq!(ret, 0, "bind: {}", std::io::Error::last_os_error());
    // SAFETY: listen only reads its arguments.
    assert_eq!(unsafe { libc::listen(raw, 128) }, 0, "listen");
    TcpListener::from(fd)
}

/// Two reactors on two threads share one port through `listen_on` with
/// SO_REUSEPORT listeners, and both serve.
fn listen_on_shares_a_port<P: Poller + Send + 'static>(trigger: Trigger) {
    if cfg!(not(any(target_os = "linux", target_os = "android"))) {
        eprintln!("skipped: SO_REUSEPORT balancing is Linux's");
        return;
    }
    let first = reuseport_listener("127.0.0.1:0".parse().unwrap());
    let addr = first.local_addr().expect("addr");
    let second = reuseport_listener(addr);
    let mut runs = Vec::new();
    for listener in [first, second] {
        let mut r = reactor::<P>(trigger);
        r.listen_on(listener).expect("listen_on");
        let (to, seen) = mpsc::channel();
        runs.push(run_reactor(r, Scripted::new(to), seen));
    }
    let mut served = [0usize; 2];
    for i in 0..200 {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(PATIENCE)).expect("timeout");
        c.write_all(format!("{i}\n").as_bytes()).expect("write");
        let mut reply = String::new();
        BufReader::new(&c).read_line(&mut reply).expect("reply");
        assert_eq!(reply, format!("{i}\n"));
        for (k, run) in runs.iter().enumerate() {
            served[k] += run
                .drain(Duration::ZERO)
                .iter()
                .filter(|s| matches!(s, Seen::Open(_)))
                .count();
        }
        if served.iter().all(|&n| n > 0) && i >= 20 {
            break;
        }
    }
    assert!(
        served.iter().all(|&n| n > 0),
        "served per reactor: {served:?}"
    );
    for run in runs {
        run.finish();
    }
}

/// `adopt` turns a connected socket into a connection: `on_open` runs on
/// the loop thread, then it is served like an accepted one.
fn adopt_serves_a_connected_socket<P: Poller + Send + 'static>(trigger: Trigger) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server_side, _) = listener.accept().expect("accept");
    let (a, b) = UnixStream::pair().expect("pair");
    let mut r = reactor::<P>(trigger);
    let tcp_id = r.adopt(server_side).expect("adopt tcp");
    let unix_id = r.adopt(a).expect("adopt unix");
    let (to, seen) = mpsc::channel();
    let running = run_reactor(r, Scripted::new(to), seen);
    for id in [tcp_id, unix_id] {
        running.wait("on_open of an adopted socket", |s| match s {
            Seen::Open(c) if *c == id => Some(()),
            _ => None,
        });
    }
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"adopted\n").unwrap();
    let mut reply = [0; 8];
    client.read_exact(&mut reply).expect("echo");
    assert_eq!(&reply, b"adopted\n");
    let mut b = b;
    b.set_read_timeout(Some(PATIENCE)).unwrap();
    b.write_all(b"unix\n").unwrap();
    let mut reply = [0; 5];
    b.read_exact(&mut reply).expect("echo");
    assert_eq!(&reply, b"unix\n");
    running.finish();
}

// ---- user fds -------------------------------------------------------------

/// A watched pipe's readiness reaches `on_ready`; after `unwatch` nothing
/// more comes for it, and a new pipe on the reused fd number reports only
/// under its new id.
fn watch_reports_a_pipe_until_unwatched<P: Poller + Send + 'static>(trigger: Trigger) {
    use std::sync::{Arc, Mutex};
    let (r1, w1) = pipe();
    let (to, seen) = mpsc::channel();
    let mut handler = Scripted::new(to);
    let current = Arc::new(Mutex::new(Some(r1)));
    let (give_writer, writer) = mpsc::channel();
    let watched = Arc::clone(&current);
    handler.start = Some(Box::new(move |ctl| {
        let fd = watched.lock().unwrap();
        ctl.watch(fd.as_ref().unwrap(), Interest::READABLE)
            .expect("watch");
        Vec::new()
    }));
    let watched = Arc::clone(&current);
    handler.ready = Some(Box::new(move |ctl, id| {
        let mut slot = watched.lock().unwrap();
        let Some(fd) = slot.as_ref() else { return };
        let mut buf = [0; 64];
        let n = read_fd(fd.as_fd(), &mut buf).unwrap_or(0);
        if !buf[..n].ends_with(b"swap") {
            return;
        }
        // Unwatch and close the old pipe; the new one likely gets its
        // fd number.
        ctl.unwatch(id, fd).expect("unwatch");
        *slot = None;
        let (r2, w2) = pipe();
        ctl.watch(&r2, Interest::READABLE)
            .expect("watch the new pipe");
        *slot = Some(r2);
        let _ = give_writer.send(w2);
    }));
    let running = run_reactor(reactor::<P>(trigger), handler, seen);
    write_fd(w1.as_fd(), b"hi").expect("write");
    let first = running.wait("on_ready", |s| match s {
        Seen::Ready(id, r) if r.contains(Readiness::READABLE) => Some(*id),
        _ => None,
    });
    write_fd(w1.as_fd(), b"swap").expect("write");
    let w2: OwnedFd = writer.recv_timeout(PATIENCE).expect("the new pipe");
    write_fd(w2.as_fd(), b"new").expect("write");
    let second = running.wait("on_ready for the new pipe", |s| match s {
        Seen::Ready(id, _) if *id != first => Some(*id),
        _ => None,
    });
    let rest = running.drain(Duration::from_millis(100));
    assert!(
        !rest
            .iter()
            .any(|s| matches!(s, Seen::Ready(id, _) if *id == first)),
        "events for the unwatched source: {rest:?}"
    );
    assert_ne!(first, second);
    running.finish();
}

/// Regular files: epoll refuses them with a message that says what to
/// use instead; select and poll report them ready.
fn watch_a_regular_file<P: Poller + Send + 'static>(trigger: Trigger) {
    let file = std::fs::File::open("/proc/self/exe").or_else(|_| std::fs::File::open("Cargo.toml"));
    let file = file.expect("a regular file");
    let (to, seen) = mpsc::channel();
    let mut handler = Scripted::new(to);
    let (result_to, result) = mpsc::channel();
    handler.start = Some(Box::new(move |ctl| {
        let watched = ctl.watch(&file, Interest::READABLE);
        let _ = result_to.send(watched.map_err(|e| (e.kind(), e.to_string())));
        Vec::new()
    }));
    let running = run_reactor(reactor::<P>(trigger), handler, seen);
    let watched = result.recv_timeout(PATIENCE).expect("the watch result");
    if P::NAME == "epoll" {
        let (kind, message) = watched.expect_err("epoll cannot watch a regular file");
        assert_eq!(kind, ErrorKind::PermissionDenied);
        assert!(
            message.contains("use the poll or select backend"),
            "{message}"
        );
    } else {
        let id = watched.expect("select and poll watch regular files");
        running.wait("the file reads ready", |s| match s {
            Seen::Ready(got, r) if *got == id && r.contains(Readiness::READABLE) => Some(()),
            _ => None,
        });
    }
    running.finish();
}

// ---- one module per backend and trigger -----------------------------------

macro_rules! source_tests {
    ($module:ident, $poller:ty, $trigger:expr) => {
        mod $module {
            source_tests!(@cases $poller, $trigger;
                connect_queues_frames_until_connected,
                connect_refused_is_reported,
                connect_times_out,
                close_while_connecting,
                connect_over_a_unix_socket,
                connect_churn_leaks_no_fd,
                unix_listener_serves_and_guards_its_path,
                listen_on_shares_a_port,
                adopt_serves_a_connected_socket,
                watch_reports_a_pipe_until_unwatched,
                watch_a_regular_file,
            );
        }
    };
    (@cases $poller:ty, $trigger:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                // One at a time: some count the process's fds.
                let _fds = crate::common::fd_lock();
                super::$case::<$poller>($trigger);
            }
        )*
    };
}

evmux::for_each_trigger!(source_tests);

// ---- socket activation (LISTEN_FDS), in a child process ---------------------

/// Runs this test binary again as a child, with `fds` placed at fd 3, 4...
/// and the variables of the socket-activation protocol; `LISTEN_PID` is
/// the child's own pid (`$$` of the shell that then `exec`s it) unless
/// `pid` names another. Returns what the child printed.
fn activation_child(fds: &[std::os::fd::RawFd], names: &str, pid: Option<u32>) -> String {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().expect("current_exe");
    let pid = pid.map_or("$$".to_owned(), |p| p.to_string());
    let script = format!("LISTEN_PID={pid} exec \"$0\" \"$@\"");
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script])
        .arg(exe)
        .args([
            "--exact",
            "activation_child_main",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EVMUX_ACTIVATION_CHILD", "1")
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDNAMES", names);
    let fds = fds.to_vec();
    // SAFETY: between fork and exec the closure only calls dup2 and fcntl,
    // which are async-signal-safe, on fds this process owns.
    unsafe {
        cmd.pre_exec(move || {
            for (i, &fd) in fds.iter().enumerate() {
                let target = 3 + i as libc::c_int;
                if fd == target {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                } else if libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    let out = cmd.output().expect("run the child");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The child's side: takes what was passed and prints one line about it.
#[test]
fn activation_child_main() {
    if std::env::var_os("EVMUX_ACTIVATION_CHILD").is_none() {
        return; // only meaningful as the child of the tests below
    }
    let line = match evmux::inherited_listeners() {
        Err(e) => format!("error: {e}"),
        Ok(got) if got.is_empty() => "none".to_owned(),
        Ok(got) => {
            let mut parts = Vec::new();
            for (name, listener) in &got {
                let kind = match listener {
                    evmux::Listener::Tcp(l) => format!("tcp {}", l.local_addr().unwrap()),
                    evmux::Listener::Unix(_) => "unix".to_owned(),
                    _ => "other".to_owned(),
                };
                // SAFETY: F_GETFD only reads the flags of an open fd.
                let flags = unsafe { libc::fcntl(listener.as_fd().as_raw_fd(), libc::F_GETFD) };
                let cloexec = flags & libc::FD_CLOEXEC != 0;
                parts.push(format!("{name} {kind} cloexec={cloexec}"));
            }
            let left = std::env::var_os("LISTEN_FDS").is_some();
            format!("ok {}; vars left={left}", parts.join(", "))
        }
    };
    println!("\nACTIVATION {line}");
}

fn activation_line(out: &str) -> &str {
    let line = out.lines().find(|l| l.starts_with("ACTIVATION "));
    line.unwrap_or_else(|| panic!("the child said nothing: {out}"))
        .trim_start_matches("ACTIVATION ")
}

#[test]
fn socket_activation_takes_the_passed_listeners() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
    let path = temp_socket_path("activation");
    let unix = UnixListener::bind(&path).expect("bind unix");
    let fds = [tcp.as_raw_fd(), unix.as_raw_fd()];
    let out = activation_child(&fds, "web:admin", None);
    let want = format!(
        "ok web tcp {} cloexec=true, admin unix cloexec=true; vars left=false",
        tcp.local_addr().unwrap()
    );
    assert_eq!(activation_line(&out), want);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn socket_activation_ignores_variables_meant_for_another_process() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
    let out = activation_child(&[tcp.as_raw_fd()], "", Some(1));
    assert_eq!(activation_line(&out), "none");
}

#[test]
fn socket_activation_refuses_a_socket_that_is_not_listening() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let connected = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let out = activation_child(&[connected.as_raw_fd()], "", None);
    let line = activation_line(&out);
    assert!(line.starts_with("error: "), "{line}");
    assert!(
        line.contains("fd 3") && line.contains("not a listening socket"),
        "{line}"
    );
}
