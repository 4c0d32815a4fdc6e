//! Naming a backend at run time: [`Backend`], parsed from a flag or from
//! `EVMUX_BACKEND`, and made into a poller by
//! [`AnyPoller`](crate::AnyPoller).

use std::fmt;
use std::io;
use std::str::FromStr;

#[allow(unused_imports)] // unused in a build without backends
use crate::{Poller, Trigger};

/// The environment variable [`Backend::from_env`] and
/// [`AnyPoller::new`](crate::AnyPoller) read: a backend name, or unset
/// (or empty) for the best one built.
pub const BACKEND_ENV: &str = "EVMUX_BACKEND";

/// A readiness backend, by name. Every variant exists in every build;
/// [`is_built`](Backend::is_built) says whether this one has it (its cargo
/// feature is on and the OS has the interface).
///
/// # Examples
///
/// ```
/// use evmux::Backend;
///
/// let backend: Backend = "poll".parse()?;
/// assert_eq!(backend, Backend::Poll);
/// assert_eq!(backend.to_string(), "poll");
///
/// let unknown = "kqueue".parse::<Backend>().unwrap_err();
/// assert_eq!(unknown.kind(), std::io::ErrorKind::InvalidInput);
/// assert!(unknown.to_string().contains("this build has"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// select(2): portable, at most `FD_SETSIZE` (1024) fds, level only.
    Select,
    /// poll(2): portable, no fd limit, level only.
    Poll,
    /// epoll(7), Linux and Android: level, edge and oneshot.
    Epoll,
    /// io_uring(7) poll requests, Linux 5.13+: level, edge and oneshot;
    /// interest changes batched with the wait.
    Uring,
}

impl Backend {
    /// Every backend evmux knows, built here or not.
    pub const ALL: [Backend; 4] = [
        Backend::Select,
        Backend::Poll,
        Backend::Epoll,
        Backend::Uring,
    ];

    /// The backend's lowercase name, as `FromStr`, the example servers'
    /// `--backend` and `EVMUX_BACKEND` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Select => "select",
            Backend::Poll => "poll",
            Backend::Epoll => "epoll",
            Backend::Uring => "uring",
        }
    }

    /// The backends this build has, best first (the order
    /// [`DefaultPoller`](crate::DefaultPoller) is chosen in).
    pub fn built() -> &'static [Backend] {
        macro_rules! built {
            ({} $(($name:ident, $variant:ident, $poller:ty, $pairs:tt))*) => {
                &[$(Backend::$variant),*]
            };
        }
        crate::__evmux_backends!([built] {})
    }

    /// Does this build have the backend?
    pub fn is_built(self) -> bool {
        Backend::built().contains(&self)
    }

    /// Can this backend deliver `trigger`? `false` for a backend this
    /// build lacks. The same answer as its poller's
    /// [`supports_trigger`](crate::Poller::supports_trigger).
    pub fn supports_trigger(self, trigger: Trigger) -> bool {
        macro_rules! supports {
            ({} $(($name:ident, $variant:ident, $poller:ty, $pairs:tt))*) => {
                match self {
                    $( Backend::$variant => <$poller as Poller>::supports_trigger(trigger), )*
                    #[allow(unreachable_patterns)]
                    _ => false,
                }
            };
        }
        crate::__evmux_backends!([supports] {})
    }

    /// The best backend built: the one [`DefaultPoller`](crate::DefaultPoller)
    /// is (epoll on Linux, else poll, else select, else uring). It may
    /// still fail to start (uring under a seccomp policy);
    /// [`best_available`](Backend::best_available) tries.
    pub fn best() -> Backend {
        // A build without backends does not compile (see `DefaultPoller`).
        Backend::built().first().copied().unwrap_or(Backend::Poll)
    }

    /// The backend `EVMUX_BACKEND` names, or [`best`](Backend::best) when
    /// it is unset or empty.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the variable holds an unknown name, a backend this
    /// build lacks, or bytes that are not UTF-8; the message lists the
    /// backends this build has.
    pub fn from_env() -> io::Result<Backend> {
        match std::env::var(BACKEND_ENV) {
            Ok(name) if name.trim().is_empty() => Ok(Backend::best()),
            Ok(name) => name.parse().map_err(|e: io::Error| {
                io::Error::new(e.kind(), format!("{BACKEND_ENV}={name}: {e}"))
            }),
            Err(std::env::VarError::NotPresent) => Ok(Backend::best()),
            Err(std::env::VarError::NotUnicode(_)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{BACKEND_ENV} is not UTF-8; {}", has()),
            )),
        }
    }

    /// The first backend built that starts on this machine, best first,
    /// found by creating (and dropping) a poller of each in turn. A
    /// backend passed over is logged at `warn` with its error, so a
    /// fallback is never silent; the return value says which was chosen.
    /// [`AnyPoller::best_available`](crate::AnyPoller::best_available)
    /// does the same and keeps the poller.
    ///
    /// # Errors
    ///
    /// The last backend's error if none starts.
    pub fn best_available() -> io::Result<Backend> {
        crate::AnyPoller::best_available().map(|poller| poller.backend())
    }
}

/// The list of backends built, for error messages.
fn has() -> String {
    let names: Vec<&str> = Backend::built().iter().map(|b| b.name()).collect();
    format!("this build has {}", names.join(", "))
}

/// `InvalidInput`: `backend` is known but this build lacks it.
pub(crate) fn not_built(backend: Backend) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the {backend} backend is not in this build (its cargo feature is off, \
             or this OS lacks it); {}",
            has()
        ),
    )
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = io::Error;

    /// Parses a lowercase backend name (surrounding spaces and case are
    /// ignored).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an unknown name or a backend this build lacks,
    /// with the names this build has.
    fn from_str(text: &str) -> io::Result<Backend> {
        let text = text.trim();
        let found = Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(text));
        match found {
            Some(backend) if backend.is_built() => Ok(backend),
            Some(backend) => Err(not_built(backend)),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown backend {text:?}; {}", has()),
            )),
        }
    }
}
