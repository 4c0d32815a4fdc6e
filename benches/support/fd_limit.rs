//! Shared by the benches and `examples/loadgen.rs` (included with `#[path]`):
//! many idle connections need more fds than the default soft limit.

use std::io;

/// Raises RLIMIT_NOFILE's soft limit to the hard one; returns it.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    evmux::cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit; raising soft up to hard is allowed.
    evmux::cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(lim.rlim_cur)
}
