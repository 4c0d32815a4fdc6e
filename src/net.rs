//! Stream sockets of either family, TCP or Unix-domain, and their
//! listeners, so the rest of the reactor is written once for both. A leaf
//! over `sys`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use crate::sys;

/// A connected stream socket, TCP or Unix-domain, as
/// [`Reactor::adopt`](crate::Reactor::adopt) takes it.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain stream connection.
    Unix(UnixStream),
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Stream {
    /// The peer's address; Unix-domain peers have none of this kind.
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.peer_addr(),
            Stream::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "peer_addr: a Unix-domain connection has no IP address",
            )),
        }
    }

    /// Turns Nagle's algorithm off (TCP only; a no-op on Unix sockets).
    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(true),
            Stream::Unix(_) => Ok(()),
        }
    }

    /// Is this a TCP connection?
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self, Stream::Tcp(_))
    }

    /// Makes an adopted stream fit for the loop: non-blocking and
    /// close-on-exec.
    pub(crate) fn prepare(&self) -> io::Result<()> {
        evmux_core::set_nonblocking(self.as_fd())?;
        sys::set_cloexec(self.as_fd())
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

/// A listening stream socket.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix-domain stream listener.
    Unix(UnixListener),
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

impl Listener {
    /// Accepts one connection of the listener's family, non-blocking and
    /// close-on-exec.
    pub(crate) fn accept(&self) -> io::Result<Stream> {
        let fd: OwnedFd = sys::accept(self.as_fd())?;
        Ok(match self {
            Listener::Tcp(_) => Stream::Tcp(TcpStream::from(fd)),
            Listener::Unix(_) => Stream::Unix(UnixStream::from(fd)),
        })
    }

    /// The TCP address it listens on (`None` for a Unix-domain listener).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }

    /// Makes a listener fit for the loop: non-blocking and close-on-exec.
    pub(crate) fn prepare(&self) -> io::Result<()> {
        evmux_core::set_nonblocking(self.as_fd())?;
        sys::set_cloexec(self.as_fd())
    }
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Listener {
        Listener::Tcp(l)
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Listener {
        Listener::Unix(l)
    }
}

/// The longest socket path the platform takes (`sun_path` less its NUL).
pub(crate) fn max_unix_path() -> usize {
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_path.len() - 1
}

/// Refuses a socket path the kernel cannot take, naming the limit.
pub(crate) fn check_unix_path(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let len = path.as_os_str().as_bytes().len();
    let max = max_unix_path();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unix socket path {} is {len} bytes; the limit (sun_path) is {max}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Removes a socket file that no server listens on any more (connecting
/// to it is refused), so the path can be bound again. Leaves a live
/// socket and any other kind of file alone, and says so.
pub(crate) fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let in_use = |why: String| Err(io::Error::new(io::ErrorKind::AddrInUse, why));
    if !meta.file_type().is_socket() {
        return in_use(format!(
            "{} exists and is not a socket; not removing it",
            path.display()
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => in_use(format!("a server is listening on {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("removing stale socket {}", path.display());
            std::fs::remove_file(path)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("checking {} for a live server: {e}", path.display()),
        )),
    }
}
