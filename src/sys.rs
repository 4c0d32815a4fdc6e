//! The socket calls the reactor makes, each libc call wrapped once. A
//! leaf: it works on fds and knows nothing of the reactor.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use evmux_core::cvt;

/// Accepts one connection, non-blocking and close-on-exec from the start.
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = accept_raw(listener.as_raw_fd())?;
    // SAFETY: `fd` was just returned by accept and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
fn accept_raw(listener: libc::c_int) -> io::Result<libc::c_int> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: null address pointers are allowed and mean "don't report".
    cvt(unsafe { libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), flags) })
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
fn accept_raw(listener: libc::c_int) -> io::Result<libc::c_int> {
    // No accept4 here: set the flags right after (a fork in between could
    // leak the fd into a child; this platform leaves no better way).
    // SAFETY: null address pointers are allowed and mean "don't report".
    let fd = cvt(unsafe { libc::accept(listener, std::ptr::null_mut(), std::ptr::null_mut()) })?;
    // SAFETY: `fd` was just returned by accept and is owned by no one else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    evmux_core::set_nonblocking(std::os::fd::AsFd::as_fd(&owned))?;
    // SAFETY: `fd` is open; FD_CLOEXEC is a valid flag.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(std::os::fd::IntoRawFd::into_raw_fd(owned))
}

/// Sets the listen backlog (`listen` on a listening socket updates it).
pub(crate) fn set_backlog(listener: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: `listen` only reads its arguments; on an fd that is not a
    // bound socket it fails.
    cvt(unsafe { libc::listen(listener.as_raw_fd(), backlog) })?;
    Ok(())
}

/// Sets close-on-exec on an fd the reactor was handed (adopted or
/// inherited), which may have been opened without it.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFD and F_SETFD only read and set the fd's flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    if flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above; the new flags keep the old ones.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    }
    Ok(())
}

/// Reads into uninitialised spare room; returns how many bytes arrived.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole
    // call; the kernel writes at most that many and returns how many.
    let n = cvt(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) })?;
    Ok(n as usize)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = 0;

/// Writes without raising SIGPIPE when the peer has gone.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call.
    let n = cvt(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), SEND_FLAGS) })?;
    Ok(n as usize)
}

/// Shuts the writing side down: the peer reads EOF once it has the rest.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown takes no pointers; `fd` is an open socket.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) })?;
    Ok(())
}

/// Takes the socket's pending error (`SO_ERROR`), if any.
pub(crate) fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for writes and `len` holds the size
    // of `err`, as getsockopt requires for SO_ERROR.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// Opens the spare fd kept for accept-and-close when fds run out.
pub(crate) fn open_reserve() -> io::Result<OwnedFd> {
    let path = b"/dev/null\0";
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = cvt(unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by open and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// True for the errors that mean "the process or system is out of fds".
pub(crate) fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// True for the errors that mean "the peer reset or is gone".
pub(crate) fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Bytes the kernel holds for the peer: not yet sent, or sent and not yet
/// acknowledged (`SIOCOUTQ`). `None` where the platform cannot tell.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn unacked_bytes(fd: BorrowedFd<'_>) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on sockets) writes one int through the
    // pointer, which is valid for writes for the whole call.
    let ret = cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) });
    ret.ok().map(|_| n.max(0) as u32)
}

/// Bytes the kernel holds for the peer: not known on this platform.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn unacked_bytes(_fd: BorrowedFd<'_>) -> Option<u32> {
    None
}

/// Turns TCP keepalive on: the first probe after `idle`, then one every
/// third of it (at least a second), three unanswered probes reset.
pub(crate) fn set_keepalive(fd: BorrowedFd<'_>, idle: std::time::Duration) -> io::Result<()> {
    let secs = idle.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs)?;
        setsockopt_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            (secs / 3).max(1),
        )?;
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3)?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let _ = secs; // the system's keepalive timing applies
    Ok(())
}

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a valid int of `len` bytes that outlives the call;
    // the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            len,
        )
    })?;
    Ok(())
}

/// A new stream socket of `domain` (`AF_INET`, `AF_INET6`, `AF_UNIX`),
/// non-blocking and close-on-exec from the start.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
pub(crate) fn stream_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket(2) takes plain integers; a valid fd is returned or -1.
    let fd = cvt(unsafe { libc::socket(domain, ty, 0) })?;
    // SAFETY: `fd` was just returned by socket and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new stream socket of `domain`, non-blocking and close-on-exec.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
pub(crate) fn stream_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes plain integers; a valid fd is returned or -1.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) })?;
    // SAFETY: `fd` was just returned by socket and is owned by no one else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    evmux_core::set_nonblocking(std::os::fd::AsFd::as_fd(&owned))?;
    set_cloexec(std::os::fd::AsFd::as_fd(&owned))?;
    Ok(owned)
}

/// Starts connecting `fd` to the address in `addr` (`len` bytes of it).
/// `Ok` means connected or in progress (`EINPROGRESS`): the socket turns
/// writable when it is done, with the outcome in `SO_ERROR`.
///
/// # Safety
///
/// `addr` must point to a socket address of at least `len` bytes.
pub(crate) unsafe fn connect(
    fd: BorrowedFd<'_>,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> io::Result<()> {
    // SAFETY: the caller guarantees `addr` covers `len` bytes.
    match cvt(unsafe { libc::connect(fd.as_raw_fd(), addr, len) }) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(e),
    }
}

/// An int socket option at `SOL_SOCKET` level (`getsockopt`).
pub(crate) fn socket_option(fd: BorrowedFd<'_>, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` holds the
    // size of `value`, as getsockopt requires.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// The address family of a socket (`AF_INET`, `AF_UNIX`...).
pub(crate) fn socket_family(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` has room for any socket address and `len` says so.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    Ok(addr.ss_family as libc::c_int)
}
