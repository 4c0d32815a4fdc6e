//! One readiness round trip with N idle registered connections and one
//! active one: write 1 byte to the active pair, wait, read it back.
//!
//! Every contender watches the same socket pairs (one end of each pair
//! registered for readable interest), so fd numbers and kernel state are
//! identical across them. The active pair is created last: it has the
//! highest fd numbers and is registered last, the worst place for a
//! backend that walks its table after the wait (select, poll).
//!
//! Contenders, all in the group `idle_round_trip`, so one chart holds them:
//!
//! - `evmux-select`, `evmux-poll`, `evmux-epoll-level`, `evmux-epoll-edge`;
//! - the raw floors `raw-select`, `raw-poll`, `raw-epoll-level`,
//!   `raw-epoll-edge`: the system call straight through libc in the
//!   tightest loop we know how to write (select restores its fd_set from a
//!   master copy each turn, as a real server must, and finds the ready fd
//!   by scanning set words);
//! - the peers `mio-edge`, `polling-level`, `polling-edge`.
//!
//! select runs only while every fd fits below FD_SETSIZE and says where it
//! stops. RLIMIT_NOFILE's soft limit is raised to the hard one; an N the
//! limit cannot hold is skipped with a message.
//!
//! Run: `cargo bench --bench idle_connections`; chart and table:
//! `python3 benches/plot_idle.py`.

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use evmux::{EpollPoller, Events, Interest, PollPoller, Poller, SelectPoller, Token, Trigger};

/// The idle connection counts.
const SIZES: [usize; 6] = [0, 100, 500, 1000, 4000, 8000];
/// Events buffer for every contender that takes one.
const EVENTS: usize = 256;
/// fds a run needs besides the socket pairs (stdio, pollers, criterion).
const SPARE_FDS: u64 = 64;

/// N idle pairs and the active one, created once per N and shared.
struct Fixture {
    /// `(watched, peer)`: `watched` is registered, `peer` keeps it open.
    idle: Vec<(UnixStream, UnixStream)>,
    /// The active pair: the bench writes to `tx` and reads `rx`.
    tx: UnixStream,
    rx: UnixStream,
}

impl Fixture {
    fn new(n: usize) -> io::Result<Fixture> {
        let mut idle = Vec::with_capacity(n);
        for _ in 0..n {
            let (watched, peer) = UnixStream::pair()?;
            watched.set_nonblocking(true)?;
            idle.push((watched, peer));
        }
        let (tx, rx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        Ok(Fixture { idle, tx, rx })
    }

    /// The token of the active pair: after every idle one.
    fn active(&self) -> usize {
        self.idle.len()
    }

    /// The watched fds in registration order, the active one last.
    fn watched(&self) -> impl Iterator<Item = (usize, &UnixStream)> {
        let idle = self.idle.iter().map(|(w, _)| w);
        idle.chain(std::iter::once(&self.rx)).enumerate()
    }

    fn max_fd(&self) -> RawFd {
        let pairs = self.idle.iter().flat_map(|(a, b)| [a, b]);
        let all = pairs.chain([&self.tx, &self.rx]);
        all.map(AsRawFd::as_raw_fd).max().unwrap_or(-1)
    }

    /// Makes the active pair readable.
    fn poke(&self) {
        let n = (&self.tx).write(&[1]).expect("write to the active pair");
        assert_eq!(n, 1, "short write to the active pair");
    }

    /// Reads the byte back with one read, as an edge-triggered caller may:
    /// a short read means the socket is drained.
    fn drain(&self) {
        let mut buf = [0u8; 64];
        let n = (&self.rx)
            .read(&mut buf)
            .expect("read from the active pair");
        assert_eq!(n, 1, "expected the 1 byte written");
    }
}

/// Raises RLIMIT_NOFILE's soft limit to the hard one; returns the new soft
/// limit.
fn raise_fd_limit() -> io::Result<u64> {
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

type Group<'a> = BenchmarkGroup<'a, WallTime>;

fn bench_evmux<P: Poller>(g: &mut Group<'_>, fx: &Fixture, name: &str, trigger: Trigger) {
    let mut poller = P::new().expect("create poller");
    for (i, fd) in fx.watched() {
        poller
            .register(fd, Token(i), Interest::READABLE, trigger)
            .expect("register");
    }
    let mut events = Events::with_capacity(EVENTS);
    let active = Token(fx.active());
    g.bench_with_input(BenchmarkId::new(name, fx.active()), &(), |b, _| {
        b.iter(|| {
            fx.poke();
            poller.wait(&mut events, None).expect("wait");
            let first = events.iter().next().map(|e| e.token());
            assert!(events.len() == 1 && first == Some(active), "wrong events");
            fx.drain();
        })
    });
    for (_, fd) in fx.watched() {
        poller.deregister(fd).expect("deregister");
    }
}

fn bench_raw_epoll(g: &mut Group<'_>, fx: &Fixture, name: &str, edge: bool) {
    // SAFETY: epoll_create1 takes no pointers.
    let raw = evmux::cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).expect("epoll");
    // SAFETY: `raw` was just returned by epoll_create1 and is owned by no one.
    let epfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let flags = libc::EPOLLIN as u32 | if edge { libc::EPOLLET as u32 } else { 0 };
    for (i, fd) in fx.watched() {
        let mut ev = libc::epoll_event {
            events: flags,
            u64: i as u64,
        };
        // SAFETY: both fds are open for the call; `ev` is a valid event.
        let ret = unsafe { libc::epoll_ctl(raw, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
        evmux::cvt(ret).expect("epoll_ctl");
    }
    let mut buf = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let active = fx.active() as u64;
    g.bench_with_input(BenchmarkId::new(name, fx.active()), &(), |b, _| {
        b.iter(|| {
            fx.poke();
            // SAFETY: `epfd` is open; `buf` has room for EVENTS entries.
            let n =
                unsafe { libc::epoll_wait(epfd.as_raw_fd(), buf.as_mut_ptr(), EVENTS as i32, -1) };
            let data = buf[0].u64;
            assert!(n == 1 && data == active, "wrong events");
            fx.drain();
        })
    });
    drop(epfd);
}

fn bench_raw_poll(g: &mut Group<'_>, fx: &Fixture) {
    let mut fds: Vec<libc::pollfd> = fx
        .watched()
        .map(|(_, fd)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let active = fx.active();
    g.bench_with_input(BenchmarkId::new("raw-poll", active), &(), |b, _| {
        b.iter(|| {
            fx.poke();
            let len = fds.len() as libc::nfds_t;
            // SAFETY: `fds` holds `len` initialised pollfds for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), len, -1) };
            assert!(n == 1, "wrong events");
            let pos = fds.iter().position(|p| p.revents != 0);
            assert!(black_box(pos) == Some(active), "wrong events");
            fx.drain();
        })
    });
}

fn empty_fd_set() -> libc::fd_set {
    let mut set = MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO initialises the whole set through a valid pointer.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

/// The lowest fd set in `set` below `nfds`, scanning whole words.
fn first_set(set: &libc::fd_set, nfds: usize) -> Option<usize> {
    // SAFETY: fd_set is plain bits with no padding, FD_SETSIZE / 8 bytes
    // long and u64-aligned on Linux; we only read it.
    let words: &[u64] = unsafe {
        std::slice::from_raw_parts(
            (set as *const libc::fd_set).cast::<u64>(),
            std::mem::size_of::<libc::fd_set>() / 8,
        )
    };
    let used = nfds.div_ceil(64).min(words.len());
    let (i, w) = words[..used].iter().enumerate().find(|(_, w)| **w != 0)?;
    Some(i * 64 + w.trailing_zeros() as usize)
}

fn bench_raw_select(g: &mut Group<'_>, fx: &Fixture) {
    let mut master = empty_fd_set();
    let mut max_fd = -1;
    for (_, fd) in fx.watched() {
        let raw = fd.as_raw_fd();
        // SAFETY: the caller checked every fd is below FD_SETSIZE.
        unsafe { libc::FD_SET(raw, &mut master) };
        max_fd = max_fd.max(raw);
    }
    let want = fx.rx.as_raw_fd() as usize;
    let nfds = max_fd + 1;
    g.bench_with_input(BenchmarkId::new("raw-select", fx.active()), &(), |b, _| {
        b.iter(|| {
            fx.poke();
            let mut ready = master;
            // SAFETY: `ready` lives through the call and holds fds below nfds.
            let n = unsafe {
                libc::select(
                    nfds,
                    &mut ready,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            assert!(n == 1, "wrong events");
            let fd = first_set(&ready, nfds as usize);
            assert!(black_box(fd) == Some(want), "wrong events");
            fx.drain();
        })
    });
}

fn bench_mio(g: &mut Group<'_>, fx: &Fixture) {
    use mio::unix::SourceFd;
    let mut poll = mio::Poll::new().expect("mio poll");
    for (i, fd) in fx.watched() {
        let raw = fd.as_raw_fd();
        let token = mio::Token(i);
        poll.registry()
            .register(&mut SourceFd(&raw), token, mio::Interest::READABLE)
            .expect("mio register");
    }
    let mut events = mio::Events::with_capacity(EVENTS);
    let active = mio::Token(fx.active());
    g.bench_with_input(BenchmarkId::new("mio-edge", fx.active()), &(), |b, _| {
        b.iter(|| {
            fx.poke();
            poll.poll(&mut events, None).expect("mio poll");
            let mut it = events.iter();
            let first = it.next().map(|e| e.token());
            assert!(first == Some(active) && it.next().is_none(), "wrong events");
            fx.drain();
        })
    });
    for (_, fd) in fx.watched() {
        let raw = fd.as_raw_fd();
        poll.registry()
            .deregister(&mut SourceFd(&raw))
            .expect("mio deregister");
    }
}

fn bench_polling(g: &mut Group<'_>, fx: &Fixture, name: &str, mode: polling::PollMode) {
    let poller = polling::Poller::new().expect("polling poller");
    for (i, fd) in fx.watched() {
        // SAFETY: every fd is deleted below, before the fixture drops it.
        unsafe { poller.add_with_mode(fd, polling::Event::readable(i), mode) }
            .expect("polling add");
    }
    let cap = NonZeroUsize::new(EVENTS).expect("EVENTS > 0");
    let mut events = polling::Events::with_capacity(cap);
    let active = fx.active();
    g.bench_with_input(BenchmarkId::new(name, active), &(), |b, _| {
        b.iter(|| {
            fx.poke();
            events.clear();
            poller.wait(&mut events, None).expect("polling wait");
            let first = events.iter().next().map(|e| e.key);
            assert!(events.len() == 1 && first == Some(active), "wrong events");
            fx.drain();
        })
    });
    for (_, fd) in fx.watched() {
        poller.delete(fd.as_fd()).expect("polling delete");
    }
}

/// Every contender at one N.
fn bench_size(g: &mut Group<'_>, fx: &Fixture) {
    let n = fx.active();
    let max_fd = fx.max_fd();
    if usize::try_from(max_fd).is_ok_and(|fd| fd < libc::FD_SETSIZE) {
        bench_evmux::<SelectPoller>(g, fx, "evmux-select", Trigger::Level);
        bench_raw_select(g, fx);
    } else {
        eprintln!(
            "select stops before N={n}: its fds reach {max_fd}, FD_SETSIZE is {}",
            libc::FD_SETSIZE
        );
    }
    bench_evmux::<PollPoller>(g, fx, "evmux-poll", Trigger::Level);
    bench_raw_poll(g, fx);
    bench_evmux::<EpollPoller>(g, fx, "evmux-epoll-level", Trigger::Level);
    bench_raw_epoll(g, fx, "raw-epoll-level", false);
    bench_evmux::<EpollPoller>(g, fx, "evmux-epoll-edge", Trigger::Edge);
    bench_raw_epoll(g, fx, "raw-epoll-edge", true);
    bench_mio(g, fx);
    bench_polling(g, fx, "polling-level", polling::PollMode::Level);
    bench_polling(g, fx, "polling-edge", polling::PollMode::Edge);
}

fn idle_round_trip(c: &mut Criterion) {
    let limit = raise_fd_limit().expect("raise RLIMIT_NOFILE");
    let mut g = c.benchmark_group("idle_round_trip");
    for n in SIZES {
        let need = 2 * n as u64 + SPARE_FDS;
        if need > limit {
            eprintln!("skipping N={n}: needs about {need} fds, RLIMIT_NOFILE allows {limit}");
            continue;
        }
        let fx = Fixture::new(n).expect("create socket pairs");
        bench_size(&mut g, &fx);
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = idle_round_trip
}
criterion_main!(benches);
