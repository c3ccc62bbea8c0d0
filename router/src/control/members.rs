//! IGMP memberships: which interfaces have members of which groups, until when.
//!
//! Bounded by `max`: a report for a new membership beyond it is refused (and counted), so a
//! flood of reports for made-up groups cannot push out the memberships of real hosts, which
//! keep theirs by reporting. Expiries are kept in time order: the next one is found without
//! a scan.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::Instant;

/// A membership: (interface index, group).
pub(crate) type Membership = (u32, Ipv4Addr);

/// The table. See the [module documentation](self).
#[derive(Debug, Default)]
pub(crate) struct Members {
    expiry: HashMap<Membership, Instant>,
    by_time: BTreeSet<(Instant, u32, Ipv4Addr)>,
    /// Per group, the interfaces with members.
    by_group: HashMap<Ipv4Addr, BTreeSet<u32>>,
    max: usize,
}

/// What a report did to a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joined {
    /// A new membership.
    New,
    /// An existing one refreshed.
    Refreshed,
    /// Refused: the table is full.
    Refused,
}

impl Members {
    /// An empty table of at most `max` memberships.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// Changes the bound; memberships beyond a lower one stay until they expire.
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Records a report: the membership lives until `until` (and no shorter than it was).
    pub(crate) fn join(&mut self, m: Membership, until: Instant) -> Joined {
        match self.expiry.get(&m).copied() {
            Some(old) => {
                if until > old {
                    self.reindex(m, old, until);
                }
                Joined::Refreshed
            }
            None if self.expiry.len() >= self.max => Joined::Refused,
            None => {
                self.expiry.insert(m, until);
                self.by_time.insert((until, m.0, m.1));
                self.by_group.entry(m.1).or_default().insert(m.0);
                Joined::New
            }
        }
    }

    /// Shortens a membership to end by `until` at the latest (after a leave); `false` if
    /// there was none.
    pub(crate) fn shorten(&mut self, m: Membership, until: Instant) -> bool {
        let Some(old) = self.expiry.get(&m).copied() else {
            return false;
        };
        if until < old {
            self.reindex(m, old, until);
        }
        true
    }

    fn reindex(&mut self, m: Membership, old: Instant, new: Instant) {
        self.by_time.remove(&(old, m.0, m.1));
        self.by_time.insert((new, m.0, m.1));
        self.expiry.insert(m, new);
    }

    /// Whether interface `ifindex` has members of `group`.
    pub(crate) fn contains(&self, m: Membership) -> bool {
        self.expiry.contains_key(&m)
    }

    /// The interfaces with members of `group`.
    pub(crate) fn interfaces(&self, group: Ipv4Addr) -> impl Iterator<Item = u32> + '_ {
        self.by_group.get(&group).into_iter().flatten().copied()
    }

    /// Whether `group` has members anywhere.
    pub(crate) fn has_members(&self, group: Ipv4Addr) -> bool {
        self.by_group.contains_key(&group)
    }

    /// The next expiry.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.by_time.first().map(|e| e.0)
    }

    /// Removes and returns one membership expired at `now`, if any.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Membership> {
        let &(at, ifindex, group) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.expiry.remove(&(ifindex, group));
        if let Some(ifs) = self.by_group.get_mut(&group) {
            ifs.remove(&ifindex);
            if ifs.is_empty() {
                self.by_group.remove(&group);
            }
        }
        Some((ifindex, group))
    }

    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.expiry.len()
    }

    /// Every membership, sorted.
    pub(crate) fn list(&self) -> Vec<Membership> {
        let mut v: Vec<Membership> = self.expiry.keys().copied().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const G: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

    #[test]
    fn memberships_expire_in_order_and_are_bounded() {
        let t = crate::daemon::now() + Duration::from_secs(1000);
        let s = |n| t + Duration::from_secs(n);
        let mut m = Members::new(2);
        assert_eq!(m.join((1, G), s(10)), Joined::New);
        assert_eq!(m.join((2, G), s(5)), Joined::New);
        assert_eq!(m.join((3, G), s(5)), Joined::Refused);
        assert_eq!(m.join((1, G), s(20)), Joined::Refreshed);
        assert_eq!(m.interfaces(G).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(m.next_expiry(), Some(s(5)));
        assert!(m.shorten((1, G), s(7)));
        assert!(!m.shorten((9, G), s(7)));
        assert_eq!(m.pop_expired(s(4)), None);
        assert_eq!(m.pop_expired(s(6)), Some((2, G)));
        assert_eq!(m.pop_expired(s(6)), None);
        // A refresh never shortens; a shorten never lengthens.
        m.join((1, G), s(6));
        m.shorten((1, G), s(100));
        assert_eq!(m.pop_expired(s(7)), Some((1, G)));
        assert!(!m.has_members(G));
        assert_eq!(m.len(), 0);
    }
}
