//! What the example servers share: their flags, picking the backend at run
//! time, stopping on SIGINT/SIGTERM, and what they print.
//!
//! Included by each example with `#[path = ".../common/mod.rs"] mod common;`
//! (cargo builds only `examples/*.rs` and `examples/*/main.rs` as examples,
//! so this directory is not one).

use std::io::{self, Write};
use std::process::ExitCode;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use clap::{Args, ValueEnum};
use evmux::codec::{Codec, DEFAULT_MAX_FRAME};
use evmux::{AnyPoller, Backend};
use evmux::{Config, Handler, Poller, Reactor, Stats, StopHandle, Trigger};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// The flags every example server takes.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The readiness backend: select, poll, epoll or uring [default:
    /// $EVMUX_BACKEND, else epoll on Linux, else poll, else select, else
    /// uring]
    #[arg(long, value_name = "NAME", value_parser = parse_backend)]
    pub backend: Option<Backend>,

    /// Level or edge triggering [default: edge on epoll and uring, level otherwise]
    #[arg(long, value_enum)]
    pub trigger: Option<TriggerArg>,

    /// The address to listen on (port 0 picks a free port), or
    /// unix:/path [default: the sockets a supervisor passed (LISTEN_FDS),
    /// else 127.0.0.1:7878]
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,

    /// Close a connection after this many seconds without traffic; 0: never
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,

    /// The longest request in bytes (at least 1); a longer one closes its
    /// connection
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FRAME,
          value_parser = at_least_one)]
    pub max_frame: usize,

    /// Close a connection whose queued replies the peer has taken none of
    /// for this many seconds (a stopped reader); 0: never
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub stall_timeout: u64,

    /// Refuse connections past this many open at once [default: unlimited]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Stop reading from a connection with this many reply bytes queued;
    /// resume at a quarter of it
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub high_water: usize,

    /// TCP keepalive: probe a silent peer after this many seconds, so one
    /// that vanished is closed within about twice that; 0: off
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub keepalive: u64,
}

/// A byte count of at least 1 (`--max-frame 0` would close every
/// connection at its first byte).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1 byte".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}: expected a number of bytes")),
    }
}

/// `--backend`: a backend this build has (the error lists them).
fn parse_backend(text: &str) -> Result<Backend, String> {
    text.parse().map_err(|e: io::Error| e.to_string())
}

/// `--trigger`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum TriggerArg {
    /// Report readiness while it lasts
    Level,
    /// Report each new arrival once (epoll and uring only)
    Edge,
}

impl ServerArgs {
    /// The reactor settings these flags ask for.
    pub fn config(&self) -> Config {
        let secs = |n| Some(Duration::from_secs(n));
        let config = Config::default()
            .idle_timeout(secs(self.idle_timeout))
            .stall_timeout(secs(self.stall_timeout))
            .keepalive(secs(self.keepalive))
            .max_connections(self.max_connections.unwrap_or(usize::MAX))
            .high_water(self.high_water);
        match self.trigger {
            None => config,
            Some(TriggerArg::Level) => config.trigger(Trigger::Level),
            Some(TriggerArg::Edge) => config.trigger(Trigger::Edge),
        }
    }
}

/// Runs a server with the backend `--backend` names, until SIGINT or
/// SIGTERM; prints the counters (or the error) to stderr. `name` prefixes
/// what is printed.
#[allow(dead_code)] // the proxy uses run_with
pub fn run<C: Codec + Clone + 'static, H: Handler>(
    name: &str,
    args: &ServerArgs,
    codec: C,
    handler: &mut H,
) -> ExitCode {
    run_with(name, args, args.config(), codec, handler)
}

/// [`run`] with reactor settings of the caller's (`args.config()` plus
/// what that server needs).
pub fn run_with<C: Codec + Clone + 'static, H: Handler>(
    name: &str,
    args: &ServerArgs,
    config: Config,
    codec: C,
    handler: &mut H,
) -> ExitCode {
    init_logging();
    // The flag, else EVMUX_BACKEND, else the best backend built: one
    // server, monomorphised once, whatever the backend.
    let poller = match args.backend {
        Some(backend) => AnyPoller::with_backend(backend),
        None => AnyPoller::new(),
    };
    let served = poller.and_then(|poller| serve(poller, args, config, codec, handler));
    report(name, served)
}

/// Builds a reactor on `poller`, listens, announces itself on stdout,
/// and runs until a signal stops it. Returns the final counters.
///
/// # Errors
///
/// The error of creating the reactor (`Unsupported` for edge triggering
/// on select or poll), of listening, of printing the announcement, or of
/// the loop itself.
pub fn serve<P: Poller, C: Codec + Clone + 'static, H: Handler>(
    poller: P,
    args: &ServerArgs,
    config: Config,
    codec: C,
    handler: &mut H,
) -> io::Result<Stats> {
    let mut reactor = Reactor::with_poller(poller, codec, config)?;
    let addr = listen(&mut reactor, args.addr.as_deref())?;
    let signals = StopOnSignal::install(reactor.stop_handle())?;
    announce(&addr, reactor.backend(), reactor.trigger())?;
    let ran = reactor.run(handler);
    signals.uninstall();
    ran.map_err(|e| context(e, "event loop"))?;
    Ok(reactor.stats().clone())
}

/// Listens where `--addr` says (`HOST:PORT` or `unix:/path`), or on the
/// sockets a supervisor passed when `--addr` is not given; returns what to
/// announce.
fn listen<P: Poller, C: Codec + Clone + 'static>(
    reactor: &mut Reactor<P, C>,
    addr: Option<&str>,
) -> io::Result<String> {
    let passed = evmux::inherited_listeners().map_err(|e| context(e, "socket activation"))?;
    if addr.is_none() && !passed.is_empty() {
        let mut shown = Vec::new();
        for (name, listener) in passed {
            shown.push(match listener.local_addr() {
                Some(local) => local.to_string(),
                None => format!("unix socket {name}"),
            });
            reactor.listen_on(listener)?;
        }
        return Ok(shown.join(","));
    }
    let addr = addr.unwrap_or("127.0.0.1:7878");
    let listened = match addr.strip_prefix("unix:") {
        Some(path) => reactor.listen_unix(path).map(|()| addr.to_owned()),
        None => reactor.listen(addr).map(|a| a.to_string()),
    };
    listened.map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput if !addr.starts_with("unix:") => io::Error::new(
            e.kind(),
            format!("--addr {addr}: expected HOST:PORT (127.0.0.1:7878) or unix:/path ({e})"),
        ),
        _ => context(e, &format!("listen on {addr}")),
    })
}

/// Prints the one stdout line tests and scripts wait for, and flushes it.
fn announce(addr: &str, backend: &str, trigger: Trigger) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "listening on {addr} backend={backend} trigger={}",
        trigger_name(trigger)
    )?;
    out.flush()
}

/// `level` or `edge` (lowercase, as the flag spells it).
pub fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Level => "level",
        Trigger::Edge => "edge",
        Trigger::Oneshot => "oneshot",
        _ => "unknown",
    }
}

fn report(name: &str, served: io::Result<Stats>) -> ExitCode {
    match served {
        Ok(stats) => {
            eprintln!("{name}: stopped: {stats}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Sends `log` records to stderr; `RUST_LOG` picks the level (default:
/// warnings and errors).
fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("warn");
    let _ = env_logger::Builder::from_env(env).try_init();
}

/// A thread that turns SIGINT/SIGTERM into [`StopHandle::stop`]. A second
/// signal exits at once, for a shutdown that takes too long.
struct StopOnSignal {
    handle: Handle,
    thread: JoinHandle<()>,
}

impl StopOnSignal {
    fn install(stop: StopHandle) -> io::Result<StopOnSignal> {
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).map_err(|e| context(e, "install signal handlers"))?;
        let handle = signals.handle();
        let thread = thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen > 1 {
                        eprintln!("signal {signal} again: exiting without a clean stop");
                        std::process::exit(128 + signal);
                    }
                    log::info!("signal {signal}: stopping");
                    if let Err(e) = stop.stop() {
                        log::error!("stop: {e}");
                    }
                }
            })
            .map_err(|e| context(e, "spawn the signal thread"))?;
        Ok(StopOnSignal { handle, thread })
    }

    fn uninstall(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

/// Turns `\n`, `\r`, `\t` and `\\` into the bytes they stand for; other
/// bytes stay as they are.
///
/// # Errors
///
/// A message for a backslash followed by anything else, or an empty result.
#[allow(dead_code)] // only calc takes a delimiter
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut chars = text.bytes();
    while let Some(b) = chars.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        bytes.push(match chars.next() {
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'\\') => b'\\',
            Some(other) => return Err(format!("unknown escape \\{}", other.escape_ascii())),
            None => return Err("a lone \\ at the end".into()),
        });
    }
    if bytes.is_empty() {
        return Err("empty".into());
    }
    Ok(bytes)
}
