//! Prometheus metrics (`/metrics`), read at scrape time: a collector copies the counters the
//! engine, the controller, the daemon and the data plane keep (under the shared lock, for as
//! long as copying numbers takes) and builds the metric families from the copy. Nothing is
//! reset or counted twice, and no label takes a value from the network: interfaces, PGM
//! types, drop reasons and table names are all fixed sets.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use pgm_core::proto::network_element::NeStats;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::control::CtlStats;
use crate::state::{Count, Dir, Extra, PlaneCounts, Shared};

type StatFn = fn(&NeStats) -> u64;
type ExtraFn = fn(&Extra) -> u64;
type CtlFn = fn(&CtlStats) -> u64;

/// Engine counters: name (after `pgm_router_`), help, accessor.
const ENGINE_COUNTERS: &[(&str, &str, StatFn)] = &[
    ("spms_received_total", "SPMs received", |s| s.spms_received),
    (
        "spms_forwarded_total",
        "SPM copies forwarded (SPM_PATH rewritten)",
        |s| s.spms_forwarded,
    ),
    (
        "spms_out_of_sequence_total",
        "SPMs dropped as out of sequence",
        |s| s.spms_out_of_sequence,
    ),
    (
        "spms_no_route_total",
        "SPMs dropped: no route for their (source, group), so no interface to accept them from",
        |s| s.spms_no_route,
    ),
    (
        "spms_wrong_interface_total",
        "SPMs dropped: they came in on another interface than their route's upstream one",
        |s| s.spms_wrong_interface,
    ),
    (
        "spms_wrong_source_total",
        "SPMs dropped: their TSI's path state belongs to another source address",
        |s| s.spms_wrong_source,
    ),
    ("naks_received_total", "NAKs received", |s| s.naks_received),
    (
        "naks_forwarded_total",
        "NAKs forwarded upstream (first transmissions)",
        |s| s.naks_forwarded,
    ),
    (
        "naks_repeated_total",
        "NAK repeats while waiting for an NCF",
        |s| s.naks_repeated,
    ),
    (
        "naks_eliminated_total",
        "duplicate NAKs eliminated (RFC 3208 7.4)",
        |s| s.naks_eliminated,
    ),
    (
        "naks_anticipated_total",
        "repair states created from unsolicited upstream NCFs (7.5)",
        |s| s.naks_anticipated,
    ),
    (
        "naks_no_state_total",
        "NAKs dropped: TSI without source path state",
        |s| s.naks_no_state,
    ),
    (
        "naks_unconfirmed_total",
        "NAK forwarding cancelled: no NCF within NAK_RPT_IVL",
        |s| s.naks_unconfirmed,
    ),
    (
        "naks_outside_window_total",
        "NAKs and NNAKs dropped: none of their sequence numbers in the session's transmit window (limits.nak_window_slack past its leading edge)",
        |s| s.naks_outside_window,
    ),
    (
        "nak_sqns_outside_window_total",
        "sequence numbers of NAKs and NNAKs outside the session's transmit window, left out of the NCF and the forwarded NAK",
        |s| s.nak_sqns_outside_window,
    ),
    (
        "nak_sources_rewritten_total",
        "Forwarded NAKs whose NAK_SRC was not the session's source (OpenPGM receivers) and was rewritten",
        |s| s.nak_sources_rewritten,
    ),
    ("nnaks_received_total", "NNAKs received", |s| {
        s.nnaks_received
    }),
    ("nnaks_forwarded_total", "NNAKs forwarded upstream", |s| {
        s.nnaks_forwarded
    }),
    ("ncfs_sent_total", "NCFs sent", |s| s.ncfs_sent),
    (
        "ncfs_rate_limited_total",
        "NCFs not sent by the NAK storm rate limit",
        |s| s.ncfs_rate_limited,
    ),
    ("ncfs_received_total", "NCFs received", |s| s.ncfs_received),
    (
        "rdata_forwarded_total",
        "RDATA packets forwarded (to one or more interfaces)",
        |s| s.rdata_forwarded,
    ),
    ("rdata_copies_total", "RDATA copies sent", |s| {
        s.rdata_copies
    }),
    (
        "rdata_dropped_no_state_total",
        "RDATA dropped for lack of repair state (7.8)",
        |s| s.rdata_no_state,
    ),
    (
        "repair_states_expired_total",
        "repair states expired without RDATA",
        |s| s.repair_states_expired,
    ),
    ("tsis_expired_total", "TSIs expired for lack of SPMs", |s| {
        s.tsis_expired
    }),
    (
        "opx_discarded_total",
        "packets discarded by an unknown option's OPX",
        |s| s.opx_discarded,
    ),
    (
        "opx_invalidated_total",
        "unknown options invalidated by OPX",
        |s| s.opx_invalidated,
    ),
    ("polls_sent_total", "general POLLs sent", |s| s.polls_sent),
    (
        "polrs_received_total",
        "POLRs received in answer to our POLLs",
        |s| s.polrs_received,
    ),
    (
        "transmits_dropped_total",
        "packets the engine dropped because too many were queued for sending",
        |s| s.transmits_dropped,
    ),
    (
        "ignored_packets_total",
        "packets ignored (wrong interface, no route, TTL, other types)",
        |s| s.ignored,
    ),
];

/// Daemon counters: name, help, accessor.
const DAEMON_COUNTERS: &[(&str, &str, ExtraFn)] = &[
    (
        "duplicates_suppressed_total",
        "packets seen through both the Router Alert and the intercept socket, second copy dropped",
        |e| e.duplicates,
    ),
    (
        "odata_slow_path_total",
        "ODATA forwarded in user space (carrying Router Alert, or a new source's first packets)",
        |e| e.odata_slow_path,
    ),
    ("send_errors_total", "transmits the kernel refused", |e| {
        e.send_errors
    }),
    (
        "intercept_overruns_total",
        "times the kernel reported intercepted packets lost (the daemon's log socket was full; one or more each)",
        |e| e.intercept_overruns,
    ),
    (
        "intercept_foreign_total",
        "multicast packets of a route that came in on another interface than its upstream one, dropped",
        |e| e.intercept_foreign,
    ),
    (
        "undecodable_total",
        "received datagrams that held no IPv4 packet to handle, dropped",
        |e| e.undecodable,
    ),
    (
        "unknown_interface_total",
        "packets from interfaces the daemon does not serve, dropped",
        |e| e.unknown_interface,
    ),
    (
        "route_updates_total",
        "route changes pushed to the engine and the data plane",
        |e| e.route_updates,
    ),
];

/// Controller counters: name, help, accessor.
const CONTROL_COUNTERS: &[(&str, &str, CtlFn)] = &[
    (
        "routes_learned_total",
        "(S,G) routes learned from a source's first packet",
        |c| c.routes_learned,
    ),
    (
        "routes_expired_total",
        "learned routes dropped after route_idle without a packet",
        |c| c.routes_expired,
    ),
    (
        "igmp_reports_total",
        "IGMP membership reports and leaves heard",
        |c| c.igmp_reports,
    ),
    (
        "memberships_refused_total",
        "new IGMP memberships refused at limits.max_memberships",
        |c| c.memberships_refused,
    ),
    (
        "memberships_expired_total",
        "IGMP memberships that lapsed",
        |c| c.memberships_expired,
    ),
];

/// Everything a scrape shows, copied under the lock.
struct Snapshot {
    ne: NeStats,
    ctl: CtlStats,
    extra: Extra,
    gauges: Vec<(&'static str, &'static str, u64)>,
    traffic: Vec<(String, Dir, &'static str, Count)>,
    children: Vec<(String, u64)>,
    upcalls: Vec<(&'static str, u64)>,
    dataplane: &'static str,
    plane: PlaneCounts,
}

impl Snapshot {
    fn take(s: &Shared) -> Self {
        let (max_routes, max_memberships) = s.ctl.limits();
        let mut children = std::collections::BTreeMap::<String, u64>::new();
        for tsi in s.engine.tsi_list() {
            if let Some(snap) = s.engine.tsi_snapshot(&tsi) {
                for (ifx, n) in snap.children {
                    *children.entry(s.name_of(ifx.0)).or_default() += u64::from(n);
                }
            }
        }
        let u = |n: usize| n as u64;
        Self {
            ne: s.engine.stats().clone(),
            ctl: s.ctl.stats().clone(),
            extra: s.extra.clone(),
            gauges: vec![
                (
                    "tsis",
                    "TSIs with source path state",
                    u(s.engine.tsi_count()),
                ),
                (
                    "tsis_limit",
                    "most TSIs kept (limits.max_tsis)",
                    u(s.engine.config().max_tsis),
                ),
                (
                    "repair_states",
                    "repair states over all TSIs",
                    u(s.engine.repair_state_count()),
                ),
                (
                    "repair_states_limit",
                    "most repair states kept (limits.max_repair_states)",
                    u(s.engine.config().max_repair_states),
                ),
                (
                    "routes",
                    "routes in force: static, learned and (assist-only) the kernel's",
                    u(s.ctl.route_count()),
                ),
                (
                    "learned_routes",
                    "(S,G) routes learned from a source's first packet",
                    u(s.ctl.learned_count()),
                ),
                (
                    "learned_routes_limit",
                    "most learned routes kept (limits.max_routes)",
                    u(max_routes),
                ),
                (
                    "igmp_memberships",
                    "(interface, group) memberships learned from IGMP",
                    u(s.ctl.membership_count()),
                ),
                (
                    "igmp_memberships_limit",
                    "most IGMP memberships kept (limits.max_memberships)",
                    u(max_memberships),
                ),
                (
                    "dataplane_kernel_routes",
                    "routes the data plane holds in the kernel",
                    s.plane.kernel_routes.load(Ordering::Relaxed),
                ),
            ],
            traffic: s
                .traffic
                .iter()
                .map(|(&(i, d, t), &c)| (s.name_of(i), d, t, c))
                .collect(),
            children: children.into_iter().collect(),
            upcalls: s.extra.upcalls.iter().map(|(&k, &v)| (k, v)).collect(),
            dataplane: s.dataplane.0,
            plane: s.plane_counts(),
        }
    }
}

/// Builds one family.
struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, ty: MetricType) -> Self {
        let mut mf = MetricFamily::default();
        mf.set_name(format!("pgm_router_{name}"));
        mf.set_help(help.to_owned());
        mf.set_field_type(ty);
        Self(mf)
    }

    fn add(&mut self, labels: &[(&str, &str)], value: u64) {
        let labels = labels
            .iter()
            .map(|&(n, v)| {
                let mut l = LabelPair::default();
                l.set_name(n.to_owned());
                l.set_value(v.to_owned());
                l
            })
            .collect();
        let mut m = Metric::from_label(labels);
        if self.0.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value as f64);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value as f64);
            m.set_gauge(g);
        }
        self.0.mut_metric().push(m);
    }

    fn with(mut self, labels: &[(&str, &str)], value: u64) -> Self {
        self.add(labels, value);
        self
    }
}

fn counter(name: &str, help: &str, value: u64) -> MetricFamily {
    Family::new(name, help, MetricType::COUNTER)
        .with(&[], value)
        .0
}

fn gauge(name: &str, help: &str, value: u64) -> MetricFamily {
    Family::new(name, help, MetricType::GAUGE)
        .with(&[], value)
        .0
}

/// Every family of a snapshot.
fn families(s: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    for &(n, h, f) in ENGINE_COUNTERS {
        out.push(counter(n, h, f(&s.ne)));
    }
    for &(n, h, f) in DAEMON_COUNTERS {
        out.push(counter(n, h, f(&s.extra)));
    }
    for &(n, h, f) in CONTROL_COUNTERS {
        out.push(counter(n, h, f(&s.ctl)));
    }
    for &(n, h, v) in &s.gauges {
        out.push(gauge(n, h, v));
    }
    let traffic = [
        (
            "received_packets_total",
            "PGM packets received by the daemon (punted, intercepted or unicast to it), by interface and PGM type",
            Dir::In,
            true,
        ),
        (
            "received_bytes_total",
            "bytes of PGM packets received (IP header included), by interface and PGM type",
            Dir::In,
            false,
        ),
        (
            "sent_packets_total",
            "PGM packets sent by the daemon, by interface and PGM type",
            Dir::Out,
            true,
        ),
        (
            "sent_bytes_total",
            "bytes of PGM packets sent (IP header included), by interface and PGM type",
            Dir::Out,
            false,
        ),
    ];
    for (name, help, dir, packets) in traffic {
        let mut f = Family::new(name, help, MetricType::COUNTER);
        for (iface, d, ty, c) in &s.traffic {
            if *d == dir {
                let v = if packets { c.packets } else { c.bytes };
                f.add(&[("interface", iface), ("type", ty)], v);
            }
        }
        out.push(f.0);
    }
    out.push(
        Family::new(
            "evictions_total",
            "state evicted by a limit, by table (tsi, repair_state, route)",
            MetricType::COUNTER,
        )
        .with(&[("table", "tsi")], s.ne.tsis_evicted)
        .with(&[("table", "repair_state")], s.ne.repair_states_evicted)
        .with(&[("table", "route")], s.ctl.routes_evicted)
        .0,
    );
    let mut f = Family::new(
        "malformed_packets_total",
        "malformed packets dropped, by reason",
        MetricType::COUNTER,
    );
    for (reason, n) in s.ne.malformed.iter() {
        f.add(&[("reason", reason)], n);
    }
    out.push(f.0);
    let mut f = Family::new(
        "mroute_upcalls_total",
        "kernel multicast routing upcalls, by kind",
        MetricType::COUNTER,
    );
    for (kind, n) in &s.upcalls {
        f.add(&[("kind", kind)], *n);
    }
    out.push(f.0);
    let mut f = Family::new(
        "children",
        "PGM children (receivers, DLRs) counted by the last completed general polls, summed over TSIs, by interface",
        MetricType::GAUGE,
    );
    for (iface, n) in &s.children {
        f.add(&[("interface", iface)], *n);
    }
    out.push(f.0);
    out.push(
        Family::new(
            "dataplane_info",
            "the data plane that forwards ODATA (netdev or mroute): always 1",
            MetricType::GAUGE,
        )
        .with(&[("dataplane", s.dataplane)], 1)
        .0,
    );
    let mut f = Family::new(
        "dataplane_packets_total",
        "packets counted by the data plane's kernel rules, by event (forwarded: ODATA forwarded by the kernel; ttl_expired; rpf_drop: came in on another interface than the route's; intercepted: handed to the daemon; learn: a new source's ODATA handed to the daemon; learn_limited: dropped over limits.learn_rate; igmp; stopped: kernel forwarding stopped by the mroute plane's intercept)",
        MetricType::COUNTER,
    );
    for (ev, v) in &s.plane {
        if !matches!(*ev, "transactions" | "errors") {
            f.add(&[("event", ev)], *v);
        }
    }
    out.push(f.0);
    out.push(counter(
        "dataplane_transactions_total",
        "kernel transactions the data plane applied",
        s.plane.get("transactions").copied().unwrap_or(0),
    ));
    out.push(counter(
        "dataplane_errors_total",
        "kernel transactions refused (each followed by a full resynchronisation)",
        s.plane.get("errors").copied().unwrap_or(0),
    ));
    out
}

/// The label names of a family.
fn labels_of(name: &str) -> &'static [&'static str] {
    match name.trim_start_matches("pgm_router_") {
        "received_packets_total"
        | "received_bytes_total"
        | "sent_packets_total"
        | "sent_bytes_total" => &["interface", "type"],
        "evictions_total" => &["table"],
        "malformed_packets_total" => &["reason"],
        "mroute_upcalls_total" => &["kind"],
        "children" => &["interface"],
        "dataplane_info" => &["dataplane"],
        "dataplane_packets_total" => &["event"],
        _ => &[],
    }
}

/// The collector: reads the shared state when scraped.
struct RouterCollector {
    shared: Arc<Mutex<Shared>>,
    descs: Vec<Desc>,
}

impl Collector for RouterCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snap = {
            let s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            Snapshot::take(&s)
        };
        families(&snap)
    }
}

/// The registry with the router's collector.
pub(crate) struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub(crate) fn new(shared: Arc<Mutex<Shared>>) -> Self {
        // The descriptors: one per family, from the families of the current state.
        let descs = {
            let s = shared.lock().unwrap_or_else(PoisonError::into_inner);
            families(&Snapshot::take(&s))
                .iter()
                .filter_map(|f| {
                    let labels = labels_of(f.name())
                        .iter()
                        .map(|l| (*l).to_owned())
                        .collect();
                    Desc::new(
                        f.name().to_owned(),
                        f.help().to_owned(),
                        labels,
                        Default::default(),
                    )
                    .ok()
                })
                .collect()
        };
        let registry = Registry::new();
        // A failure here is a programming error in the names above (duplicates), not
        // something the network or the configuration can cause.
        registry
            .register(Box::new(RouterCollector { shared, descs }))
            .expect("the router's metric names are unique and valid");
        Self { registry }
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
