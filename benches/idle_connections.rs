//! One readiness round trip with N idle registered connections and one
//! active one: write 1 byte to the active pair, wait, read it back.
//!
//! Every contender watches the same socket pairs (one end of each pair
//! registered for readable interest), so fd numbers and kernel state are
//! identical across them. The active pair is created last: it has the
//! highest fd numbers and is registered last. For select and poll that is
//! the case of a server that blocks before the data comes: the kernel
//! hooks a wait-queue entry onto every fd it scans before it finds a ready
//! one, so here onto all N, and the backend then walks its whole table.
//!
//! Contenders, all in the group `idle_round_trip`, so one chart holds them:
//!
//! - `evmux-select`, `evmux-poll`, `evmux-epoll-level`, `evmux-epoll-edge`,
//!   `evmux-uring-level`, `evmux-uring-edge`, `evmux-uring-oneshot` (which
//!   re-arms with `modify` after every event);
//! - the raw floors `raw-select`, `raw-poll`, `raw-epoll-level`,
//!   `raw-epoll-edge`, `raw-uring-level` (a oneshot `IORING_OP_POLL_ADD`
//!   re-armed after each completion, submitted with the next wait) and
//!   `raw-uring-edge` (one multishot poll per fd, `submit_and_wait(1)`):
//!   the system call straight through libc (or the io-uring crate) in the
//!   tightest loop we know how to write (select restores its fd_set from a
//!   master copy each turn, as a real server must, and finds the ready fd
//!   by scanning set words);
//! - the peers `mio-edge`, `polling-level`, `polling-edge`;
//! - `any-epoll-level`, `any-epoll-edge`: [`evmux::AnyPoller`] with epoll
//!   picked at run time (this bench sets `EVMUX_BACKEND=epoll`), against
//!   `evmux-epoll-*`: the cost of choosing the backend at run time.
//!
//! select runs only while every fd fits below FD_SETSIZE and says where it
//! stops. RLIMIT_NOFILE's soft limit is raised to the hard one; an N the
//! limit cannot hold is skipped with a message.
//!
//! Run: `cargo bench --bench idle_connections`; chart and table:
//! `python3 benches/plot_idle.py`.
//!
//! On a busy machine, criterion's back-to-back runs drift with the load.
//! `EVMUX_INTERLEAVED=21 cargo bench --bench idle_connections` skips
//! criterion and instead runs every contender in short blocks, in turn,
//! for 21 rounds per N, and reports the median block: a steadier ratio
//! between contenders (`python3 benches/plot_idle.py --tsv
//! target/idle_interleaved.tsv`). `EVMUX_ONLY=epoll,any` keeps only the
//! contenders whose names contain one of the comma-separated words.

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion};
use evmux::{
    AnyPoller, EpollPoller, Events, Interest, PollPoller, Poller, SelectPoller, Token, Trigger,
    UringPoller,
};
use mio::unix::SourceFd;

#[path = "support/fd_limit.rs"]
mod fd_limit;
use fd_limit::raise_fd_limit;

/// The idle connection counts.
const SIZES: [usize; 6] = [0, 100, 500, 1000, 4000, 8000];
/// Events buffer for every contender that takes one.
const EVENTS: usize = 256;
/// fds a run needs besides the socket pairs (stdio, pollers, criterion).
const SPARE_FDS: u64 = 64;
/// Interleaved mode: round trips before each timed block.
const WARM_ITERS: u64 = 20;
/// Interleaved mode: the length of one timed block.
const BLOCK: Duration = Duration::from_millis(20);

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

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Level or edge (or oneshot, re-armed each time), for the contenders
/// that offer them.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Level,
    Edge,
    Oneshot,
}

/// One way of doing the round trip over a fixture.
trait Contender: Sized {
    /// Registers every watched fd of `fx`.
    fn start(fx: &Fixture, mode: Mode) -> Self;
    /// One round trip: poke, wait, check what came back, drain.
    fn round_trip(&mut self, fx: &Fixture);
    /// Deregisters every watched fd, so the next contender's kernel state
    /// is the same as this one's was.
    fn stop(self, fx: &Fixture);
}

struct Evmux<P> {
    poller: P,
    events: Events,
    active: Token,
    /// Oneshot: re-arm the active fd after each event.
    rearm: bool,
}

impl<P: Poller> Contender for Evmux<P> {
    fn start(fx: &Fixture, mode: Mode) -> Self {
        let trigger = match mode {
            Mode::Level => Trigger::Level,
            Mode::Edge => Trigger::Edge,
            Mode::Oneshot => Trigger::Oneshot,
        };
        let mut poller = P::new().expect("create poller");
        for (i, fd) in fx.watched() {
            poller
                .register(fd, Token(i), Interest::READABLE, trigger)
                .expect("register");
        }
        let events = Events::with_capacity(EVENTS);
        let active = Token(fx.active());
        Evmux {
            poller,
            events,
            active,
            rearm: matches!(mode, Mode::Oneshot),
        }
    }

    fn round_trip(&mut self, fx: &Fixture) {
        fx.poke();
        self.poller.wait(&mut self.events, None).expect("wait");
        let first = self.events.iter().next().map(|e| e.token());
        assert!(
            self.events.len() == 1 && first == Some(self.active),
            "wrong events"
        );
        fx.drain();
        if self.rearm {
            let (token, read) = (self.active, Interest::READABLE);
            self.poller
                .modify(&fx.rx, token, read, Trigger::Oneshot)
                .expect("re-arm");
        }
    }

    fn stop(mut self, fx: &Fixture) {
        for (_, fd) in fx.watched() {
            self.poller.deregister(fd).expect("deregister");
        }
    }
}

struct RawEpoll {
    epfd: OwnedFd,
    buf: [libc::epoll_event; EVENTS],
    active: u64,
}

impl Contender for RawEpoll {
    fn start(fx: &Fixture, mode: Mode) -> Self {
        // SAFETY: epoll_create1 takes no pointers.
        let raw = evmux::cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).expect("epoll");
        // SAFETY: `raw` was just returned by epoll_create1 and is owned by no one.
        let epfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let edge = matches!(mode, Mode::Edge);
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
        let buf = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let active = fx.active() as u64;
        RawEpoll { epfd, buf, active }
    }

    fn round_trip(&mut self, fx: &Fixture) {
        fx.poke();
        let fd = self.epfd.as_raw_fd();
        // SAFETY: `epfd` is open; `buf` has room for EVENTS entries.
        let n = unsafe { libc::epoll_wait(fd, self.buf.as_mut_ptr(), EVENTS as i32, -1) };
        let data = self.buf[0].u64;
        assert!(n == 1 && data == self.active, "wrong events");
        fx.drain();
    }

    fn stop(self, _: &Fixture) {
        // Closing the epoll fd drops every registration.
        drop(self.epfd);
    }
}

/// The io_uring floor: the io-uring crate's ring, one poll request per
/// watched fd, completions read straight off the ring.
struct RawUring {
    ring: io_uring::IoUring,
    multishot: bool,
    active: u64,
    active_fd: RawFd,
}

impl RawUring {
    fn poll_add(&mut self, fd: RawFd, data: u64) {
        let entry = io_uring::opcode::PollAdd::new(io_uring::types::Fd(fd), libc::POLLIN as u32)
            .multi(self.multishot)
            .build()
            .user_data(data);
        // SAFETY: a poll add points at no memory; the kernel reads the
        // entry, which push copies into the ring.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.ring.submit().expect("io_uring submit");
        }
    }
}

impl Contender for RawUring {
    fn start(fx: &Fixture, mode: Mode) -> Self {
        let ring = io_uring::IoUring::builder()
            .setup_cqsize(8192)
            .build(1024)
            .expect("io_uring_setup");
        let mut raw = RawUring {
            ring,
            multishot: matches!(mode, Mode::Edge),
            active: fx.active() as u64,
            active_fd: fx.rx.as_raw_fd(),
        };
        for (i, fd) in fx.watched() {
            raw.poll_add(fd.as_raw_fd(), i as u64);
        }
        raw.ring.submit().expect("io_uring submit");
        raw
    }

    fn round_trip(&mut self, fx: &Fixture) {
        fx.poke();
        // Submits the re-arm queued last time and waits, in one enter.
        self.ring.submit_and_wait(1).expect("io_uring_enter");
        let mut cq = self.ring.completion();
        let first = cq.next().map(|c| c.user_data());
        assert!(
            first == Some(self.active) && cq.next().is_none(),
            "wrong events"
        );
        drop(cq);
        fx.drain();
        if !self.multishot {
            self.poll_add(self.active_fd, self.active);
        }
    }

    fn stop(self, _: &Fixture) {
        // Closing the ring cancels every request.
        drop(self.ring);
    }
}

struct RawPoll {
    fds: Vec<libc::pollfd>,
    active: usize,
}

impl Contender for RawPoll {
    fn start(fx: &Fixture, _: Mode) -> Self {
        let fds = fx
            .watched()
            .map(|(_, fd)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let active = fx.active();
        RawPoll { fds, active }
    }

    fn round_trip(&mut self, fx: &Fixture) {
        fx.poke();
        let len = self.fds.len() as libc::nfds_t;
        // SAFETY: `fds` holds `len` initialised pollfds for the call.
        let n = unsafe { libc::poll(self.fds.as_mut_ptr(), len, -1) };
        assert!(n == 1, "wrong events");
        let pos = self.fds.iter().position(|p| p.revents != 0);
        assert!(black_box(pos) == Some(self.active), "wrong events");
        fx.drain();
    }

    fn stop(self, _: &Fixture) {}
}

struct RawSelect {
    master: libc::fd_set,
    nfds: libc::c_int,
    want: usize,
}

impl Contender for RawSelect {
    fn start(fx: &Fixture, _: Mode) -> Self {
        let mut master = empty_fd_set();
        let mut max_fd = -1;
        for (_, fd) in fx.watched() {
            let raw = fd.as_raw_fd();
            assert!(fits_select(raw), "fd {raw} is past FD_SETSIZE");
            // SAFETY: `raw` is below FD_SETSIZE (checked above).
            unsafe { libc::FD_SET(raw, &mut master) };
            max_fd = max_fd.max(raw);
        }
        let want = fx.rx.as_raw_fd() as usize;
        RawSelect {
            master,
            nfds: max_fd + 1,
            want,
        }
    }

    fn round_trip(&mut self, fx: &Fixture) {
        fx.poke();
        // select overwrites its set: restore it from the master copy.
        let mut ready = self.master;
        let null = ptr::null_mut();
        // SAFETY: `ready` lives through the call and holds fds below nfds.
        let n = unsafe { libc::select(self.nfds, &mut ready, null, null, ptr::null_mut()) };
        assert!(n == 1, "wrong events");
        let fd = first_set(&ready, self.nfds as usize);
        assert!(black_box(fd) == Some(self.want), "wrong events");
        fx.drain();
    }

    fn stop(self, _: &Fixture) {}
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

fn fits_select(fd: RawFd) -> bool {
    usize::try_from(fd).is_ok_and(|fd| fd < libc::FD_SETSIZE)
}

struct Mio {
    poll: mio::Poll,
    events: mio::Events,
    active: mio::Token,
}

impl Contender for Mio {
    fn start(fx: &Fixture, _: Mode) -> Self {
        let poll = mio::Poll::new().expect("mio poll");
        for (i, fd) in fx.watched() {
            let raw = fd.as_raw_fd();
            poll.registry()
                .register(&mut SourceFd(&raw), mio::Token(i), mio::Interest::READABLE)
                .expect("mio register");
        }
        let events = mio::Events::with_capacity(EVENTS);
        let active = mio::Token(fx.active());
        Mio {
            poll,
            events,
            active,
        }
    }

    fn round_trip(&mut self, fx: &Fixture) {
        fx.poke();
        self.poll.poll(&mut self.events, None).expect("mio poll");
        let mut it = self.events.iter();
        let first = it.next().map(|e| e.token());
        assert!(
            first == Some(self.active) && it.next().is_none(),
            "wrong events"
        );
        fx.drain();
    }

    fn stop(self, fx: &Fixture) {
        for (_, fd) in fx.watched() {
            let raw = fd.as_raw_fd();
            self.poll
                .registry()
                .deregister(&mut SourceFd(&raw))
                .expect("mio deregister");
        }
    }
}

struct Polling {
    poller: polling::Poller,
    events: polling::Events,
    active: usize,
}

impl Contender for Polling {
    fn start(fx: &Fixture, mode: Mode) -> Self {
        let mode = match mode {
            Mode::Level => polling::PollMode::Level,
            Mode::Edge => polling::PollMode::Edge,
            Mode::Oneshot => polling::PollMode::Oneshot,
        };
        let poller = polling::Poller::new().expect("polling poller");
        for (i, fd) in fx.watched() {
            // SAFETY: `stop` deletes every fd before the fixture drops it.
            unsafe { poller.add_with_mode(fd, polling::Event::readable(i), mode) }
                .expect("polling add");
        }
        let cap = NonZeroUsize::new(EVENTS).expect("EVENTS > 0");
        let events = polling::Events::with_capacity(cap);
        let active = fx.active();
        Polling {
            poller,
            events,
            active,
        }
    }

    fn round_trip(&mut self, fx: &Fixture) {
        fx.poke();
        self.events.clear();
        self.poller
            .wait(&mut self.events, None)
            .expect("polling wait");
        let first = self.events.iter().next().map(|e| e.key);
        assert!(
            self.events.len() == 1 && first == Some(self.active),
            "wrong events"
        );
        fx.drain();
    }

    fn stop(self, fx: &Fixture) {
        for (_, fd) in fx.watched() {
            self.poller.delete(fd.as_fd()).expect("polling delete");
        }
    }
}

/// A contender with its name and settings, as both modes run it.
struct Entry {
    name: &'static str,
    mode: Mode,
    /// Runs only while every fd is below FD_SETSIZE.
    select: bool,
    bench: fn(&mut Group<'_>, &Fixture, &Entry),
    block: fn(&Fixture, &Entry, u64) -> Duration,
}

fn entry<C: Contender>(name: &'static str, mode: Mode, select: bool) -> Entry {
    Entry {
        name,
        mode,
        select,
        bench: bench::<C>,
        block: block::<C>,
    }
}

/// Every contender, in the order criterion runs them.
fn contenders() -> Vec<Entry> {
    use Mode::{Edge, Level, Oneshot};
    vec![
        entry::<Evmux<SelectPoller>>("evmux-select", Level, true),
        entry::<RawSelect>("raw-select", Level, true),
        entry::<Evmux<PollPoller>>("evmux-poll", Level, false),
        entry::<RawPoll>("raw-poll", Level, false),
        entry::<Evmux<EpollPoller>>("evmux-epoll-level", Level, false),
        entry::<RawEpoll>("raw-epoll-level", Level, false),
        entry::<Evmux<EpollPoller>>("evmux-epoll-edge", Edge, false),
        entry::<RawEpoll>("raw-epoll-edge", Edge, false),
        entry::<Evmux<UringPoller>>("evmux-uring-level", Level, false),
        entry::<RawUring>("raw-uring-level", Level, false),
        entry::<Evmux<UringPoller>>("evmux-uring-edge", Edge, false),
        entry::<RawUring>("raw-uring-edge", Edge, false),
        entry::<Evmux<UringPoller>>("evmux-uring-oneshot", Oneshot, false),
        entry::<Evmux<AnyPoller>>("any-epoll-level", Level, false),
        entry::<Evmux<AnyPoller>>("any-epoll-edge", Edge, false),
        entry::<Mio>("mio-edge", Edge, false),
        entry::<Polling>("polling-level", Level, false),
        entry::<Polling>("polling-edge", Edge, false),
    ]
}

/// Criterion measures one contender at one N.
fn bench<C: Contender>(g: &mut Group<'_>, fx: &Fixture, e: &Entry) {
    let mut c = C::start(fx, e.mode);
    let id = BenchmarkId::new(e.name, fx.active());
    g.bench_function(id, |b| b.iter(|| c.round_trip(fx)));
    c.stop(fx);
}

/// Times `iters` round trips of one contender (after a short warm-up).
fn block<C: Contender>(fx: &Fixture, e: &Entry, iters: u64) -> Duration {
    let mut c = C::start(fx, e.mode);
    for _ in 0..WARM_ITERS {
        c.round_trip(fx);
    }
    let start = Instant::now();
    for _ in 0..iters {
        c.round_trip(fx);
    }
    let took = start.elapsed();
    c.stop(fx);
    took
}

/// The contenders that can run on `fx`; says where select stops.
fn runnable(fx: &Fixture) -> Vec<Entry> {
    let max_fd = fx.max_fd();
    let select_fits = fits_select(max_fd);
    if !select_fits {
        eprintln!(
            "select stops before N={}: its fds reach {max_fd}, FD_SETSIZE is {}",
            fx.active(),
            libc::FD_SETSIZE
        );
    }
    // EVMUX_ONLY=a,b: only the contenders whose names contain a or b.
    let only = std::env::var("EVMUX_ONLY").unwrap_or_default();
    let wanted = |e: &Entry| only.is_empty() || only.split(',').any(|w| e.name.contains(w));
    let all = contenders().into_iter();
    all.filter(|e| (select_fits || !e.select) && wanted(e))
        .collect()
}

/// The fixtures the fd limit can hold, one N at a time.
fn for_each_size(mut f: impl FnMut(&Fixture)) {
    let limit = raise_fd_limit().expect("raise RLIMIT_NOFILE");
    for n in SIZES {
        let need = 2 * n as u64 + SPARE_FDS;
        if need > limit {
            eprintln!("skipping N={n}: needs about {need} fds, RLIMIT_NOFILE allows {limit}");
            continue;
        }
        f(&Fixture::new(n).expect("create socket pairs"));
    }
}

fn idle_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("idle_round_trip");
    for_each_size(|fx| {
        for e in runnable(fx) {
            (e.bench)(&mut g, fx, &e);
        }
    });
    g.finish();
}

/// The A/B mode (`EVMUX_INTERLEAVED=ROUNDS`): every contender runs a short
/// block in turn, round after round, so a change in machine load hits all
/// of them alike. Each contender also runs, in the same rotation, on a
/// fixture with no idle pairs, so "N against N=0" is measured in one time
/// window too. Prints the median ns per round trip and writes the figures
/// to `target/idle_interleaved.tsv` for `plot_idle.py --tsv`.
fn interleaved(rounds: usize) {
    let mut rows = String::from("contender\tn\tmedian_ns\tmin_ns\tmax_ns\tn0_median_ns\n");
    let zero = Fixture::new(0).expect("create socket pair");
    for_each_size(|fx| {
        let entries = runnable(fx);
        let fixtures = [fx, &zero];
        // Slot 2i runs entry i at N, slot 2i+1 at N=0.
        let slots: Vec<(usize, usize)> =
            (0..entries.len()).flat_map(|i| [(i, 0), (i, 1)]).collect();
        let iters: Vec<u64> = slots
            .iter()
            .map(|&(i, f)| calibrate(fixtures[f], &entries[i]))
            .collect();
        let mut ns = vec![Vec::with_capacity(rounds); slots.len()];
        for r in 0..rounds {
            for k in 0..slots.len() {
                let s = (k + r) % slots.len();
                let (i, f) = slots[s];
                let took = (entries[i].block)(fixtures[f], &entries[i], iters[s]);
                ns[s].push(took.as_nanos() as f64 / iters[s] as f64);
            }
        }
        let n = fx.active();
        for (i, e) in entries.iter().enumerate() {
            let (lo, mid, hi) = spread(&mut ns[2 * i]);
            let (_, mid0, _) = spread(&mut ns[2 * i + 1]);
            let name = e.name;
            println!(
                "{name:<18} N={n:<5} {mid:>12.0} ns (min {lo:.0}, max {hi:.0}; N=0 alongside {mid0:.0})"
            );
            rows += &format!("{name}\t{n}\t{mid:.1}\t{lo:.1}\t{hi:.1}\t{mid0:.1}\n");
        }
    });
    let path = "target/idle_interleaved.tsv";
    match std::fs::write(path, rows) {
        Ok(()) => println!("written to {path}"),
        Err(e) => eprintln!("cannot write {path}: {e}"),
    }
}

/// (min, median, max) of block timings.
fn spread(xs: &mut [f64]) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[0], xs[xs.len() / 2], xs[xs.len() - 1])
}

/// Round trips per block: about BLOCK of work, at least 20.
fn calibrate(fx: &Fixture, e: &Entry) -> u64 {
    let probe = (e.block)(fx, e, 50);
    let per = probe.as_nanos().max(1) / 50;
    (BLOCK.as_nanos() / per).clamp(20, 1_000_000) as u64
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

fn main() {
    // AnyPoller::new() picks epoll: the any-epoll rows.
    std::env::set_var(evmux::BACKEND_ENV, "epoll");
    if let Some(rounds) = std::env::var("EVMUX_INTERLEAVED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        interleaved(rounds);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
