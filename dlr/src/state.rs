//! What the driver and the admin API share: the engines (one per interface, group and port)
//! and the daemon's own counters.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

use pgm_config::{DlrSection, DlrServe};
use pgm_core::proto::receiver::ReceiverStats;
use pgm_core::proto::repairer::{DlrStats, Repairer};
use pgm_core::proto::rotation::{Candidate, evict_in_rotation};
use pgm_core::wire::Tsi;
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
    /// The embedded receiver's counters at the last clear.
    pub(crate) rx_baseline: ReceiverStats,
    /// Its entry in [`Shared::wakeups`], if any.
    wake: Option<Instant>,
    /// Its cache bytes as last added to [`Shared::cache_total`].
    cached: u64,
    /// In [`Shared::touched`].
    touched: bool,
}

impl Engine {
    /// A new engine, counting from zero.
    pub(crate) fn new(repairer: Repairer) -> Self {
        Self {
            baseline: repairer.stats().clone(),
            rx_baseline: ReceiverStats::default(),
            wake: None,
            cached: 0,
            touched: false,
            repairer,
        }
    }
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
    /// (interface, TSI) routes forgotten at the routes' bound: sources no engine's receiver
    /// tracks any more.
    pub(crate) routes_evicted: u64,
    /// (interface, TSI) routes not learnt because the bound was reached with every route
    /// live (every engine's receiver full).
    pub(crate) routes_refused: u64,
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
    pub(crate) naks_outside_window: u64,
    pub(crate) nak_sqns_outside_window: u64,
    pub(crate) wrong_source: u64,
    pub(crate) polls_ignored: u64,
    /// Packets the embedded receivers did not take, by reason.
    pub(crate) receiver_dropped: BTreeMap<&'static str, u64>,
    pub(crate) malformed: BTreeMap<&'static str, u64>,
}

/// The embedded receiver's reasons for not taking a packet, as metric labels.
fn receiver_dropped(s: &ReceiverStats) -> [(&'static str, u64); 8] {
    [
        ("other_session", s.other_sessions),
        ("no_session", s.no_session),
        ("wrong_source", s.wrong_source),
        ("beyond_window", s.beyond_window),
        ("jump_held", s.jumps_held),
        ("buffer_full", s.buffer_full),
        ("source_refused", s.sources_refused),
        ("spmr_limited", s.spmrs_limited),
    ]
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
        self.naks_outside_window += o.naks_outside_window;
        self.nak_sqns_outside_window += o.nak_sqns_outside_window;
        self.wrong_source += o.wrong_source;
        self.polls_ignored += o.polls_ignored;
        for (r, n) in &o.receiver_dropped {
            *self.receiver_dropped.entry(r).or_default() += n;
        }
        for (r, n) in &o.malformed {
            *self.malformed.entry(r).or_default() += n;
        }
    }
}

impl Engine {
    /// This engine's counters since the last clear, and its cache gauges.
    fn totals(&self) -> Totals {
        let (s, b) = (self.repairer.stats(), &self.baseline);
        let rx = self.repairer.receiver().stats();
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
            own_naks_sent: rx.naks_sent - self.rx_baseline.naks_sent,
            sessions_refused: s.sessions_refused - b.sessions_refused,
            sessions_evicted: s.sessions_evicted - b.sessions_evicted,
            naks_outside_window: s.naks_outside_window - b.naks_outside_window,
            nak_sqns_outside_window: s.nak_sqns_outside_window - b.nak_sqns_outside_window,
            wrong_source: s.wrong_source - b.wrong_source,
            polls_ignored: s.polls_ignored - b.polls_ignored,
            receiver_dropped: BTreeMap::new(),
            malformed: BTreeMap::new(),
        };
        for ((r, n), (_, base)) in receiver_dropped(rx)
            .into_iter()
            .zip(receiver_dropped(&self.rx_baseline))
        {
            t.receiver_dropped.insert(r, n - base);
        }
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
    /// Most engines at once (`serve = "all"`; `[dlr] max_engines`), 0 with
    /// `serve = "listed"` (the configuration fixes the engines).
    pub(crate) engine_limit: usize,
    /// Most sessions per engine (`[dlr] max_sessions`), and routes per running engine.
    pub(crate) session_limit: usize,
    /// (ifindex, TSI) -> engine, learnt from downstream packets, for the packets that carry
    /// neither group nor data port in a form we can route by (SPMR, POLR, unicast NCF).
    /// Bounded by [`Shared::routes_limit`].
    pub(crate) routes: HashMap<(u32, Tsi), Key>,
    /// Every route once, in the order they are examined to make room.
    route_rotation: VecDeque<(u32, Tsi)>,
    /// Every engine once, in the order they are examined to make room.
    engine_rotation: VecDeque<Key>,
    /// Engines that handled packets or timers since their transmits were last taken.
    touched: Vec<Key>,
    /// Each engine's next deadline (entries superseded since are skipped; rebuilt when they
    /// outnumber the engines twice over).
    wakeups: BinaryHeap<Reverse<(Instant, Key)>>,
    /// The engines' cache bytes together.
    cache_total: u64,
}

impl Shared {
    /// No engine yet; the bounds of `[dlr]` `d`, the interfaces' `names` by index.
    pub(crate) fn new(d: &DlrSection, names: BTreeMap<u32, String>) -> Self {
        let listed = d.serve == DlrServe::Listed;
        Self {
            engines: BTreeMap::new(),
            names,
            extra: Extra::default(),
            cache_limit: d.cache_bytes,
            cache_age_secs: d.cache_age.as_secs_f64(),
            serve: if listed { "listed" } else { "all" },
            retired: Totals::default(),
            engine_limit: if listed { 0 } else { d.max_engines },
            session_limit: d.max_sessions,
            routes: HashMap::new(),
            route_rotation: VecDeque::new(),
            engine_rotation: VecDeque::new(),
            touched: Vec::new(),
            wakeups: BinaryHeap::new(),
            cache_total: 0,
        }
    }

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
            self.cache_total = self.cache_total.saturating_sub(e.cached);
            let t = e.totals();
            self.retired.add_counters(&t);
            self.extra.engines_retired += 1;
        }
    }

    /// Starts engine `key` (replacing one of the same key).
    pub(crate) fn add_engine(&mut self, key: Key, engine: Engine) {
        if self.engines.insert(key, engine).is_none() {
            self.engine_rotation.push_back(key);
        }
    }

    /// Whether one more engine may start (`serve = "all"`). At [`Self::engine_limit`], one
    /// idle engine (no session in its receiver, nothing cached) is retired first, looking at
    /// no more than [`EVICTION_CANDIDATES`](pgm_core::proto::rotation::EVICTION_CANDIDATES) in rotation; its routes are forgotten as they
    /// come up for eviction. Returns whether there is room now and the engine retired.
    pub(crate) fn make_room(&mut self) -> (bool, Option<Key>) {
        if self.engines.len() < self.engine_limit {
            return (true, None);
        }
        let engines = &self.engines;
        let idle = evict_in_rotation(&mut self.engine_rotation, |k| match engines.get(k) {
            None => Candidate::Gone,
            Some(e)
                if e.repairer.receiver().sources() == 0
                    && e.repairer.stats().cache_entries == 0 =>
            {
                Candidate::Evict
            }
            Some(_) => Candidate::Keep,
        });
        let Some(key) = idle else {
            return (false, None);
        };
        self.retire(key);
        (self.engines.len() < self.engine_limit, Some(key))
    }

    /// Bound of [`Self::routes`]: [`Self::session_limit`] per running engine, what their
    /// receivers can track together.
    pub(crate) fn routes_limit(&self) -> usize {
        self.session_limit.saturating_mul(self.engines.len().max(1))
    }

    /// The engine of the packets of `tsi` heard on `ifindex`, if learnt and running.
    pub(crate) fn route_of(&self, ifindex: u32, tsi: Tsi) -> Option<Key> {
        self.routes
            .get(&(ifindex, tsi))
            .copied()
            .filter(|k| self.engines.contains_key(k))
    }

    /// Whether the route `r` leads to an engine whose receiver tracks its source.
    fn route_live(&self, r: &(u32, Tsi)) -> bool {
        Self::live(&self.routes, &self.engines, r)
    }

    fn live(
        routes: &HashMap<(u32, Tsi), Key>,
        engines: &BTreeMap<Key, Engine>,
        r: &(u32, Tsi),
    ) -> bool {
        routes
            .get(r)
            .and_then(|k| engines.get(k))
            .is_some_and(|e| e.repairer.receiver().source_addr(&r.1).is_some())
    }

    /// Records that `tsi` on `ifindex` belongs to engine `key` (a route to an engine whose
    /// receiver still tracks the TSI is kept). A new route at
    /// [`Self::routes_limit`] first forgets one route of a source no engine's receiver tracks
    /// any more (counted in `routes_evicted`), looking at no more than
    /// [`EVICTION_CANDIDATES`](pgm_core::proto::rotation::EVICTION_CANDIDATES) in rotation; if those are all live, the new one is not learnt
    /// (counted in `routes_refused`; its engine's receiver is most likely full as well).
    /// Returns whether the route is known now.
    pub(crate) fn learn_route(&mut self, ifindex: u32, tsi: Tsi, key: Key) -> bool {
        let r = (ifindex, tsi);
        if let Some(&k) = self.routes.get(&r) {
            // A live route stays: one packet of the TSI to another group or port, from
            // anyone, must not take the session's unicast packets elsewhere.
            if k != key && !self.route_live(&r) {
                self.routes.insert(r, key);
            }
            return true;
        }
        if self.routes.len() >= self.routes_limit() && !self.forget_a_route() {
            self.extra.routes_refused += 1;
            return false;
        }
        self.routes.insert((ifindex, tsi), key);
        self.route_rotation.push_back((ifindex, tsi));
        true
    }

    /// Forgets one dead route, if one of the next few in rotation is.
    fn forget_a_route(&mut self) -> bool {
        let (routes, engines) = (&self.routes, &self.engines);
        let dead = evict_in_rotation(&mut self.route_rotation, |r| {
            if !routes.contains_key(r) {
                Candidate::Gone
            } else if Self::live(routes, engines, r) {
                Candidate::Keep
            } else {
                Candidate::Evict
            }
        });
        let Some(r) = dead else {
            return false;
        };
        self.routes.remove(&r);
        self.extra.routes_evicted += 1;
        true
    }

    /// Notes that engine `key` handled a packet or a timer: its cache bytes are accounted
    /// at once (O(1)), its transmits and deadline at the next [`Self::take_touched`].
    pub(crate) fn touch(&mut self, key: Key) {
        let Some(e) = self.engines.get_mut(&key) else {
            return;
        };
        let now_cached = e.repairer.stats().cache_bytes;
        self.cache_total = (self.cache_total + now_cached).saturating_sub(e.cached);
        e.cached = now_cached;
        if !e.touched {
            e.touched = true;
            self.touched.push(key);
        }
    }

    /// The engines touched since the last call (each once).
    pub(crate) fn take_touched(&mut self) -> Vec<Key> {
        let keys = std::mem::take(&mut self.touched);
        for k in &keys {
            if let Some(e) = self.engines.get_mut(k) {
                e.touched = false;
            }
        }
        keys
    }

    /// Puts engine `key`'s next deadline in the wake-up queue if it is earlier than its
    /// entry there.
    pub(crate) fn schedule(&mut self, key: Key) {
        let Some(e) = self.engines.get_mut(&key) else {
            return;
        };
        let Some(at) = e.repairer.poll_timeout() else {
            return;
        };
        if e.wake.is_some_and(|w| w <= at) {
            return;
        }
        e.wake = Some(at);
        self.wakeups.push(Reverse((at, key)));
        if self.wakeups.len() > 2 * self.engines.len() + 64 {
            self.wakeups = self
                .engines
                .iter()
                .filter_map(|(k, e)| e.wake.map(|w| Reverse((w, *k))))
                .collect();
        }
    }

    /// The earliest deadline of any engine (perhaps a little early: a superseded entry).
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.wakeups.peek().map(|Reverse((at, _))| *at)
    }

    /// The engines whose wake-up is due at `now`, taken off the queue.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Key> {
        let mut keys = Vec::new();
        while let Some(&Reverse((at, key))) = self.wakeups.peek() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            if let Some(e) = self.engines.get_mut(&key) {
                if e.wake == Some(at) {
                    e.wake = None;
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// The engines' cache bytes together.
    #[cfg(test)]
    pub(crate) fn cache_total(&self) -> u64 {
        self.cache_total
    }

    /// Keeps the cached bytes of all engines together within `limit`, evicting the oldest
    /// packet over all of them first (each engine alone is bounded by its own copy of the
    /// limit, and by age). Returns the packets evicted. Free below the limit; at it, each
    /// eviction compares the engines' oldest packets (O(engines), at most `max_engines`).
    pub(crate) fn bound_cache(&mut self, limit: u64) -> u64 {
        let mut evicted = 0;
        while self.cache_total > limit {
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
            self.touch(key);
        }
        evicted
    }

    /// Zeroes every counter (the cache gauges stay).
    pub(crate) fn clear_counters(&mut self) {
        for e in self.engines.values_mut() {
            e.baseline = e.repairer.stats().clone();
            e.rx_baseline = e.repairer.receiver().stats().clone();
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
            "limits": {
                // With serve = "listed" the configuration fixes the engines.
                "max_engines": (self.serve == "all").then_some(self.engine_limit),
                "max_sessions": self.session_limit,
                "routes": self.routes.len(),
                "max_routes": self.routes_limit(),
            },
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

    use pgm_config::Config;
    use pgm_core::proto::RecvMeta;
    use pgm_core::proto::receiver::ReceiverConfig;
    use pgm_core::proto::repairer::DlrConfig;
    use pgm_core::wire::{Body, DataRepr, Gsi, OptionList, Repr, Sqn};

    use super::*;
    use crate::daemon::Settings;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
    const DLR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
    const SPORT: u16 = 4000;

    /// The `[dlr]` section of a file with `keys` (and an interface) in it.
    fn section(keys: &str) -> DlrSection {
        Config::from_str(
            &format!(
                "[dlr]
interfaces = [\"eth0\"]\n{keys}"
            ),
            "dlr.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .dlr
        .expect("[dlr]")
    }

    fn shared() -> Shared {
        Shared::new(&section("max_engines = 4\n"), BTreeMap::new())
    }

    fn engine(group: Ipv4Addr) -> Engine {
        let rc = ReceiverConfig::new(7500, IpAddr::V4(group));
        with(Repairer::new(DlrConfig::new(rc, IpAddr::V4(DLR))))
    }

    /// An engine as the daemon configures it from `d`.
    fn configured(d: &DlrSection, group: Ipv4Addr) -> Engine {
        with(Repairer::new(
            Settings::from(d).engine_config(group, 7500, DLR, 1),
        ))
    }

    fn with(repairer: Repairer) -> Engine {
        Engine::new(repairer)
    }

    fn tsi(sport: u16) -> Tsi {
        Tsi::new(Gsi([1, 2, 3, 4, 5, 6]), sport)
    }

    fn odata_from(sport: u16, sqn: u32) -> Vec<u8> {
        let repr = Repr {
            sport,
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
        let e = s.engines.get_mut(&key).expect("engine");
        for q in sqns {
            feed_from(e, key.1, at, SPORT, q);
        }
        s.touch(key);
    }

    /// One ODATA of the source with data-source port `sport`.
    fn feed_from(e: &mut Engine, group: Ipv4Addr, at: Instant, sport: u16, sqn: u32) {
        let meta = RecvMeta {
            source: IpAddr::V4(SRC),
            destination: IpAddr::V4(group),
        };
        e.repairer.handle_packet(at, meta, &odata_from(sport, sqn));
    }

    #[test]
    fn the_limit_defaults_are_the_engines() {
        let d = DlrSection::default();
        let rc = ReceiverConfig::new(7500, IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)));
        assert_eq!(
            d.max_sessions,
            DlrConfig::new(rc.clone(), IpAddr::V4(DLR)).max_sessions
        );
        assert_eq!(d.max_sessions, rc.max_sources);
        assert_eq!((d.max_engines, d.max_sessions), (256, 1024));
        let s = Shared::new(&d, BTreeMap::new());
        assert_eq!((s.engine_limit, s.session_limit), (256, 1024));
        // With serve = "listed" the configuration fixes the engines.
        let listed = section(
            "serve = \"listed\"\nmax_engines = 3\n[[dlr.session]]\ngroup = \"239.1.1.1\"\nport = 7500\n",
        );
        assert_eq!(Shared::new(&listed, BTreeMap::new()).engine_limit, 0);
    }

    #[test]
    fn engines_take_the_receive_buffer_bound_and_the_nak_slack() {
        let d = section("receive_buffer_bytes = \"2MiB\"\nnak_window_slack = 7\n");
        let e = configured(&d, Ipv4Addr::new(239, 1, 1, 1));
        assert_eq!(e.repairer.receiver().config().max_buffer_bytes, 2 << 20);
        let default = configured(&DlrSection::default(), Ipv4Addr::new(239, 1, 1, 1));
        assert_eq!(
            default.repairer.receiver().config().max_buffer_bytes,
            16 << 20
        );
        let c = Settings::from(&d).engine_config(Ipv4Addr::new(239, 1, 1, 1), 7500, DLR, 1);
        assert_eq!(c.nak_window_slack, 7);
    }

    #[test]
    fn a_configured_engine_limit_is_honoured() {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        let t0 = Instant::now();
        let mut s = Shared::new(&section("max_engines = 2\n"), BTreeMap::new());
        assert_eq!(s.engine_limit, 2);
        let key = |n: u8| (1, Ipv4Addr::new(239, 1, 1, n), 7500);
        let (busy, idle, new) = (key(1), key(2), key(3));
        assert_eq!(s.make_room(), (true, None));
        s.add_engine(busy, engine(busy.1));
        feed(&mut s, busy, t0, 0..2);
        assert_eq!(s.make_room(), (true, None));
        s.add_engine(idle, engine(idle.1));
        assert!(s.learn_route(1, tsi(9000), idle));
        // Full: the idle engine makes room, and its routes lead nowhere.
        assert_eq!(s.make_room(), (true, Some(idle)));
        assert_eq!(s.extra.engines_retired, 1);
        assert_eq!(s.route_of(1, tsi(9000)), None);
        s.add_engine(new, engine(new.1));
        feed(&mut s, new, t0, 0..2);
        // Full of busy engines: no room.
        assert_eq!(s.make_room(), (false, None));
        assert_eq!(s.engines.len(), 2);
        assert!(s.engines.contains_key(&busy) && s.engines.contains_key(&new));
    }

    #[test]
    fn a_configured_session_limit_is_honoured() {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        let t0 = Instant::now();
        let d = section("max_sessions = 2\n");
        let group = Ipv4Addr::new(239, 1, 1, 1);
        let mut e = configured(&d, group);
        for (i, sport) in [4000, 4001, 4002, 4003].into_iter().enumerate() {
            for q in 0..3 {
                feed_from(
                    &mut e,
                    group,
                    t0 + Duration::from_millis(i as u64),
                    sport,
                    q,
                );
            }
        }
        // Two sessions tracked and cached; every packet of the other two refused by the
        // receiver (so the DLR does not track them either).
        assert_eq!(e.repairer.receiver().sources(), 2);
        assert_eq!(e.repairer.receiver().stats().sources_refused, 6);
        let stats = e.repairer.stats();
        assert_eq!(stats.cache_entries, 6);
        assert_eq!(e.repairer.sessions(), 2);
        assert_eq!(stats.sessions_evicted, 0);
    }

    #[test]
    fn tsi_routes_are_bounded_and_evictions_counted() {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        let t0 = Instant::now();
        let d = section("max_sessions = 2\n");
        let key = (1, Ipv4Addr::new(239, 1, 1, 1), 7500);
        let mut s = Shared::new(&d, BTreeMap::new());
        s.add_engine(key, configured(&d, key.1));
        assert_eq!(s.routes_limit(), 2);
        let live = |s: &mut Shared, sport| {
            let e = s.engines.get_mut(&key).expect("engine");
            feed_from(e, key.1, t0, sport, 0);
        };
        live(&mut s, 4000);
        assert!(s.learn_route(1, tsi(4000), key));
        // A source the receiver never tracked (its route learnt from a refused packet).
        assert!(s.learn_route(1, tsi(5000), key));
        // Full: the stale route goes for the new one.
        assert!(s.learn_route(1, tsi(5001), key));
        assert_eq!(s.extra.routes_evicted, 1);
        assert_eq!(s.route_of(1, tsi(5000)), None);
        assert_eq!(s.route_of(1, tsi(5001)), Some(key));
        live(&mut s, 4001);
        assert!(s.learn_route(1, tsi(4001), key));
        assert_eq!(s.extra.routes_evicted, 2);
        // Every route live (the receiver is full too): the new one is refused, counted.
        assert!(!s.learn_route(1, tsi(6000), key));
        assert_eq!(s.extra.routes_refused, 1);
        assert_eq!(s.route_of(1, tsi(6000)), None);
        assert_eq!(s.routes.len(), 2);
        // A known route is kept without counting.
        assert!(s.learn_route(1, tsi(4000), key));
        // A live route is not moved by a packet of its TSI to another group or port.
        let elsewhere = (1, Ipv4Addr::new(239, 9, 9, 9), 7500);
        s.add_engine(elsewhere, configured(&d, elsewhere.1));
        assert!(s.learn_route(1, tsi(4000), elsewhere));
        assert_eq!(s.route_of(1, tsi(4000)), Some(key));
        s.retire(elsewhere);
        assert_eq!((s.extra.routes_evicted, s.extra.routes_refused), (2, 1));
        // Each running engine adds max_sessions routes.
        let other = (1, Ipv4Addr::new(239, 1, 1, 2), 7500);
        s.add_engine(other, configured(&d, other.1));
        assert_eq!(s.routes_limit(), 4);
        assert!(s.learn_route(1, tsi(6000), other));
        let text = crate::metrics::render(&s);
        assert!(text.contains("pgm_dlr_tsi_routes 3\n"), "{text}");
        assert!(
            text.contains("pgm_dlr_tsi_routes_evicted_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("pgm_dlr_tsi_routes_refused_total 1\n"),
            "{text}"
        );
        assert!(text.contains("pgm_dlr_engine_sessions_limit 2\n"), "{text}");
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
        s.add_engine(a, engine(a.1));
        s.add_engine(b, engine(b.1));
        feed(&mut s, a, t0, 0..10);
        feed(&mut s, b, t0 + Duration::from_millis(5), 0..10);
        assert_eq!(s.cache_total(), s.totals().cache_bytes);
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
        assert_eq!(s.cache_total(), s.totals().cache_bytes);
    }

    #[test]
    fn only_touched_engines_are_flushed_and_deadlines_come_from_a_queue() {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        let t0 = Instant::now();
        let mut s = shared();
        let keys: Vec<Key> = (1..=4)
            .map(|n| (1, Ipv4Addr::new(239, 1, 1, n), 7500))
            .collect();
        for &k in &keys {
            s.add_engine(k, engine(k.1));
        }
        assert!(s.take_touched().is_empty() && s.next_wake().is_none());
        // Packets for one engine: it alone is touched (once), and its deadline (cache
        // ageing, NAK timers) is queued when its transmits are taken.
        feed(&mut s, keys[2], t0, 0..3);
        feed(&mut s, keys[2], t0, 3..5);
        let touched = s.take_touched();
        assert_eq!(touched, vec![keys[2]]);
        for k in touched {
            s.schedule(k);
        }
        let wake = s.next_wake().expect("a deadline");
        assert_eq!(Some(wake), s.engines[&keys[2]].repairer.poll_timeout());
        assert!(s.due(wake - Duration::from_millis(1)).is_empty());
        assert_eq!(s.due(wake), vec![keys[2]]);
        assert!(s.next_wake().is_none());
        // Scheduling again and again keeps one entry per engine.
        for _ in 0..1000 {
            s.schedule(keys[2]);
        }
        assert!(s.wakeups.len() <= 1);
    }

    #[test]
    fn retired_engines_keep_their_counters() {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        let t0 = Instant::now();
        let a = (1, Ipv4Addr::new(239, 1, 1, 1), 7500);
        let idle = (1, Ipv4Addr::new(239, 1, 1, 9), 7500);
        let mut s = shared();
        s.add_engine(a, engine(a.1));
        s.add_engine(idle, engine(idle.1));
        feed(&mut s, a, t0, 0..4);
        s.engines
            .get_mut(&a)
            .expect("engine")
            .repairer
            .set_cache_limits(t0, 250, Duration::from_secs(30));
        let before = s.totals().cache_evictions;
        assert!(before > 0);
        // At the limit, only the engine with neither session nor cache is idle.
        s.engine_limit = 2;
        assert_eq!(s.make_room(), (true, Some(idle)));
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
