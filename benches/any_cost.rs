//! The cost of picking the backend at run time, in user-space
//! instructions (repeatable on a noisy machine, unlike time): one
//! readiness round trip (write a byte, `wait`, read it back) on
//! `EpollPoller` and on `AnyPoller` holding epoll, the same loop.
//!
//! Run each under callgrind, counting only the loop:
//!
//! ```sh
//! cargo bench --bench any_cost --no-run
//! B=$(ls -t target/release/deps/any_cost-* | grep -v '\.d$' | head -1)
//! for p in epoll any; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$p \
//!     --toggle-collect='any_cost::round_trips*' "$B" $p 100000
//! done
//! callgrind_annotate /tmp/cg.epoll | grep 'PROGRAM TOTALS'
//! callgrind_annotate /tmp/cg.any | grep 'PROGRAM TOTALS'
//! ```
//!
//! Without valgrind it prints the time per round trip of each.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use evmux::{AnyPoller, Backend, EpollPoller, Events, Interest, Poller, Token, Trigger};

#[inline(never)]
fn round_trips<P: Poller>(poller: &mut P, n: u64, tx: &mut UnixStream, rx: &mut UnixStream) {
    let mut events = Events::with_capacity(64);
    let mut byte = [0u8; 1];
    for _ in 0..n {
        tx.write_all(b"x").expect("write");
        poller
            .wait(&mut events, Some(Duration::from_secs(5)))
            .expect("wait");
        assert_eq!(events.len(), 1, "one event");
        rx.read_exact(&mut byte).expect("read");
    }
}

fn run<P: Poller>(mut poller: P, n: u64) -> Duration {
    let (mut tx, mut rx) = UnixStream::pair().expect("socketpair");
    rx.set_nonblocking(true).expect("nonblocking");
    poller
        .register(&rx, Token(1), Interest::READABLE, Trigger::Level)
        .expect("register");
    let start = Instant::now();
    round_trips(&mut poller, n, &mut tx, &mut rx);
    start.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("both");
    let n = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000u64);
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    if which == "epoll" || which == "both" {
        let took = run(EpollPoller::new().expect("epoll"), n);
        println!("epoll      {:.0} ns per round trip", per(took));
    }
    if which == "any" || which == "both" {
        let poller = AnyPoller::with_backend(Backend::Epoll).expect("any epoll");
        let took = run(poller, n);
        println!("any-epoll  {:.0} ns per round trip", per(took));
    }
}
