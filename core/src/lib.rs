//! The contract shared by every evmux backend.
//!
//! This crate holds the [`Poller`] trait and everything the backends have in
//! common: [`Token`], [`Interest`], [`Trigger`], [`Event`] / [`Events`], the
//! [`Waker`], the syscall wrapper [`cvt`], [`set_nonblocking`], and the
//! policies that must be identical everywhere (timeout conversion in
//! [`timeout_timespec`], [`timeout_timeval`] and [`timeout_ms`], EINTR in
//! [`interrupted_is_empty`], error constructors).
//! Nothing backend-specific lives here.
//!
//! Most users depend on the `evmux` facade crate instead, which re-exports
//! all of this plus the backends and the reactor.

mod event;
mod interest;
mod poller;
mod sys;
mod token;
mod waker;

pub use event::{Event, Events, Readiness};
pub use interest::{Interest, Trigger};
pub use poller::Poller;
pub use sys::{
    already_registered, beyond_capacity, check_token, check_trigger, clamp_timeout, cvt,
    interrupted_is_empty, not_registered, set_nonblocking, timeout_ms, timeout_timespec,
    timeout_timeval, unsupported_trigger, waker_exists, IsMinusOne, MAX_WAIT, MAX_WAIT_MS,
};
pub use token::Token;
pub use waker::{Waker, WakerSource};

#[doc(hidden)]
pub mod doc_support {
    //! A stand-in poller so this crate's doc examples compile without a
    //! backend; it is not part of the API.
    use super::*;
    use std::os::fd::AsFd;
    use std::time::Duration;

    /// Refuses everything.
    pub struct NoPoller;

    fn no() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::Unsupported, "no backend")
    }

    impl Poller for NoPoller {
        const NAME: &'static str = "none";
        fn new() -> std::io::Result<Self> {
            Err(no())
        }
        fn supports_trigger(_: Trigger) -> bool {
            false
        }
        fn fd_capacity() -> Option<usize> {
            Some(0)
        }
        fn register<F: AsFd + ?Sized>(
            &mut self,
            _: &F,
            _: Token,
            _: Interest,
            _: Trigger,
        ) -> std::io::Result<()> {
            Err(no())
        }
        fn modify<F: AsFd + ?Sized>(
            &mut self,
            _: &F,
            _: Token,
            _: Interest,
            _: Trigger,
        ) -> std::io::Result<()> {
            Err(no())
        }
        fn deregister<F: AsFd + ?Sized>(&mut self, _: &F) -> std::io::Result<()> {
            Err(no())
        }
        fn wait(&mut self, _: &mut Events, _: Option<Duration>) -> std::io::Result<()> {
            Err(no())
        }
        fn waker(&mut self, _: Token) -> std::io::Result<Waker> {
            Err(no())
        }
    }
}
