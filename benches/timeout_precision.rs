//! How long `wait(timeout)` really takes with nothing to report, per
//! backend: the median (and 90th percentile) over 500 waits each of 100µs
//! and 3.1ms, against the `polling` crate's. Before the precise-timeout
//! change every backend rounded up to whole milliseconds (1.07 ms and
//! 4.05 ms).
//!
//! Run: `cargo bench --bench timeout_precision`.

use std::time::{Duration, Instant};

use evmux::{Events, Poller};

const WAITS: usize = 500;
const TIMEOUTS: [Duration; 2] = [Duration::from_micros(100), Duration::from_micros(3100)];

/// (median, p90) of `f`'s duration over `WAITS` calls.
fn measure(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut took: Vec<Duration> = (0..WAITS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    took.sort();
    (took[WAITS / 2], took[WAITS * 9 / 10])
}

fn report(name: &str, timeout: Duration, (median, p90): (Duration, Duration)) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<8} wait({:>5.1} ms): median {:.3} ms, p90 {:.3} ms",
        ms(timeout),
        ms(median),
        ms(p90)
    );
}

fn evmux<P: Poller>() {
    let mut poller = match P::new() {
        Ok(p) => p,
        Err(e) => return eprintln!("{}: skipped: {e}", P::NAME),
    };
    let mut events = Events::with_capacity(8);
    for timeout in TIMEOUTS {
        let figures = measure(|| poller.wait(&mut events, Some(timeout)).expect("wait"));
        report(P::NAME, timeout, figures);
    }
}

fn main() {
    macro_rules! each {
        ($name:ident, $variant:ident, $poller:ty) => {
            evmux::<$poller>();
        };
    }
    evmux::for_each_backend!(each);
    let poller = polling::Poller::new().expect("polling");
    let mut events = polling::Events::new();
    for timeout in TIMEOUTS {
        let figures = measure(|| {
            events.clear();
            poller.wait(&mut events, Some(timeout)).expect("wait");
        });
        report("polling", timeout, figures);
    }
}
