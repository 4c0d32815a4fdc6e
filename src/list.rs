//! The one list of backends.
//!
//! Each backend is one entry here: its name, its [`Backend`](crate::Backend)
//! variant, its poller type and the reactor triggers it runs, with the
//! module names the test macros give each pair. Whether it is built is the
//! cfg `build.rs` sets (`evmux_epoll`: the `epoll` feature on Linux or
//! Android, ...), written once there. The entries are in order of
//! preference: the first one built is [`DefaultPoller`](crate::DefaultPoller).
//!
//! Everything that names backends goes through this list:
//! [`DefaultPoller`](crate::DefaultPoller), [`Backend::built`](crate::Backend::built),
//! [`AnyPoller`](crate::AnyPoller), and, through [`for_each_backend!`] and
//! [`for_each_trigger!`], the tests, benches and examples. A new backend is
//! one entry here, one variant of `Backend` and one line in `build.rs`.
//!
//! How it works: `__evmux_backends!` starts a chain of one macro per
//! backend; each built one appends its entry, each missing one passes the
//! list on unchanged, and the last calls back with the whole list.

/// Calls `$callback! { {extra tokens} (entry) (entry) ... }` with the
/// entries of every backend built, in order of preference.
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_backends {
    ([$($callback:tt)*] $extra:tt) => {
        $crate::__evmux_list_epoll! { [$($callback)*] $extra }
    };
}

#[cfg(evmux_epoll)]
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_epoll {
    ([$($callback:tt)*] $extra:tt $($list:tt)*) => {
        $crate::__evmux_list_poll! { [$($callback)*] $extra $($list)*
            (epoll, Epoll, $crate::EpollPoller, [(epoll_level, Level), (epoll_edge, Edge)])
        }
    };
}

#[cfg(not(evmux_epoll))]
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_epoll {
    ($($pass:tt)*) => { $crate::__evmux_list_poll! { $($pass)* } };
}

#[cfg(evmux_poll)]
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_poll {
    ([$($callback:tt)*] $extra:tt $($list:tt)*) => {
        $crate::__evmux_list_select! { [$($callback)*] $extra $($list)*
            (poll, Poll, $crate::PollPoller, [(poll_level, Level)])
        }
    };
}

#[cfg(not(evmux_poll))]
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_poll {
    ($($pass:tt)*) => { $crate::__evmux_list_select! { $($pass)* } };
}

#[cfg(evmux_select)]
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_select {
    ([$($callback:tt)*] $extra:tt $($list:tt)*) => {
        $crate::__evmux_list_uring! { [$($callback)*] $extra $($list)*
            (select, Select, $crate::SelectPoller, [(select_level, Level)])
        }
    };
}

#[cfg(not(evmux_select))]
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_select {
    ($($pass:tt)*) => { $crate::__evmux_list_uring! { $($pass)* } };
}

#[cfg(evmux_uring)]
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_uring {
    ([$($callback:tt)*] $extra:tt $($list:tt)*) => {
        $crate::__evmux_list_end! { [$($callback)*] $extra $($list)*
            (uring, Uring, $crate::UringPoller, [(uring_level, Level), (uring_edge, Edge)])
        }
    };
}

#[cfg(not(evmux_uring))]
#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_uring {
    ($($pass:tt)*) => { $crate::__evmux_list_end! { $($pass)* } };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_list_end {
    ([$($callback:tt)*] $extra:tt $($list:tt)*) => {
        $($callback)*! { $extra $($list)* }
    };
}

/// Expands `$callback!(name, Variant, PollerType);` once for every
/// backend this build of evmux has, in order of preference (epoll, poll,
/// select, uring): one place to write a per-backend test suite or
/// benchmark, and nothing to change when a backend is added.
///
/// `name` is the backend's lowercase name as an identifier (a module name),
/// `Variant` its [`Backend`](crate::Backend) variant, `PollerType` the
/// poller (`evmux::EpollPoller`, ...).
///
/// # Examples
///
/// ```
/// use evmux::Poller;
///
/// macro_rules! names {
///     ($name:ident, $variant:ident, $poller:ty) => {
///         assert_eq!(<$poller as Poller>::NAME, stringify!($name));
///         assert_eq!(evmux::Backend::$variant.name(), stringify!($name));
///     };
/// }
///
/// fn main() {
///     evmux::for_each_backend!(names);
/// }
/// ```
#[macro_export]
macro_rules! for_each_backend {
    ($callback:ident) => {
        $crate::__evmux_backends! { [$crate::__evmux_each_backend] {$callback} }
    };
}

/// Expands `$callback!(module, PollerType, evmux::Trigger::T);` once for
/// every backend this build has and every trigger the reactor runs on it
/// (level everywhere, edge on epoll and uring). `module` names the pair
/// (`select_level`, `epoll_edge`, ...), ready to be a test module's name.
///
/// # Examples
///
/// A test suite instantiated on every backend and trigger:
///
/// ```
/// use evmux::{Poller, Trigger};
///
/// fn starts<P: Poller>(trigger: Trigger) {
///     assert!(P::supports_trigger(trigger));
/// }
///
/// macro_rules! suite {
///     ($module:ident, $poller:ty, $trigger:expr) => {
///         mod $module {
///             pub fn run() {
///                 super::starts::<$poller>($trigger);
///             }
///         }
///         $module::run();
///     };
/// }
///
/// fn main() {
///     evmux::for_each_trigger!(suite);
/// }
/// ```
#[macro_export]
macro_rules! for_each_trigger {
    ($callback:ident) => {
        $crate::__evmux_backends! { [$crate::__evmux_each_trigger] {$callback} }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_each_backend {
    ({$callback:ident} $(($name:ident, $variant:ident, $poller:ty, [$($pair:tt),*]))*) => {
        $( $callback!($name, $variant, $poller); )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __evmux_each_trigger {
    ({$callback:ident} $(($name:ident, $variant:ident, $poller:ty, [$(($module:ident, $trigger:ident)),*]))*) => {
        $( $( $callback!($module, $poller, $crate::Trigger::$trigger); )* )*
    };
}
