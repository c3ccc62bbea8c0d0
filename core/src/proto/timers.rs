//! Timer queues for engines whose many deadlines all lie a few fixed intervals after the
//! instant they were set (NAK_RPT_RTE, NAK_RPT_IVL, NAK_RDATA_IVL, NAK_ELIM_IVL, ...).
//!
//! Time is engine ticks ([`Tick`]: nanoseconds since the engine's [`Clock`] epoch). A deadline
//! set at `now` for interval `ivl` is `now + ivl`; since `now` never goes backwards (the
//! engine contract), the deadlines of one interval come in order, and a FIFO per interval
//! ([`TimerLanes`]) keeps them sorted with O(1) push and pop, where a binary heap costs
//! O(log n) cache misses per operation. Were `now` ever to go backwards, the out-of-order
//! entry goes to a small side heap instead, so order (and so exactness) is kept regardless.
//!
//! Entries are wake-ups, not the state itself: an engine checks its own state when an entry
//! comes due, and entries whose state has moved on are dropped then (lazy deletion).
//!
//! [`Fifo`] is a queue in blocks of at most [`Fifo::MAX_BLOCK`] entries, so its memory stays
//! within one block of what it holds (a `VecDeque` doubles, and copies everything when it
//! grows).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// An engine instant: nanoseconds since the engine's epoch (see [`Clock`]). 584 years fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Tick(pub(crate) u64);

impl Tick {
    /// `self + ivl`, saturating.
    pub(crate) fn after(self, ivl: Ticks) -> Self {
        Self(self.0.saturating_add(ivl.0))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub(crate) fn since(self, earlier: Self) -> Ticks {
        Ticks(self.0.saturating_sub(earlier.0))
    }
}

/// A span of engine time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Ticks(pub(crate) u64);

impl From<Duration> for Ticks {
    /// Saturates at about 584 years.
    fn from(d: Duration) -> Self {
        Self(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Converts the driver's `Instant`s to compact [`Tick`]s and back. The epoch is the first
/// instant converted; an instant before it (which the engine contract rules out) counts as
/// the epoch.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    epoch: Option<Instant>,
}

impl Clock {
    /// `now` in ticks; the first call sets the epoch.
    pub(crate) fn tick(&mut self, now: Instant) -> Tick {
        let epoch = *self.epoch.get_or_insert(now);
        Tick(Ticks::from(now.saturating_duration_since(epoch)).0)
    }

    /// The instant of `t`: `None` before any instant was converted, or past what `Instant`
    /// can hold.
    pub(crate) fn instant(&self, t: Tick) -> Option<Instant> {
        self.epoch?.checked_add(Duration::from_nanos(t.0))
    }
}

/// A FIFO queue stored in blocks of at most [`Self::MAX_BLOCK`] entries. A new block holds as
/// many entries as the queue (between [`Self::MIN_BLOCK`] and [`Self::MAX_BLOCK`]), so a
/// small queue grows geometrically and a large one never reserves more than one block ahead.
#[derive(Debug, Clone)]
pub(crate) struct Fifo<T> {
    /// Every block but the last is full; entries before `head` in the first are consumed.
    blocks: VecDeque<Vec<T>>,
    head: usize,
    len: usize,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Self {
            blocks: VecDeque::new(),
            head: 0,
            len: 0,
        }
    }
}

impl<T: Copy> Fifo<T> {
    /// Smallest block, in entries.
    pub(crate) const MIN_BLOCK: usize = 64;
    /// Largest block, in entries.
    pub(crate) const MAX_BLOCK: usize = 4096;

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `x`.
    pub(crate) fn push_back(&mut self, x: T) {
        match self.blocks.back_mut() {
            Some(b) if b.len() < b.capacity() => b.push(x),
            _ => {
                let mut b = Vec::with_capacity(self.len.clamp(Self::MIN_BLOCK, Self::MAX_BLOCK));
                b.push(x);
                self.blocks.push_back(b);
            }
        }
        self.len += 1;
    }

    /// The oldest entry.
    pub(crate) fn front(&self) -> Option<&T> {
        self.blocks.front()?.get(self.head)
    }

    /// The newest entry.
    pub(crate) fn back(&self) -> Option<&T> {
        self.blocks.back()?.last()
    }

    /// Removes and returns the oldest entry.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let only = self.blocks.len() == 1;
        let first = self.blocks.front_mut()?;
        let x = *first.get(self.head)?;
        self.head += 1;
        self.len -= 1;
        if self.head == first.len() {
            self.head = 0;
            if only {
                // The only block: keep its allocation for what comes next.
                first.clear();
            } else {
                self.blocks.pop_front();
            }
        }
        Some(x)
    }

    /// The `i`th entry, oldest first.
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        let mut i = i + self.head;
        for b in &mut self.blocks {
            if i < b.len() {
                return b.get_mut(i);
            }
            i -= b.len();
        }
        None
    }

    /// Swaps the oldest entry with the `i`th (a no-op if there is no `i`th). O(i / block).
    pub(crate) fn swap_front(&mut self, i: usize) {
        let (Some(&a), Some(&b)) = (self.front(), self.iter().nth(i)) else {
            return;
        };
        if let Some(x) = self.get_mut(0) {
            *x = b;
        }
        if let Some(x) = self.get_mut(i) {
            *x = a;
        }
    }

    /// Every entry, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let head = self.head;
        self.blocks
            .iter()
            .enumerate()
            .flat_map(move |(i, b)| b[if i == 0 { head } else { 0 }..].iter())
    }

    /// Keeps only the entries for which `keep` is true, in order; memory shrinks to fit.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let old = core::mem::take(self);
        for x in old.iter() {
            if keep(x) {
                self.push_back(*x);
            }
        }
    }

    /// Drops every entry and frees the blocks.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

/// One FIFO of deadlines per interval, plus a side heap for deadlines that would break a
/// FIFO's order. Pops come in deadline order across all of them.
#[derive(Debug, Clone)]
pub(crate) struct TimerLanes<K> {
    lanes: Vec<Lane<K>>,
    /// Entries earlier than the last of their lane (only if `now` went backwards).
    disorder: BinaryHeap<Reverse<(Tick, K)>>,
}

#[derive(Debug, Clone)]
struct Lane<K> {
    ivl: Ticks,
    q: Fifo<(Tick, K)>,
}

impl<K> Default for TimerLanes<K> {
    fn default() -> Self {
        Self {
            lanes: Vec::new(),
            disorder: BinaryHeap::new(),
        }
    }
}

impl<K: Copy + Ord> TimerLanes<K> {
    /// Schedules `key` at `now + ivl`; returns that deadline.
    pub(crate) fn push(&mut self, now: Tick, ivl: Ticks, key: K) -> Tick {
        let at = now.after(ivl);
        let lane = match self.lanes.iter().position(|l| l.ivl == ivl) {
            Some(i) => &mut self.lanes[i],
            None => {
                self.lanes.push(Lane {
                    ivl,
                    q: Fifo::default(),
                });
                let last = self.lanes.len() - 1;
                &mut self.lanes[last]
            }
        };
        if lane.q.back().is_some_and(|&(last, _)| last > at) {
            self.disorder.push(Reverse((at, key)));
        } else {
            lane.q.push_back((at, key));
        }
        at
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Tick> {
        let lanes = self.lanes.iter().filter_map(|l| l.q.front().map(|e| e.0));
        let side = self.disorder.peek().map(|Reverse(e)| e.0);
        lanes.chain(side).min()
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Tick) -> Option<(Tick, K)> {
        let mut best: Option<(Tick, Option<usize>)> = self
            .disorder
            .peek()
            .map(|Reverse(e)| (e.0, None))
            .filter(|&(at, _)| at <= now);
        for (i, l) in self.lanes.iter().enumerate() {
            let Some(&(at, _)) = l.q.front() else {
                continue;
            };
            if at <= now && best.is_none_or(|(b, _)| at < b) {
                best = Some((at, Some(i)));
            }
        }
        match best? {
            (_, Some(i)) => self.lanes[i].q.pop_front(),
            (_, None) => self.disorder.pop().map(|Reverse(e)| e),
        }
    }

    /// Entries held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.lanes.iter().map(|l| l.q.len()).sum::<usize>() + self.disorder.len()
    }

    /// Keeps only the entries for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(Tick, &K) -> bool) {
        for l in &mut self.lanes {
            l.q.retain(|(at, k)| keep(*at, k));
        }
        self.disorder.retain(|Reverse((at, k))| keep(*at, k));
    }

    /// Drops the empty lanes of intervals for which `in_use` is false (left behind by a
    /// reconfiguration).
    pub(crate) fn prune(&mut self, in_use: impl Fn(Ticks) -> bool) {
        self.lanes.retain(|l| !l.q.is_empty() || in_use(l.ivl));
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.lanes.clear();
        self.disorder.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_swaps_its_front_with_a_later_entry_across_blocks() {
        let mut q = Fifo::default();
        for x in 0..200u32 {
            q.push_back(x);
        }
        for _ in 0..60 {
            q.pop_front();
        }
        // Blocks of 64, 64 and 128 entries: the front (60) is in the first, position 10 (70)
        // in the second, position 72 (132) in the third.
        q.swap_front(10);
        assert_eq!((q.front(), q.iter().nth(10)), (Some(&70), Some(&60)));
        q.swap_front(72);
        assert_eq!((q.front(), q.iter().nth(72)), (Some(&132), Some(&70)));
        q.swap_front(10_000);
        assert_eq!(q.front(), Some(&132));
        assert_eq!(q.len(), 140);
    }

    #[test]
    fn fifo_keeps_order_across_blocks_and_reuses_its_last_block() {
        let mut q = Fifo::default();
        let n = 3 * Fifo::<u32>::MAX_BLOCK + 17;
        for i in 0..n as u32 {
            q.push_back(i);
        }
        assert_eq!(q.len(), n);
        assert_eq!(q.front(), Some(&0));
        assert_eq!(q.back(), Some(&(n as u32 - 1)));
        assert!(q.iter().copied().eq(0..n as u32));
        for i in 0..n as u32 {
            assert_eq!(q.pop_front(), Some(i));
        }
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
        q.push_back(7);
        assert_eq!((q.front(), q.back(), q.len()), (Some(&7), Some(&7), 1));
    }

    #[test]
    fn fifo_memory_stays_within_a_block_of_its_length() {
        let mut q = Fifo::default();
        for i in 0..100_000u32 {
            q.push_back(i);
            let cap: usize = q.blocks.iter().map(Vec::capacity).sum();
            let slack = q
                .len()
                .clamp(Fifo::<u32>::MIN_BLOCK, Fifo::<u32>::MAX_BLOCK);
            assert!(cap <= q.len() + slack, "capacity {cap} at length {}", i + 1);
        }
        let cap: usize = q.blocks.iter().map(Vec::capacity).sum();
        assert!(cap < 100_000 + Fifo::<u32>::MAX_BLOCK);
    }

    #[test]
    fn fifo_retain_keeps_order() {
        let mut q = Fifo::default();
        for i in 0..10_000u32 {
            q.push_back(i);
        }
        for _ in 0..100 {
            q.pop_front();
        }
        q.retain(|x| x % 3 == 0);
        assert!(q.iter().copied().eq((102..10_000).step_by(3)));
        assert_eq!(q.len(), (102..10_000).step_by(3).count());
    }

    #[test]
    fn lanes_pop_in_deadline_order_across_intervals() {
        let mut t = TimerLanes::default();
        let (a, b) = (Ticks(100), Ticks(30));
        t.push(Tick(0), a, 1u32); // 100
        t.push(Tick(10), b, 2); // 40
        t.push(Tick(50), b, 3); // 80
        t.push(Tick(60), a, 4); // 160
        t.push(Tick(80), b, 5); // 110
        assert_eq!(t.next(), Some(Tick(40)));
        assert_eq!(t.pop_due(Tick(39)), None);
        let mut got = Vec::new();
        while let Some(e) = t.pop_due(Tick(1000)) {
            got.push(e);
        }
        assert_eq!(
            got,
            [
                (Tick(40), 2),
                (Tick(80), 3),
                (Tick(100), 1),
                (Tick(110), 5),
                (Tick(160), 4)
            ]
        );
        assert_eq!(t.next(), None);
    }

    #[test]
    fn lanes_stay_exact_when_time_goes_backwards() {
        let mut t = TimerLanes::default();
        t.push(Tick(100), Ticks(10), 1u32); // 110
        t.push(Tick(50), Ticks(10), 2); // 60: out of order, to the side heap
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(Tick(60)));
        assert_eq!(t.pop_due(Tick(200)), Some((Tick(60), 2)));
        assert_eq!(t.pop_due(Tick(200)), Some((Tick(110), 1)));
    }

    #[test]
    fn lanes_retain_and_prune() {
        let mut t = TimerLanes::default();
        for i in 0..10u32 {
            t.push(Tick(u64::from(i)), Ticks(5), i);
            t.push(Tick(u64::from(i)), Ticks(7), i + 100);
        }
        t.retain(|_, &k| k % 2 == 0);
        assert_eq!(t.len(), 10);
        t.prune(|ivl| ivl == Ticks(5));
        assert_eq!(t.lanes.len(), 2, "non-empty lanes stay");
        while t.pop_due(Tick(100)).is_some() {}
        t.prune(|ivl| ivl == Ticks(5));
        assert_eq!(t.lanes.len(), 1);
        assert_eq!(t.lanes[0].ivl, Ticks(5));
    }

    #[test]
    fn clock_round_trips_and_saturates() {
        let mut c = Clock::default();
        #[expect(clippy::disallowed_methods, reason = "an arbitrary epoch")]
        let e = Instant::now();
        assert_eq!(c.instant(Tick(5)), None);
        assert_eq!(c.tick(e + Duration::from_millis(3)), Tick(0));
        let e = e + Duration::from_millis(3);
        assert_eq!(c.tick(e + Duration::from_nanos(1_234_567)), Tick(1_234_567));
        assert_eq!(
            c.instant(Tick(1_234_567)),
            Some(e + Duration::from_nanos(1_234_567))
        );
        assert_eq!(c.tick(e - Duration::from_millis(1)), Tick(0));
        assert_eq!(Ticks::from(Duration::MAX), Ticks(u64::MAX));
        assert_eq!(Tick(u64::MAX - 1).after(Ticks(5)), Tick(u64::MAX));
        assert_eq!(Tick(3).since(Tick(5)), Ticks(0));
    }
}
