//! The cost of register + modify + deregister of one fd, per backend, with
//! N others already registered (N in 100, 1000, 8000).
//!
//! The N fds are unbound Unix datagram sockets: one fd each, never
//! readable, so N of them fit below FD_SETSIZE for select at N = 1000.
//! The probe is created last (the highest fd), so select's deregister has
//! to find the next highest fd, and poll's swap-remove takes the last
//! slot. `raw-epoll` is the floor: the three `epoll_ctl` calls alone.
//! `uring` only queues its four ring entries (poll add; remove and add;
//! remove), submitted when the ring fills; `uring+wait0` adds a zero
//! `wait` per iteration, the one `io_uring_enter` a loop turn pays.
//!
//! Run: `cargo bench --bench registration`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use evmux::{AnyPoller, Events, Interest, Poller, Token, Trigger, UringPoller};

#[path = "support/fd_limit.rs"]
mod fd_limit;
use fd_limit::raise_fd_limit;

/// How many fds are registered before the probe.
const SIZES: [usize; 3] = [100, 1000, 8000];
/// fds a run needs besides the sockets (stdio, pollers, criterion).
const SPARE_FDS: u64 = 64;

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// N registered sockets and the probe that comes and goes.
struct Fixture {
    others: Vec<UnixDatagram>,
    probe: UnixDatagram,
}

impl Fixture {
    fn new(n: usize) -> io::Result<Fixture> {
        let others = (0..n)
            .map(|_| UnixDatagram::unbound())
            .collect::<io::Result<Vec<_>>>()?;
        let probe = UnixDatagram::unbound()?;
        Ok(Fixture { others, probe })
    }

    fn probe_fits_select(&self) -> bool {
        usize::try_from(self.probe.as_raw_fd()).is_ok_and(|fd| fd < libc::FD_SETSIZE)
    }
}

fn bench_evmux<P: Poller>(g: &mut Group<'_>, fx: &Fixture) {
    if P::fd_capacity().is_some() && !fx.probe_fits_select() {
        let fd = fx.probe.as_raw_fd();
        return eprintln!(
            "{} stops before N={}: fd {fd} is past its capacity",
            P::NAME,
            fx.others.len()
        );
    }
    bench_evmux_named::<P>(g, fx, P::NAME);
}

fn bench_evmux_named<P: Poller>(g: &mut Group<'_>, fx: &Fixture, name: &str) {
    let mut poller = P::new().expect("create poller");
    for (i, fd) in fx.others.iter().enumerate() {
        poller
            .register(fd, Token(i), Interest::READABLE, Trigger::Level)
            .expect("register");
    }
    let token = Token(fx.others.len());
    let both = Interest::READABLE | Interest::WRITABLE;
    let id = BenchmarkId::new(name, fx.others.len());
    g.bench_with_input(id, &(), |b, _| {
        b.iter(|| {
            let probe = &fx.probe;
            let level = Trigger::Level;
            poller
                .register(probe, token, Interest::READABLE, level)
                .expect("register");
            poller.modify(probe, token, both, level).expect("modify");
            poller.deregister(probe).expect("deregister");
        })
    });
}

/// AnyPoller with epoll picked at run time: the cost of the choice.
fn bench_any(g: &mut Group<'_>, fx: &Fixture) {
    std::env::set_var(evmux::BACKEND_ENV, "epoll");
    bench_evmux_named::<AnyPoller>(g, fx, "any-epoll");
}

/// uring's register + modify + deregister, then a zero wait: the whole
/// cost of one loop turn that makes these three changes.
fn bench_uring_with_wait(g: &mut Group<'_>, fx: &Fixture) {
    let mut poller = UringPoller::new().expect("create poller");
    for (i, fd) in fx.others.iter().enumerate() {
        poller
            .register(fd, Token(i), Interest::READABLE, Trigger::Level)
            .expect("register");
    }
    let token = Token(fx.others.len());
    let both = Interest::READABLE | Interest::WRITABLE;
    let mut events = Events::with_capacity(64);
    let id = BenchmarkId::new("uring+wait0", fx.others.len());
    g.bench_with_input(id, &(), |b, _| {
        b.iter(|| {
            let probe = &fx.probe;
            let level = Trigger::Level;
            poller
                .register(probe, token, Interest::READABLE, level)
                .expect("register");
            poller.modify(probe, token, both, level).expect("modify");
            poller.deregister(probe).expect("deregister");
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait");
        })
    });
}

fn epoll_ctl(epfd: &OwnedFd, op: libc::c_int, fd: &UnixDatagram, flags: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: flags,
        u64: 1,
    };
    // SAFETY: both fds are open for the call; `ev` is a valid event.
    let ret = unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) };
    evmux::cvt(ret).map(drop)
}

fn bench_raw_epoll(g: &mut Group<'_>, fx: &Fixture) {
    // SAFETY: epoll_create1 takes no pointers.
    let raw = evmux::cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).expect("epoll");
    // SAFETY: `raw` was just returned by epoll_create1 and is owned by no one.
    let epfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let read = libc::EPOLLIN as u32;
    for fd in &fx.others {
        epoll_ctl(&epfd, libc::EPOLL_CTL_ADD, fd, read).expect("epoll_ctl");
    }
    let both = read | libc::EPOLLOUT as u32;
    let id = BenchmarkId::new("raw-epoll", fx.others.len());
    g.bench_with_input(id, &(), |b, _| {
        b.iter(|| {
            epoll_ctl(&epfd, libc::EPOLL_CTL_ADD, &fx.probe, read).expect("add");
            epoll_ctl(&epfd, libc::EPOLL_CTL_MOD, &fx.probe, both).expect("mod");
            epoll_ctl(&epfd, libc::EPOLL_CTL_DEL, &fx.probe, 0).expect("del");
        })
    });
}

fn registration(c: &mut Criterion) {
    let limit = raise_fd_limit().expect("raise RLIMIT_NOFILE");
    let mut g = c.benchmark_group("register_modify_deregister");
    for n in SIZES {
        let need = n as u64 + SPARE_FDS;
        if need > limit {
            eprintln!("skipping N={n}: needs about {need} fds, RLIMIT_NOFILE allows {limit}");
            continue;
        }
        let fx = Fixture::new(n).expect("create sockets");
        macro_rules! each {
            ($name:ident, $variant:ident, $poller:ty) => {
                bench_evmux::<$poller>(&mut g, &fx);
            };
        }
        evmux::for_each_backend!(each);
        bench_raw_epoll(&mut g, &fx);
        bench_any(&mut g, &fx);
        bench_uring_with_wait(&mut g, &fx);
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
    targets = registration
}
criterion_main!(benches);
