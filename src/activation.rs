//! Listeners passed by a supervisor (socket activation, the protocol of
//! systemd's `sd_listen_fds(3)`): fds from 3 on, counted by `LISTEN_FDS`,
//! meant for the process `LISTEN_PID` names, named by `LISTEN_FDNAMES`.
//! A leaf over `net` and `sys`.

use std::env;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use crate::net::Listener;
use crate::sys;

/// The first fd a supervisor passes.
const FIRST_FD: RawFd = 3;

/// Takes the listening sockets a supervisor passed to this process, with
/// their names (`LISTEN_FDNAMES`, or `"unknown"` as systemd says when
/// unnamed), in fd order from fd 3. Hand each to
/// [`Reactor::listen_on`](crate::Reactor::listen_on).
///
/// Returns none when `LISTEN_PID` is unset or names another process (the
/// variables were meant for a parent, and are left alone then). Otherwise
/// the variables are removed, so children do not take the fds too, and
/// each fd is set close-on-exec. Call it once, early, before other
/// threads read the environment.
///
/// # Errors
///
/// `InvalidInput` when `LISTEN_FDS` is not a number, or an fd passed is
/// not a listening stream socket (the message names the fd); the fds
/// taken so far are closed then.
///
/// # Examples
///
/// ```
/// use evmux::{codec::Lines, inherited_listeners, Config, DefaultPoller, Reactor};
///
/// let mut reactor = Reactor::<DefaultPoller, _>::new(Lines::new(), Config::default())?;
/// let passed = inherited_listeners()?;
/// if passed.is_empty() {
///     reactor.listen("127.0.0.1:0")?; // not socket-activated: bind our own
/// }
/// for (name, listener) in passed {
///     println!("listening on a socket named {name}");
///     reactor.listen_on(listener)?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn inherited_listeners() -> io::Result<Vec<(String, Listener)>> {
    let for_us = env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    if !for_us {
        return Ok(Vec::new());
    }
    let count = env::var("LISTEN_FDS").unwrap_or_default();
    let names = env::var("LISTEN_FDNAMES").unwrap_or_default();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        env::remove_var(var);
    }
    let count: RawFd = count.trim().parse().map_err(|_| {
        let why = format!("LISTEN_FDS={count:?} is not a count of fds");
        io::Error::new(io::ErrorKind::InvalidInput, why)
    })?;
    let mut names = names.split(':').map(str::to_owned);
    let mut listeners = Vec::new();
    for fd in FIRST_FD..FIRST_FD.saturating_add(count.max(0)) {
        let name = names.next().filter(|n| !n.is_empty());
        listeners.push((name.unwrap_or_else(|| "unknown".into()), take(fd)?));
    }
    Ok(listeners)
}

/// Takes ownership of passed fd `fd`, checking it is a listening stream
/// socket, and wraps it by family.
fn take(fd: RawFd) -> io::Result<Listener> {
    // SAFETY: the supervisor passed `fd` to this process for it to own
    // (the protocol says so, and LISTEN_PID named us); F_GETFD checks it
    // is open first, so no closed number is wrapped.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    if !open {
        return Err(not_a_listener(fd, "it is not open"));
    }
    // SAFETY: as above: `fd` is open and ours by the protocol.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    sys::set_cloexec(owned.as_fd())?;
    let accepting = sys::socket_option(owned.as_fd(), libc::SO_ACCEPTCONN);
    if accepting.ok() != Some(1) {
        return Err(not_a_listener(fd, "it is not a listening socket"));
    }
    if sys::socket_option(owned.as_fd(), libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(not_a_listener(fd, "it is not a stream socket"));
    }
    Ok(match sys::socket_family(owned.as_fd())? {
        libc::AF_UNIX => Listener::Unix(UnixListener::from(owned)),
        libc::AF_INET | libc::AF_INET6 => Listener::Tcp(TcpListener::from(owned)),
        other => {
            return Err(not_a_listener(
                fd,
                &format!("its address family is {other}"),
            ))
        }
    })
}

fn not_a_listener(fd: RawFd, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("socket activation: fd {fd} was passed as a listener, but {why}"),
    )
}
