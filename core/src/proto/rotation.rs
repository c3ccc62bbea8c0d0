//! Making room in a bounded table at O(1) work per packet: the table's keys wait in a ring,
//! and a new entry examines only the first few, evicting the first that may go.

use std::collections::VecDeque;

/// Keys examined, at most, each time room must be made.
pub const EVICTION_CANDIDATES: usize = 8;

/// What [`evict_in_rotation`] does with one key of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    /// No longer in the table (removed since it was queued): dropped from the ring.
    Gone,
    /// Stays: back to the end of the ring.
    Keep,
    /// May go: dropped from the ring and returned, for the caller to remove.
    Evict,
}

/// Takes up to [`EVICTION_CANDIDATES`] keys off the front of `ring`, asks `judge` about each,
/// and returns the first it lets go ([`Candidate::Evict`]); keys it keeps go to the back, keys
/// gone from the table leave the ring. `None` if none of them may go.
pub fn evict_in_rotation<K: Copy>(
    ring: &mut VecDeque<K>,
    mut judge: impl FnMut(&K) -> Candidate,
) -> Option<K> {
    for _ in 0..EVICTION_CANDIDATES {
        let k = ring.pop_front()?;
        match judge(&k) {
            Candidate::Gone => {}
            Candidate::Keep => ring.push_back(k),
            Candidate::Evict => return Some(k),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examines_a_bounded_number_of_keys_in_rotation() {
        let mut ring: VecDeque<u32> = (0..20).collect();
        // Nothing may go: 8 examined, kept in order at the back.
        assert_eq!(evict_in_rotation(&mut ring, |_| Candidate::Keep), None);
        assert_eq!(ring.front(), Some(&8));
        assert_eq!(ring.len(), 20);
        // Gone keys leave the ring; the first that may go is returned.
        let got = evict_in_rotation(&mut ring, |&k| match k {
            8 | 9 => Candidate::Gone,
            11 => Candidate::Evict,
            _ => Candidate::Keep,
        });
        assert_eq!(got, Some(11));
        assert_eq!(ring.len(), 17);
        assert_eq!(ring.front(), Some(&12));
        assert_eq!(ring.back(), Some(&10));
    }
}
