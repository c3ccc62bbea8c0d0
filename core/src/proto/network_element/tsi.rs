//! Source path state per TSI (§7.1), and the table that bounds it.
//!
//! The table answers three questions in O(1) (amortized) whatever its size: which TSI was
//! heard least recently (eviction at `max_tsis`), which expires next (`tsi_expiry` after it
//! was last heard: the same one), and whose poll is due next. The first two share one FIFO
//! of "heard" entries, pushed at each in-sequence SPM: since time never goes backwards, it is
//! in the order heard, and its first entry that is still a TSI's latest is the answer to
//! both. Polls are kept in a binary heap of deadlines. Both are lazy: an entry that is no
//! longer a TSI's latest (refreshed, rescheduled, or the TSI gone) is dropped when it reaches
//! the front, or in a compaction once the queue holds more than twice the live TSIs plus 64.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;

use super::super::timers::{Fifo, Tick, Ticks};
use super::super::{KeyedHasher, keyed_hasher};
use super::IfIndex;
use super::window::TxWindow;
use crate::wire::{Sqn, Tsi};

/// Source path state of one TSI (§7.1).
#[derive(Debug)]
pub(super) struct TsiState {
    /// The ODATA source's address (IP source of its SPMs).
    pub(super) source: IpAddr,
    pub(super) group: IpAddr,
    /// The data-destination port (NAK_SPORT), learned from SPMs.
    pub(super) dport: u16,
    pub(super) upstream_if: IfIndex,
    /// SPM_PATH of the last in-sequence SPM: the upstream PGM neighbour.
    pub(super) upstream_nbr: IpAddr,
    pub(super) last_spm_sqn: Sqn,
    /// In-sequence SPMs taken (saturating): a TSI heard of only once is the first to make
    /// room for a new one.
    pub(super) spms: u32,
    /// The source's transmit window as far as it is known.
    pub(super) window: TxWindow,
    /// Repair states: sequence number -> slot in the engine's repair table.
    pub(super) repairs: HashMap<u32, u32, KeyedHasher>,
    /// Our polls: POLL_SQN, and replies counted per interface position in the current and
    /// the last completed poll.
    pub(super) poll_sqn: Sqn,
    pub(super) poll_replies: [u32; 64],
    pub(super) children: [Option<u32>; 64],
    /// A DLR NAKs are redirected to (§9.5.3.2).
    pub(super) dlr: Option<DlrRedirect>,
    /// When our last poll went out.
    pub(super) last_poll: Option<Tick>,
    /// The stamp of the TSI's latest "heard" entry (its last in-sequence SPM).
    heard_stamp: u64,
    /// When the next poll is due (none while polls are off), and the stamp of its entry.
    next_poll: Option<Tick>,
    poll_stamp: u64,
}

// The README's memory bound for the router (per TSI: this in a hash table at a load of at
// least 7/16, two queue entries of 24 bytes each) rests on this size.
const _: () = assert!(size_of::<TsiState>() <= 1024);

impl TsiState {
    /// The state of a TSI first heard from by an SPM of `source` to `group`, coming in on
    /// `upstream_if` with SPM_PATH `upstream_nbr`.
    pub(super) fn new(
        source: IpAddr,
        group: IpAddr,
        dport: u16,
        upstream_if: IfIndex,
        upstream_nbr: IpAddr,
        spm_sqn: Sqn,
    ) -> Self {
        Self {
            source,
            group,
            dport,
            upstream_if,
            upstream_nbr,
            last_spm_sqn: spm_sqn,
            spms: 0,
            window: TxWindow::default(),
            repairs: HashMap::with_hasher(keyed_hasher()),
            poll_sqn: Sqn(0),
            poll_replies: [0; 64],
            children: [None; 64],
            dlr: None,
            last_poll: None,
            heard_stamp: 0,
            next_poll: None,
            poll_stamp: 0,
        }
    }

    /// When the next poll is due, if one is scheduled.
    pub(super) fn next_poll(&self) -> Option<Tick> {
        self.next_poll
    }

    /// Removes `sqn` from the repair index, giving memory back once the index is mostly
    /// empty (amortized O(1): a shrink halves the capacity at least, and follows as many
    /// removals as entries it moves).
    pub(super) fn unindex(&mut self, sqn: u32) -> Option<u32> {
        let slot = self.repairs.remove(&sqn);
        let len = self.repairs.len();
        if self.repairs.capacity() > 4 * len + 64 {
            self.repairs.shrink_to(2 * len);
        }
        slot
    }
}

/// Where a TSI's NAKs are redirected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DlrRedirect {
    pub(super) addr: IpAddr,
    /// The interface the DLR is reached by.
    pub(super) ifindex: IfIndex,
    /// Found by a PGM_POLL_DLR on a downstream interface (off-tree) rather than announced
    /// upstream.
    pub(super) off_tree: bool,
    /// Its POLR said it provides FEC repairs (OPT_PARITY set in the POLR's header).
    pub(super) fec: bool,
}

/// A TSI heard at `at`; current while the TSI's `heard_stamp` is `stamp`.
#[derive(Debug, Clone, Copy)]
struct Heard {
    at: Tick,
    tsi: Tsi,
    stamp: u64,
}

/// A poll of `tsi` due at the first field; current while the TSI's `poll_stamp` is the last.
type PollEntry = Reverse<(Tick, Tsi, u64)>;

/// The TSIs with source path state; see the [module documentation](self).
#[derive(Debug)]
pub(super) struct TsiTable {
    map: HashMap<Tsi, TsiState, KeyedHasher>,
    heard: Fifo<Heard>,
    polls: BinaryHeap<PollEntry>,
    /// Source of the stamps; each entry pushed gets a new one.
    stamp: u64,
    /// Queue and heap entries examined so far (popped, checked or kept by a compaction): the
    /// table's work, for tests that it stays O(1) per packet.
    visited: u64,
}

impl Default for TsiTable {
    fn default() -> Self {
        Self {
            map: HashMap::with_hasher(keyed_hasher()),
            heard: Fifo::default(),
            polls: BinaryHeap::new(),
            stamp: 0,
            visited: 0,
        }
    }
}

impl TsiTable {
    /// TSIs held.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The state of `tsi`.
    pub(super) fn get(&self, tsi: &Tsi) -> Option<&TsiState> {
        self.map.get(tsi)
    }

    /// The state of `tsi`.
    pub(super) fn get_mut(&mut self, tsi: &Tsi) -> Option<&mut TsiState> {
        self.map.get_mut(tsi)
    }

    /// Whether `tsi` has state.
    pub(super) fn contains(&self, tsi: &Tsi) -> bool {
        self.map.contains_key(tsi)
    }

    /// Every TSI, in no particular order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &Tsi> + '_ {
        self.map.keys()
    }

    /// Every TSI's state, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = &TsiState> + '_ {
        self.map.values()
    }

    /// Every TSI's state, in no particular order.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut TsiState> + '_ {
        self.map.values_mut()
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    /// Adds `tsi` with `state` (replacing any), heard at `now`.
    pub(super) fn insert(&mut self, tsi: Tsi, state: TsiState, now: Tick) {
        self.map.insert(tsi, state);
        self.heard(tsi, now);
    }

    /// Records that `tsi` was heard at `now` (an in-sequence SPM): it becomes the most
    /// recently heard, and expires `tsi_expiry` after `now`.
    pub(super) fn heard(&mut self, tsi: Tsi, now: Tick) {
        let stamp = self.next_stamp();
        let Some(t) = self.map.get_mut(&tsi) else {
            return;
        };
        t.heard_stamp = stamp;
        self.heard.push_back(Heard {
            at: now,
            tsi,
            stamp,
        });
    }

    /// Schedules the next poll of `tsi` at `at`, or none, replacing the one scheduled.
    pub(super) fn schedule_poll(&mut self, tsi: Tsi, at: Option<Tick>) {
        let stamp = self.next_stamp();
        let Some(t) = self.map.get_mut(&tsi) else {
            return;
        };
        t.next_poll = at;
        t.poll_stamp = stamp;
        if let Some(at) = at {
            self.polls.push(Reverse((at, tsi, stamp)));
        }
    }

    /// Whether `e` is its TSI's latest "heard" entry.
    fn is_current(map: &HashMap<Tsi, TsiState, KeyedHasher>, e: &Heard) -> bool {
        map.get(&e.tsi).is_some_and(|t| t.heard_stamp == e.stamp)
    }

    /// Drops stale entries at the front of the "heard" queue.
    fn skip_stale_heard(&mut self) {
        while let Some(e) = self.heard.front() {
            if Self::is_current(&self.map, e) {
                return;
            }
            self.visited += 1;
            self.heard.pop_front();
        }
    }

    /// Removes and returns the least recently heard TSI (ties: the one heard first).
    pub(super) fn pop_least_recent(&mut self) -> Option<(Tsi, TsiState)> {
        self.skip_stale_heard();
        let e = self.heard.pop_front()?;
        self.visited += 1;
        let t = self.map.remove(&e.tsi)?;
        Some((e.tsi, t))
    }

    /// Removes and returns the TSI to evict at `max_tsis`: the least recently heard of the
    /// first few (8 queue entries) that was heard of only once (one SPM: a made-up TSI costs
    /// its sender one packet, a real source sends SPMs all along), else the least recently
    /// heard. O(1).
    pub(super) fn pop_evictable(&mut self) -> Option<(Tsi, TsiState)> {
        self.skip_stale_heard();
        let mut examined = 0;
        let victim = self.heard.iter().take(8).position(|e| {
            examined += 1;
            self.map
                .get(&e.tsi)
                .is_some_and(|t| t.heard_stamp == e.stamp && t.spms < 2)
        });
        self.visited += examined;
        if let Some(i) = victim {
            // The victim's entry goes to the front (and the front's to its place, a few
            // entries back: that TSI may expire that much later), so that no stale entry is
            // left behind a live one.
            self.heard.swap_front(i);
        }
        self.pop_least_recent()
    }

    /// Removes and returns a TSI not heard for `expiry` at `now`, if there is one.
    pub(super) fn pop_expired(&mut self, now: Tick, expiry: Ticks) -> Option<(Tsi, TsiState)> {
        self.skip_stale_heard();
        let e = *self.heard.front()?;
        if e.at.after(expiry) > now {
            return None;
        }
        self.pop_least_recent()
    }

    /// When the least recently heard TSI expires (early if the front entry is stale: the
    /// engine then only wakes up early).
    pub(super) fn next_expiry(&self, expiry: Ticks) -> Option<Tick> {
        self.heard.front().map(|e| e.at.after(expiry))
    }

    /// Pops the next TSI whose poll is due at `now`, in deadline then TSI order; stale
    /// entries on the way are dropped. The caller schedules its next poll.
    pub(super) fn pop_due_poll(&mut self, now: Tick) -> Option<Tsi> {
        while let Some(&Reverse((at, tsi, stamp))) = self.polls.peek() {
            if at > now {
                return None;
            }
            self.polls.pop();
            self.visited += 1;
            if let Some(t) = self.map.get_mut(&tsi).filter(|t| t.poll_stamp == stamp) {
                t.next_poll = None;
                return Some(tsi);
            }
        }
        None
    }

    /// When the next poll is due (early if the top entry is stale).
    pub(super) fn next_poll(&self) -> Option<Tick> {
        self.polls.peek().map(|Reverse(e)| e.0)
    }

    /// Cancels every poll (polls turned off): O(TSIs), for a reconfiguration only.
    pub(super) fn clear_polls(&mut self) {
        self.polls = BinaryHeap::new();
        for t in self.map.values_mut() {
            t.next_poll = None;
        }
    }

    /// Compacts the lazy queues once they hold more than twice the live TSIs plus 64: a
    /// compaction keeps at most one entry per TSI, so it drops at least as many as it keeps
    /// and its cost is amortized O(1) per entry pushed or TSI removed.
    pub(super) fn tidy(&mut self) {
        let bound = 2 * self.map.len() + 64;
        if self.heard.len() > bound {
            self.visited += self.heard.len() as u64;
            let map = &self.map;
            self.heard.retain(|e| Self::is_current(map, e));
        }
        if self.polls.len() > bound {
            self.visited += self.polls.len() as u64;
            let map = &self.map;
            self.polls.retain(|Reverse((_, tsi, stamp))| {
                map.get(tsi).is_some_and(|t| t.poll_stamp == *stamp)
            });
            if self.polls.capacity() > 2 * bound {
                self.polls.shrink_to(bound);
            }
        }
    }

    /// Entries of the "heard" queue.
    pub(super) fn heard_len(&self) -> usize {
        self.heard.len()
    }

    /// Entries of the poll heap.
    pub(super) fn polls_len(&self) -> usize {
        self.polls.len()
    }

    /// Queue and heap entries examined so far.
    pub(super) fn visited(&self) -> u64 {
        self.visited
    }
}
