//! The router's multicast routing decisions, sans-IO: which routes exist, which interfaces
//! have members, which groups are assisted, and when to query, from static configuration,
//! IGMP reports, the packets the daemon sees and (assist-only) the kernel's routing table.
//!
//! Both data planes use it. Like the protocol engines (`pgm_core::proto`), it never reads
//! the clock or touches a socket: the driver feeds it events with the time (`handle_*`),
//! calls [`Controller::handle_timeout`] at [`Controller::poll_timeout`], and drains
//! [`Controller::poll_action`] (engine route changes and IGMP queries to send). The state the
//! data plane must hold is written into a [`PlaneSync`], whose changes the plane's worker
//! thread applies in the kernel.
//!
//! Routes:
//!
//! - static routes (`[[router.route]]`, full mode): `(S,G)` or `(*,G)`, forwarded from their
//!   upstream interface to their downstream interfaces and every interface with members;
//! - learned `(S,G)` routes (full mode): made by the first packet of a source that no route
//!   covers, from the interface it came in on, to the interfaces with members; bounded by
//!   `max_routes` (least recently heard evicted) and dropped after `route_idle` without a
//!   packet the daemon sees (a PGM source's SPMs keep its route);
//! - the kernel's routes (assist-only mode), as read from its multicast routing table.
//!
//! Memberships come from IGMP v1/v2/v3 reports, last 260 s unless refreshed, and are bounded
//! by `max_memberships` (new ones refused beyond it). After a leave the router asks twice, a
//! second apart, whether members remain, and the membership lapses 3 s after the leave
//! unless one answers (RFC 3376 §6.4.2, Last Member Query Count 2).

mod learned;
mod members;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgm_core::net::router::IgmpReport;
use pgm_core::net::router::plane::{PlaneRoute, PlaneSync, RouteKey};

use self::learned::Learned;
use self::members::{Joined, Members};

/// How long a membership lives without a refreshing report (RFC 3376's Group Membership
/// Interval with default robustness 2 and query interval 125 s).
pub(crate) const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(260);
/// How long a membership lives after a leave, waiting for other members to report.
pub(crate) const LEAVE_GRACE: Duration = Duration::from_secs(3);
/// Between the two group-specific queries that follow a leave (RFC 3376 §8.8: 1 s).
pub(crate) const LAST_MEMBER_QUERY_IVL: Duration = Duration::from_secs(1);
/// Between general queries (RFC 3376 default).
pub(crate) const QUERY_INTERVAL: Duration = Duration::from_secs(125);
/// Between the start-up general queries (two, so that one lost query costs little).
pub(crate) const STARTUP_QUERY_IVL: Duration = Duration::from_secs(2);

/// A static route with interfaces resolved to indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaticRoute {
    pub(crate) group: Ipv4Addr,
    pub(crate) source: Option<Ipv4Addr>,
    pub(crate) upstream: u32,
    pub(crate) downstream: Vec<u32>,
}

/// What the controller is told at start and on reload.
#[derive(Debug, Clone)]
pub(crate) struct CtlConfig {
    /// Full mode (static and learned routes, IGMP); else assist-only (the kernel's routes).
    pub(crate) full: bool,
    /// The data plane needs a route per source for `(*,G)` routes (the MFC of the mroute
    /// plane holds `(S,G)` entries only).
    pub(crate) per_source: bool,
    /// The data plane logs new sources of learning groups (netdev plane).
    pub(crate) learn: bool,
    /// Static routes.
    pub(crate) statics: Vec<StaticRoute>,
    /// Most learned routes.
    pub(crate) max_routes: usize,
    /// Learned routes not heard from for this long are dropped.
    pub(crate) route_idle: Duration,
    /// Most IGMP memberships.
    pub(crate) max_memberships: usize,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Set (`Some`) or remove the route of the network-element engine.
    Route(RouteKey, Option<PlaneRoute>),
    /// Send a general query on every interface; `startup` asks hosts to answer within 1 s
    /// instead of 10 s.
    GeneralQuery {
        /// A start-up query.
        startup: bool,
    },
    /// Send a group-specific query for `group` on `ifindex`.
    GroupQuery {
        /// The interface.
        ifindex: u32,
        /// The group.
        group: Ipv4Addr,
    },
}

/// The controller's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CtlStats {
    /// Routes learned from a first packet.
    pub(crate) routes_learned: u64,
    /// Learned routes evicted by `max_routes`.
    pub(crate) routes_evicted: u64,
    /// Learned routes dropped after `route_idle`.
    pub(crate) routes_expired: u64,
    /// IGMP reports handled.
    pub(crate) igmp_reports: u64,
    /// New memberships refused by `max_memberships`.
    pub(crate) memberships_refused: u64,
    /// Memberships that lapsed.
    pub(crate) memberships_expired: u64,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Controller {
    config: CtlConfig,
    plane: Arc<PlaneSync>,
    members: Members,
    learned: Learned,
    /// Assist-only: the kernel's routes, per group.
    kernel: HashMap<Ipv4Addr, BTreeMap<Option<Ipv4Addr>, PlaneRoute>>,
    /// The routes in force, per group, keyed by source (`None`: `(*,G)`).
    routes: HashMap<Ipv4Addr, BTreeMap<Option<Ipv4Addr>, PlaneRoute>>,
    route_count: usize,
    /// Second group-specific queries due after leaves, and the leaves being queried.
    queries: BTreeSet<(Instant, u32, Ipv4Addr)>,
    querying: BTreeSet<(u32, Ipv4Addr)>,
    next_general: Option<(Instant, bool)>,
    startup_queries: u8,
    actions: VecDeque<Action>,
    stats: CtlStats,
}

impl Controller {
    /// A controller with the static routes in force.
    pub(crate) fn new(config: CtlConfig, plane: Arc<PlaneSync>, now: Instant) -> Self {
        let mut c = Self {
            members: Members::new(config.max_memberships),
            learned: Learned::new(config.max_routes, config.route_idle),
            plane,
            kernel: HashMap::new(),
            routes: HashMap::new(),
            route_count: 0,
            queries: BTreeSet::new(),
            querying: BTreeSet::new(),
            next_general: config.full.then_some((now, true)),
            startup_queries: 2,
            actions: VecDeque::new(),
            stats: CtlStats::default(),
            config,
        };
        let groups: BTreeSet<Ipv4Addr> = c.config.statics.iter().map(|s| s.group).collect();
        for g in groups {
            c.recompute(g);
        }
        c
    }

    /// Applies a reloaded configuration: static routes and limits (learned routes beyond a
    /// lower `max_routes` are evicted). Learned routes and memberships are kept.
    pub(crate) fn reconfigure(&mut self, config: CtlConfig) {
        let mut groups: BTreeSet<Ipv4Addr> = self.config.statics.iter().map(|s| s.group).collect();
        groups.extend(config.statics.iter().map(|s| s.group));
        self.members.set_max(config.max_memberships);
        self.learned
            .set_limits(config.max_routes, config.route_idle);
        self.config = config;
        while self.learned.len() > self.config.max_routes {
            let Some((_, g)) = self.learned.evict() else {
                break;
            };
            self.stats.routes_evicted += 1;
            groups.insert(g);
        }
        for g in groups {
            self.recompute(g);
        }
    }

    /// Counters.
    pub(crate) fn stats(&self) -> &CtlStats {
        &self.stats
    }

    /// Zeroes the counters.
    pub(crate) fn clear_stats(&mut self) {
        self.stats = CtlStats::default();
    }

    /// The configured bounds: (`max_routes`, `max_memberships`).
    pub(crate) fn limits(&self) -> (usize, usize) {
        (self.config.max_routes, self.config.max_memberships)
    }

    /// The routes in force, sorted.
    pub(crate) fn routes(&self) -> Vec<(RouteKey, PlaneRoute)> {
        let mut v: Vec<(RouteKey, PlaneRoute)> = self
            .routes
            .iter()
            .flat_map(|(&group, r)| {
                r.iter()
                    .map(move |(&source, route)| (RouteKey { source, group }, route.clone()))
            })
            .collect();
        v.sort_by_key(|r| r.0);
        v
    }

    /// How many routes are in force.
    pub(crate) fn route_count(&self) -> usize {
        self.route_count
    }

    /// How many routes were learned.
    pub(crate) fn learned_count(&self) -> usize {
        self.learned.len()
    }

    /// The memberships, sorted.
    pub(crate) fn memberships(&self) -> Vec<(u32, Ipv4Addr)> {
        self.members.list()
    }

    /// How many memberships there are.
    pub(crate) fn membership_count(&self) -> usize {
        self.members.len()
    }

    /// The route covering a packet of (`source`, `group`): its own, else its group's.
    pub(crate) fn route(
        &self,
        source: Ipv4Addr,
        group: Ipv4Addr,
    ) -> Option<(RouteKey, &PlaneRoute)> {
        let r = self.routes.get(&group)?;
        r.get_key_value(&Some(source))
            .or_else(|| r.get_key_value(&None))
            .map(|(&s, route)| (RouteKey { source: s, group }, route))
    }

    /// A packet of (`source`, `group`) came in on `ifindex` (any packet the daemon sees: an
    /// intercepted one, a kernel upcall, a new source's first ODATA). Keeps its learned route
    /// alive, or learns one if no route covers it (full mode). Returns the covering route.
    pub(crate) fn handle_packet(
        &mut self,
        now: Instant,
        source: Ipv4Addr,
        group: Ipv4Addr,
        ifindex: u32,
    ) -> Option<RouteKey> {
        if !group.is_multicast() || is_link_local(group) {
            return None;
        }
        if let Some(iif) = self.learned.iif((source, group)) {
            if iif == ifindex {
                self.learned.touch((source, group), now);
            }
            return Some(RouteKey::sg(source, group));
        }
        if let Some((key, _)) = self.route(source, group) {
            if key.source.is_some() || !self.config.per_source {
                return Some(key);
            }
        }
        if !self.config.full {
            return None;
        }
        // A (*,G) route whose plane needs one entry per source: the source's entry follows
        // the static route; else the route comes in where this packet did.
        let iif = self.static_any(group).map_or(ifindex, |s| s.upstream);
        if self.learned.is_full() {
            if let Some((_, g)) = self.learned.evict() {
                self.stats.routes_evicted += 1;
                self.recompute(g);
            }
        }
        self.learned.insert((source, group), iif, now);
        self.stats.routes_learned += 1;
        self.recompute(group);
        Some(RouteKey::sg(source, group))
    }

    /// An IGMP report (the driver has dropped reports from unknown interfaces and the
    /// router's own).
    pub(crate) fn handle_report(&mut self, now: Instant, report: &IgmpReport) {
        if !self.config.full {
            return;
        }
        self.stats.igmp_reports += 1;
        let ifindex = report.ifindex;
        for c in &report.changes {
            let group = c.group;
            if is_link_local(group) || !group.is_multicast() {
                continue;
            }
            if c.join {
                match self
                    .members
                    .join((ifindex, group), now + MEMBERSHIP_TIMEOUT)
                {
                    Joined::New => self.recompute(group),
                    // A member answered: the membership lasts, and a round of queries
                    // under way still sends its second query (RFC 3376 §6.6.3.1: the
                    // retransmissions are not stopped by a report).
                    Joined::Refreshed => {}
                    Joined::Refused => self.stats.memberships_refused += 1,
                }
                continue;
            }
            // A leave: ask whether members remain before the membership lapses, twice, a
            // second apart. A host's repeated leaves do not restart the queries.
            if self.members.contains((ifindex, group)) && self.querying.insert((ifindex, group)) {
                self.members.shorten((ifindex, group), now + LEAVE_GRACE);
                self.actions
                    .push_back(Action::GroupQuery { ifindex, group });
                self.queries
                    .insert((now + LAST_MEMBER_QUERY_IVL, ifindex, group));
            }
        }
    }

    /// Assist-only: the kernel's routes (another daemon's), replacing the last ones.
    pub(crate) fn set_kernel_routes(
        &mut self,
        routes: impl IntoIterator<Item = (RouteKey, PlaneRoute)>,
    ) {
        if self.config.full {
            return;
        }
        let mut kernel: HashMap<Ipv4Addr, BTreeMap<Option<Ipv4Addr>, PlaneRoute>> = HashMap::new();
        for (k, r) in routes {
            kernel.entry(k.group).or_default().insert(k.source, r);
        }
        if kernel == self.kernel {
            return;
        }
        let mut groups: BTreeSet<Ipv4Addr> = self.kernel.keys().copied().collect();
        groups.extend(kernel.keys().copied());
        self.kernel = kernel;
        for g in groups {
            self.recompute(g);
        }
    }

    /// Handles every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some((ifindex, group)) = self.members.pop_expired(now) {
            self.stats.memberships_expired += 1;
            self.querying.remove(&(ifindex, group));
            self.recompute(group);
        }
        while let Some((_, g)) = self.learned.pop_idle(now) {
            self.stats.routes_expired += 1;
            self.recompute(g);
        }
        while let Some(&(at, ifindex, group)) = self.queries.first() {
            if at > now {
                break;
            }
            self.queries.pop_first();
            // The second query of the round, if the membership is still there (answered or
            // not). The round ends here whatever happened, so a later leave asks again.
            if self.querying.remove(&(ifindex, group)) && self.members.contains((ifindex, group)) {
                self.actions
                    .push_back(Action::GroupQuery { ifindex, group });
            }
        }
        if let Some((at, startup)) = self.next_general {
            if at <= now {
                self.actions.push_back(Action::GeneralQuery { startup });
                self.startup_queries = self.startup_queries.saturating_sub(1);
                self.next_general = Some(if self.startup_queries > 0 {
                    (now + STARTUP_QUERY_IVL, true)
                } else {
                    (now + QUERY_INTERVAL, false)
                });
            }
        }
    }

    /// The next time [`Controller::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.members.next_expiry(),
            self.learned.next_deadline(),
            self.queries.first().map(|q| q.0),
            self.next_general.map(|g| g.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing for the driver to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn static_any(&self, group: Ipv4Addr) -> Option<&StaticRoute> {
        self.config
            .statics
            .iter()
            .find(|s| s.group == group && s.source.is_none())
    }

    /// Brings group `group`'s routes, assisted and learning state up to date: in the engine
    /// (actions) and in the plane.
    fn recompute(&mut self, group: Ipv4Addr) {
        let want = self.wanted(group);
        let have = self.routes.remove(&group).unwrap_or_default();
        for source in have.keys() {
            if !want.contains_key(source) {
                let key = RouteKey {
                    source: *source,
                    group,
                };
                self.actions.push_back(Action::Route(key, None));
                self.plane.set_route(key, None);
            }
        }
        for (source, route) in &want {
            if have.get(source) != Some(route) {
                let key = RouteKey {
                    source: *source,
                    group,
                };
                self.actions
                    .push_back(Action::Route(key, Some(route.clone())));
                self.plane.set_route(key, Some(route.clone()));
            }
        }
        self.route_count = self.route_count - have.len() + want.len();
        let members = self.members.has_members(group);
        let assisted = !want.is_empty() || (self.config.full && members);
        let learn =
            self.config.learn && self.config.full && members && self.static_any(group).is_none();
        if !want.is_empty() {
            self.routes.insert(group, want);
        }
        self.plane.set_assisted(group, assisted);
        self.plane.set_learn(group, learn);
    }

    /// What `group`'s routes should be.
    fn wanted(&self, group: Ipv4Addr) -> BTreeMap<Option<Ipv4Addr>, PlaneRoute> {
        let mut want = BTreeMap::new();
        if !self.config.full {
            return self.kernel.get(&group).cloned().unwrap_or_default();
        }
        let members: Vec<u32> = self.members.interfaces(group).collect();
        let route = |iif: u32, fixed: &[u32]| {
            let oifs: BTreeSet<u32> = fixed
                .iter()
                .chain(&members)
                .copied()
                .filter(|&o| o != iif)
                .collect();
            PlaneRoute {
                iif,
                oifs: oifs.into_iter().collect(),
            }
        };
        for s in self.config.statics.iter().filter(|s| s.group == group) {
            want.insert(s.source, route(s.upstream, &s.downstream));
        }
        let any = self.static_any(group);
        for source in self.learned.sources(group) {
            if want.contains_key(&Some(source)) {
                continue;
            }
            let Some(iif) = self.learned.iif((source, group)) else {
                continue;
            };
            let r = match any {
                Some(s) => route(s.upstream, &s.downstream),
                None => route(iif, &[]),
            };
            want.insert(Some(source), r);
        }
        want
    }
}

/// 224.0.0.0/24: never routed.
fn is_link_local(group: Ipv4Addr) -> bool {
    group.octets()[..3] == [224, 0, 0]
}
