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
#[non_exhaustive]
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
#[non_exhaustive]
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

/// Where to connect: a TCP address or a Unix-domain socket path.
///
/// Parses from `HOST:PORT` with a numeric host (`127.0.0.1:6379`,
/// `[::1]:80`) or `unix:/path`; names are not resolved (a lookup would
/// block the loop: resolve before, and pass the address).
///
/// ```
/// use evmux::Endpoint;
///
/// let tcp: Endpoint = "127.0.0.1:6379".parse()?;
/// assert_eq!(tcp, Endpoint::Tcp("127.0.0.1:6379".parse().unwrap()));
/// let unix: Endpoint = "unix:/run/app.sock".parse()?;
/// assert_eq!(unix.to_string(), "unix:/run/app.sock");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain socket path.
    Unix(std::path::PathBuf),
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::Tcp(addr)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = io::Error;

    /// # Errors
    ///
    /// `InvalidInput` naming the two forms, for anything else.
    fn from_str(text: &str) -> io::Result<Endpoint> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.is_empty() {
                return Ok(Endpoint::Unix(path.into()));
            }
        }
        text.parse::<SocketAddr>().map(Endpoint::Tcp).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{text:?}: expected HOST:PORT with a numeric host (127.0.0.1:7878) or unix:/path"),
            )
        })
    }
}

impl Endpoint {
    /// Opens a non-blocking, close-on-exec socket and starts connecting;
    /// the connection completes (or fails) later, when the socket turns
    /// writable.
    pub(crate) fn start_connect(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Tcp(addr) => {
                let (storage, len) = sockaddr_of(addr);
                let domain = storage.ss_family as libc::c_int;
                let fd = sys::stream_socket(domain)?;
                let ptr = (&storage as *const libc::sockaddr_storage).cast();
                // SAFETY: `storage` holds a socket address of `len` bytes.
                unsafe { sys::connect(fd.as_fd(), ptr, len)? };
                Ok(Stream::Tcp(TcpStream::from(fd)))
            }
            Endpoint::Unix(path) => {
                let (addr, len) = sockaddr_un(path)?;
                let fd = sys::stream_socket(libc::AF_UNIX)?;
                let ptr = (&addr as *const libc::sockaddr_un).cast();
                // SAFETY: `addr` holds a socket address of `len` bytes.
                unsafe { sys::connect(fd.as_fd(), ptr, len)? };
                Ok(Stream::Unix(UnixStream::from(fd)))
            }
        }
    }
}

/// `addr` as the C socket address the kernel takes, and its length.
fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in, so the cast view stays inside `storage`.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// `path` as a Unix-domain socket address, and its length.
fn sockaddr_un(path: &std::path::Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    check_unix_path(path)?;
    // SAFETY: sockaddr_un is plain old data; all zeroes is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let base = std::mem::size_of::<libc::sa_family_t>();
    Ok((addr, (base + bytes.len() + 1) as libc::socklen_t))
}
