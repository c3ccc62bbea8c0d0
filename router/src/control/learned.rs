//! Learned `(S,G)` routes: made when a packet of a source without a route arrives (its
//! interface becomes the route's upstream), kept while the session is heard from, dropped
//! after `idle` without a packet, and bounded by `max`, the least recently heard evicted.
//!
//! Activity is recorded in O(1) (a timestamp); the time index is brought up to date lazily,
//! when an entry reaches the front of it, so each entry costs at most one re-index per idle
//! period. Eviction looks at a bounded number of stale front entries, then takes the front:
//! one packet never costs more than a few index operations.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Stale index entries an eviction re-files before it evicts the front one regardless.
const EVICT_LOOKS: usize = 8;

/// An `(S,G)`.
pub(crate) type Sg = (Ipv4Addr, Ipv4Addr);

#[derive(Debug, Clone, Copy)]
struct Entry {
    iif: u32,
    last: Instant,
    /// Where the entry sits in the index.
    filed: Instant,
}

/// The table. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Learned {
    entries: HashMap<Sg, Entry>,
    /// (deadline as filed, S, G).
    index: BTreeSet<(Instant, Ipv4Addr, Ipv4Addr)>,
    /// Per group, its sources.
    by_group: HashMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
    idle: Duration,
    max: usize,
}

impl Learned {
    /// An empty table of at most `max` routes idle for at most `idle`.
    pub(crate) fn new(max: usize, idle: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            index: BTreeSet::new(),
            by_group: HashMap::new(),
            idle,
            max,
        }
    }

    /// Changes the bounds; the caller evicts what no longer fits ([`Learned::evict`]).
    pub(crate) fn set_limits(&mut self, max: usize, idle: Duration) {
        self.max = max;
        self.idle = idle;
    }

    /// Whether the table is at (or past) its bound.
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.max
    }

    /// The upstream interface of `sg`, if learned.
    pub(crate) fn iif(&self, sg: Sg) -> Option<u32> {
        self.entries.get(&sg).map(|e| e.iif)
    }

    /// Learns `sg` from interface `iif`. The caller makes room first.
    pub(crate) fn insert(&mut self, sg: Sg, iif: u32, now: Instant) {
        let filed = now + self.idle;
        if let Some(old) = self.entries.insert(
            sg,
            Entry {
                iif,
                last: now,
                filed,
            },
        ) {
            self.index.remove(&(old.filed, sg.0, sg.1));
        }
        self.index.insert((filed, sg.0, sg.1));
        self.by_group.entry(sg.1).or_default().insert(sg.0);
    }

    /// Records a packet of `sg` at `now`; `false` if it is not learned.
    pub(crate) fn touch(&mut self, sg: Sg, now: Instant) -> bool {
        match self.entries.get_mut(&sg) {
            Some(e) => {
                e.last = e.last.max(now);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, sg: Sg) -> Option<Entry> {
        let e = self.entries.remove(&sg)?;
        self.index.remove(&(e.filed, sg.0, sg.1));
        if let Some(s) = self.by_group.get_mut(&sg.1) {
            s.remove(&sg.0);
            if s.is_empty() {
                self.by_group.remove(&sg.1);
            }
        }
        Some(e)
    }

    /// Re-files the front entry if it was heard from since it was filed; returns it if it is
    /// due at `now` as filed and was not heard from.
    fn front(&mut self, now: Option<Instant>) -> Option<Sg> {
        let &(filed, s, g) = self.index.first()?;
        let e = *self.entries.get(&(s, g))?;
        let due = e.last + self.idle;
        if due > filed {
            self.index.pop_first();
            self.index.insert((due, s, g));
            if let Some(x) = self.entries.get_mut(&(s, g)) {
                x.filed = due;
            }
            return None;
        }
        match now {
            Some(now) if filed > now => None,
            _ => Some((s, g)),
        }
    }

    /// Removes and returns one route idle at `now`, if any (re-filing at most a few entries
    /// heard from since they were filed).
    pub(crate) fn pop_idle(&mut self, now: Instant) -> Option<Sg> {
        for _ in 0..EVICT_LOOKS {
            let &(filed, _, _) = self.index.first()?;
            if filed > now {
                return None;
            }
            if let Some(sg) = self.front(Some(now)) {
                self.remove(sg);
                return Some(sg);
            }
        }
        None
    }

    /// Evicts the least recently heard route (approximately: after re-filing at most a few
    /// stale entries, the front one).
    pub(crate) fn evict(&mut self) -> Option<Sg> {
        for _ in 0..EVICT_LOOKS {
            if let Some(sg) = self.front(None) {
                self.remove(sg);
                return Some(sg);
            }
        }
        let &(_, s, g) = self.index.first()?;
        self.remove((s, g));
        Some((s, g))
    }

    /// When the next route may be idle (a re-file may push it later).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.index.first().map(|e| e.0)
    }

    /// The sources learned for `group`.
    pub(crate) fn sources(&self, group: Ipv4Addr) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.by_group.get(&group).into_iter().flatten().copied()
    }

    /// How many routes there are.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

    fn s(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    #[test]
    fn idle_routes_expire_and_active_ones_stay() {
        let t = crate::daemon::now();
        let sec = |n| t + Duration::from_secs(n);
        let mut l = Learned::new(10, Duration::from_secs(60));
        l.insert((s(1), G), 3, t);
        l.insert((s(2), G), 3, t);
        assert!(l.touch((s(1), G), sec(50)));
        assert!(!l.touch((s(9), G), sec(50)));
        assert_eq!(l.pop_idle(sec(59)), None);
        // s(1) is re-filed (heard at 50), s(2) goes.
        assert_eq!(l.pop_idle(sec(61)), Some((s(2), G)));
        assert_eq!(l.pop_idle(sec(61)), None);
        assert_eq!(l.next_deadline(), Some(sec(110)));
        assert_eq!(l.pop_idle(sec(111)), Some((s(1), G)));
        assert_eq!(l.len(), 0);
        assert_eq!(l.sources(G).count(), 0);
    }

    #[test]
    fn eviction_takes_the_least_recently_heard() {
        let t = crate::daemon::now();
        let mut l = Learned::new(3, Duration::from_secs(60));
        for n in 1..=3 {
            l.insert((s(n), G), 1, t + Duration::from_secs(u64::from(n)));
        }
        assert!(l.is_full());
        l.touch((s(1), G), t + Duration::from_secs(10));
        assert_eq!(l.evict(), Some((s(2), G)));
        assert_eq!(l.evict(), Some((s(3), G)));
        assert_eq!(l.evict(), Some((s(1), G)));
        assert_eq!(l.evict(), None);
    }

    #[test]
    fn eviction_work_is_bounded_when_every_entry_is_stale() {
        let t = crate::daemon::now();
        let mut l = Learned::new(1000, Duration::from_secs(60));
        for n in 0..1000u32 {
            l.insert((Ipv4Addr::from(n), G), 1, t);
        }
        for n in 0..1000u32 {
            l.touch((Ipv4Addr::from(n), G), t + Duration::from_secs(30));
        }
        // Every front entry is stale: the eviction re-files a few and then takes one.
        assert!(l.evict().is_some());
        assert_eq!(l.len(), 999);
    }
}
