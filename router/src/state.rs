//! What the driver and the admin API share: the engine and the daemon's own counters.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use pgm_core::proto::network_element::{NetworkElement, RepairPhase};
use serde::Serialize;
use serde_json::{Value, json};

use crate::routes::Route;

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

/// Counters of the daemon itself (the engine keeps its own).
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    pub(crate) duplicates: u64,
    pub(crate) odata_slow_path: u64,
    pub(crate) send_errors: u64,
    /// Times the kernel reported log messages of the intercept lost (its socket was full).
    pub(crate) intercept_overruns: u64,
    /// Intercepted packets that came in on an interface their group is not routed from.
    pub(crate) intercept_foreign: u64,
    /// Received datagrams that held no IPv4 packet to handle (dropped).
    pub(crate) undecodable: u64,
    pub(crate) mfc_updates: u64,
    pub(crate) igmp_reports: u64,
    pub(crate) upcalls: BTreeMap<&'static str, u64>,
}

/// The shared state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: NetworkElement,
    /// (ifindex, direction, PGM type label) -> count.
    pub(crate) traffic: BTreeMap<(u32, Dir, &'static str), Count>,
    pub(crate) names: HashMap<u32, String>,
    pub(crate) extra: Extra,
    pub(crate) routes: BTreeMap<(Ipv4Addr, Ipv4Addr), Route>,
    pub(crate) memberships: Vec<(u32, Ipv4Addr)>,
    pub(crate) mode: &'static str,
    pub(crate) intercept: &'static str,
}

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

    /// Zeroes every counter (engine and daemon).
    pub(crate) fn clear_counters(&mut self) {
        self.engine.clear_stats();
        self.traffic.clear();
        self.extra = Extra::default();
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
                    "repair_states": repairs,
                    "children": children,
                })
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|((s, g), r)| {
                json!({
                    "source": s.to_string(),
                    "group": g.to_string(),
                    "upstream_interface": self.name_of(r.iif),
                    "downstream_interfaces": r.oifs.iter().map(|i| self.name_of(*i)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let members: Vec<Value> = self
            .memberships
            .iter()
            .map(|(i, g)| json!({"interface": self.name_of(*i), "group": g.to_string()}))
            .collect();
        json!({
            "mode": self.mode,
            "intercept": self.intercept,
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
        let malformed: BTreeMap<&str, u64> = s.malformed.iter().collect();
        json!({
            "interfaces": ifaces,
            "engine": {
                "spms_received": s.spms_received,
                "spms_forwarded": s.spms_forwarded,
                "spms_out_of_sequence": s.spms_out_of_sequence,
                "naks_received": s.naks_received,
                "naks_forwarded": s.naks_forwarded,
                "naks_repeated": s.naks_repeated,
                "naks_eliminated": s.naks_eliminated,
                "naks_anticipated": s.naks_anticipated,
                "naks_no_state": s.naks_no_state,
                "naks_unconfirmed": s.naks_unconfirmed,
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
                "mfc_updates": self.extra.mfc_updates,
                "igmp_reports": self.extra.igmp_reports,
                "mroute_upcalls": self.extra.upcalls,
            },
        })
    }
}
