//! `wait` allocates nothing in steady state, on every backend.
//!
//! A counting global allocator keeps a per-thread count (a const-initialised
//! thread-local, which itself never allocates), so tests running on other
//! threads do not disturb the measurement.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

use common::*;
use evmux::{Events, Interest, Poller, Token, Trigger};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // try_with: the thread-local may be gone while a thread shuts down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

/// Allocations made by this thread so far.
fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; counting touches no memory the
// allocator hands out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged; `ptr` came from `System` via this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` via this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WAKE: Token = Token(7);
const WARM_UP: usize = 5;
const ROUNDS: usize = 100;

/// The counter does see allocations on this thread (else every test below
/// would pass vacuously).
#[test]
fn counter_sees_allocations() {
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 32]);
    drop(v);
    assert_eq!(allocs() - before, 1);
}

/// Waits `ROUNDS` times after a warm-up, calling `between` before each
/// wait, and returns (allocations, events seen).
fn count_waits<P: Poller>(poller: &mut P, between: impl Fn()) -> (u64, usize) {
    let mut events = Events::with_capacity(8);
    for _ in 0..WARM_UP {
        between();
        poller.wait(&mut events, Some(LONG)).unwrap();
    }
    let before = allocs();
    let mut seen = 0;
    for _ in 0..ROUNDS {
        between();
        poller.wait(&mut events, Some(LONG)).unwrap();
        seen += events.len();
    }
    (allocs() - before, seen)
}

fn wait_with_ready_fd_allocates_nothing<P: Poller>() {
    let mut poller = new_poller::<P>();
    let (a, mut b) = unix_pair();
    let (c, _d) = unix_pair();
    poller
        .register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    poller
        .register(&c, Token(2), Interest::READABLE, Trigger::Level)
        .unwrap();
    b.write_all(b"x").unwrap();
    let (count, seen) = count_waits(&mut poller, || {});
    assert_eq!(seen, ROUNDS, "one event per wait");
    assert_eq!(
        count,
        0,
        "{}: {ROUNDS} waits allocated {count} times",
        P::NAME
    );
}

fn wait_with_waker_allocates_nothing<P: Poller>() {
    let mut poller = new_poller::<P>();
    let waker = poller.waker(WAKE).unwrap();
    let (a, _b) = unix_pair();
    poller
        .register(&a, Token(1), Interest::READABLE, Trigger::Level)
        .unwrap();
    let (count, seen) = count_waits(&mut poller, || waker.wake().unwrap());
    assert_eq!(seen, ROUNDS, "one waker event per wait");
    assert_eq!(
        count,
        0,
        "{}: {ROUNDS} woken waits allocated {count} times",
        P::NAME
    );
}

fn oneshot_rearm_allocates_nothing<P: Poller>() {
    let mut poller = new_poller::<P>();
    let (a, mut b) = unix_pair();
    poller
        .register(&a, Token(1), Interest::READABLE, Trigger::Oneshot)
        .unwrap();
    b.write_all(b"x").unwrap();
    let mut events = Events::with_capacity(8);
    let mut round = |poller: &mut P| {
        poller.wait(&mut events, Some(LONG)).unwrap();
        let n = events.len();
        poller
            .modify(&a, Token(1), Interest::READABLE, Trigger::Oneshot)
            .unwrap();
        n
    };
    for _ in 0..WARM_UP {
        round(&mut poller);
    }
    let before = allocs();
    let seen: usize = (0..ROUNDS).map(|_| round(&mut poller)).sum();
    let count = allocs() - before;
    assert_eq!(seen, ROUNDS);
    assert_eq!(
        count,
        0,
        "{}: {ROUNDS} wait+rearm rounds allocated {count} times",
        P::NAME
    );
}

macro_rules! no_alloc {
    ($module:ident, $variant:ident, $poller:ty) => {
        mod $module {
            #[test]
            fn wait_with_ready_fd_allocates_nothing() {
                if super::backend_available::<$poller>() {
                    super::wait_with_ready_fd_allocates_nothing::<$poller>();
                }
            }

            #[test]
            fn wait_with_waker_allocates_nothing() {
                if super::backend_available::<$poller>() {
                    super::wait_with_waker_allocates_nothing::<$poller>();
                }
            }

            #[test]
            fn oneshot_rearm_allocates_nothing() {
                if super::backend_available::<$poller>() {
                    super::oneshot_rearm_allocates_nothing::<$poller>();
                }
            }
        }
    };
}

evmux::for_each_backend!(no_alloc);
