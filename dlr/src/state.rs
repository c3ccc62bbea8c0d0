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
    /// New (group, port)s not served because the engine limit was reached (`serve = "all"`).
    pub(crate) engines_refused: u64,
    /// Idle engines removed to make room for new ones (`serve = "all"`).
    pub(crate) engines_retired: u64,
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
    pub(crate) sessions_refused: u64,
    pub(crate) sessions_evicted: u64,
    pub(crate) malformed: BTreeMap<&'static str, u64>,
}

impl Totals {
    /// Adds `o`'s counters (not the cache gauges) to ours.
    fn add_counters(&mut self, o: &Self) {
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.cache_evictions += o.cache_evictions;
        self.repairs_served += o.repairs_served;
        self.nnaks_sent += o.nnaks_sent;
        self.ncfs_sent += o.ncfs_sent;
        self.naks_forwarded += o.naks_forwarded;
        self.redirects_announced += o.redirects_announced;
        self.polls_answered += o.polls_answered;
        self.ignored += o.ignored;
        self.own_naks_sent += o.own_naks_sent;
        self.sessions_refused += o.sessions_refused;
        self.sessions_evicted += o.sessions_evicted;
        for (r, n) in &o.malformed {
            *self.malformed.entry(r).or_default() += n;
        }
    }
}

impl Engine {
    /// This engine's counters since the last clear, and its cache gauges.
    fn totals(&self) -> Totals {
        let (s, b) = (self.repairer.stats(), &self.baseline);
        let mut t = Totals {
            cache_entries: s.cache_entries,
            cache_bytes: s.cache_bytes,
            cache_hits: s.cache_hits - b.cache_hits,
            cache_misses: s.cache_misses - b.cache_misses,
            cache_evictions: s.cache_evictions - b.cache_evictions,
            repairs_served: s.repairs_served - b.repairs_served,
            nnaks_sent: s.nnaks_sent - b.nnaks_sent,
            ncfs_sent: s.ncfs_sent - b.ncfs_sent,
            naks_forwarded: s.naks_forwarded - b.naks_forwarded,
            redirects_announced: s.redirects_announced - b.redirects_announced,
            polls_answered: s.polls_answered - b.polls_answered,
            ignored: s.ignored - b.ignored,
            own_naks_sent: self.repairer.receiver().stats().naks_sent - self.own_naks_baseline,
            sessions_refused: s.sessions_refused - b.sessions_refused,
            sessions_evicted: s.sessions_evicted - b.sessions_evicted,
            malformed: BTreeMap::new(),
        };
        for (r, n) in s.malformed.iter() {
            *t.malformed.entry(r).or_default() += n - b.malformed.get(r);
        }
        t
    }
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
    /// The counters of engines removed since the last clear (so that totals never go down).
    pub(crate) retired: Totals,
    /// Most engines at once (`serve = "all"`).
    pub(crate) engine_limit: usize,
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

    /// Sums the engines' counters (minus their baselines) and those of retired engines.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        t.add_counters(&self.retired);
        for e in self.engines.values() {
            let et = e.totals();
            t.cache_entries += et.cache_entries;
            t.cache_bytes += et.cache_bytes;
            t.add_counters(&et);
        }
        for (r, n) in &self.extra.malformed {
            *t.malformed.entry(r).or_default() += n;
        }
        t
    }

    /// Removes the engine `key`, keeping its counters in the totals.
    pub(crate) fn retire(&mut self, key: Key) {
        if let Some(e) = self.engines.remove(&key) {
            let t = e.totals();
            self.retired.add_counters(&t);
            self.extra.engines_retired += 1;
        }
    }

    /// Removes every idle engine (no session left in its receiver, nothing cached), keeping
    /// its counters; returns their keys.
    pub(crate) fn retire_idle(&mut self) -> Vec<Key> {
        let idle: Vec<Key> = self
            .engines
            .iter()
            .filter(|(_, e)| {
                e.repairer.receiver().sources() == 0 && e.repairer.stats().cache_entries == 0
            })
            .map(|(k, _)| *k)
            .collect();
        for k in &idle {
            self.retire(*k);
        }
        idle
    }

    /// Keeps the cached bytes of all engines together within `limit`, evicting the oldest
    /// packet over all of them first (each engine alone is bounded by its own copy of the
    /// limit, and by age). Returns the packets evicted.
    pub(crate) fn bound_cache(&mut self, limit: u64) -> u64 {
        let mut total: u64 = self
            .engines
            .values()
            .map(|e| e.repairer.stats().cache_bytes)
            .sum();
        let mut evicted = 0;
        while total > limit {
            let oldest = self
                .engines
                .iter()
                .filter_map(|(k, e)| e.repairer.oldest_cached().map(|at| (at, *k)))
                .min();
            let Some((_, key)) = oldest else { break };
            let freed = self
                .engines
                .get_mut(&key)
                .map_or(0, |e| e.repairer.evict_oldest());
            if freed == 0 {
                break;
            }
            evicted += 1;
            total = total.saturating_sub(freed as u64);
        }
        evicted
    }

    /// Zeroes every counter (the cache gauges stay).
    pub(crate) fn clear_counters(&mut self) {
        for e in self.engines.values_mut() {
            e.baseline = e.repairer.stats().clone();
            e.own_naks_baseline = e.repairer.receiver().stats().naks_sent;
        }
        self.extra = Extra::default();
        self.retired = Totals::default();
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    use pgm_core::proto::RecvMeta;
    use pgm_core::proto::receiver::ReceiverConfig;
    use pgm_core::proto::repairer::DlrConfig;
    use pgm_core::wire::{Body, DataRepr, Gsi, OptionList, Repr, Sqn};

    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

    fn shared() -> Shared {
        Shared {
            engines: BTreeMap::new(),
            names: BTreeMap::new(),
            extra: Extra::default(),
            cache_limit: 0,
            cache_age_secs: 30.0,
            serve: "all",
            retired: Totals::default(),
            engine_limit: 4,
        }
    }

    fn engine(group: Ipv4Addr) -> Engine {
        let rc = ReceiverConfig::new(7500, IpAddr::V4(group));
        let repairer = Repairer::new(DlrConfig::new(rc, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3))));
        Engine {
            baseline: repairer.stats().clone(),
            own_naks_baseline: 0,
            repairer,
        }
    }

    fn odata(sqn: u32) -> Vec<u8> {
        let repr = Repr {
            sport: 4000,
            dport: 7500,
            gsi: Gsi([1, 2, 3, 4, 5, 6]),
            parity: false,
            var_pktlen: false,
            body: Body::Odata(DataRepr {
                sqn: Sqn(sqn),
                trail: Sqn(0),
                payload: &[0; 100],
            }),
            options: OptionList::EMPTY,
        };
        let mut b = vec![0; repr.buffer_len()];
        repr.emit(&mut b).expect("emit");
        b
    }

    fn feed(s: &mut Shared, key: Key, at: Instant, sqns: std::ops::Range<u32>) {
        let meta = RecvMeta {
            source: IpAddr::V4(SRC),
            destination: IpAddr::V4(key.1),
        };
        let e = s.engines.get_mut(&key).expect("engine");
        for q in sqns {
            e.repairer.handle_packet(at, meta, &odata(q));
        }
    }

    #[test]
    fn the_cache_bound_holds_over_all_engines_oldest_first() {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        let t0 = Instant::now();
        let (a, b) = (
            (1, Ipv4Addr::new(239, 1, 1, 1), 7500),
            (1, Ipv4Addr::new(239, 1, 1, 2), 7500),
        );
        let mut s = shared();
        s.engines.insert(a, engine(a.1));
        s.engines.insert(b, engine(b.1));
        feed(&mut s, a, t0, 0..10);
        feed(&mut s, b, t0 + Duration::from_millis(5), 0..10);
        let per_engine = s.totals().cache_bytes / 2;
        // Room for 15 packets: the 5 oldest go, all of them engine a's.
        let limit = per_engine * 3 / 2;
        assert_eq!(s.bound_cache(limit), 5);
        let t = s.totals();
        assert!(t.cache_bytes <= limit, "{} > {limit}", t.cache_bytes);
        assert_eq!(t.cache_evictions, 5);
        assert_eq!(s.engines[&a].repairer.stats().cache_entries, 5);
        assert_eq!(s.engines[&b].repairer.stats().cache_entries, 10);
        assert_eq!(s.bound_cache(limit), 0);
    }

    #[test]
    fn retired_engines_keep_their_counters() {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        let t0 = Instant::now();
        let a = (1, Ipv4Addr::new(239, 1, 1, 1), 7500);
        let idle = (1, Ipv4Addr::new(239, 1, 1, 9), 7500);
        let mut s = shared();
        s.engines.insert(a, engine(a.1));
        s.engines.insert(idle, engine(idle.1));
        feed(&mut s, a, t0, 0..4);
        s.engines
            .get_mut(&a)
            .expect("engine")
            .repairer
            .set_cache_limits(t0, 250, Duration::from_secs(30));
        let before = s.totals().cache_evictions;
        assert!(before > 0);
        // Only the engine with neither session nor cache is idle.
        assert_eq!(s.retire_idle(), vec![idle]);
        assert_eq!(s.extra.engines_retired, 1);
        s.retire(a);
        assert!(s.engines.is_empty());
        let t = s.totals();
        assert_eq!(t.cache_evictions, before, "a counter went down");
        assert_eq!((t.cache_entries, t.cache_bytes), (0, 0));
        s.clear_counters();
        assert_eq!(s.totals().cache_evictions, 0);
    }
}
