//! The example servers as a user runs them: `examples/calc`, `echo` and
//! `ping` are built once with cargo, spawned as processes with
//! `--addr 127.0.0.1:0`, and driven over TCP. Every child is killed by a
//! guard on every path, and every read is bounded by a timeout.
//!
//! Also here: the unit tests of the calculator's language
//! (`examples/calc/proto.rs`, included below) and the README's code, which
//! must stay verbatim in this file (`readme_code_is_tested_here`).

#[path = "../examples/calc/proto.rs"]
mod proto;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long anything may take before the test calls it a hang.
const PATIENCE: Duration = Duration::from_secs(20);

/// The backends this build has, as cargo features for the examples' build.
fn features() -> String {
    let names: Vec<&str> = evmux::Backend::built().iter().map(|b| b.name()).collect();
    names.join(",")
}

/// Builds the three examples once (same profile and features as this
/// test) and returns where cargo put each binary.
fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(build_examples);
    let found = built
        .iter()
        .find(|p| p.file_stem().is_some_and(|s| s == name));
    found
        .unwrap_or_else(|| panic!("cargo built no example {name}: {built:?}"))
        .clone()
}

fn build_examples() -> Vec<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.arg("build").arg("--manifest-path").arg(manifest);
    cargo.args([
        "--example",
        "calc",
        "--example",
        "echo",
        "--example",
        "ping",
    ]);
    cargo.args(["--no-default-features", "--features", &features()]);
    cargo.args(["--message-format", "json"]);
    if let Some(profile) = profile_of_this_test() {
        cargo.args(["--profile", &profile]);
    }
    let output = cargo.output().expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build of the examples failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().filter_map(executable).collect()
}

/// The cargo profile this test was built with, from its path
/// (`<target>/<profile dir>/deps/examples-<hash>`); `None` for the default.
fn profile_of_this_test() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.file_name()?.to_str()?;
    match dir {
        "debug" => None,
        other => Some(other.to_owned()),
    }
}

/// The `"executable"` of one cargo JSON message, if it names one.
fn executable(message: &str) -> Option<PathBuf> {
    if !message.contains(r#""reason":"compiler-artifact""#) {
        return None;
    }
    let key = r#""executable":""#;
    let start = message.find(key)? + key.len();
    let len = message[start..].find('"')?;
    Some(PathBuf::from(&message[start..start + len]))
}

/// A running example server, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: Option<JoinHandle<String>>,
}

impl Server {
    /// Starts `example` on a free port and waits for its announcement,
    /// which must read exactly `listening on 127.0.0.1:PORT backend=B
    /// trigger=T`.
    #[track_caller]
    fn start(example: &str, args: &[&str], backend: &str, trigger: &str) -> Server {
        let mut cmd = Command::new(binary(example));
        cmd.args(["--addr", "127.0.0.1:0"]).args(args);
        Server::spawn(cmd, example, args, backend, trigger)
    }

    /// Spawns `cmd` (an example server) and waits for its announcement.
    #[track_caller]
    fn spawn(
        mut cmd: Command,
        example: &str,
        args: &[&str],
        backend: &str,
        trigger: &str,
    ) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {example}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: Some(thread::spawn(move || read_all(stderr))),
        };
        let line = match first_line(stdout) {
            Some(line) => line,
            None => panic!(
                "{example} {args:?} printed no line within {PATIENCE:?}; stderr: {}",
                server.stop_now()
            ),
        };
        let port = parse_announcement(&line, backend, trigger);
        server.addr.set_port(port);
        server
    }

    /// A client connection with bounded reads and writes.
    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the example");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        stream
    }

    /// Sends `signal`, waits for the exit, returns the status and stderr.
    #[track_caller]
    fn signal(mut self, signal: libc::c_int) -> (ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes any pid and signal number; `pid` is our own
        // child, not yet reaped (we still hold its `Child`), so the number
        // cannot belong to another process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
        let status = wait_within(&mut self.child, Duration::from_secs(10));
        (status, self.take_stderr())
    }

    /// Kills the child now and returns what it printed on stderr.
    fn stop_now(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.take_stderr()
    }

    fn take_stderr(&mut self) -> String {
        let reader = self.stderr.take().expect("stderr not taken yet");
        reader.join().unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_all(mut from: impl Read) -> String {
    let mut text = String::new();
    let _ = from.read_to_string(&mut text);
    text
}

/// The first stdout line, or `None` if none comes in time. The reading
/// thread goes on draining stdout until the child exits.
fn first_line(stdout: ChildStdout) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    rx.recv_timeout(PATIENCE).ok()
}

/// Checks the announcement's exact format and returns its port.
#[track_caller]
fn parse_announcement(line: &str, backend: &str, trigger: &str) -> u16 {
    let port = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("not an announcement: {line:?}"));
    assert_ne!(port, 0, "{line:?}");
    let want = format!("listening on 127.0.0.1:{port} backend={backend} trigger={trigger}");
    assert_eq!(line, want);
    port
}

#[track_caller]
fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the example did not exit within {limit:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads exactly `want.len()` bytes and compares them with `want`.
#[track_caller]
fn expect_reply(stream: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0; want.len()];
    let mut filled = 0;
    while filled < got.len() {
        match stream.read(&mut got[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                got.truncate(filled);
                panic!(
                    "read: {e} after {:?}, wanted {:?}",
                    got.escape_ascii().to_string(),
                    want.escape_ascii().to_string()
                );
            }
        }
    }
    got.truncate(filled);
    assert_eq!(
        got.escape_ascii().to_string(),
        want.escape_ascii().to_string()
    );
}

/// Nothing more arrives within `quiet`: the server sent no reply.
#[track_caller]
fn expect_silence(stream: &mut TcpStream, quiet: Duration) {
    stream.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0; 64];
    match stream.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected no reply, got {other:?} {:?}", buf.escape_ascii()),
    }
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
}

/// The server closes the connection (EOF or reset) without replying.
#[track_caller]
fn expect_closed(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close, got {other:?}"),
    }
}

/// Shrinks `stream`'s receive buffer (and turns off its autotuning), so
/// unread replies back up into the server's queue sooner.
fn shrink_rcvbuf(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `size` is a valid int of `len` bytes for the whole call, and
    // the fd is the open socket `stream` owns.
    let ret = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            len,
        )
    };
    assert_eq!(ret, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

// ---- calc ----

/// `100+98X14+23X` gives `198X37X`, the issue's example, sent as one write
/// and then split across writes.
fn calc_round_trip(backend: &str, trigger: &str) {
    let server = Server::start(
        "calc",
        &["--backend", backend, "--trigger", trigger],
        backend,
        trigger,
    );
    let mut client = server.connect();
    client.write_all(b"100+98X14+23X").unwrap();
    expect_reply(&mut client, b"198X37X");
    for part in [&b"10"[..], b"0+", b"98", b"X1", b"4+23X"] {
        client.write_all(part).unwrap();
        thread::sleep(Duration::from_millis(5));
    }
    expect_reply(&mut client, b"198X37X");
}

macro_rules! calc_round_trips {
    ($module:ident, $poller:ty, $trigger:expr) => {
        #[test]
        fn $module() {
            if available::<$poller>() {
                calc_round_trip(<$poller as evmux::Poller>::NAME, trigger_name($trigger));
            }
        }
    };
}

mod calc_on {
    use super::*;
    evmux::for_each_trigger!(calc_round_trips);
}

/// Can backend `P` run here? If not, says why (the test is skipped).
fn available<P: evmux::Poller>() -> bool {
    match P::new() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            eprintln!("skipped: the {} backend cannot run here: {e}", P::NAME);
            false
        }
        Err(e) => panic!("{}: new: {e}", P::NAME),
    }
}

/// `level` or `edge`, as the examples' flag spells it.
fn trigger_name(trigger: evmux::Trigger) -> &'static str {
    match trigger {
        evmux::Trigger::Edge => "edge",
        _ => "level",
    }
}

/// `DefaultPoller`'s backend and its default trigger, as announced.
fn default_backend() -> (&'static str, &'static str) {
    let best = evmux::Backend::best();
    let edge = best.supports_trigger(evmux::Trigger::Edge);
    (best.name(), if edge { "edge" } else { "level" })
}

/// A level-triggered backend this build has: poll, else select, else
/// the best one.
fn level_backend() -> &'static str {
    let built = evmux::Backend::built();
    let level_only = built
        .iter()
        .find(|b| !b.supports_trigger(evmux::Trigger::Edge));
    level_only.copied().unwrap_or(evmux::Backend::best()).name()
}

/// Starts `example` level-triggered on [`level_backend`], plus `args`.
#[track_caller]
fn start_level(example: &str, args: &[&str]) -> Server {
    let backend = level_backend();
    let mut all = vec!["--backend", backend, "--trigger", "level"];
    all.extend_from_slice(args);
    Server::start(example, &all, backend, "level")
}

/// Without flags: `DefaultPoller`'s backend and its default trigger.
#[test]
fn calc_defaults_to_the_default_poller() {
    let (backend, trigger) = default_backend();
    let server = Server::start("calc", &[], backend, trigger);
    let mut client = server.connect();
    client.write_all(b"6*7X").unwrap();
    expect_reply(&mut client, b"42X");
}

/// What the README's `printf '100+98X14+23X' | nc -N 127.0.0.1 7878`
/// does: write, half-close, read to the end.
#[test]
fn calc_answers_then_closes_after_the_client_half_closes() {
    let (backend, trigger) = default_backend();
    let server = Server::start("calc", &[], backend, trigger);
    let mut client = server.connect();
    client.write_all(b"100+98X14+23X").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut replies = Vec::new();
    client
        .read_to_end(&mut replies)
        .expect("read until the server closes");
    assert_eq!(replies.escape_ascii().to_string(), "198X37X");
}

#[test]
fn calc_replies_with_errors_and_keeps_the_connection() {
    let server = start_level("calc", &[]);
    let mut client = server.connect();
    let cases: [(&[u8], &[u8]); 10] = [
        (b"1/0X", b"ERR division by zeroX"),
        (b"7%0X", b"ERR division by zeroX"),
        (b"9223372036854775807+1X", b"ERR overflowX"),
        (b"-9223372036854775808/-1X", b"ERR overflowX"),
        (b"9223372036854775808+0X", b"ERR overflowX"),
        (b"abcX", b"ERR malformed requestX"),
        (b"1+2+3X", b"ERR malformed requestX"),
        (b"\xff\xfe+1X", b"ERR malformed requestX"),
        (b" -7 / 2 X", b"-3X"),
        (b"5 - -3X", b"8X"),
    ];
    for (request, reply) in cases {
        client.write_all(request).unwrap();
        expect_reply(&mut client, reply);
    }
    // All at once, pipelined, with a blank request (no reply) among them.
    client.write_all(b"1+X \r\n X-7%2X").unwrap();
    expect_reply(&mut client, b"ERR malformed requestX-1X");
}

#[test]
fn calc_blank_requests_get_no_reply() {
    let server = start_level("calc", &[]);
    let mut client = server.connect();
    client.write_all(b"X  X\r\nX").unwrap();
    expect_silence(&mut client, Duration::from_millis(300));
    client.write_all(b"1+1X").unwrap();
    expect_reply(&mut client, b"2X");
}

#[test]
fn calc_takes_newline_escapes_as_the_delimiter() {
    let server = start_level("calc", &["--delimiter", r"\n"]);
    let mut client = server.connect();
    // A `\r` before the `\n` is white space around the request.
    client.write_all(b"100+98\n14+23\r\n\r\nX\n").unwrap();
    expect_reply(&mut client, b"198\n37\nERR malformed request\n");

    let server = start_level("calc", &["--delimiter", r"\r\n"]);
    let mut client = server.connect();
    client.write_all(b"2*21\r\n1\n+\n1\r\n").unwrap();
    expect_reply(&mut client, b"42\r\n2\r\n");
}

#[test]
fn calc_closes_a_connection_whose_request_is_too_long() {
    let server = start_level("calc", &["--max-frame", "16"]);
    let mut exact = server.connect();
    exact.write_all(b"1000000000000+23X").unwrap(); // 16 bytes
    expect_reply(&mut exact, b"1000000000023X");

    let mut long = server.connect();
    let _ = long.write_all(b"10000000000000+23X"); // 17 bytes
    expect_closed(&mut long);

    // The other connection stays up.
    exact.write_all(b"2+2X").unwrap();
    expect_reply(&mut exact, b"4X");
    let (status, stderr) = server.signal(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("closed[frame too large]=1"), "{stderr}");
}

#[test]
fn calc_max_frame_defaults_to_65536_bytes() {
    let server = start_level("calc", &[]);
    let mut fits = server.connect();
    let mut request = vec![b'1'; 65536];
    request.push(b'X');
    fits.write_all(&request).unwrap();
    expect_reply(&mut fits, b"ERR malformed requestX");

    let mut long = server.connect();
    request.insert(0, b'1');
    let _ = long.write_all(&request);
    expect_closed(&mut long);
}

#[test]
fn calc_idle_timeout_closes_silent_connections() {
    let server = start_level("calc", &["--idle-timeout", "1"]);
    let mut client = server.connect();
    client.write_all(b"1+1X").unwrap();
    expect_reply(&mut client, b"2X");
    let start = Instant::now();
    expect_closed(&mut client);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
}

#[test]
fn a_zero_max_frame_is_refused_with_a_reason() {
    let out = Command::new(binary("calc"))
        .args(["--max-frame", "0"])
        .output()
        .expect("run calc");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must be at least 1 byte"), "{stderr}");
}

#[test]
fn calc_max_connections_refuses_the_one_past_it() {
    let server = start_level("calc", &["--max-connections", "1"]);
    let mut first = server.connect();
    first.write_all(b"1+1X").unwrap();
    expect_reply(&mut first, b"2X");
    let mut second = server.connect();
    let _ = second.write_all(b"2+2X");
    expect_closed(&mut second);
    first.write_all(b"3+3X").unwrap();
    expect_reply(&mut first, b"6X");
    let (status, stderr) = server.signal(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("closed[over capacity]=1"), "{stderr}");
}

/// A client that asks for replies and never reads them: with
/// `--stall-timeout 1` it is closed as a slow consumer (its writes then
/// fail with a reset), and the exit line counts it along with the peak of
/// buffered bytes.
#[test]
fn calc_stall_timeout_closes_a_reader_that_stopped() {
    let server = start_level("calc", &["--stall-timeout", "1", "--high-water", "65536"]);
    let stalled = server.connect();
    shrink_rcvbuf(&stalled);
    let mut writer = stalled.try_clone().unwrap();
    // Sums until the server stops reading (its queue is past high water);
    // the write then blocks, and fails once the server closes.
    let started = Instant::now();
    let flood = thread::spawn(move || {
        let requests = b"1+1X".repeat(4096);
        loop {
            if let Err(e) = writer.write_all(&requests) {
                return e;
            }
        }
    });
    let error = flood.join().unwrap();
    assert!(
        matches!(
            error.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "the stalled client's writes ended with {error} after {:?}",
        started.elapsed()
    );
    let (status, stderr) = server.signal(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("closed[slow consumer]=1"), "{stderr}");
    assert!(stderr.contains("fd_exhaustion=0"), "{stderr}");
    assert!(stderr.contains("peak_buffered="), "{stderr}");
}

/// Socket activation: with no `--addr`, calc serves on the listener a
/// supervisor passed as fd 3 (`LISTEN_FDS=1`, `LISTEN_PID` its own pid).
#[test]
fn calc_serves_a_listener_passed_by_a_supervisor() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    let backend = level_backend();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(binary("calc"))
        .args(["--backend", backend, "--trigger", "level"])
        .env("LISTEN_FDS", "1");
    // SAFETY: between fork and exec the closure only calls dup2 and fcntl,
    // which are async-signal-safe, on an fd this process owns.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(fd, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let server = Server::spawn(cmd, "calc", &[], backend, "level");
    assert_eq!(server.addr.port(), port, "calc bound a port of its own");
    let mut client = server.connect();
    client.write_all(b"40+2X").unwrap();
    expect_reply(&mut client, b"42X");
}

/// `EVMUX_BACKEND` picks the backend when `--backend` is not given (and
/// the listening line names it); the flag wins over it; a bad name in it
/// stops the server with a message listing this build's backends.
#[test]
fn calc_honours_evmux_backend() {
    for &backend in evmux::Backend::built() {
        if evmux::AnyPoller::with_backend(backend).is_err() {
            eprintln!("skipped: {backend} cannot start here");
            continue;
        }
        let mut cmd = Command::new(binary("calc"));
        cmd.args(["--addr", "127.0.0.1:0", "--trigger", "level"]);
        cmd.env(evmux::BACKEND_ENV, backend.name());
        let server = Server::spawn(cmd, "calc", &[], backend.name(), "level");
        let mut client = server.connect();
        client.write_all(b"1+1X").unwrap();
        expect_reply(&mut client, b"2X");
    }
    let (flag, _) = default_backend();
    let mut cmd = Command::new(binary("calc"));
    cmd.args([
        "--addr",
        "127.0.0.1:0",
        "--trigger",
        "level",
        "--backend",
        flag,
    ]);
    cmd.env(evmux::BACKEND_ENV, "kqueue");
    drop(Server::spawn(cmd, "calc", &[], flag, "level"));

    let mut cmd = Command::new(binary("calc"));
    cmd.args(["--addr", "127.0.0.1:0"])
        .env(evmux::BACKEND_ENV, "kqueue");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let want = "calc: error: EVMUX_BACKEND=kqueue: unknown backend \"kqueue\"; this build has";
    assert!(stderr.starts_with(want), "{stderr}");
}

// ---- echo and ping ----

/// 1 MiB written by one thread comes back, byte for byte, to another.
fn echo_mebibyte(args: &[&str], backend: &str, trigger: &str) {
    let server = Server::start("echo", args, backend, trigger);
    let client = server.connect();
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let sent = data.clone();
    let mut writer = client.try_clone().unwrap();
    let writing = thread::spawn(move || writer.write_all(&sent));
    let mut back = Vec::with_capacity(data.len());
    let mut reader = client.take(data.len() as u64);
    reader.read_to_end(&mut back).expect("read the echo");
    writing.join().unwrap().expect("write 1 MiB");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo differs from what was sent");
}

#[test]
fn echo_round_trips_a_mebibyte() {
    let (backend, trigger) = default_backend();
    echo_mebibyte(&[], backend, trigger);
}

#[cfg(evmux_select)]
#[test]
fn echo_round_trips_a_mebibyte_on_select() {
    echo_mebibyte(&["--backend", "select"], "select", "level");
}

#[test]
fn ping_answers_pipelined_inline_pings() {
    let server = start_level("ping", &[]);
    let mut client = server.connect();
    client.write_all(b"PING\r\nPING\r\nPING\r\n").unwrap();
    expect_reply(&mut client, b"+PONG\r\n+PONG\r\n+PONG\r\n");
    client
        .write_all(b"ping\n  PiNg  \r\n\r\nGET key\r\nPINGS\r\nPING\r\n")
        .unwrap();
    expect_reply(
        &mut client,
        b"+PONG\r\n+PONG\r\n-ERR unknown command\r\n-ERR unknown command\r\n+PONG\r\n",
    );
}

// ---- process behaviour ----

#[test]
fn sigterm_stops_cleanly_and_prints_the_counters() {
    let server = start_level("calc", &[]);
    let mut client = server.connect();
    client.write_all(b"1+2X").unwrap();
    expect_reply(&mut client, b"3X");
    let (status, stderr) = server.signal(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(
            "calc: stopped: accepted=1 open=0 bytes_in=4 bytes_out=2 frames_in=1 frames_out=1"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("closed[server shutdown]=1"), "{stderr}");
    expect_closed(&mut client);
}

#[test]
fn sigint_stops_cleanly_too() {
    let server = start_level("ping", &[]);
    let (status, stderr) = server.signal(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("ping: stopped: accepted=0"), "{stderr}");
}

/// Runs an example that should exit at once; returns status and stderr.
fn run_to_exit(example: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(binary(example))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {example}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let stdout = thread::spawn(move || read_all(stdout));
    let stderr = thread::spawn(move || read_all(stderr));
    let mut server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        stderr: None,
    };
    let status = wait_within(&mut server.child, Duration::from_secs(10));
    (
        status,
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    )
}

#[test]
fn edge_on_select_or_poll_exits_with_the_unsupported_error() {
    let built = evmux::Backend::built().iter();
    let level_only = built.filter(|b| !b.supports_trigger(evmux::Trigger::Edge));
    for backend in level_only.map(|b| b.name()) {
        let args = [
            "--addr",
            "127.0.0.1:0",
            "--backend",
            backend,
            "--trigger",
            "edge",
        ];
        let (status, stdout, stderr) = run_to_exit("calc", &args);
        assert!(!status.success(), "{backend}: {status}");
        assert!(stderr.contains("not supported"), "{backend}: {stderr}");
        assert!(stderr.contains("edge-triggered"), "{backend}: {stderr}");
        assert!(stderr.contains(backend), "{backend}: {stderr}");
        assert_eq!(stdout, "", "{backend}: nothing is announced");
    }
}

#[test]
fn a_taken_address_exits_with_an_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stdout, stderr) = run_to_exit("echo", &["--addr", &addr]);
    assert!(!status.success(), "{status}");
    assert!(stderr.contains(&format!("listen on {addr}")), "{stderr}");
    assert_eq!(stdout, "");
}

#[test]
fn bad_flags_exit_non_zero() {
    let cases: [&[&str]; 4] = [
        &["--backend", "kqueue"],
        &["--trigger", "oneshot"],
        &["--delimiter", ""],
        &["--delimiter", r"\q"],
    ];
    for args in cases {
        let (status, stdout, stderr) = run_to_exit("calc", args);
        assert!(!status.success(), "{args:?}: {status}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
    }
}

// ---- the README's code ----

/// Lines trimmed, blank lines dropped: indentation may differ.
fn normalized(code: &str) -> String {
    let lines = code.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.collect::<Vec<_>>().join("\n")
}

#[test]
fn readme_connects_to_an_upstream() {
    connect_to_an_upstream().expect("the README's client");
}

fn connect_to_an_upstream() -> std::io::Result<()> {
    use evmux::codec::Lines;
    use evmux::{Config, Conn, ConnId, Control, DefaultPoller, Handler, Reactor};
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    /// Connects to `upstream` at start, sends a line, and stops once the
    /// echo comes back.
    struct Client {
        upstream: SocketAddr,
    }

    impl Handler for Client {
        fn on_start(&mut self, ctl: &mut Control<'_>) {
            let five = Duration::from_secs(5);
            match ctl.connect(self.upstream, five) {
                Ok(id) => ctl.send(id, b"hello").expect("queued until connected"),
                Err(e) => panic!("connect: {e}"),
            }
        }

        fn on_connect_failed(&mut self, ctl: &mut Control<'_>, _: ConnId, e: std::io::Error) {
            eprintln!("{e}");
            ctl.stop();
        }

        fn on_frame(&mut self, conn: &mut Conn<'_>, line: &[u8]) {
            assert_eq!(line, b"hello");
            conn.control().stop();
        }
    }

    // A one-connection line echo server to talk to.
    let server = TcpListener::bind("127.0.0.1:0")?;
    let upstream = server.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (socket, _) = server.accept()?;
        let mut line = String::new();
        BufReader::new(&socket).read_line(&mut line)?;
        (&socket).write_all(line.as_bytes())
    });
    let mut reactor = Reactor::<DefaultPoller, _>::new(Lines::new(), Config::default())?;
    reactor.run(&mut Client { upstream })?;
    assert_eq!(reactor.stats().connected, 1);
    echo.join().expect("the echo thread")
}

#[test]
fn readme_proxies_one_client() {
    proxy_one_client().expect("the README's proxy");
}

fn proxy_one_client() -> std::io::Result<()> {
    use evmux::codec::Raw;
    use evmux::{Config, Conn, ConnId, DefaultPoller, HalfClose, Handler, Reactor};
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    /// Pairs each client with a connection to `upstream` and relays bytes
    /// both ways, pausing a side whose peer is full.
    struct Relay {
        upstream: SocketAddr,
        peer: HashMap<ConnId, ConnId>,
    }

    impl Handler for Relay {
        fn on_open(&mut self, conn: &mut Conn<'_>) {
            match conn
                .control()
                .connect(self.upstream, Duration::from_secs(5))
            {
                Ok(up) => {
                    self.peer.insert(conn.id(), up);
                    self.peer.insert(up, conn.id());
                }
                Err(_) => conn.close(),
            }
        }

        fn on_frame(&mut self, conn: &mut Conn<'_>, bytes: &[u8]) {
            let Some(&to) = self.peer.get(&conn.id()) else {
                return;
            };
            match conn.control().send(to, bytes) {
                Ok(()) if conn.control().can_send(to).is_ok() => {}
                Ok(()) => conn.pause_reading(), // until `to` drains
                Err(_) => conn.shutdown(),      // (a real proxy keeps a refused frame)
            }
        }

        fn on_drain(&mut self, conn: &mut Conn<'_>) {
            if let Some(&from) = self.peer.get(&conn.id()) {
                conn.control().resume_reading(from);
            }
        }

        fn on_eof(&mut self, conn: &mut Conn<'_>) {
            if let Some(&to) = self.peer.get(&conn.id()) {
                conn.control().shutdown_write(to); // pass the half-close on
            }
        }
    }

    // An upstream that reads to EOF, then answers.
    let server = TcpListener::bind("127.0.0.1:0")?;
    let upstream = server.local_addr()?;
    std::thread::spawn(move || -> std::io::Result<()> {
        let (mut socket, _) = server.accept()?;
        let mut request = Vec::new();
        socket.read_to_end(&mut request)?;
        socket.write_all(&request.to_ascii_uppercase())
    });

    let config = Config::default().half_close(HalfClose::KeepWriting);
    let mut reactor = Reactor::<DefaultPoller, _>::new(Raw, config)?;
    let addr = reactor.listen("127.0.0.1:0")?;
    let stop = reactor.stop_handle();
    let peer = HashMap::new();
    let proxy = std::thread::spawn(move || reactor.run(&mut Relay { upstream, peer }));

    let mut client = TcpStream::connect(addr)?;
    client.write_all(b"hello")?;
    client.shutdown(Shutdown::Write)?; // the upstream sees EOF, then answers
    let mut answer = String::new();
    client.read_to_string(&mut answer)?;
    assert_eq!(answer, "HELLO");
    stop.stop()?;
    proxy.join().expect("the proxy thread")
}

#[test]
fn readme_code_is_tested_here() {
    let readme = include_str!("../README.md");
    let here = normalized(include_str!("examples.rs"));
    let mut blocks = 0;
    let mut rest = readme;
    while let Some(start) = rest.find("```rust\n") {
        let body = &rest[start + "```rust\n".len()..];
        let end = body.find("```").expect("a closed code block");
        let block = normalized(&body[..end]);
        assert!(
            here.contains(&block),
            "this README block is not in tests/examples.rs:\n{block}"
        );
        blocks += 1;
        rest = &body[end + 3..];
    }
    assert!(blocks >= 3, "found {blocks} rust blocks in the README");
}

// The README's blocks name select, poll and epoll.
#[cfg(all(evmux_select, evmux_poll, evmux_epoll))]
mod readme {
    fn wait_for_a_message() -> std::io::Result<()> {
        use evmux::{Events, Interest, PollPoller, Poller, Token, Trigger};
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        use std::time::Duration;

        let (mut ours, mut theirs) = UnixStream::pair()?;
        theirs.set_nonblocking(true)?;

        let mut poller = PollPoller::new()?;
        poller.register(&theirs, Token(7), Interest::READABLE, Trigger::Level)?;
        ours.write_all(b"hello")?;

        let mut events = Events::with_capacity(64);
        poller.wait(&mut events, Some(Duration::from_secs(5)))?;
        assert_eq!(events.len(), 1);
        for event in events.iter() {
            assert!(event.token() == Token(7) && event.is_readable());
            let mut buf = [0; 16];
            let n = theirs.read(&mut buf)?;
            assert_eq!(&buf[..n], b"hello");
        }
        poller.deregister(&theirs)
    }

    #[test]
    fn poller_example() {
        wait_for_a_message().unwrap();
    }

    fn pick_a_backend() -> std::io::Result<()> {
        use evmux::codec::Raw;
        use evmux::{Config, DefaultPoller, Poller, Reactor, SelectPoller, Trigger};

        // By type parameter: this reactor runs on select(2).
        let select = Reactor::<SelectPoller, _>::new(Raw, Config::default())?;
        assert_eq!(select.backend(), "select");
        assert_eq!(select.trigger(), Trigger::Level);

        // DefaultPoller: epoll on Linux, else poll, else select, among the
        // backends the cargo features built.
        let default = Reactor::<DefaultPoller, _>::new(Raw, Config::default())?;
        assert_eq!(default.backend(), DefaultPoller::NAME);

        // A trigger the backend cannot deliver is an error, not a downgrade.
        let edge = Config::default().trigger(Trigger::Edge);
        let Err(err) = Reactor::<SelectPoller, _>::new(Raw, edge) else {
            panic!("select accepted edge triggering");
        };
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
        Ok(())
    }

    fn pick_at_run_time() -> std::io::Result<()> {
        use evmux::codec::Raw;
        use evmux::{AnyPoller, Backend, Config, Reactor};

        // A name from a flag or a config file ("kqueue" would be InvalidInput,
        // listing the backends this build has).
        let backend: Backend = "poll".parse()?;
        let poller = AnyPoller::with_backend(backend)?;
        let reactor = Reactor::with_poller(poller, Raw, Config::default())?;
        assert_eq!(reactor.backend(), "poll");

        // EVMUX_BACKEND, else the best backend built; no fallback if it fails.
        let from_env = Reactor::<AnyPoller, _>::new(Raw, Config::default())?;
        println!("EVMUX_BACKEND or the default: {}", from_env.backend());

        // The first backend that starts here; any passed over is logged.
        let poller = AnyPoller::best_available()?;
        println!("the best that starts: {}", poller.backend());
        Ok(())
    }

    #[test]
    fn run_time_example() {
        pick_at_run_time().unwrap();
    }

    #[test]
    fn backend_example() {
        pick_a_backend().unwrap();
    }

    use std::time::Duration;

    use evmux::codec::Lines;
    use evmux::{CloseReason, Config, Conn, ConnId, Handler, PollPoller, Reactor};

    /// Upper-cases each line; says goodbye on `bye`; counts closes.
    struct Shout {
        closed: Vec<CloseReason>,
    }

    impl Handler for Shout {
        fn on_frame(&mut self, conn: &mut Conn<'_>, line: &[u8]) {
            if line == b"bye" {
                let _ = conn.send(b"BYE");
                conn.shutdown(); // flush what is queued, then close
            } else if conn.send(&line.to_ascii_uppercase()).is_err() {
                conn.close();
            }
        }

        fn on_close(&mut self, _id: ConnId, reason: CloseReason) {
            self.closed.push(reason);
        }
    }

    fn shout_server() -> std::io::Result<()> {
        use std::io::{Read, Write};
        use std::net::TcpStream;

        let config = Config::default().idle_timeout(Some(Duration::from_secs(30)));
        let mut reactor = Reactor::<PollPoller, _>::new(Lines::new(), config)?;
        let addr = reactor.listen("127.0.0.1:0")?;
        let stop = reactor.stop_handle(); // Clone + Send: stops run() from anywhere
        let server = std::thread::spawn(move || {
            let mut shout = Shout { closed: Vec::new() };
            reactor.run(&mut shout).map(|()| shout.closed)
        });

        let mut client = TcpStream::connect(addr)?;
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        client.write_all(b"hello\nbye\n")?;
        let mut replies = String::new();
        client.read_to_string(&mut replies)?; // until the server closes
        assert_eq!(replies, "HELLO\nBYE\n");

        stop.stop()?;
        let closed = server.join().expect("the server thread")?;
        assert_eq!(closed, [CloseReason::ClosedByHandler]);
        Ok(())
    }

    #[test]
    fn reactor_example() {
        shout_server().unwrap();
    }
}
