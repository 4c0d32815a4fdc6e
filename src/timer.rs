//! Deadlines: a min-heap of timers, so each loop turn costs O(expired ·
//! log n), never a scan of every connection.
//!
//! Entries are never removed from the middle: a cancelled timer or a
//! connection that has been active since its idle entry was pushed is
//! recognised when its entry pops (its generation no longer matches, or its
//! real deadline is later) and is dropped or pushed again. Activity therefore
//! costs one timestamp store, not a heap operation per read. Entries made
//! stale by closes and cancels are counted; once they outnumber the live
//! ones the heap is rebuilt without them (O(n), amortised over the n/2
//! closes that made them), so connection churn cannot grow it unbounded.
//!
//! Generic over what an entry stands for (`T`); a leaf module.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Entry<T> {
    at: Instant,
    seq: u64,
    due: T,
}

/// A min-heap of deadlines, each standing for a `T`.
pub(crate) struct Timers<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
    /// Entries known to be dead (closed connection, cancelled timer).
    stale: usize,
}

impl<T: Ord> Default for Timers<T> {
    fn default() -> Timers<T> {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
            stale: 0,
        }
    }
}

impl<T: Ord + Copy> Timers<T> {
    /// Schedules `due` at `at`.
    pub(crate) fn push(&mut self, at: Instant, due: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            due,
        }));
    }

    /// Notes that one entry has gone dead without being removed.
    pub(crate) fn mark_stale(&mut self) {
        self.stale += 1;
    }

    /// Once dead entries outnumber the live ones (and there are enough to
    /// matter), rebuilds the heap with only the entries `live` keeps.
    pub(crate) fn compact(&mut self, live: impl FnMut(&T) -> bool) {
        if self.stale < 1024 || self.stale * 2 < self.heap.len() {
            return;
        }
        let mut live = live;
        self.heap.retain(|Reverse(e)| live(&e.due));
        self.stale = 0;
    }

    /// The earliest deadline, if any.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Pops one entry whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.next()? > now {
            return None;
        }
        let popped = self.heap.pop().map(|Reverse(e)| (e.at, e.due));
        self.stale = self.stale.min(self.heap.len());
        popped
    }

    /// How many entries are pending (live or stale).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The wait timeout until the earliest deadline: `None` if there is
    /// none, zero if it has passed.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        self.next().map(|at| at.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tests' entries stand for.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Due {
        Idle { key: usize, gen: u32 },
        User(u64),
        Listener(usize),
    }

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.push(now + Duration::from_millis(30), Due::User(3));
        t.push(now + Duration::from_millis(10), Due::User(1));
        t.push(now + Duration::from_millis(20), Due::Listener(0));
        assert_eq!(t.timeout(now), Some(Duration::from_millis(10)));
        assert!(t.pop_due(now).is_none());
        let later = now + Duration::from_millis(25);
        assert_eq!(t.pop_due(later).unwrap().1, Due::User(1));
        assert_eq!(t.pop_due(later).unwrap().1, Due::Listener(0));
        assert!(t.pop_due(later).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn compaction_drops_dead_entries_once_they_dominate() {
        let mut t = Timers::default();
        let at = Instant::now() + Duration::from_secs(60);
        for key in 0..3000 {
            t.push(at, Due::Idle { key, gen: 1 });
        }
        // 1,000 dead of 3,000: not yet worth a rebuild.
        (0..1000).for_each(|_| t.mark_stale());
        t.compact(|d| matches!(d, Due::Idle { key, .. } if *key >= 1000));
        assert_eq!(t.len(), 3000);
        // 2,000 dead: rebuilt with the live ones only.
        (0..1000).for_each(|_| t.mark_stale());
        t.compact(|d| matches!(d, Due::Idle { key, .. } if *key >= 2000));
        assert_eq!(t.len(), 1000);
        assert!(t.pop_due(at).is_some());
    }

    #[test]
    fn equal_deadlines_pop_in_insertion_order() {
        let mut t = Timers::default();
        let at = Instant::now();
        for i in 0..5 {
            t.push(at, Due::User(10 - i));
        }
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(at))
            .map(|(_, d)| d)
            .collect();
        let want: Vec<_> = (0..5).map(|i| Due::User(10 - i)).collect();
        assert_eq!(order, want);
    }
}
