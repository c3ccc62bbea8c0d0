//! The driver: sockets, the controller, the engine and the data plane's worker, wired in one
//! tokio task.
//!
//! Thin by design (quinn's `ConnectionDriver` style): each wake-up hands what is ready (packets,
//! kernel upcalls, IGMP reports, the kernel's routes in assist-only mode, signals) to the
//! sans-IO controller and engine, carries out the controller's actions (engine routes, IGMP
//! queries), drains the engine's transmits and re-arms one timer at the earliest deadline of
//! both. Kernel transactions happen on the data plane's worker thread, never here.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgm_config::{Config, InterceptMode, RouterMode, RouterSection};
use pgm_core::net::iface;
use pgm_core::net::router::igmp::{self, QUERY_RESPONSE, STARTUP_QUERY_RESPONSE};
use pgm_core::net::router::mroute_plane::MroutePlane;
use pgm_core::net::router::netdev::{NetdevConfig, NetdevPlane, PlaneIface};
use pgm_core::net::router::plane::{PlaneSync, RouteKey};
use pgm_core::net::router::{
    HdrInclSender, IgmpQuerier, IgmpReport, InterceptTable, MAXVIFS, MrouteMsg, MrouteSocket,
    NflogSocket, Received, RecvSocket, RecvSocketKind, UpcallKind, nflog,
};
use pgm_core::proto::network_element::{
    IfIndex, NeConfig, NeInterface, NeRecvMeta, NeRoute, NetworkElement,
};
use pgm_core::wire::{Packet, PacketType};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use crate::control::{Action, Controller, CtlConfig, StaticRoute};
use crate::dataplane::{self, KernelRoutes, Plane, PlaneKind, PlaneStats, PlaneWorker};
use crate::dedup::Dedup;
use crate::state::{Dir, Extra, Shared};

/// The nftables table the daemon owns (either plane).
const NFT_TABLE: &str = "pgm_routerd";
/// Changes kept one by one between two transactions of the plane; past this, the next
/// transaction replaces the whole state.
const PLANE_SYNC_LIMIT: usize = 16_384;
const IPPROTO_IGMP: u8 = 2;

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

/// The netdev plane's view of the interfaces: each must be Ethernet (a `dup` sends the
/// frame with its link-layer header, whose source address is rewritten to the interface's).
fn netdev_interfaces(ifaces: &[Iface]) -> Result<Vec<PlaneIface>> {
    ifaces
        .iter()
        .map(|i| {
            let (ty, mac) = iface::hardware_address(&i.name)
                .with_context(|| format!("cannot read the link-layer address of {}", i.name))?;
            if ty != iface::ARPHRD_ETHER {
                bail!(
                    "interface {} is not an Ethernet interface (link type {ty}): the netdev \
                     data plane forwards between Ethernet interfaces only; use dataplane = \
                     \"mroute\" on a kernel with multicast routing",
                    i.name
                );
            }
            Ok(PlaneIface {
                name: i.name.clone(),
                index: i.index,
                mac,
            })
        })
        .collect()
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
    c.nak_window_slack = r.limits.nak_window_slack;
    c.poll_ivl = r.poll.interval;
    c.poll_bo_ivl = r.poll.backoff;
    c.poll_mask_bits = r.poll.mask_bits;
    c.rng_seed = u64::from(std::process::id());
    c
}

fn ctl_config(r: &RouterSection, ifaces: &[Iface], kind: PlaneKind) -> CtlConfig {
    let idx = |n: &str| ifaces.iter().find(|i| i.name == n).map(|i| i.index);
    CtlConfig {
        full: r.mode == RouterMode::Full,
        per_source: kind == PlaneKind::Mroute,
        learn: kind == PlaneKind::Netdev,
        statics: r
            .static_routes
            .iter()
            .filter_map(|s| {
                Some(StaticRoute {
                    group: s.group,
                    source: s.source,
                    upstream: idx(&s.upstream)?,
                    downstream: s.downstream.iter().filter_map(|d| idx(d)).collect(),
                })
            })
            .collect(),
        max_routes: r.limits.max_routes,
        route_idle: r.timers.route_idle,
        max_memberships: r.limits.max_memberships,
    }
}

/// The daemon.
pub(crate) struct Daemon {
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
    config_path: PathBuf,
    /// The `[router]` section the daemon started with (what a reload cannot change).
    started: RouterSection,
    kind: PlaneKind,
    ifaces: Vec<Iface>,
    worker: PlaneWorker,
    /// What the worker applies; assist-only: asks it to read the kernel's routes.
    sync: Arc<PlaneSync>,
    /// Assist-only: the kernel's routes as the worker reads them.
    kernel_routes: Option<watch::Receiver<KernelRoutes>>,
    /// Mroute plane, full mode: upcalls and IGMP reports; queries.
    mroute: Option<Watched<Arc<MrouteSocket>>>,
    /// Netdev plane: queries (reports come through the intercept).
    querier: Option<IgmpQuerier>,
    /// Mroute plane: packets with Router Alert.
    ra: Option<Watched<RecvSocket>>,
    unicast: Watched<RecvSocket>,
    /// The `nfnetlink_log` intercept (netdev plane; mroute plane with nftables).
    intercept: Option<Watched<NflogSocket>>,
    senders: HashMap<u32, HdrInclSender>,
    /// Mroute plane with both the Router Alert socket and the intercept.
    dedup: Option<Dedup>,
    buf: Vec<u8>,
    txbuf: Vec<u8>,
}

impl Daemon {
    /// Chooses and sets up the data plane, opens every socket and puts the static routes in.
    pub(crate) fn start(config: &Config, config_path: PathBuf) -> Result<Self> {
        let r = config
            .router
            .as_ref()
            .context("the configuration has no [router] section")?;
        let choice = dataplane::choose(r).map_err(anyhow::Error::msg)?;
        let ifaces = resolve_interfaces(r)?;
        let full = r.mode == RouterMode::Full;
        if choice.kind == PlaneKind::Mroute && full && ifaces.len() > MAXVIFS {
            bail!("the mroute plane supports at most {MAXVIFS} interfaces (the kernel's MAXVIFS)");
        }
        let sync = Arc::new(PlaneSync::new(PLANE_SYNC_LIMIT));
        let mut ctl = Controller::new(
            ctl_config(r, &ifaces, choice.kind),
            Arc::clone(&sync),
            now(),
        );
        let group = r.nflog_group;
        let bind_log = || {
            NflogSocket::open(group).with_context(|| {
                format!(
                    "cannot bind nfnetlink_log group {group} (router.nflog_group, the \
                     intercept; is another program using it?)"
                )
            })
        };
        // The plane with the static state first, then the sockets that hand packets over.
        let (mut plane, mroute, log) = match choice.kind {
            PlaneKind::Netdev => {
                let p = NetdevPlane::install(NetdevConfig {
                    table: NFT_TABLE.to_owned(),
                    interfaces: netdev_interfaces(&ifaces)?,
                    log_group: group,
                    intercept: true,
                    learn_rate: r.limits.learn_rate,
                    learn_burst: (r.limits.learn_rate / 10).max(10),
                    owner: true,
                })
                .context("cannot install the netdev data plane")?;
                if !p.owned() {
                    warn_unowned();
                }
                (Plane::Netdev(p), None, Some(bind_log()?))
            }
            PlaneKind::Mroute => {
                let m = if full {
                    let m =
                        MrouteSocket::open().context("cannot open the multicast routing socket")?;
                    for i in &ifaces {
                        m.add_vif(i.vif, i.index)
                            .with_context(|| format!("cannot add a VIF for {}", i.name))?;
                        if let Err(e) = m.listen_reports(i.index) {
                            tracing::warn!(interface = %i.name, error = %e, "cannot listen for IGMPv3 reports");
                        }
                    }
                    Some(Arc::new(m))
                } else {
                    None
                };
                let nft = r.intercept == InterceptMode::Nftables;
                let table = if nft {
                    Some(
                        InterceptTable::install(NFT_TABLE, group, true)
                            .context("cannot install the nftables intercept")
                            .inspect(|t| {
                                if !t.owned() {
                                    warn_unowned();
                                }
                            })?,
                    )
                } else {
                    None
                };
                let vifs = ifaces.iter().map(|i| (i.index, i.vif)).collect();
                let log = if nft { Some(bind_log()?) } else { None };
                (
                    Plane::Mroute(MroutePlane::new(m.clone(), vifs, table)),
                    m,
                    log,
                )
            }
        };
        plane.apply(&sync.take()).map_err(|e| {
            anyhow::anyhow!("cannot put the static routes into the data plane: {e}")
        })?;
        let stats = Arc::new(PlaneStats::default());
        let kernel_names =
            (!full).then(|| ifaces.iter().map(|i| (i.name.clone(), i.index)).collect());
        let (worker, kernel_routes) =
            PlaneWorker::start(plane, Arc::clone(&sync), Arc::clone(&stats), kernel_names)
                .context("cannot start the data plane's worker")?;

        let open = |k| RecvSocket::open(k).with_context(|| format!("cannot open the {k:?} socket"));
        let ra = match choice.kind {
            PlaneKind::Mroute => Some(Watched::new(open(RecvSocketKind::RouterAlert)?)?),
            PlaneKind::Netdev => None,
        };
        let unicast = Watched::new(open(RecvSocketKind::Unicast)?)?;
        let querier = if choice.kind == PlaneKind::Netdev && full {
            Some(IgmpQuerier::open().context("cannot open the IGMP querier's socket")?)
        } else {
            None
        };
        let mut senders = HashMap::new();
        for i in ifaces.iter().filter(|i| i.pgm) {
            senders.insert(
                i.index,
                HdrInclSender::open(&i.name, i.index)
                    .with_context(|| format!("cannot open the sender on {}", i.name))?,
            );
        }
        let mut engine = NetworkElement::new(ne_config(r, &ifaces));
        while let Some(a) = ctl.poll_action() {
            if let Action::Route(key, route) = a {
                set_engine_route(&mut engine, key, route.map(to_ne_route));
            }
        }
        let intercept_label = match (choice.kind, r.intercept) {
            (PlaneKind::Netdev, _) => "netdev",
            (_, InterceptMode::RouterAlert) => "router-alert",
            (_, InterceptMode::Nftables) => "nftables",
        };
        let shared = Arc::new(Mutex::new(Shared {
            engine,
            ctl,
            traffic: Default::default(),
            names: ifaces.iter().map(|i| (i.index, i.name.clone())).collect(),
            extra: Extra::default(),
            mode: match r.mode {
                RouterMode::Full => "full",
                RouterMode::AssistOnly => "assist-only",
            },
            intercept: intercept_label,
            dataplane: (choice.kind.name(), choice.why.clone()),
            plane: stats,
            plane_base: Default::default(),
        }));
        let dedup =
            (ra.is_some() && log.is_some()).then(|| Dedup::new(Duration::from_millis(200), 8192));
        let d = Self {
            shared,
            changed: Arc::new(Notify::new()),
            config_path,
            started: r.clone(),
            kind: choice.kind,
            intercept: log.map(Watched::new).transpose()?,
            mroute: mroute.map(Watched::new).transpose()?,
            ifaces,
            worker,
            sync,
            kernel_routes,
            querier,
            ra,
            unicast,
            senders,
            dedup,
            buf: vec![0; 65_536],
            txbuf: Vec::with_capacity(2048),
        };
        tracing::info!(
            dataplane = choice.kind.name(),
            reason = %choice.why,
            mode = if full { "full" } else { "assist-only" },
            intercept = intercept_label,
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
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn iface_by_index(&self, index: u32) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.index == index)
    }

    /// Carries out the controller's actions: engine routes and IGMP queries.
    fn drain_actions(&self, s: &mut Shared) {
        while let Some(a) = s.ctl.poll_action() {
            match a {
                Action::Route(key, route) => {
                    tracing::debug!(route = %key, ?route, "route");
                    set_engine_route(&mut s.engine, key, route.map(to_ne_route));
                    s.extra.route_updates += 1;
                }
                Action::GeneralQuery { startup } => {
                    let max_resp = if startup {
                        STARTUP_QUERY_RESPONSE
                    } else {
                        QUERY_RESPONSE
                    };
                    for i in &self.ifaces {
                        self.query(i, None, max_resp);
                    }
                }
                Action::GroupQuery { ifindex, group } => {
                    if let Some(i) = self.iface_by_index(ifindex) {
                        self.query(i, Some(group), 0);
                    }
                }
            }
        }
    }

    /// Sends a general (`group` `None`) or group-specific query on `i`.
    fn query(&self, i: &Iface, group: Option<Ipv4Addr>, max_resp: u8) {
        let r = match (&self.querier, &self.mroute, group) {
            (Some(q), _, None) => q.send_general_query(i.addr, max_resp),
            (Some(q), _, Some(g)) => q.send_group_query(i.addr, g),
            (None, Some(m), None) => m.get_ref().send_general_query(i.addr, max_resp),
            (None, Some(m), Some(g)) => m.get_ref().send_group_query(i.addr, g),
            (None, None, _) => return,
        };
        if let Err(e) = r {
            tracing::debug!(interface = %i.name, ?group, error = %e, "IGMP query not sent");
        }
    }

    /// Drains one receive socket until it would block (the error returned then).
    fn drain(&mut self, via: RecvSocketKind, now: Instant) -> io::Result<()> {
        loop {
            let buf = &mut self.buf;
            let res = match via {
                RecvSocketKind::RouterAlert => match &self.ra {
                    Some(s) => s.try_io(|s| s.recv(buf)),
                    None => return Ok(()),
                },
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

    fn handle(&mut self, via: RecvSocketKind, now: Instant, r: Received) {
        let shared = Arc::clone(&self.shared);
        let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
        if self.iface_by_index(r.ifindex).is_none() {
            s.extra.unknown_interface += 1;
            return;
        }
        if r.fragment {
            // An IP fragment handed over before reassembly (the netdev plane's log): not a
            // whole packet to read.
            s.extra.undecodable += 1;
            return;
        }
        if r.protocol == IPPROTO_IGMP {
            if let Some(report) = igmp::parse_report(&self.buf[..r.len], r.ifindex) {
                self.on_report(&mut s, now, &report);
            }
            return;
        }
        let pgm_range = r.pgm_offset..r.len;
        let ty = Packet::new_checked(&self.buf[pgm_range.clone()])
            .map(|p| p.packet_type())
            .ok();
        if via != RecvSocketKind::Unicast {
            if let Some(d) = &mut self.dedup {
                let tag = u8::from(via == RecvSocketKind::Intercept);
                if d.is_duplicate(
                    now,
                    tag,
                    r.source,
                    r.destination,
                    &self.buf[pgm_range.clone()],
                ) {
                    s.extra.duplicates += 1;
                    return;
                }
            }
        }
        s.count(
            r.ifindex,
            Dir::In,
            ty.map_or("malformed", PacketType::label),
            r.len,
        );
        if r.destination.is_multicast() {
            // Keeps the route of a known source alive, or makes one for a new source; in
            // assist-only mode a packet of a route not read yet has the kernel read again.
            if s.ctl
                .handle_packet(now, r.source, r.destination, r.ifindex)
                .is_none()
                && self.started.mode == RouterMode::AssistOnly
            {
                self.sync.request_read();
            }
            self.drain_actions(&mut s);
            // A route's packets count only from its upstream interface: the kernel would
            // not forward the others either.
            if s.ctl
                .route(r.source, r.destination)
                .is_some_and(|(_, route)| route.iif != r.ifindex)
            {
                s.extra.intercept_foreign += 1;
                return;
            }
        }
        if ty == Some(PacketType::Odata) {
            // ODATA with Router Alert (mroute plane), or a new source's first ODATA (netdev
            // plane, logged until its route is in the kernel): the daemon forwards it.
            self.forward_odata(&mut s, &r);
            return;
        }
        let meta = NeRecvMeta {
            ifindex: IfIndex(r.ifindex),
            source: IpAddr::V4(r.source),
            destination: IpAddr::V4(r.destination),
            ttl: r.ttl,
        };
        s.engine.handle_packet(now, meta, &self.buf[pgm_range]);
    }

    fn on_report(&self, s: &mut Shared, now: Instant, report: &IgmpReport) {
        if self.iface_by_index(report.ifindex).is_none() {
            return;
        }
        // Our own address: our own report (a membership of the router host's).
        if self.ifaces.iter().any(|i| i.addr == report.reporter) {
            return;
        }
        tracing::debug!(ifindex = report.ifindex, reporter = %report.reporter, changes = ?report.changes, "IGMP");
        s.ctl.handle_report(now, report);
        self.drain_actions(s);
    }

    fn forward_odata(&self, s: &mut Shared, r: &Received) {
        if r.ttl <= 1 {
            return;
        }
        let Some((_, route)) = s.ctl.route(r.source, r.destination) else {
            return;
        };
        let oifs = route.oifs.clone();
        let pgm = &self.buf[r.pgm_offset..r.len];
        for oif in oifs {
            let Some(tx) = self.senders.get(&oif) else {
                continue;
            };
            match tx.send(
                IpAddr::V4(r.source),
                IpAddr::V4(r.destination),
                r.ttl - 1,
                r.router_alert,
                pgm,
            ) {
                Ok(()) => {
                    s.extra.odata_slow_path += 1;
                    let ip = if r.router_alert { 24 } else { 20 };
                    s.count(oif, Dir::Out, "odata", pgm.len() + ip);
                }
                Err(_) => s.extra.send_errors += 1,
            }
        }
    }

    /// Handles what the mroute socket received.
    fn drain_mroute(&mut self, now: Instant) -> io::Result<()> {
        loop {
            let Some(m) = &self.mroute else { return Ok(()) };
            let buf = &mut self.buf;
            let msg = m.try_io(|s| s.recv(buf))?;
            let shared = Arc::clone(&self.shared);
            let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
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
                    *s.extra.upcalls.entry(label).or_default() += 1;
                    if kind != UpcallKind::NoCache {
                        continue;
                    }
                    let Some(arrival) = self.ifaces.iter().find(|i| i.vif == vif).map(|i| i.index)
                    else {
                        continue;
                    };
                    tracing::debug!(%source, %group, vif, "NOCACHE upcall");
                    s.ctl.handle_packet(now, source, group, arrival);
                    self.drain_actions(&mut s);
                }
                MrouteMsg::Igmp(report) => self.on_report(&mut s, now, &report),
                MrouteMsg::Other => {}
            }
        }
    }

    /// Sends everything the engine queued.
    fn flush(&mut self, now: Instant) {
        let shared = Arc::clone(&self.shared);
        let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
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

    /// SIGHUP: re-reads the configuration: timers, limits, poll settings and static routes
    /// apply at once; interface, mode and data plane changes are logged as needing a restart.
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
        let o = &self.started;
        for (key, changed) in [
            ("router.interface", r.interfaces != o.interfaces),
            ("router.mode", r.mode != o.mode),
            ("router.dataplane", r.dataplane != o.dataplane),
            ("router.intercept", r.intercept != o.intercept),
            ("router.nflog_group", r.nflog_group != o.nflog_group),
            (
                "router.limits.learn_rate",
                r.limits.learn_rate != o.limits.learn_rate,
            ),
        ] {
            if changed {
                tracing::warn!(key, "reload: this change takes effect after a restart");
            }
        }
        let shared = Arc::clone(&self.shared);
        let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
        // Timers, limits and poll settings apply at once; repair and path state are kept.
        s.engine.reconfigure(ne_config(r, &self.ifaces));
        s.ctl.reconfigure(ctl_config(r, &self.ifaces, self.kind));
        self.drain_actions(&mut s);
        tracing::info!(routes = r.static_routes.len(), "configuration reloaded");
    }

    /// Stops the data plane (its kernel state goes) and gives up multicast routing.
    fn shutdown(&mut self) {
        self.worker.stop();
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
        let changed = self.changed();
        let far = Duration::from_secs(3600);
        let mut kernel_routes = self.kernel_routes.take();
        loop {
            let deadline = {
                let s = self.lock();
                [s.engine.poll_timeout(), s.ctl.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
            };
            let sleep_to = deadline.unwrap_or_else(|| now() + far);
            tokio::select! {
                g = readable(self.ra.as_ref()) => {
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
                r = changed_routes(kernel_routes.as_mut()) => {
                    match r {
                        Some(routes) => {
                            let shared = Arc::clone(&self.shared);
                            let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
                            s.ctl.set_kernel_routes(routes);
                            self.drain_actions(&mut s);
                        }
                        None => kernel_routes = None,
                    }
                }
                () = tokio::time::sleep_until(sleep_to.into()) => {
                    let t = now();
                    let shared = Arc::clone(&self.shared);
                    let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    s.engine.handle_timeout(t);
                    s.ctl.handle_timeout(t);
                    self.drain_actions(&mut s);
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

/// The kernel has no owned nftables tables (before Linux 5.12).
fn warn_unowned() {
    tracing::warn!(
        table = NFT_TABLE,
        "the kernel has no owned nftables tables (Linux 5.12): the table is removed when the \
         daemon stops, but a killed daemon leaves it until the next start replaces it"
    );
}

fn to_ne_route(r: pgm_core::net::router::plane::PlaneRoute) -> NeRoute {
    NeRoute {
        upstream: IfIndex(r.iif),
        downstream: r.oifs.into_iter().map(IfIndex).collect(),
    }
}

fn set_engine_route(engine: &mut NetworkElement, key: RouteKey, route: Option<NeRoute>) {
    let source = key.source.map(IpAddr::V4);
    let group = IpAddr::V4(key.group);
    match route {
        Some(r) => engine.set_route(source, group, r),
        None => engine.remove_route(source, group),
    }
}

/// The next routes from the worker; `None` once it is gone (pending forever without one).
async fn changed_routes(rx: Option<&mut watch::Receiver<KernelRoutes>>) -> Option<KernelRoutes> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
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
