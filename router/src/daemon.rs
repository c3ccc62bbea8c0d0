//! The driver: sockets, routing, and the engine, in one tokio task.
//!
//! Thin by design (quinn's `ConnectionDriver` style): each wake-up handles what is ready
//! (packets, upcalls, the engine's one timer, the periodic tick, signals), then drains the
//! engine's transmits and re-arms the timer from `poll_timeout`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgm_config::{Config, InterceptMode, RouterMode, RouterSection};
use pgm_core::net::iface;
use pgm_core::net::router::{
    HdrInclSender, MAXVIFS, MrouteMsg, MrouteSocket, NflogSocket, NftTable, RecvSocket,
    RecvSocketKind, UpcallKind, nflog, procfs,
};
use pgm_core::proto::network_element::{
    IfIndex, NeConfig, NeInterface, NeRecvMeta, NetworkElement,
};
use pgm_core::wire::{Packet, PacketType};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::dedup::Dedup;
use crate::routes::{KernelRoute, Route, RouteTable, StaticRoute};
use crate::state::{Dir, Extra, Shared};

/// How often IGMP general queries go out on every interface (RFC 3376 default).
const QUERY_INTERVAL: Duration = Duration::from_secs(125);
/// Between the two group-specific queries that follow a leave (RFC 3376 §8.8: 1 s).
const LAST_MEMBER_QUERY_IVL: Duration = Duration::from_secs(1);
/// How often the kernel's MFC is read in assist-only mode.
const KERNEL_POLL: Duration = Duration::from_secs(1);
/// The nftables table the daemon owns.
const NFT_TABLE: &str = "pgm_routerd";

/// The clock (the one place the daemon reads it).
#[expect(
    clippy::disallowed_methods,
    reason = "the daemon is the engines' clock"
)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// A configured interface.
#[derive(Debug, Clone)]
struct Iface {
    name: String,
    index: u32,
    addr: Ipv4Addr,
    pgm: bool,
    vif: u16,
}

/// Resolves the configured interfaces (each needs an IPv4 address).
fn resolve_interfaces(r: &RouterSection) -> Result<Vec<Iface>> {
    let all = iface::interfaces().context("cannot list interfaces")?;
    let mut out = Vec::new();
    for (n, ri) in r.interfaces.iter().enumerate() {
        let Some(i) = all.iter().find(|i| i.name == ri.name) else {
            bail!(
                "interface {} has no IPv4 address (or does not exist)",
                ri.name
            );
        };
        out.push(Iface {
            name: ri.name.clone(),
            index: i.index,
            addr: i.addr,
            pgm: ri.pgm,
            vif: u16::try_from(n).unwrap_or(u16::MAX),
        });
    }
    Ok(out)
}

fn ne_config(r: &RouterSection, ifaces: &[Iface]) -> NeConfig {
    let mut c = NeConfig::new(
        ifaces
            .iter()
            .filter(|i| i.pgm)
            .map(|i| NeInterface {
                index: IfIndex(i.index),
                addr: IpAddr::V4(i.addr),
            })
            .collect(),
    );
    c.nak_rpt_ivl = r.timers.nak_rpt_ivl;
    c.nak_rpt_rte_ivl = r.timers.nak_rpt_rte_ivl;
    c.nak_rdata_ivl = r.timers.nak_rdata_ivl;
    c.nak_elim_ivl = r.timers.nak_elim_ivl;
    c.ncf_holdoff = r.timers.ncf_holdoff;
    c.tsi_expiry = r.timers.tsi_expiry;
    c.max_tsis = r.limits.max_tsis;
    c.max_repair_states = r.limits.max_repair_states;
    c.poll_ivl = r.poll.interval;
    c.poll_bo_ivl = r.poll.backoff;
    c.poll_mask_bits = r.poll.mask_bits;
    c.rng_seed = u64::from(std::process::id());
    c
}

fn static_routes(r: &RouterSection, ifaces: &[Iface]) -> Vec<StaticRoute> {
    let idx = |n: &str| ifaces.iter().find(|i| i.name == n).map(|i| i.index);
    r.static_routes
        .iter()
        .filter_map(|s| {
            Some(StaticRoute {
                group: s.group,
                source: s.source,
                upstream: idx(&s.upstream)?,
                downstream: s.downstream.iter().filter_map(|d| idx(d)).collect(),
            })
        })
        .collect()
}

/// The daemon.
pub(crate) struct Daemon {
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
    config_path: std::path::PathBuf,
    mode: RouterMode,
    ifaces: Vec<Iface>,
    mroute: Option<Watched<MrouteSocket>>,
    ra: Watched<RecvSocket>,
    unicast: Watched<RecvSocket>,
    /// nftables mode: the packets the forward rule stops, logged to the daemon.
    intercept: Option<Watched<NflogSocket>>,
    senders: HashMap<u32, HdrInclSender>,
    nft: Option<NftTable>,
    table: RouteTable,
    /// (S,G) -> route pushed to the engine (and the MFC in full mode).
    installed: BTreeMap<(Ipv4Addr, Ipv4Addr), Route>,
    /// (group, upstream ifindex) intercepted: what the intercept passes to the engine.
    intercepted: HashSet<(Ipv4Addr, u32)>,
    nft_groups: HashSet<Ipv4Addr>,
    dedup: Dedup,
    /// Second group-specific queries due after leaves: (when, ifindex, group). At most one
    /// per membership (a new leave replaces it), so bounded by the membership table.
    pending_queries: Vec<(Instant, u32, Ipv4Addr)>,
    buf: Vec<u8>,
    txbuf: Vec<u8>,
}

impl Daemon {
    /// Opens every socket and takes over (full mode) or reads (assist-only) multicast
    /// routing.
    pub(crate) fn start(config: &Config, config_path: std::path::PathBuf) -> Result<Self> {
        let r = config
            .router
            .as_ref()
            .context("the configuration has no [router] section")?;
        let ifaces = resolve_interfaces(r)?;
        if r.mode == RouterMode::Full && ifaces.len() > MAXVIFS {
            bail!("full mode supports at most {MAXVIFS} interfaces (the kernel's MAXVIFS)");
        }
        let engine = NetworkElement::new(ne_config(r, &ifaces));
        let shared = Arc::new(Mutex::new(Shared {
            engine,
            traffic: BTreeMap::new(),
            names: ifaces.iter().map(|i| (i.index, i.name.clone())).collect(),
            extra: Extra::default(),
            routes: BTreeMap::new(),
            memberships: Vec::new(),
            mode: match r.mode {
                RouterMode::Full => "full",
                RouterMode::AssistOnly => "assist-only",
            },
            intercept: match r.intercept {
                InterceptMode::RouterAlert => "router-alert",
                InterceptMode::Nftables => "nftables",
            },
        }));
        let mroute = if r.mode == RouterMode::Full {
            let m = MrouteSocket::open().context("cannot open the multicast routing socket")?;
            for i in &ifaces {
                m.add_vif(i.vif, i.index)
                    .with_context(|| format!("cannot add a VIF for {}", i.name))?;
                if let Err(e) = m.listen_reports(i.index) {
                    tracing::warn!(interface = %i.name, error = %e, "cannot listen for IGMPv3 reports");
                }
            }
            Some(Watched::new(m)?)
        } else {
            None
        };
        let open = |k| RecvSocket::open(k).with_context(|| format!("cannot open the {k:?} socket"));
        let ra = Watched::new(open(RecvSocketKind::RouterAlert)?)?;
        let unicast = Watched::new(open(RecvSocketKind::Unicast)?)?;
        let (intercept, nft) = if r.intercept == InterceptMode::Nftables {
            // The table first: it replaces any leftover of a crashed run, whose filled set
            // would log into the socket while it is being configured. Its own set is empty
            // until the routes go in, after the socket is bound.
            let group = r.nflog_group;
            let t =
                NftTable::install(NFT_TABLE, group).context("cannot install the nftables table")?;
            let log = NflogSocket::open(group).with_context(|| {
                format!(
                    "cannot bind nfnetlink_log group {group} (router.nflog_group, the \
                     intercept; is another program using it?)"
                )
            })?;
            (Some(Watched::new(log)?), Some(t))
        } else {
            (None, None)
        };
        let mut senders = HashMap::new();
        for i in ifaces.iter().filter(|i| i.pgm) {
            senders.insert(
                i.index,
                HdrInclSender::open(&i.name, i.index)
                    .with_context(|| format!("cannot open the sender on {}", i.name))?,
            );
        }
        let table = RouteTable {
            statics: static_routes(r, &ifaces),
            ..RouteTable::default()
        };
        let mut d = Self {
            shared,
            changed: Arc::new(Notify::new()),
            config_path,
            mode: r.mode,
            ifaces,
            mroute,
            ra,
            unicast,
            intercept,
            senders,
            nft,
            table,
            installed: BTreeMap::new(),
            intercepted: HashSet::new(),
            nft_groups: HashSet::new(),
            dedup: Dedup::new(Duration::from_millis(200), 8192),
            pending_queries: Vec::new(),
            buf: vec![0; 65_536],
            txbuf: Vec::with_capacity(2048),
        };
        d.startup_routes();
        d.send_queries();
        let (mode, intercept) = {
            let s = d.lock();
            (s.mode, s.intercept)
        };
        tracing::info!(
            mode,
            intercept,
            interfaces = ?d.ifaces.iter().map(|i| &i.name).collect::<Vec<_>>(),
            "pgm-routerd started"
        );
        Ok(d)
    }

    pub(crate) fn shared(&self) -> Arc<Mutex<Shared>> {
        Arc::clone(&self.shared)
    }

    pub(crate) fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn iface_by_index(&self, index: u32) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.index == index)
    }

    /// Installs what is known before any traffic: source-specific static routes, and the
    /// intercept of every statically routed group.
    fn startup_routes(&mut self) {
        match self.mode {
            RouterMode::Full => {
                let statics = self.table.statics.clone();
                for s in &statics {
                    if let Some(src) = s.source {
                        if let Some(route) = self.table.resolve_full(src, s.group, None) {
                            self.apply_route(src, s.group, route);
                        }
                    }
                }
            }
            RouterMode::AssistOnly => self.refresh_kernel(),
        }
        self.sync_intercept();
    }

    /// Sends a group-specific query for `group` on interface `ifindex`.
    fn group_query(&self, ifindex: u32, group: Ipv4Addr) {
        let (Some(m), Some(i)) = (&self.mroute, self.iface_by_index(ifindex)) else {
            return;
        };
        if let Err(e) = m.get_ref().send_group_query(i.addr, group) {
            tracing::debug!(interface = %i.name, %group, error = %e, "IGMP group query not sent");
        }
    }

    /// Sends the second query of each leave that is due.
    fn send_pending_queries(&mut self, now: Instant) {
        let due: Vec<(u32, Ipv4Addr)> = self
            .pending_queries
            .iter()
            .filter(|q| q.0 <= now)
            .map(|q| (q.1, q.2))
            .collect();
        self.pending_queries.retain(|q| q.0 > now);
        for (ifindex, group) in due {
            self.group_query(ifindex, group);
        }
    }

    /// Sends an IGMPv3 general query on every interface (full mode), so members report.
    fn send_queries(&self) {
        let Some(m) = &self.mroute else { return };
        for i in &self.ifaces {
            if let Err(e) = m.get_ref().send_general_query(i.addr) {
                tracing::debug!(interface = %i.name, error = %e, "IGMP query not sent");
            }
        }
    }

    /// Makes `group` intercepted on `iif` (nftables mode): the group joins the forward rule's
    /// set, whose log statement then hands the daemon the packets the rule stops. No group is
    /// joined: a membership would make the kernel deliver a local copy of every forwarded
    /// ODATA.
    fn intercept_group(&mut self, group: Ipv4Addr, iif: u32) {
        let Some(nft) = &self.nft else { return };
        if self.nft_groups.insert(group) {
            if let Err(e) = nft.add_group(group) {
                tracing::warn!(%group, error = %e, "cannot add the group to the nftables set");
            }
        }
        if self.intercepted.insert((group, iif)) {
            tracing::debug!(%group, ifindex = iif, "intercepting group");
        }
    }

    /// Pushes a route to the kernel MFC (full mode), the engine and the intercept.
    fn apply_route(&mut self, source: Ipv4Addr, group: Ipv4Addr, route: Route) {
        if self.installed.get(&(source, group)) == Some(&route) {
            return;
        }
        // Intercept first: installing the MFC entry makes the kernel forward at once what it
        // queued for this (S,G) while unresolved, and the rule must stop those SPMs already.
        self.intercept_group(group, route.iif);
        if let Some(m) = &self.mroute {
            let vif = |i: u32| self.iface_by_index(i).map(|f| f.vif);
            let Some(parent) = vif(route.iif) else { return };
            let oifs: Vec<u16> = route.oifs.iter().filter_map(|&o| vif(o)).collect();
            if let Err(e) = m.get_ref().add_mfc(source, group, parent, &oifs) {
                tracing::warn!(%source, %group, error = %e, "cannot install the MFC entry");
            }
        }
        tracing::info!(
            %source, %group, iif = route.iif, oifs = ?route.oifs,
            "route for (S,G)"
        );
        {
            let mut s = self.lock();
            let oifs: Vec<IfIndex> = route.oifs.iter().map(|&o| IfIndex(o)).collect();
            s.engine
                .set_route(IpAddr::V4(source), IpAddr::V4(group), &oifs);
            s.routes.insert((source, group), route.clone());
            s.extra.mfc_updates += 1;
        }
        self.installed.insert((source, group), route);
    }

    fn remove_route(&mut self, source: Ipv4Addr, group: Ipv4Addr) {
        if self.installed.remove(&(source, group)).is_none() {
            return;
        }
        if let Some(m) = &self.mroute {
            let _ = m.get_ref().del_mfc(source, group);
        }
        let mut s = self.lock();
        s.engine.remove_route(IpAddr::V4(source), IpAddr::V4(group));
        s.routes.remove(&(source, group));
    }

    /// nftables mode: makes the intercepted groups those of the installed routes and, in full
    /// mode, those with members on a downstream LAN, so that a group's first packets are
    /// logged before its route exists; and the (group, upstream) pairs those of the routes.
    /// Both stay bounded by the routes and memberships.
    fn sync_intercept(&mut self) {
        let Some(nft) = &self.nft else { return };
        let mut pairs: HashSet<(Ipv4Addr, u32)> = self
            .installed
            .iter()
            .map(|(&(_, g), r)| (g, r.iif))
            .collect();
        if self.mode == RouterMode::Full {
            // Static routes, with a source or without (then no route is installed until one).
            pairs.extend(self.table.statics.iter().map(|s| (s.group, s.upstream)));
        }
        let mut want: HashSet<Ipv4Addr> = pairs.iter().map(|&(g, _)| g).collect();
        if self.mode == RouterMode::Full {
            want.extend(self.table.memberships().into_iter().map(|(_, g)| g));
        }
        for &g in want.difference(&self.nft_groups) {
            if let Err(e) = nft.add_group(g) {
                tracing::warn!(group = %g, error = %e, "cannot add the group to the nftables set");
            }
        }
        for &g in self.nft_groups.difference(&want) {
            if let Err(e) = nft.remove_group(g) {
                tracing::warn!(group = %g, error = %e, "cannot remove the group from the nftables set");
            }
        }
        self.nft_groups = want;
        self.intercepted = pairs;
    }

    /// Makes sure the engine knows the route of `(source, group)` before it sees a packet of
    /// it.
    fn ensure_route(&mut self, source: Ipv4Addr, group: Ipv4Addr, arrival: u32) {
        if self.installed.contains_key(&(source, group)) {
            return;
        }
        let route = match self.mode {
            RouterMode::Full => self.table.resolve_full(source, group, Some(arrival)),
            RouterMode::AssistOnly => {
                self.refresh_kernel();
                self.table.resolve_kernel(source, group)
            }
        };
        if let Some(route) = route {
            self.apply_route(source, group, route);
        }
    }

    /// Recomputes every installed route (after membership, kernel or config changes).
    fn recompute(&mut self) {
        let keys: Vec<_> = self.installed.keys().copied().collect();
        for (s, g) in keys {
            let arrival = self.installed.get(&(s, g)).map(|r| r.iif);
            let route = match self.mode {
                RouterMode::Full => self.table.resolve_full(s, g, arrival),
                RouterMode::AssistOnly => self.table.resolve_kernel(s, g),
            };
            match route {
                Some(r) => self.apply_route(s, g, r),
                None => self.remove_route(s, g),
            }
        }
        if self.mode == RouterMode::AssistOnly {
            let sg: Vec<_> = self
                .table
                .kernel
                .iter()
                .filter(|k| !k.origin.is_unspecified())
                .map(|k| (k.origin, k.group, k.route.clone()))
                .collect();
            for (s, g, r) in sg {
                self.apply_route(s, g, r);
            }
        }
        self.sync_intercept();
        let m = self.table.memberships();
        self.lock().memberships = m;
    }

    /// Assist-only: reads the kernel's VIFs and MFC.
    fn refresh_kernel(&mut self) {
        let (vifs, mfc) = match (procfs::read_vifs(), procfs::read_mfc()) {
            (Ok(v), Ok(m)) => (v, m),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the kernel's multicast routing table");
                return;
            }
        };
        let all = iface::interfaces().unwrap_or_default();
        let index_of = |vif: u16| -> Option<u32> {
            let name = &vifs.iter().find(|v| v.vif == vif)?.name;
            all.iter().find(|i| &i.name == name).map(|i| i.index)
        };
        let kernel: Vec<KernelRoute> = mfc
            .iter()
            .filter_map(|e| {
                Some(KernelRoute {
                    origin: e.origin,
                    group: e.group,
                    route: Route {
                        iif: index_of(e.iif?)?,
                        oifs: e.oifs.iter().filter_map(|&o| index_of(o)).collect(),
                    },
                })
            })
            .collect();
        if kernel != self.table.kernel {
            self.table.kernel = kernel;
            self.recompute();
        }
    }

    /// Drains one receive socket until it would block (the error returned then).
    fn drain(&mut self, via: RecvSocketKind, now: Instant) -> io::Result<()> {
        loop {
            let buf = &mut self.buf;
            let res = match via {
                RecvSocketKind::RouterAlert => self.ra.try_io(|s| s.recv(buf)),
                RecvSocketKind::Unicast => self.unicast.try_io(|s| s.recv(buf)),
                RecvSocketKind::Intercept => match &self.intercept {
                    Some(s) => s.try_io(|s| s.recv(buf)),
                    None => return Ok(()),
                },
            };
            let r = match res {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.lock().extra.undecodable += 1;
                    continue;
                }
                Err(e) if nflog::is_overrun(&e) => {
                    // The kernel dropped log messages: the socket's buffer was full.
                    self.lock().extra.intercept_overruns += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.handle(via, now, r);
        }
    }

    fn handle(&mut self, via: RecvSocketKind, now: Instant, r: pgm_core::net::router::Received) {
        let pgm_range = r.pgm_offset..r.len;
        let ty = Packet::new_checked(&self.buf[pgm_range.clone()])
            .map(|p| p.packet_type())
            .ok();
        let label = ty.map_or("malformed", PacketType::label);
        if self.iface_by_index(r.ifindex).is_none() {
            return;
        }
        // The rules take the group's packets on every interface; the daemon takes those that
        // came in where the group is routed from (as a membership there would have). The
        // kernel would not forward the others either (wrong incoming interface). A packet of
        // a group with members but no route yet (its first SPM, say) makes the route, as the
        // kernel's upcall would.
        if via == RecvSocketKind::Intercept {
            if !self.intercepted.contains(&(r.destination, r.ifindex)) {
                self.ensure_route(r.source, r.destination, r.ifindex);
            }
            if !self.intercepted.contains(&(r.destination, r.ifindex)) {
                self.lock().extra.intercept_foreign += 1;
                return;
            }
        }
        if via != RecvSocketKind::Unicast {
            let tag = u8::from(via == RecvSocketKind::Intercept);
            if self.dedup.is_duplicate(
                now,
                tag,
                r.source,
                r.destination,
                &self.buf[pgm_range.clone()],
            ) {
                self.lock().extra.duplicates += 1;
                return;
            }
        }
        self.lock().count(r.ifindex, Dir::In, label, r.len);
        if r.destination.is_multicast() {
            self.ensure_route(r.source, r.destination, r.ifindex);
        }
        if ty == Some(PacketType::Odata) {
            // ODATA with Router Alert: the kernel did not forward it, so we do.
            self.forward_odata(&r);
            return;
        }
        let meta = NeRecvMeta {
            ifindex: IfIndex(r.ifindex),
            source: IpAddr::V4(r.source),
            destination: IpAddr::V4(r.destination),
            ttl: r.ttl,
        };
        let shared = Arc::clone(&self.shared);
        let mut s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.engine.handle_packet(now, meta, &self.buf[pgm_range]);
    }

    fn forward_odata(&mut self, r: &pgm_core::net::router::Received) {
        if r.ttl <= 1 {
            return;
        }
        let Some(route) = self.installed.get(&(r.source, r.destination)).cloned() else {
            return;
        };
        if route.iif != r.ifindex {
            return;
        }
        let pgm = &self.buf[r.pgm_offset..r.len];
        let mut s = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for oif in route.oifs {
            if let Some(tx) = self.senders.get(&oif) {
                match tx.send(
                    IpAddr::V4(r.source),
                    IpAddr::V4(r.destination),
                    r.ttl - 1,
                    true,
                    pgm,
                ) {
                    Ok(()) => {
                        s.extra.odata_slow_path += 1;
                        s.count(oif, Dir::Out, "odata", pgm.len() + 24);
                    }
                    Err(_) => s.extra.send_errors += 1,
                }
            }
        }
    }

    /// Handles what the mroute socket received.
    fn drain_mroute(&mut self, now: Instant) -> io::Result<()> {
        let mut membership_changed = false;
        loop {
            let Some(m) = &self.mroute else { return Ok(()) };
            let buf = &mut self.buf;
            let msg = match m.try_io(|s| s.recv(buf)) {
                Ok(msg) => msg,
                Err(e) => {
                    if membership_changed {
                        self.recompute();
                    }
                    return Err(e);
                }
            };
            match msg {
                MrouteMsg::Upcall {
                    kind,
                    vif,
                    source,
                    group,
                } => {
                    let label = match kind {
                        UpcallKind::NoCache => "nocache",
                        UpcallKind::WrongVif => "wrongvif",
                        UpcallKind::Other(_) => "other",
                    };
                    *self.lock().extra.upcalls.entry(label).or_default() += 1;
                    if kind == UpcallKind::NoCache {
                        let Some(arrival) =
                            self.ifaces.iter().find(|i| i.vif == vif).map(|i| i.index)
                        else {
                            continue;
                        };
                        tracing::debug!(%source, %group, vif, "NOCACHE upcall");
                        if let Some(route) = self.table.resolve_full(source, group, Some(arrival)) {
                            self.apply_route(source, group, route);
                        }
                    }
                }
                MrouteMsg::Igmp {
                    ifindex,
                    reporter,
                    changes,
                } => {
                    if self.iface_by_index(ifindex).is_none() {
                        continue;
                    }
                    // Our own address: our own report (a membership of the router host's).
                    if self.ifaces.iter().any(|i| i.addr == reporter) {
                        continue;
                    }
                    self.lock().extra.igmp_reports += 1;
                    for c in changes {
                        // Link-local groups (224.0.0.0/24) are never routed.
                        if c.group.octets()[..3] == [224, 0, 0] {
                            continue;
                        }
                        tracing::debug!(group = %c.group, ifindex, join = c.join, %reporter, "IGMP");
                        let querying = self
                            .pending_queries
                            .iter()
                            .any(|q| (q.1, q.2) == (ifindex, c.group));
                        if !c.join && !querying && self.table.is_member(ifindex, c.group) {
                            // A leave: ask whether members remain before the membership
                            // lapses (LEAVE_GRACE), twice, a second apart (RFC 3376 §6.4.2,
                            // Last Member Query Count 2). The host's repeats of its leave
                            // do not restart the queries.
                            self.group_query(ifindex, c.group);
                            self.pending_queries.push((
                                now + LAST_MEMBER_QUERY_IVL,
                                ifindex,
                                c.group,
                            ));
                        }
                        membership_changed |= self.table.igmp(now, ifindex, c.group, c.join);
                    }
                }
                MrouteMsg::Other => {}
            }
        }
    }

    /// Sends everything the engine queued.
    fn flush(&mut self, now: Instant) {
        let shared = Arc::clone(&self.shared);
        let mut s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(t) = s.engine.poll_transmit(now, &mut self.txbuf) {
            let Some(tx) = self.senders.get(&t.ifindex.0) else {
                s.extra.send_errors += 1;
                continue;
            };
            let pgm = &self.txbuf[..t.len];
            match tx.send(t.source, t.destination, t.ttl, t.router_alert, pgm) {
                Ok(()) => {
                    let ip = if t.router_alert { 24 } else { 20 };
                    s.count(t.ifindex.0, Dir::Out, t.packet_type.label(), t.len + ip);
                }
                Err(e) => {
                    s.extra.send_errors += 1;
                    tracing::debug!(error = %e, ifindex = t.ifindex.0, "send failed");
                }
            }
        }
    }

    /// SIGHUP: re-reads the configuration and applies routes (and logs what needs a restart).
    fn reload(&mut self) {
        let config = match Config::from_file(&self.config_path) {
            Ok(c) => c,
            Err(errors) => {
                for line in errors.to_string().lines() {
                    tracing::error!(
                        error = line,
                        "reload: configuration rejected, keeping the old one"
                    );
                }
                return;
            }
        };
        let Some(r) = config.router.as_ref() else {
            tracing::error!("reload: no [router] section, keeping the old configuration");
            return;
        };
        let names: Vec<&str> = r.interfaces.iter().map(|i| i.name.as_str()).collect();
        let old: Vec<&str> = self.ifaces.iter().map(|i| i.name.as_str()).collect();
        if names != old || r.mode != self.mode {
            tracing::warn!("reload: interface or mode changes take effect after a restart");
        }
        let new_cfg = ne_config(r, &self.ifaces);
        // Timers, limits and poll settings apply at once; repair and path state are kept.
        self.lock().engine.reconfigure(new_cfg);
        self.table.statics = static_routes(r, &self.ifaces);
        self.recompute();
        if self.mode == RouterMode::Full {
            let statics = self.table.statics.clone();
            for s in statics {
                if let Some(src) = s.source {
                    if let Some(route) = self.table.resolve_full(src, s.group, None) {
                        self.apply_route(src, s.group, route);
                    }
                }
                self.intercept_group(s.group, s.upstream);
            }
        }
        tracing::info!(routes = self.table.statics.len(), "configuration reloaded");
    }

    /// Removes the nftables table and gives up multicast routing.
    fn shutdown(&mut self) {
        if let Some(mut t) = self.nft.take() {
            if let Err(e) = t.remove() {
                tracing::warn!(error = %e, "cannot remove the nftables table");
            }
        }
        if let Some(m) = &self.mroute {
            if let Err(e) = m.get_ref().done() {
                tracing::warn!(error = %e, "MRT_DONE failed");
            }
        }
        tracing::info!("pgm-routerd stopped");
    }

    /// Runs until SIGINT or SIGTERM.
    pub(crate) async fn run(mut self) -> Result<()> {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let changed = self.changed();
        let mut last_query = now();
        let far = Duration::from_secs(3600);
        loop {
            let deadline = self.lock().engine.poll_timeout();
            let sleep_to = deadline.unwrap_or_else(|| now() + far);
            tokio::select! {
                g = self.ra.ready.readable() => {
                    g?;
                    self.drain_logged(RecvSocketKind::RouterAlert);
                }
                g = self.unicast.ready.readable() => {
                    g?;
                    self.drain_logged(RecvSocketKind::Unicast);
                }
                g = readable(self.intercept.as_ref()) => {
                    g?;
                    self.drain_logged(RecvSocketKind::Intercept);
                }
                g = readable(self.mroute.as_ref()) => {
                    g?;
                    if let Err(e) = self.drain_mroute(now()) {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            tracing::warn!(error = %e, "mroute socket");
                        }
                    }
                }
                () = tokio::time::sleep_until(sleep_to.into()) => {
                    let t = now();
                    self.lock().engine.handle_timeout(t);
                }
                _ = tick.tick() => {
                    let t = now();
                    self.send_pending_queries(t);
                    if self.table.expire(t) {
                        self.recompute();
                    }
                    if self.mode == RouterMode::AssistOnly {
                        self.refresh_kernel();
                    }
                    if t.saturating_duration_since(last_query) >= QUERY_INTERVAL {
                        last_query = t;
                        self.send_queries();
                    }
                    let _ = KERNEL_POLL;
                }
                () = changed.notified() => {}
                _ = sighup.recv() => self.reload(),
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
            }
            self.flush(now());
        }
        self.shutdown();
        Ok(())
    }

    fn drain_logged(&mut self, via: RecvSocketKind) {
        if let Err(e) = self.drain(via, now()) {
            if e.kind() != io::ErrorKind::WouldBlock {
                tracing::warn!(socket = ?via, error = %e, "receive failed");
            }
        }
    }
}

/// A socket with a readiness source: a `dup(2)` of its descriptor registered with tokio as a
/// `UdpSocket` that never does I/O itself (as `pgm_core::host` does; tokio's
/// `AsyncFd::register` is unsafe). All I/O goes through `sock`.
pub(crate) struct Watched<T> {
    ready: UdpSocket,
    sock: T,
}

impl<T: std::os::fd::AsFd> Watched<T> {
    fn new(sock: T) -> io::Result<Self> {
        let dup = std::net::UdpSocket::from(sock.as_fd().try_clone_to_owned()?);
        Ok(Self {
            ready: UdpSocket::from_std(dup)?,
            sock,
        })
    }

    fn get_ref(&self) -> &T {
        &self.sock
    }

    /// Runs a non-blocking read, clearing readiness when it would block.
    fn try_io<R>(&self, f: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        self.ready.try_io(Interest::READABLE, || f(&self.sock))
    }
}

/// Waits until an optional socket is readable (pending forever without a socket). The
/// caller then drains it until it would block.
async fn readable<T>(w: Option<&Watched<T>>) -> io::Result<()> {
    match w {
        Some(w) => w.ready.readable().await,
        None => std::future::pending().await,
    }
}
