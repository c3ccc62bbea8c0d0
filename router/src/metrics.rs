//! Prometheus metrics (`/metrics`), filled at scrape time from the daemon's state so that the
//! counters the engine keeps and the per-interface traffic are exported exactly as they are
//! (and restart at zero after `POST /api/v1/clear/counters`, as after a daemon restart).

use pgm_core::proto::network_element::NeStats;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::state::Shared;

type StatFn = fn(&NeStats) -> u64;
type DaemonFn = fn(&Shared) -> u64;
type GaugeFn = fn(&Shared) -> i64;

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
        "ignored_packets_total",
        "packets ignored (wrong interface, no route, TTL, other types)",
        |s| s.ignored,
    ),
];

/// The registry and every metric.
pub(crate) struct Metrics {
    registry: Registry,
    engine: Vec<(IntCounter, StatFn)>,
    packets_in: IntCounterVec,
    bytes_in: IntCounterVec,
    packets_out: IntCounterVec,
    bytes_out: IntCounterVec,
    evictions: IntCounterVec,
    malformed: IntCounterVec,
    upcalls: IntCounterVec,
    children: IntGaugeVec,
    daemon: Vec<(IntCounter, DaemonFn)>,
    gauges: Vec<(IntGauge, GaugeFn)>,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(format!("pgm_router_{name}"), help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(format!("pgm_router_{name}"), help), labels)
        .expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(format!("pgm_router_{name}"), help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let r = Registry::new();
        let engine = ENGINE_COUNTERS
            .iter()
            .map(|&(n, h, f)| (counter(&r, n, h), f))
            .collect();
        let traffic = ["interface", "type"];
        let daemon: Vec<(IntCounter, DaemonFn)> = vec![
            (
                counter(
                    &r,
                    "duplicates_suppressed_total",
                    "packets seen through both the Router Alert and the intercept socket, second copy dropped",
                ),
                |s| s.extra.duplicates,
            ),
            (
                counter(
                    &r,
                    "odata_slow_path_total",
                    "ODATA carrying Router Alert, forwarded in user space",
                ),
                |s| s.extra.odata_slow_path,
            ),
            (
                counter(&r, "send_errors_total", "transmits the kernel refused"),
                |s| s.extra.send_errors,
            ),
            (
                counter(
                    &r,
                    "intercept_overruns_total",
                    "times the kernel reported intercepted packets lost (the daemon's log socket was full; one or more each)",
                ),
                |s| s.extra.intercept_overruns,
            ),
            (
                counter(
                    &r,
                    "intercept_foreign_total",
                    "intercepted packets that came in on an interface their group is not routed from, dropped",
                ),
                |s| s.extra.intercept_foreign,
            ),
            (
                counter(
                    &r,
                    "undecodable_total",
                    "received datagrams that held no IPv4 packet to handle, dropped",
                ),
                |s| s.extra.undecodable,
            ),
            (
                counter(&r, "mfc_updates_total", "MFC entries installed or changed"),
                |s| s.extra.mfc_updates,
            ),
            (
                counter(
                    &r,
                    "igmp_reports_total",
                    "IGMP membership reports and leaves heard",
                ),
                |s| s.extra.igmp_reports,
            ),
        ];
        let gauges: Vec<(IntGauge, GaugeFn)> = vec![
            (gauge(&r, "tsis", "TSIs with source path state"), |s| {
                to_i64(s.engine.tsi_count())
            }),
            (
                gauge(&r, "tsis_limit", "most TSIs kept (limits.max_tsis)"),
                |s| to_i64(s.engine.config().max_tsis),
            ),
            (
                gauge(&r, "repair_states", "repair states over all TSIs"),
                |s| to_i64(s.engine.repair_state_count()),
            ),
            (
                gauge(
                    &r,
                    "repair_states_limit",
                    "most repair states kept (limits.max_repair_states)",
                ),
                |s| to_i64(s.engine.config().max_repair_states),
            ),
            (
                gauge(&r, "routes", "(S,G) routes known to the network element"),
                |s| to_i64(s.routes.len()),
            ),
            (
                gauge(
                    &r,
                    "igmp_memberships",
                    "(interface, group) memberships learned from IGMP",
                ),
                |s| to_i64(s.memberships.len()),
            ),
        ];
        Self {
            engine,
            packets_in: counter_vec(
                &r,
                "received_packets_total",
                "PGM packets received by the daemon (punted, intercepted or unicast to it), by interface and PGM type",
                &traffic,
            ),
            bytes_in: counter_vec(
                &r,
                "received_bytes_total",
                "bytes of PGM packets received (IP header included), by interface and PGM type",
                &traffic,
            ),
            packets_out: counter_vec(
                &r,
                "sent_packets_total",
                "PGM packets sent by the daemon, by interface and PGM type",
                &traffic,
            ),
            bytes_out: counter_vec(
                &r,
                "sent_bytes_total",
                "bytes of PGM packets sent (IP header included), by interface and PGM type",
                &traffic,
            ),
            evictions: counter_vec(
                &r,
                "evictions_total",
                "state evicted by a limit, by table (tsi, repair_state)",
                &["table"],
            ),
            malformed: counter_vec(
                &r,
                "malformed_packets_total",
                "malformed packets dropped, by reason",
                &["reason"],
            ),
            upcalls: counter_vec(
                &r,
                "mroute_upcalls_total",
                "kernel multicast routing upcalls, by kind",
                &["kind"],
            ),
            children: {
                let g = IntGaugeVec::new(
                    Opts::new("pgm_router_children", "PGM children (receivers, DLRs) counted by the last completed general poll, by TSI and interface"),
                    &["tsi", "interface"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            daemon,
            gauges,
            registry: r,
        }
    }

    /// Updates every metric from `s` and renders the text exposition format.
    pub(crate) fn render(&self, s: &Shared) -> String {
        let st = s.engine.stats();
        for (c, f) in &self.engine {
            c.reset();
            c.inc_by(f(st));
        }
        for (c, f) in &self.daemon {
            c.reset();
            c.inc_by(f(s));
        }
        for (g, f) in &self.gauges {
            g.set(f(s));
        }
        for v in [
            &self.packets_in,
            &self.bytes_in,
            &self.packets_out,
            &self.bytes_out,
        ] {
            v.reset();
        }
        for ((ifindex, dir, ty), c) in &s.traffic {
            let name = s.name_of(*ifindex);
            let (p, b) = if *dir == crate::state::Dir::In {
                (&self.packets_in, &self.bytes_in)
            } else {
                (&self.packets_out, &self.bytes_out)
            };
            p.with_label_values(&[name.as_str(), ty]).inc_by(c.packets);
            b.with_label_values(&[name.as_str(), ty]).inc_by(c.bytes);
        }
        self.evictions.reset();
        self.evictions
            .with_label_values(&["tsi"])
            .inc_by(st.tsis_evicted);
        self.evictions
            .with_label_values(&["repair_state"])
            .inc_by(st.repair_states_evicted);
        self.malformed.reset();
        for (reason, n) in st.malformed.iter() {
            self.malformed.with_label_values(&[reason]).inc_by(n);
        }
        self.upcalls.reset();
        for (kind, n) in &s.extra.upcalls {
            self.upcalls.with_label_values(&[kind]).inc_by(*n);
        }
        self.children.reset();
        for tsi in s.engine.tsi_list() {
            if let Some(snap) = s.engine.tsi_snapshot(&tsi) {
                for (ifx, n) in snap.children {
                    self.children
                        .with_label_values(&[tsi.to_string().as_str(), s.name_of(ifx.0).as_str()])
                        .set(i64::from(n));
                }
            }
        }
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
