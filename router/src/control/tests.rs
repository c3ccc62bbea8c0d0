//! The controller on virtual time: every decision checked through its actions and the plane
//! state it writes.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgm_core::net::router::plane::{PlaneRoute, PlaneState, PlaneSync, RouteKey};
use pgm_core::net::router::{IgmpChange, IgmpReport};

use super::*;

const G: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const G2: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 2);
const S: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const UP: u32 = 1;
const LAN_A: u32 = 2;
const LAN_B: u32 = 3;

fn t0() -> Instant {
    crate::daemon::now()
}

fn src(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, n)
}

fn config() -> CtlConfig {
    CtlConfig {
        full: true,
        per_source: false,
        learn: true,
        statics: Vec::new(),
        max_routes: 100,
        route_idle: Duration::from_secs(60),
        max_memberships: 100,
    }
}

fn route(iif: u32, oifs: &[u32]) -> PlaneRoute {
    PlaneRoute {
        iif,
        oifs: oifs.to_vec(),
    }
}

struct Fixture {
    c: Controller,
    plane: Arc<PlaneSync>,
    now: Instant,
}

impl Fixture {
    fn new(config: CtlConfig) -> Self {
        let plane = Arc::new(PlaneSync::new(1000));
        let now = t0();
        let c = Controller::new(config, Arc::clone(&plane), now);
        Self { c, plane, now }
    }

    fn state(&self) -> PlaneState {
        self.plane.with_state(Clone::clone)
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.c.poll_action()).collect()
    }

    fn routes(&mut self) -> Vec<Action> {
        self.actions()
            .into_iter()
            .filter(|a| matches!(a, Action::Route(..)))
            .collect()
    }

    /// Advances virtual time by `d`, handling every timer on the way as a driver would.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.c.poll_timeout().filter(|&t| t <= end) {
            self.now = self.now.max(at);
            self.c.handle_timeout(self.now);
        }
        self.now = end;
    }

    fn report(&mut self, ifindex: u32, group: Ipv4Addr, join: bool) {
        self.c.handle_report(
            self.now,
            &IgmpReport {
                ifindex,
                reporter: Ipv4Addr::new(10, 0, 3, 11),
                changes: vec![IgmpChange { group, join }],
            },
        );
    }
}

#[test]
fn static_routes_follow_their_downstream_and_the_members() {
    let mut cfg = config();
    cfg.statics.push(StaticRoute {
        group: G,
        source: Some(S),
        upstream: UP,
        downstream: vec![LAN_A],
    });
    let mut f = Fixture::new(cfg);
    let key = RouteKey::sg(S, G);
    assert_eq!(f.routes(), [Action::Route(key, Some(route(UP, &[LAN_A])))]);
    f.report(LAN_B, G, true);
    // A member on the upstream interface is never an outgoing one.
    f.report(UP, G, true);
    assert_eq!(
        f.routes(),
        [Action::Route(key, Some(route(UP, &[LAN_A, LAN_B])))]
    );
    let st = f.state();
    assert_eq!(st.routes.get(&key), Some(&route(UP, &[LAN_A, LAN_B])));
    assert!(st.assisted.contains(&G));
    // Members and a static (S,G) only: other sources of G are learned.
    assert!(st.learn.contains(&G));
    assert_eq!(f.c.route(S, G).map(|r| r.0), Some(key));
    assert_eq!(f.c.route(src(9), G), None);
}

#[test]
fn a_new_source_is_learned_from_its_interface_and_dropped_when_idle() {
    let mut f = Fixture::new(config());
    f.report(LAN_A, G, true);
    assert!(f.state().learn.contains(&G) && f.state().assisted.contains(&G));
    let key = f.c.handle_packet(f.now, S, G, UP);
    assert_eq!(key, Some(RouteKey::sg(S, G)));
    assert_eq!(
        f.routes(),
        [Action::Route(RouteKey::sg(S, G), Some(route(UP, &[LAN_A])))]
    );
    // Packets keep it alive; packets from another interface do not.
    for _ in 0..3 {
        f.advance(Duration::from_secs(50));
        f.c.handle_packet(f.now, S, G, UP);
        f.c.handle_packet(f.now, S, G, LAN_B);
    }
    assert!(f.routes().is_empty());
    assert_eq!(f.c.route_count(), 1);
    f.advance(Duration::from_secs(50));
    f.c.handle_packet(f.now, S, G, LAN_B);
    assert!(f.routes().is_empty());
    f.advance(Duration::from_secs(11));
    assert_eq!(f.routes(), [Action::Route(RouteKey::sg(S, G), None)]);
    assert_eq!(f.c.stats().routes_expired, 1);
    assert!(f.state().routes.is_empty());
    // The group keeps its members, so it stays assisted and learning.
    assert!(f.state().learn.contains(&G));
}

#[test]
fn learned_routes_are_bounded_and_the_least_recently_heard_goes() {
    let mut cfg = config();
    cfg.max_routes = 3;
    let mut f = Fixture::new(cfg);
    for n in 1..=3 {
        f.c.handle_packet(f.now, src(n), G, UP);
        f.advance(Duration::from_secs(1));
    }
    f.c.handle_packet(f.now, src(1), G, UP);
    f.actions();
    // A flood of new sources: each costs one eviction, the table never grows.
    for n in 10..110 {
        f.c.handle_packet(f.now, src(n), G, UP);
        assert!(f.c.learned_count() <= 3);
    }
    assert_eq!(f.c.stats().routes_evicted, 100);
    assert_eq!(f.c.route_count(), 3);
    assert_eq!(f.state().routes.len(), 3);
    // The source heard last before the flood outlived the two older ones for a while.
    assert_eq!(f.c.stats().routes_learned, 103);
}

#[test]
fn a_leave_draws_two_queries_and_the_membership_lapses_without_an_answer() {
    let mut f = Fixture::new(config());
    f.advance(Duration::ZERO);
    f.actions();
    f.report(LAN_A, G, true);
    f.report(LAN_B, G, true);
    f.c.handle_packet(f.now, S, G, UP);
    f.actions();
    f.report(LAN_A, G, false);
    f.report(LAN_A, G, false);
    assert_eq!(
        f.actions(),
        [Action::GroupQuery {
            ifindex: LAN_A,
            group: G
        }]
    );
    f.advance(Duration::from_millis(1500));
    assert_eq!(
        f.actions(),
        [Action::GroupQuery {
            ifindex: LAN_A,
            group: G
        }]
    );
    f.advance(Duration::from_secs(2));
    assert_eq!(
        f.routes(),
        [Action::Route(RouteKey::sg(S, G), Some(route(UP, &[LAN_B])))]
    );
    assert_eq!(f.c.memberships(), [(LAN_B, G)]);
    // A member that answers keeps the membership; the round still sends its second query.
    f.actions();
    f.report(LAN_B, G, false);
    f.advance(Duration::from_millis(500));
    f.report(LAN_B, G, true);
    f.advance(Duration::from_secs(10));
    assert_eq!(f.c.memberships(), [(LAN_B, G)]);
    let q = Action::GroupQuery {
        ifindex: LAN_B,
        group: G,
    };
    assert_eq!(f.actions(), [q.clone(), q]);
    // A later leave starts a new round of queries, and without an answer it lapses.
    f.report(LAN_B, G, false);
    assert_eq!(
        f.actions(),
        [Action::GroupQuery {
            ifindex: LAN_B,
            group: G
        }]
    );
    f.advance(Duration::from_secs(5));
    assert!(f.c.memberships().is_empty());
}

#[test]
fn memberships_are_bounded_and_refusals_counted() {
    let mut cfg = config();
    cfg.max_memberships = 2;
    let mut f = Fixture::new(cfg);
    f.report(LAN_A, G, true);
    f.report(LAN_A, G2, true);
    for n in 0..50 {
        f.report(LAN_A, Ipv4Addr::new(239, 9, 0, n), true);
    }
    assert_eq!(f.c.membership_count(), 2);
    assert_eq!(f.c.stats().memberships_refused, 50);
    // Link-local groups are never members.
    f.report(LAN_B, Ipv4Addr::new(224, 0, 0, 251), true);
    assert_eq!(f.c.stats().memberships_refused, 50);
    // Memberships lapse after 260 s without a report.
    f.advance(MEMBERSHIP_TIMEOUT + Duration::from_secs(1));
    assert_eq!(f.c.membership_count(), 0);
    assert!(f.state().assisted.is_empty() && f.state().learn.is_empty());
}

#[test]
fn any_source_routes_cover_every_source_on_the_netdev_plane() {
    let mut cfg = config();
    cfg.statics.push(StaticRoute {
        group: G,
        source: None,
        upstream: UP,
        downstream: vec![LAN_A, LAN_B],
    });
    let mut f = Fixture::new(cfg);
    f.report(LAN_A, G, true);
    let st = f.state();
    assert_eq!(st.routes.len(), 1);
    assert!(
        !st.learn.contains(&G),
        "the (*,G) route forwards every source"
    );
    assert_eq!(f.c.handle_packet(f.now, S, G, UP), Some(RouteKey::any(G)));
    assert_eq!(f.c.learned_count(), 0);
}

#[test]
fn any_source_routes_make_per_source_entries_on_the_mroute_plane() {
    let mut cfg = config();
    cfg.per_source = true;
    cfg.learn = false;
    cfg.statics.push(StaticRoute {
        group: G,
        source: None,
        upstream: UP,
        downstream: vec![LAN_A],
    });
    let mut f = Fixture::new(cfg);
    f.actions();
    // The kernel's upcall for a packet that came in on the wrong interface: the entry still
    // follows the static route (the kernel then refuses the wrong interface itself).
    assert_eq!(
        f.c.handle_packet(f.now, S, G, LAN_B),
        Some(RouteKey::sg(S, G))
    );
    assert_eq!(
        f.routes(),
        [Action::Route(RouteKey::sg(S, G), Some(route(UP, &[LAN_A])))]
    );
    assert!(f.state().learn.is_empty());
}

#[test]
fn assist_only_follows_the_kernels_routes() {
    let mut cfg = config();
    cfg.full = false;
    let mut f = Fixture::new(cfg);
    assert!(
        f.actions().is_empty(),
        "no queries: the other daemon is the querier"
    );
    f.report(LAN_A, G, true);
    assert_eq!(f.c.membership_count(), 0);
    assert_eq!(f.c.handle_packet(f.now, S, G, UP), None);
    f.c.set_kernel_routes([(RouteKey::sg(S, G), route(UP, &[LAN_A, LAN_B]))]);
    assert_eq!(f.c.handle_packet(f.now, S, G, UP), Some(RouteKey::sg(S, G)));
    assert_eq!(
        f.routes(),
        [Action::Route(
            RouteKey::sg(S, G),
            Some(route(UP, &[LAN_A, LAN_B]))
        )]
    );
    f.c.set_kernel_routes([]);
    assert_eq!(f.routes(), [Action::Route(RouteKey::sg(S, G), None)]);
    assert!(f.state().assisted.is_empty());
}

#[test]
fn general_queries_start_twice_quickly_then_every_interval() {
    let mut f = Fixture::new(config());
    f.advance(Duration::ZERO);
    assert_eq!(f.actions(), [Action::GeneralQuery { startup: true }]);
    f.advance(STARTUP_QUERY_IVL);
    assert_eq!(f.actions(), [Action::GeneralQuery { startup: true }]);
    f.advance(QUERY_INTERVAL - Duration::from_millis(1));
    assert!(f.actions().is_empty());
    f.advance(Duration::from_millis(1));
    assert_eq!(f.actions(), [Action::GeneralQuery { startup: false }]);
}

#[test]
fn a_reload_lowering_the_bound_evicts_and_new_statics_apply() {
    let mut f = Fixture::new(config());
    for n in 1..=5 {
        f.c.handle_packet(f.now, src(n), G, UP);
    }
    f.actions();
    let mut cfg = config();
    cfg.max_routes = 2;
    cfg.statics.push(StaticRoute {
        group: G2,
        source: Some(S),
        upstream: UP,
        downstream: vec![LAN_B],
    });
    f.c.reconfigure(cfg);
    assert_eq!(f.c.learned_count(), 2);
    assert_eq!(f.c.stats().routes_evicted, 3);
    assert_eq!(f.c.route_count(), 3);
    let routes = f.routes();
    assert_eq!(routes.len(), 4, "{routes:?}");
    assert!(routes.contains(&Action::Route(
        RouteKey::sg(S, G2),
        Some(route(UP, &[LAN_B]))
    )));
}
