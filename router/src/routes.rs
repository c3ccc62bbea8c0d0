//! Where the distribution tree of an `(S,G)` goes: the daemon's view of multicast routing,
//! from static routes and IGMP membership (full mode) or from the kernel's MFC (assist-only
//! mode). Pure logic, no sockets.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// An interface, by kernel index.
pub(crate) type IfIdx = u32;

/// The incoming interface and outgoing interfaces of an `(S,G)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) iif: IfIdx,
    pub(crate) oifs: Vec<IfIdx>,
}

/// A static route with interfaces resolved to indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaticRoute {
    pub(crate) group: Ipv4Addr,
    pub(crate) source: Option<Ipv4Addr>,
    pub(crate) upstream: IfIdx,
    pub(crate) downstream: Vec<IfIdx>,
}

/// An entry of the kernel's MFC with VIFs resolved to interface indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelRoute {
    pub(crate) origin: Ipv4Addr,
    pub(crate) group: Ipv4Addr,
    pub(crate) route: Route,
}

/// How long an IGMP membership lives without a refreshing report (RFC 3376's Group
/// Membership Interval with default robustness 2 and query interval 125 s).
pub(crate) const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(260);
/// How long a membership lives after a leave, waiting for other members to report.
pub(crate) const LEAVE_GRACE: Duration = Duration::from_secs(3);

/// The route sources.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    pub(crate) statics: Vec<StaticRoute>,
    /// (interface, group) -> expiry.
    pub(crate) members: HashMap<(IfIdx, Ipv4Addr), Instant>,
    pub(crate) kernel: Vec<KernelRoute>,
}

impl RouteTable {
    /// Records a report (`join`) or a leave heard on `ifindex`. Returns whether the set of
    /// member interfaces changed.
    pub(crate) fn igmp(
        &mut self,
        now: Instant,
        ifindex: IfIdx,
        group: Ipv4Addr,
        join: bool,
    ) -> bool {
        if join {
            self.members
                .insert((ifindex, group), now + MEMBERSHIP_TIMEOUT)
                .is_none()
        } else {
            if let Some(exp) = self.members.get_mut(&(ifindex, group)) {
                *exp = (*exp).min(now + LEAVE_GRACE);
            }
            false
        }
    }

    /// Whether hosts on `ifindex` are members of `group`.
    pub(crate) fn is_member(&self, ifindex: IfIdx, group: Ipv4Addr) -> bool {
        self.members.contains_key(&(ifindex, group))
    }

    /// Drops expired memberships; returns whether any went.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let before = self.members.len();
        self.members.retain(|_, exp| *exp > now);
        before != self.members.len()
    }

    /// The memberships, sorted.
    pub(crate) fn memberships(&self) -> Vec<(IfIdx, Ipv4Addr)> {
        let mut v: Vec<_> = self.members.keys().copied().collect();
        v.sort();
        v
    }

    fn member_ifs(&self, group: Ipv4Addr) -> impl Iterator<Item = IfIdx> + '_ {
        self.members
            .keys()
            .filter(move |(_, g)| *g == group)
            .map(|(i, _)| *i)
    }

    /// Full mode: the route of `(source, group)` from a static route (an exact source beats
    /// any source) plus member interfaces, or, without a static route, from the arrival
    /// interface (`arrival`) plus member interfaces. `None` without either.
    pub(crate) fn resolve_full(
        &self,
        source: Ipv4Addr,
        group: Ipv4Addr,
        arrival: Option<IfIdx>,
    ) -> Option<Route> {
        let st = self
            .statics
            .iter()
            .find(|r| r.group == group && r.source == Some(source))
            .or_else(|| {
                self.statics
                    .iter()
                    .find(|r| r.group == group && r.source.is_none())
            });
        let (iif, fixed) = match st {
            Some(r) => (r.upstream, r.downstream.as_slice()),
            None => (arrival?, &[][..]),
        };
        let oifs: BTreeSet<IfIdx> = fixed
            .iter()
            .copied()
            .chain(self.member_ifs(group))
            .filter(|&i| i != iif)
            .collect();
        Some(Route {
            iif,
            oifs: oifs.into_iter().collect(),
        })
    }

    /// Assist-only mode: the kernel's entry for `(source, group)`, else its `(*,G)` entry.
    pub(crate) fn resolve_kernel(&self, source: Ipv4Addr, group: Ipv4Addr) -> Option<Route> {
        self.kernel
            .iter()
            .find(|k| k.group == group && k.origin == source)
            .or_else(|| {
                self.kernel
                    .iter()
                    .find(|k| k.group == group && k.origin.is_unspecified())
            })
            .map(|k| k.route.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
    const S: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

    #[test]
    fn static_routes_and_members_combine() {
        let now = crate::daemon::now();
        let mut t = RouteTable::default();
        assert_eq!(t.resolve_full(S, G, None), None);
        assert_eq!(
            t.resolve_full(S, G, Some(1)),
            Some(Route {
                iif: 1,
                oifs: vec![]
            })
        );
        t.statics.push(StaticRoute {
            group: G,
            source: None,
            upstream: 1,
            downstream: vec![2],
        });
        t.statics.push(StaticRoute {
            group: G,
            source: Some(S),
            upstream: 5,
            downstream: vec![3],
        });
        assert_eq!(
            t.resolve_full(S, G, Some(1)),
            Some(Route {
                iif: 5,
                oifs: vec![3]
            })
        );
        let other = Ipv4Addr::new(10, 0, 1, 9);
        assert_eq!(
            t.resolve_full(other, G, Some(7)),
            Some(Route {
                iif: 1,
                oifs: vec![2]
            })
        );
        assert!(t.igmp(now, 4, G, true));
        assert!(!t.igmp(now, 4, G, true));
        assert!(
            t.igmp(now, 1, G, true),
            "a member on the upstream is never an oif"
        );
        assert_eq!(
            t.resolve_full(other, G, None),
            Some(Route {
                iif: 1,
                oifs: vec![2, 4]
            })
        );
        t.igmp(now, 4, G, false);
        assert!(!t.expire(now + Duration::from_secs(1)));
        assert!(t.expire(now + LEAVE_GRACE + Duration::from_millis(1)));
        assert_eq!(t.memberships(), vec![(1, G)]);
        assert!(t.expire(now + MEMBERSHIP_TIMEOUT));
    }

    #[test]
    fn kernel_routes_prefer_source_specific() {
        let mut t = RouteTable::default();
        t.kernel.push(KernelRoute {
            origin: Ipv4Addr::UNSPECIFIED,
            group: G,
            route: Route {
                iif: 1,
                oifs: vec![2, 3],
            },
        });
        assert_eq!(t.resolve_kernel(S, G).unwrap().oifs, vec![2, 3]);
        t.kernel.push(KernelRoute {
            origin: S,
            group: G,
            route: Route {
                iif: 1,
                oifs: vec![3],
            },
        });
        assert_eq!(t.resolve_kernel(S, G).unwrap().oifs, vec![3]);
        assert_eq!(t.resolve_kernel(S, Ipv4Addr::new(239, 1, 1, 2)), None);
    }
}
