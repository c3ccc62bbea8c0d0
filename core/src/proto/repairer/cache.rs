//! The DLR's packet cache and its small per-session tables, each bounded with O(1)
//! amortised work per packet.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::wire::Tsi;

/// One cached packet.
#[derive(Debug)]
pub(super) struct Cached {
    /// Which insertion this is (see [`Cache::order`]).
    id: u64,
    /// The session's epoch when cached: a reset session's older packets are dead.
    pub(super) epoch: u32,
    /// The packet as received (ODATA or RDATA), checksum valid.
    pub(super) bytes: Box<[u8]>,
}

/// Cached packets of every session, in one first-in first-out order. Since `now` never goes
/// backwards, that order is also the order of age, so ageing and evicting the oldest are
/// O(1) each.
#[derive(Debug, Default)]
pub(super) struct Cache {
    entries: HashMap<(Tsi, u32), Cached>,
    /// Insertions in order: when, which (an entry replaced since is skipped), and the key.
    order: VecDeque<(Instant, u64, Tsi, u32)>,
    next_id: u64,
    bytes: usize,
}

impl Cache {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn contains(&self, tsi: Tsi, sqn: u32, epoch: u32) -> bool {
        self.get(tsi, sqn, epoch).is_some()
    }

    /// The live packet `sqn` of `tsi` (cached in the session's current `epoch`).
    pub(super) fn get(&self, tsi: Tsi, sqn: u32, epoch: u32) -> Option<&Cached> {
        self.entries.get(&(tsi, sqn)).filter(|c| c.epoch == epoch)
    }

    /// Caches `bytes` unless `sqn` is already cached in this `epoch`; a dead entry of an
    /// earlier epoch is replaced. Returns whether it was added (false when replaced too: the
    /// count of entries did not change).
    pub(super) fn insert(
        &mut self,
        now: Instant,
        tsi: Tsi,
        sqn: u32,
        epoch: u32,
        bytes: &[u8],
    ) -> bool {
        let id = self.next_id;
        self.next_id += 1;
        let new = Cached {
            id,
            epoch,
            bytes: bytes.into(),
        };
        let added = match self.entries.get_mut(&(tsi, sqn)) {
            Some(c) if c.epoch == epoch => return false,
            Some(c) => {
                self.bytes -= c.bytes.len();
                *c = new;
                false
            }
            None => {
                self.entries.insert((tsi, sqn), new);
                true
            }
        };
        self.order.push_back((now, id, tsi, sqn));
        self.bytes += bytes.len();
        added
    }

    /// Drops the records of replaced entries at the front.
    fn skip_replaced(&mut self) {
        while let Some(&(_, id, tsi, sqn)) = self.order.front() {
            if self.entries.get(&(tsi, sqn)).is_some_and(|c| c.id == id) {
                break;
            }
            self.order.pop_front();
        }
    }

    /// When the oldest packet was cached (or, after a replacement, a little earlier).
    pub(super) fn oldest(&self) -> Option<Instant> {
        self.order.front().map(|(at, _, _, _)| *at)
    }

    /// Removes the oldest packet; returns its session and size. Records of replaced entries
    /// are dropped on the way (each once).
    pub(super) fn pop_oldest(&mut self) -> Option<(Tsi, usize)> {
        while let Some((_, id, tsi, sqn)) = self.order.pop_front() {
            if self.entries.get(&(tsi, sqn)).is_some_and(|c| c.id == id) {
                let c = self.entries.remove(&(tsi, sqn))?;
                self.bytes -= c.bytes.len();
                return Some((tsi, c.bytes.len()));
            }
        }
        None
    }

    /// Removes the oldest packet if it was cached `age` or longer before `now`.
    pub(super) fn pop_aged(&mut self, now: Instant, age: Duration) -> Option<(Tsi, usize)> {
        self.skip_replaced();
        let at = self.oldest()?;
        if now.saturating_duration_since(at) < age {
            return None;
        }
        self.pop_oldest()
    }
}

/// A bounded set of keys, each with the instant it was (last) added, forgotten after an
/// interval or when more than `cap` were added since. Lookups, additions and expiry are O(1)
/// amortised.
#[derive(Debug)]
pub(super) struct Recent<K> {
    /// Each key's latest addition.
    at: HashMap<K, u64>,
    /// Additions in order: when, which, the key (a record superseded by a later addition of
    /// its key is skipped).
    order: VecDeque<(Instant, u64, K)>,
    next_id: u64,
    cap: usize,
}

impl<K: Copy + Eq + Hash> Recent<K> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            at: HashMap::new(),
            order: VecDeque::new(),
            next_id: 0,
            cap: cap.max(1),
        }
    }

    /// Entries held (at most `cap`).
    pub(super) fn len(&self) -> usize {
        self.at.len()
    }

    /// Forgets what was added `ivl` or longer before `now`.
    pub(super) fn expire(&mut self, now: Instant, ivl: Duration) {
        while let Some(&(t, _, _)) = self.order.front() {
            if now.saturating_duration_since(t) < ivl {
                break;
            }
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, id, k)) = self.order.pop_front() {
            if self.at.get(&k) == Some(&id) {
                self.at.remove(&k);
            }
        }
    }

    pub(super) fn insert(&mut self, now: Instant, k: K) {
        let id = self.next_id;
        self.next_id += 1;
        self.at.insert(k, id);
        self.order.push_back((now, id, k));
        while self.order.len() > self.cap {
            self.pop_front();
        }
    }

    pub(super) fn contains(&self, k: &K) -> bool {
        self.at.contains_key(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        Instant::now()
    }

    #[test]
    fn recent_is_bounded_by_count_and_time() {
        let now = t0();
        let mut r = Recent::new(3);
        for k in 0..10u32 {
            r.insert(now, k);
        }
        assert_eq!(r.len(), 3);
        assert!(r.contains(&9) && !r.contains(&6));
        // Re-adding a key keeps the order bounded too.
        for _ in 0..100 {
            r.insert(now, 9);
        }
        assert!(r.order.len() <= 3 && r.contains(&9));
        r.expire(now + Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn the_cache_evicts_oldest_first_and_keeps_its_byte_count() {
        let now = t0();
        let tsi = Tsi::default();
        let mut c = Cache::default();
        assert!(c.insert(now, tsi, 1, 0, &[0; 10]));
        assert!(!c.insert(now, tsi, 1, 0, &[0; 10]));
        assert!(c.insert(now + Duration::from_secs(1), tsi, 2, 0, &[0; 20]));
        assert_eq!((c.len(), c.bytes()), (2, 30));
        assert!(c.get(tsi, 1, 1).is_none(), "another epoch");
        // A dead entry (an earlier epoch) is replaced, its bytes too.
        assert!(!c.insert(now, tsi, 1, 1, &[0; 5]));
        assert_eq!((c.len(), c.bytes()), (2, 25));
        assert!(c.get(tsi, 1, 1).is_some());
        let later = now + Duration::from_secs(2);
        // The first record (sqn 1 of epoch 0) was replaced: the oldest live one is sqn 2.
        assert_eq!(c.pop_aged(later, Duration::from_secs(1)), Some((tsi, 20)));
        assert_eq!(c.pop_oldest(), Some((tsi, 5)));
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }
}
