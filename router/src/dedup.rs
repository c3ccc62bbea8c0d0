//! De-duplication of a packet seen through two receive sockets (Router Alert and intercept)
//! within a short window. The intercept's logging rule skips packets with Router Alert, so
//! this is a safety net: a packet whose Router Alert option the rule did not recognise would
//! otherwise reach the engine twice.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Remembers recent packets by hash and which socket brought them.
#[derive(Debug)]
pub(crate) struct Dedup {
    window: Duration,
    capacity: usize,
    seen: HashMap<u64, (Instant, u8)>,
    order: VecDeque<(Instant, u64)>,
}

impl Dedup {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether this packet (by `source`, `destination` and PGM bytes) was seen within the
    /// window through another socket than `via`. Records it otherwise.
    pub(crate) fn is_duplicate(
        &mut self,
        now: Instant,
        via: u8,
        source: Ipv4Addr,
        destination: Ipv4Addr,
        pgm: &[u8],
    ) -> bool {
        while let Some(&(at, h)) = self.order.front() {
            if now.saturating_duration_since(at) < self.window && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&h).is_some_and(|(t, _)| *t == at) {
                self.seen.remove(&h);
            }
        }
        let mut hasher = DefaultHasher::new();
        (source, destination, pgm).hash(&mut hasher);
        let h = hasher.finish();
        if let Some(&(_, other)) = self.seen.get(&h) {
            if other != via {
                self.seen.remove(&h);
                return true;
            }
        }
        self.seen.insert(h, (now, via));
        self.order.push_back((now, h));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_packet_from_two_sockets_is_dropped_once() {
        let mut d = Dedup::new(Duration::from_millis(200), 16);
        let (s, g) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(239, 0, 0, 1));
        let now = crate::daemon::now();
        assert!(!d.is_duplicate(now, 0, s, g, b"abc"));
        assert!(d.is_duplicate(now, 1, s, g, b"abc"));
        // a repeat through the same socket is a new packet
        assert!(!d.is_duplicate(now, 0, s, g, b"abc"));
        assert!(!d.is_duplicate(now, 0, s, g, b"abc"));
        // outside the window it is new
        let later = now + Duration::from_secs(1);
        assert!(!d.is_duplicate(later, 1, s, g, b"abc"));
        assert!(!d.is_duplicate(later, 1, s, g, b"abd"));
        for i in 0..100u8 {
            d.is_duplicate(later, 0, s, g, &[i]);
        }
        assert!(d.seen.len() <= 17);
    }
}
