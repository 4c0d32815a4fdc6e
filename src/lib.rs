//! evmux: a pluggable event loop with swappable select, poll and epoll
//! backends.
//!
//! Re-exports the [`Poller`] contract from `evmux-core`, every backend
//! enabled by cargo features (`select`, `poll`, `epoll`; all on by default),
//! and [`DefaultPoller`]: epoll on Linux and Android when enabled, else
//! poll, else select.

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
    } else {
        compile_error!("evmux needs at least one backend: enable the `select`, `poll` or `epoll` feature");
    }
}
