//! [`AnyPoller`]: a [`Poller`] whose backend is picked when it is created.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::backend::{not_built, Backend};
use crate::{Events, Interest, Poller, Token, Trigger, Waker};

macro_rules! any_poller {
    ({$d:tt} $(($name:ident, $variant:ident, $poller:ty, $pairs:tt))*) => {
        /// A [`Poller`] whose backend is chosen at run time: by value
        /// ([`with_backend`](AnyPoller::with_backend)), by `EVMUX_BACKEND`
        /// ([`new`](Poller::new)), or by what starts on this machine
        /// ([`best_available`](AnyPoller::best_available)). One
        /// monomorphised program serves on any backend this build has; a
        /// call costs one `match` on top of the backend's own (see
        /// BENCHMARKS.md for the measured difference).
        ///
        /// The type-level items of [`Poller`] describe the type, not the
        /// pick: `NAME` is `"any"`, [`supports_trigger`](Poller::supports_trigger)
        /// is true if some backend built supports the trigger, and
        /// [`fd_capacity`](Poller::fd_capacity) is `None`. Ask the value
        /// instead: [`name`](Poller::name), [`has_trigger`](Poller::has_trigger),
        /// [`fd_limit`](Poller::fd_limit) answer for the backend picked, and
        /// the reactor uses those.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use evmux::{AnyPoller, Backend, Events, Poller, Trigger};
        ///
        /// for &backend in Backend::built() {
        ///     let mut poller = match AnyPoller::with_backend(backend) {
        ///         Ok(poller) => poller,
        ///         // uring where a seccomp policy blocks io_uring.
        ///         Err(e) if e.kind() == std::io::ErrorKind::Unsupported => continue,
        ///         Err(e) => return Err(e),
        ///     };
        ///     assert_eq!(poller.name(), backend.name());
        ///     assert!(poller.has_trigger(Trigger::Level));
        ///     let mut events = Events::with_capacity(8);
        ///     poller.wait(&mut events, Some(Duration::ZERO))?;
        ///     assert!(events.is_empty());
        /// }
        /// # Ok::<(), std::io::Error>(())
        /// ```
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum AnyPoller {
            $(
                #[doc = concat!("The ", stringify!($name), " backend.")]
                $variant($poller),
            )*
        }

        /// Runs `$body` with `$inner` bound to the backend's poller.
        macro_rules! each {
            ($d value:expr, $d inner:ident => $d body:expr) => {
                match $d value {
                    $( AnyPoller::$variant($d inner) => $d body, )*
                }
            };
        }

        impl AnyPoller {
            /// Creates a poller of `backend`.
            ///
            /// # Errors
            ///
            /// - `InvalidInput` if this build lacks `backend` (the message
            ///   lists what it has).
            /// - The backend's own error of creating its poller, such as
            ///   `Unsupported` for uring where io_uring is blocked. There is
            ///   no silent fallback: see
            ///   [`best_available`](AnyPoller::best_available) for one.
            pub fn with_backend(backend: Backend) -> io::Result<AnyPoller> {
                match backend {
                    $( Backend::$variant => <$poller>::new().map(AnyPoller::$variant), )*
                    #[allow(unreachable_patterns)]
                    other => Err(not_built(other)),
                }
            }

            /// The backend picked.
            pub fn backend(&self) -> Backend {
                match self {
                    $( AnyPoller::$variant(_) => Backend::$variant, )*
                }
            }
        }
    };
}

crate::__evmux_backends!([any_poller] {$});

impl AnyPoller {
    /// The first backend built that starts here, best first (see
    /// [`Backend::built`]). Each one passed over is logged at `warn` with
    /// its error; [`backend`](AnyPoller::backend) says which was chosen.
    ///
    /// # Errors
    ///
    /// The last backend's error if none starts.
    pub fn best_available() -> io::Result<AnyPoller> {
        let mut last = None;
        for &backend in Backend::built() {
            match AnyPoller::with_backend(backend) {
                Ok(poller) => return Ok(poller),
                Err(e) => {
                    log::warn!("the {backend} backend does not start here ({e}); trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "no backend built")))
    }
}

impl Poller for AnyPoller {
    const NAME: &'static str = "any";

    /// A poller of the backend `EVMUX_BACKEND` names, or of the best one
    /// built when it is unset (no fallback: see
    /// [`best_available`](AnyPoller::best_available)).
    ///
    /// # Errors
    ///
    /// As [`Backend::from_env`] and [`with_backend`](AnyPoller::with_backend).
    fn new() -> io::Result<AnyPoller> {
        AnyPoller::with_backend(Backend::from_env()?)
    }

    fn supports_trigger(trigger: Trigger) -> bool {
        macro_rules! some {
            ({} $(($name:ident, $variant:ident, $poller:ty, $pairs:tt))*) => {
                false $(|| <$poller>::supports_trigger(trigger))*
            };
        }
        crate::__evmux_backends!([some] {})
    }

    fn fd_capacity() -> Option<usize> {
        None
    }

    fn register<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        each!(self, p => p.register(fd, token, interest, trigger))
    }

    fn modify<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        each!(self, p => p.modify(fd, token, interest, trigger))
    }

    fn deregister<F: AsFd + ?Sized>(&mut self, fd: &F) -> io::Result<()> {
        each!(self, p => p.deregister(fd))
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        each!(self, p => p.wait(events, timeout))
    }

    fn timeout_resolution(&self) -> Duration {
        each!(self, p => p.timeout_resolution())
    }

    fn waker(&mut self, token: Token) -> io::Result<Waker> {
        each!(self, p => p.waker(token))
    }

    fn name(&self) -> &'static str {
        each!(self, p => p.name())
    }

    fn has_trigger(&self, trigger: Trigger) -> bool {
        each!(self, p => p.has_trigger(trigger))
    }

    fn fd_limit(&self) -> Option<usize> {
        each!(self, p => p.fd_limit())
    }
}
