//! What the driver and the admin API share: the engine, the controller and the daemon's own
//! counters, behind one lock that the driver takes once per packet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pgm_core::proto::network_element::{NetworkElement, RepairPhase};
use serde::Serialize;
use serde_json::{Value, json};

use crate::control::Controller;
use crate::dataplane::PlaneStats;

/// Direction of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Dir {
    In,
    Out,
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Count {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

/// Counters of the daemon itself (the engine and the controller keep their own).
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    pub(crate) duplicates: u64,
    pub(crate) odata_slow_path: u64,
    pub(crate) send_errors: u64,
    /// Times the kernel reported log messages of the intercept lost (its socket was full).
    pub(crate) intercept_overruns: u64,
    /// Multicast packets of a route that came in on another interface than the route's
    /// upstream one (dropped: the kernel would not forward them either).
    pub(crate) intercept_foreign: u64,
    /// Received datagrams that held no IPv4 packet to handle (dropped).
    pub(crate) undecodable: u64,
    /// Packets from interfaces the daemon does not serve (dropped).
    pub(crate) unknown_interface: u64,
    pub(crate) route_updates: u64,
    pub(crate) upcalls: BTreeMap<&'static str, u64>,
}

/// The shared state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: NetworkElement,
    pub(crate) ctl: Controller,
    /// (ifindex, direction, PGM type label) -> count.
    pub(crate) traffic: BTreeMap<(u32, Dir, &'static str), Count>,
    pub(crate) names: HashMap<u32, String>,
    pub(crate) extra: Extra,
    pub(crate) mode: &'static str,
    pub(crate) intercept: &'static str,
    /// The data plane's name and why it was chosen.
    pub(crate) dataplane: (&'static str, String),
    pub(crate) plane: Arc<PlaneStats>,
    /// The plane's counters when they were last cleared (they cannot be zeroed in the
    /// kernel without a transaction).
    pub(crate) plane_base: PlaneCounts,
}

/// The data plane's kernel counters, by name (see `pgm_core::net::router::netdev::COUNTERS`).
pub(crate) type PlaneCounts = BTreeMap<&'static str, u64>;

impl Shared {
    pub(crate) fn name_of(&self, ifindex: u32) -> String {
        self.names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}"))
    }

    pub(crate) fn count(&mut self, ifindex: u32, dir: Dir, ty: &'static str, bytes: usize) {
        let c = self.traffic.entry((ifindex, dir, ty)).or_default();
        c.packets += 1;
        c.bytes += bytes as u64;
    }

    /// Zeroes every counter (engine, controller, daemon, and the plane's as shown).
    pub(crate) fn clear_counters(&mut self) {
        self.engine.clear_stats();
        self.ctl.clear_stats();
        self.traffic.clear();
        self.extra = Extra::default();
        self.plane_base = self.plane_raw();
    }

    /// The data plane's kernel counters as the kernel has them.
    fn plane_raw(&self) -> PlaneCounts {
        let mut c = PlaneCounts::new();
        if let Some(n) = self.plane.netdev_counters() {
            c.extend(n.named());
        }
        if self.dataplane.0 == "mroute" {
            c.insert("stopped", self.plane.stopped.load(Ordering::Relaxed));
        }
        c.insert(
            "transactions",
            self.plane.transactions.load(Ordering::Relaxed),
        );
        c.insert("errors", self.plane.errors.load(Ordering::Relaxed));
        c
    }

    /// The data plane's counters since the last clear.
    pub(crate) fn plane_counts(&self) -> PlaneCounts {
        let mut c = self.plane_raw();
        for (k, v) in &mut c {
            *v = v.saturating_sub(self.plane_base.get(k).copied().unwrap_or(0));
        }
        c
    }

    /// `GET /api/v1/state`: per TSI, the upstream neighbour and interface and the repair
    /// states (`show ip pgm router state`); the routes and IGMP memberships.
    pub(crate) fn state_json(&self) -> Value {
        let tsis: Vec<Value> = self
            .engine
            .tsi_list()
            .iter()
            .filter_map(|tsi| self.engine.tsi_snapshot(tsi))
            .map(|t| {
                let repairs: Vec<Value> = t
                    .repairs
                    .iter()
                    .map(|r| {
                        json!({
                            "sqn": r.sqn.0,
                            "phase": match r.phase {
                                RepairPhase::Pending => "pending",
                                RepairPhase::Outstanding => "outstanding",
                            },
                            "interfaces": r.interfaces.iter().map(|i| self.name_of(i.0)).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let children: BTreeMap<String, u32> = t
                    .children
                    .iter()
                    .map(|(i, n)| (self.name_of(i.0), *n))
                    .collect();
                json!({
                    "tsi": t.tsi.to_string(),
                    "source": t.source.to_string(),
                    "group": t.group.to_string(),
                    "upstream_neighbour": t.upstream_neighbour.to_string(),
                    "upstream_interface": self.name_of(t.upstream_interface.0),
                    "last_spm_sqn": t.last_spm_sqn.0,
                    "window": t.window.map(|(trail, lead)| json!({"trail": trail.0, "lead": lead.0})),
                    "repair_states": repairs,
                    "children": children,
                })
            })
            .collect();
        let routes: Vec<Value> = self
            .ctl
            .routes()
            .iter()
            .map(|(k, r)| {
                json!({
                    "source": k.source.map_or_else(|| "*".to_owned(), |s| s.to_string()),
                    "group": k.group.to_string(),
                    "upstream_interface": self.name_of(r.iif),
                    "downstream_interfaces": r.oifs.iter().map(|i| self.name_of(*i)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let members: Vec<Value> = self
            .ctl
            .memberships()
            .iter()
            .map(|(i, g)| json!({"interface": self.name_of(*i), "group": g.to_string()}))
            .collect();
        json!({
            "mode": self.mode,
            "intercept": self.intercept,
            "dataplane": self.dataplane.0,
            "dataplane_reason": self.dataplane.1,
            "tsi_count": self.engine.tsi_count(),
            "repair_state_count": self.engine.repair_state_count(),
            "tsis": tsis,
            "routes": routes,
            "igmp_memberships": members,
        })
    }

    /// `GET /api/v1/traffic`: per interface, packets and bytes in and out by PGM type
    /// (`show ip pgm router traffic`), and the engine's totals.
    pub(crate) fn traffic_json(&self) -> Value {
        let mut ifaces: BTreeMap<String, BTreeMap<&str, BTreeMap<&str, Count>>> = BTreeMap::new();
        for name in self.names.values() {
            let e = ifaces.entry(name.clone()).or_default();
            e.entry("in").or_default();
            e.entry("out").or_default();
        }
        for ((i, dir, ty), c) in &self.traffic {
            let d = if *dir == Dir::In { "in" } else { "out" };
            ifaces
                .entry(self.name_of(*i))
                .or_default()
                .entry(d)
                .or_default()
                .insert(ty, *c);
        }
        let s = self.engine.stats();
        let c = self.ctl.stats();
        let malformed: BTreeMap<&str, u64> = s.malformed.iter().collect();
        json!({
            "interfaces": ifaces,
            "dataplane": self.plane_counts(),
            "routing": {
                "routes_learned": c.routes_learned,
                "routes_evicted": c.routes_evicted,
                "routes_expired": c.routes_expired,
                "igmp_reports": c.igmp_reports,
                "memberships_refused": c.memberships_refused,
                "memberships_expired": c.memberships_expired,
            },
            "engine": {
                "spms_received": s.spms_received,
                "spms_forwarded": s.spms_forwarded,
                "spms_out_of_sequence": s.spms_out_of_sequence,
                "spms_no_route": s.spms_no_route,
                "spms_wrong_interface": s.spms_wrong_interface,
                "spms_wrong_source": s.spms_wrong_source,
                "naks_received": s.naks_received,
                "naks_forwarded": s.naks_forwarded,
                "naks_repeated": s.naks_repeated,
                "naks_eliminated": s.naks_eliminated,
                "naks_anticipated": s.naks_anticipated,
                "naks_no_state": s.naks_no_state,
                "naks_unconfirmed": s.naks_unconfirmed,
                "naks_outside_window": s.naks_outside_window,
                "nak_sqns_outside_window": s.nak_sqns_outside_window,
                "nnaks_received": s.nnaks_received,
                "nnaks_forwarded": s.nnaks_forwarded,
                "ncfs_sent": s.ncfs_sent,
                "ncfs_rate_limited": s.ncfs_rate_limited,
                "ncfs_received": s.ncfs_received,
                "rdata_forwarded": s.rdata_forwarded,
                "rdata_copies": s.rdata_copies,
                "rdata_dropped_no_state": s.rdata_no_state,
                "repair_states_expired": s.repair_states_expired,
                "repair_states_evicted": s.repair_states_evicted,
                "tsis_evicted": s.tsis_evicted,
                "tsis_expired": s.tsis_expired,
                "polls_sent": s.polls_sent,
                "polrs_received": s.polrs_received,
                "transmits_dropped": s.transmits_dropped,
                "ignored": s.ignored,
                "malformed": malformed,
            },
            "daemon": {
                "duplicates_suppressed": self.extra.duplicates,
                "odata_slow_path": self.extra.odata_slow_path,
                "send_errors": self.extra.send_errors,
                "intercept_overruns": self.extra.intercept_overruns,
                "intercept_foreign": self.extra.intercept_foreign,
                "undecodable": self.extra.undecodable,
                "unknown_interface": self.extra.unknown_interface,
                "route_updates": self.extra.route_updates,
                "mroute_upcalls": self.extra.upcalls,
            },
        })
    }
}
