//! What the driver and the admin API share: the engines (one per interface, group and port)
//! and the daemon's own counters.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use pgm_core::proto::repairer::{DlrStats, Repairer};
use serde_json::{Value, json};

/// One engine's key: the interface, the group and the data-destination port. The embedded
/// receiver of a [`Repairer`] follows one group and port, and it must see a session's SPMs
/// to know the parent.
pub(crate) type Key = (u32, Ipv4Addr, u16);

/// One engine and the counters it had at the last clear.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) repairer: Repairer,
    pub(crate) baseline: DlrStats,
    pub(crate) own_naks_baseline: u64,
}

/// Direction of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Dir {
    In,
    Out,
}

/// Counters of the daemon itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    /// (ifindex, direction, PGM type) -> packets.
    pub(crate) packets: BTreeMap<(u32, Dir, &'static str), u64>,
    /// Packets of no served session (unknown group/port, or not listed).
    pub(crate) unserved: u64,
    /// Packets too broken to be routed to an engine, by reason.
    pub(crate) malformed: BTreeMap<&'static str, u64>,
    pub(crate) send_errors: u64,
}

/// The totals of the engines' counters since the last clear.
#[derive(Debug, Clone, Default)]
pub(crate) struct Totals {
    pub(crate) cache_entries: u64,
    pub(crate) cache_bytes: u64,
    pub(crate) cache_hits: u64,
    pub(crate) cache_misses: u64,
    pub(crate) cache_evictions: u64,
    pub(crate) repairs_served: u64,
    pub(crate) nnaks_sent: u64,
    pub(crate) ncfs_sent: u64,
    pub(crate) naks_forwarded: u64,
    pub(crate) redirects_announced: u64,
    pub(crate) polls_answered: u64,
    pub(crate) ignored: u64,
    pub(crate) own_naks_sent: u64,
    pub(crate) malformed: BTreeMap<&'static str, u64>,
}

/// The shared state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engines: BTreeMap<Key, Engine>,
    pub(crate) names: BTreeMap<u32, String>,
    pub(crate) extra: Extra,
    pub(crate) cache_limit: u64,
    pub(crate) cache_age_secs: f64,
    pub(crate) serve: &'static str,
}

impl Shared {
    pub(crate) fn name_of(&self, ifindex: u32) -> String {
        self.names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}"))
    }

    pub(crate) fn count(&mut self, ifindex: u32, dir: Dir, ty: &'static str) {
        *self.extra.packets.entry((ifindex, dir, ty)).or_default() += 1;
    }

    /// Sums the engines' counters (minus their baselines).
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for e in self.engines.values() {
            let (s, b) = (e.repairer.stats(), &e.baseline);
            t.cache_entries += s.cache_entries;
            t.cache_bytes += s.cache_bytes;
            t.cache_hits += s.cache_hits - b.cache_hits;
            t.cache_misses += s.cache_misses - b.cache_misses;
            t.cache_evictions += s.cache_evictions - b.cache_evictions;
            t.repairs_served += s.repairs_served - b.repairs_served;
            t.nnaks_sent += s.nnaks_sent - b.nnaks_sent;
            t.ncfs_sent += s.ncfs_sent - b.ncfs_sent;
            t.naks_forwarded += s.naks_forwarded - b.naks_forwarded;
            t.redirects_announced += s.redirects_announced - b.redirects_announced;
            t.polls_answered += s.polls_answered - b.polls_answered;
            t.ignored += s.ignored - b.ignored;
            t.own_naks_sent += e.repairer.receiver().stats().naks_sent - e.own_naks_baseline;
            for (r, n) in s.malformed.iter() {
                *t.malformed.entry(r).or_default() += n - b.malformed.get(r);
            }
        }
        for (r, n) in &self.extra.malformed {
            *t.malformed.entry(r).or_default() += n;
        }
        t
    }

    /// Zeroes every counter (the cache gauges stay).
    pub(crate) fn clear_counters(&mut self) {
        for e in self.engines.values_mut() {
            e.baseline = e.repairer.stats().clone();
            e.own_naks_baseline = e.repairer.receiver().stats().naks_sent;
        }
        self.extra = Extra::default();
    }

    /// `GET /api/v1/state`: per engine (interface, group, port), its cache and sessions with
    /// their parent (SPM_PATH of the last SPM).
    pub(crate) fn state_json(&self) -> Value {
        let engines: Vec<Value> = self
            .engines
            .iter()
            .map(|((ifindex, group, port), e)| {
                let r = &e.repairer;
                let s = r.stats();
                let sessions: Vec<Value> = r
                    .receiver()
                    .tsis()
                    .iter()
                    .map(|tsi| {
                        json!({
                            "tsi": tsi.to_string(),
                            "parent": r.receiver().nak_target(tsi).map(|a| a.to_string()),
                        })
                    })
                    .collect();
                json!({
                    "interface": self.name_of(*ifindex),
                    "group": group.to_string(),
                    "port": port,
                    "cache_entries": s.cache_entries,
                    "cache_bytes": s.cache_bytes,
                    "repairs_served": s.repairs_served - e.baseline.repairs_served,
                    "sessions": sessions,
                })
            })
            .collect();
        let t = self.totals();
        json!({
            "serve": self.serve,
            "cache": {
                "limit_bytes": self.cache_limit,
                "max_age_seconds": self.cache_age_secs,
                "entries": t.cache_entries,
                "bytes": t.cache_bytes,
            },
            "engines": engines,
        })
    }
}
