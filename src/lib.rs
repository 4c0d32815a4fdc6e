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
//! - **The [`Reactor`]**, a TCP connection manager and framing layer over any
//!   `Poller`: accept loop, reads that drain the socket, batched writes with
//!   writable interest only while output is queued, one close path with a
//!   [`CloseReason`], backpressure, idle timeouts, and [`codec`]s
//!   (delimiter, lines, length prefix). Business logic is a [`Handler`].
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

#[cfg(feature = "epoll")]
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use evmux_epoll::EpollPoller;
#[cfg(feature = "poll")]
pub use evmux_poll::PollPoller;
#[cfg(feature = "select")]
pub use evmux_select::SelectPoller;
#[cfg(feature = "uring")]
#[cfg(target_os = "linux")]
pub use evmux_uring::UringPoller;

mod buffer;
pub mod codec;
mod conn;
mod handler;
mod reactor;
mod sys;
mod timer;

pub use conn::{CloseReason, Conn, ConnId};
pub use handler::{Control, Handler};
pub use reactor::{Config, Reactor, Stats, StopHandle};
pub use timer::TimerId;

cfg_if::cfg_if! {
    if #[cfg(all(feature = "epoll", any(target_os = "linux", target_os = "android")))] {
        /// The backend chosen for this build: [`EpollPoller`].
        pub type DefaultPoller = EpollPoller;
    } else if #[cfg(feature = "poll")] {
        /// The backend chosen for this build: [`PollPoller`].
        pub type DefaultPoller = PollPoller;
    } else if #[cfg(feature = "select")] {
        /// The backend chosen for this build: [`SelectPoller`].
        pub type DefaultPoller = SelectPoller;
    } else if #[cfg(all(feature = "uring", target_os = "linux"))] {
        /// The backend chosen for this build: [`UringPoller`] (the only one
        /// built; its `new` fails with `Unsupported` where io_uring is
        /// blocked).
        pub type DefaultPoller = UringPoller;
    } else {
        compile_error!("evmux needs at least one backend: enable the `select`, `poll`, `epoll` or `uring` feature");
    }
}
