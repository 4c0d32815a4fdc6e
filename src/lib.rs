//! evmux: a pluggable event loop with swappable select, poll, epoll and
//! io_uring backends, and a reactor that runs unchanged on any of them.
//!
//! Two layers:
//!
//! - **The [`Poller`] contract** (`register` / `modify` / `deregister` /
//!   `wait`) with four implementations: [`SelectPoller`] (`fd_set` plus a
//!   shadow array; fds below `FD_SETSIZE` only), [`PollPoller`] (a `pollfd`
//!   vector with an O(1) fd index), [`EpollPoller`] (level, edge or
//!   oneshot), and `UringPoller` (io_uring poll requests, Linux 5.13+;
//!   level, edge or oneshot, interest changes batched into the next wait). They behave the same wherever the OS allows, and fail with a
//!   clear `io::Error` where it does not (edge on select or poll is
//!   `ErrorKind::Unsupported`; an fd past `FD_SETSIZE` on select is
//!   `ErrorKind::InvalidInput`).
//! - **The [`Reactor`]**, a connection manager and framing layer over any
//!   `Poller`: TCP and Unix-domain listeners (bound here, bound elsewhere,
//!   or passed by a supervisor: [`inherited_listeners`]), adopted sockets,
//!   outbound connections ([`Control::connect`]), user fds
//!   ([`Control::watch`]); reads that drain the socket, batched writes
//!   with writable interest only while output is queued, one close path
//!   with a [`CloseReason`], backpressure (the reactor's own at the
//!   high-water mark; pushes by id refused with [`SendError::Full`] until
//!   [`Handler::on_drain`]; reading paused and resumed by the handler),
//!   half-close ([`HalfClose`], [`Handler::on_eof`],
//!   [`Conn::shutdown_write`]), idle and stall timeouts, and [`codec`]s
//!   (delimiter, lines, length prefix, raw). Business logic is a
//!   [`Handler`]; `examples/proxy.rs` is a TCP or Unix-domain proxy built
//!   on these.
//!
//! # Choosing a backend
//!
//! - By type parameter: `Reactor::<PollPoller, _>` or `PollPoller::new()`.
//! - By cargo feature at build time: `select`, `poll`, `epoll`, `uring`
//!   (all on by default; `uring` builds nothing outside Linux);
//!   `--no-default-features --features poll` builds only poll.
//! - By [`DefaultPoller`]: epoll on Linux and Android when enabled, else
//!   poll, else select, else io_uring (one `cfg_if!` below).
//!
//! # The Poller API
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use std::time::Duration;
//! use evmux::{DefaultPoller, Events, Interest, Poller, Token, Trigger};
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let mut client = TcpStream::connect(listener.local_addr()?)?;
//! let (mut server, _) = listener.accept()?;
//! server.set_nonblocking(true)?;
//!
//! let mut poller = DefaultPoller::new()?;
//! poller.register(&server, Token(1), Interest::READABLE, Trigger::Level)?;
//! client.write_all(b"ping")?;
//!
//! let mut events = Events::with_capacity(64);
//! poller.wait(&mut events, Some(Duration::from_secs(5)))?;
//! let event = events.iter().next().expect("one event");
//! assert_eq!(event.token(), Token(1));
//! assert!(event.is_readable());
//!
//! let mut buf = [0u8; 4];
//! server.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"ping");
//! poller.deregister(&server)?; // before the socket is closed
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # A server on the reactor
//!
//! A sum server over `X`-delimited requests (`2+3X` gets `5X`), on the
//! poll backend, level-triggered:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{Shutdown, TcpStream};
//! use evmux::codec::Delimited;
//! use evmux::{Config, Conn, Handler, PollPoller, Reactor};
//!
//! struct Sum;
//! impl Handler for Sum {
//!     fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
//!         let text = std::str::from_utf8(frame).unwrap_or("");
//!         let sum: Option<i64> = text
//!             .split('+')
//!             .map(|n| n.trim().parse::<i64>().ok())
//!             .sum();
//!         let reply = sum.map_or("ERR".to_string(), |n| n.to_string());
//!         let _ = conn.send(reply.as_bytes());
//!     }
//! }
//!
//! let codec = Delimited::new(b"X")?;
//! let mut reactor = Reactor::<PollPoller, _>::new(codec, Config::default())?;
//! let addr = reactor.listen("127.0.0.1:0")?;
//! let stop = reactor.stop_handle();
//! let server = std::thread::spawn(move || reactor.run(&mut Sum).map(|()| reactor));
//!
//! let mut client = TcpStream::connect(addr)?;
//! client.write_all(b"100+98X14+23X")?;
//! client.shutdown(Shutdown::Write)?; // replies still come, then EOF
//! let mut replies = String::new();
//! client.read_to_string(&mut replies)?;
//! assert_eq!(replies, "198X37X");
//!
//! stop.stop()?;
//! let reactor = server.join().expect("server thread")?;
//! assert_eq!(reactor.stats().frames_in, 2);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How the reactor is built
//!
//! The modules depend one way, each on the ones above it only:
//!
//! | layer | modules | what they own |
//! |---|---|---|
//! | the backend list | `list` (one entry per backend; [`for_each_backend!`], [`for_each_trigger!`]; each backend's build condition is a cfg `build.rs` sets once) | which backends this build has, in order of preference |
//! | leaves | `backend` ([`Backend`], named at run time), `ids` ([`ConnId`], [`SourceId`], [`TimerId`], [`CloseReason`]), `stats` ([`Stats`]), `config` ([`Config`]), `buffer`, [`codec`], `timer` (a generic deadline heap), `source` (the token layout), `net` ([`Stream`], [`Listener`], [`Endpoint`]), `activation`, `sys` (each libc call, once) | plain values and syscalls; no loop state |
//! | what a handler may touch | `handler` ([`Handler`], [`Conn`], [`Control`], and the loop state they share: timers, counters, requests by id, the table's free keys) | asks, never acts: a close or a send by id is a request the turn carries out after the callback |
//! | the loop | `reactor/` | the turn (`mod.rs`), one connection's work (`connection.rs`: read, decode and dispatch, flush, wanted interest, returned as a decision), listeners (`accept.rs`), deadlines (`timers.rs`), requests (`requests.rs`), the table (`table.rs`) |
//! | a backend picked at run time | `any_poller` ([`AnyPoller`]) | one `match` over the backends built, for a program compiled once |
//!
//! One event, start to end: `Reactor::run` waits; `on_event` decodes the
//! token into a `Source` (waker, listener, connection or watched fd);
//! for a connection, `Connection::on_event` reads until drained, cuts
//! frames with the codec and calls [`Handler::on_frame`], batches the
//! replies and flushes them, and returns a step (keep with this interest,
//! or close for this reason); the turn applies it: `modify` on the poller,
//! or the one close path (deregister, close, free the slot, then
//! `on_close`). Nothing below the turn touches the poller or the table.
//!
//! # Closing and ownership rules
//!
//! Deregister an fd before closing it (the reactor does, on every close
//! path); see [`Poller`] for what each backend does when that is not done.
//! The library never prints: it logs through the `log` facade, and never
//! panics on input from the network.

pub use evmux_core::{
    cvt, set_nonblocking, timeout_ms, Event, Events, Interest, Poller, Readiness, Token, Trigger,
    Waker,
};

#[cfg(evmux_epoll)]
pub use evmux_epoll::EpollPoller;
#[cfg(evmux_poll)]
pub use evmux_poll::PollPoller;
#[cfg(evmux_select)]
pub use evmux_select::SelectPoller;
#[cfg(evmux_uring)]
pub use evmux_uring::UringPoller;

// The one list of backends (macros only; first, so the rest can use it).
mod list;

// Leaves: they depend on nothing else here (but `net` and `activation`
// on `sys`).
mod activation;
mod backend;
mod buffer;
pub mod codec;
mod config;
mod ids;
mod net;
mod source;
mod stats;
mod sys;
mod timer;
// What a handler may touch; depends on the leaves.
mod handler;
// The loop; depends on all of the above.
mod reactor;
// A backend picked at run time; depends on the backends and `backend`.
mod any_poller;

pub use activation::inherited_listeners;
pub use any_poller::AnyPoller;
pub use backend::{Backend, BACKEND_ENV};
pub use config::{Config, HalfClose};
pub use handler::{Conn, Control, Handler, SendError};
pub use ids::{CloseReason, ConnId, SourceId, TimerId};
pub use net::{Endpoint, Listener, Stream};
pub use reactor::{Reactor, StopHandle};
pub use stats::Stats;

macro_rules! default_poller {
    ({} ($name:ident, $variant:ident, $poller:ty, $pairs:tt) $($rest:tt)*) => {
        #[doc = concat!(
            "The backend chosen for this build: the best one built (epoll on Linux, ",
            "else poll, else select, else uring): here the ", stringify!($name), " backend. ",
            "[`AnyPoller`] picks one at run time instead."
        )]
        pub type DefaultPoller = $poller;
    };
    ({}) => {
        compile_error!("evmux needs at least one backend: enable the `select`, `poll`, `epoll` or `uring` feature");
    };
}
__evmux_backends!([default_poller] {});
