//! The driver: receive tasks feed one loop that owns the engines, their one timer, the
//! senders and the signals.
//!
//! One [`Repairer`] per (interface, group, data-destination port): the embedded receiver of
//! an engine follows one group and port (and needs a session's SPMs to know its parent). Each
//! wake-up handles what is ready (a packet, the earliest engine deadline, a signal), then
//! drains every engine's transmits through the interface's `IP_HDRINCL` sender, which writes
//! the IP header itself: the ODATA source's address and Router Alert where §9.5.2.1 requires
//! them, the DLR's own address otherwise.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgm_config::{Config, DlrSection, DlrServe, DlrSession};
use pgm_core::net::iface;
use pgm_core::net::router::HdrInclSender;
use pgm_core::proto::RecvMeta;
use pgm_core::proto::receiver::ReceiverConfig;
use pgm_core::proto::repairer::{DlrConfig, Repairer};
use pgm_core::wire::{Gsi, NakPacket, Packet, PacketType, Tsi};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::sockets::{self, Incoming};
use crate::state::{Dir, Engine, Key, Shared};

/// Multicast TTL of transmits the engine gives none for.
const MULTICAST_TTL: u8 = 16;
/// TTL of unicast transmits.
const UNICAST_TTL: u8 = 64;

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
}

/// The engine settings taken from `[dlr]` (reloadable: the cache bounds).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    cache_bytes: usize,
    cache_age: Duration,
    upstream: bool,
    off_tree: bool,
    /// Most sessions per engine (`max_sessions`).
    max_sessions: usize,
    /// Each engine's receiver bound (`receive_buffer_bytes`).
    receive_buffer_bytes: usize,
    /// `nak_window_slack`.
    nak_window_slack: u32,
}

impl Settings {
    pub(crate) fn from(d: &DlrSection) -> Self {
        Self {
            cache_bytes: usize::try_from(d.cache_bytes).unwrap_or(usize::MAX),
            cache_age: d.cache_age,
            upstream: d.upstream,
            off_tree: d.off_tree,
            max_sessions: d.max_sessions,
            receive_buffer_bytes: usize::try_from(d.receive_buffer_bytes).unwrap_or(usize::MAX),
            nak_window_slack: d.nak_window_slack,
        }
    }

    /// The configuration of the engine of `group` and data-destination `port` on the
    /// interface of address `addr` (serving every session; the caller narrows `serve`).
    pub(crate) fn engine_config(
        &self,
        group: Ipv4Addr,
        port: u16,
        addr: Ipv4Addr,
        seed: u64,
    ) -> DlrConfig {
        let mut rc = ReceiverConfig::new(port, IpAddr::V4(group));
        rc.rng_seed = seed;
        // The embedded receiver tracks as many sources as the engine sessions, so that
        // neither holds state for sessions the other cannot.
        rc.max_sources = self.max_sessions;
        rc.max_buffer_bytes = self.receive_buffer_bytes;
        let mut c = DlrConfig::new(rc, IpAddr::V4(addr));
        // Each engine may use the whole bound; `bound_cache` keeps their sum within it.
        c.cache_bytes = self.cache_bytes;
        c.cache_age = self.cache_age;
        c.upstream = self.upstream;
        c.off_tree = self.off_tree;
        c.max_sessions = self.max_sessions;
        c.nak_window_slack = self.nak_window_slack;
        c
    }
}

fn resolve_interfaces(d: &DlrSection) -> Result<Vec<Iface>> {
    let all = iface::interfaces().context("cannot list interfaces")?;
    d.interfaces
        .iter()
        .map(|name| {
            let Some(i) = all.iter().find(|i| &i.name == name) else {
                bail!("interface {name} has no IPv4 address (or does not exist)");
            };
            Ok(Iface {
                name: name.clone(),
                index: i.index,
                addr: i.addr,
            })
        })
        .collect()
}

fn wire_tsi(t: pgm_config::Tsi) -> Tsi {
    Tsi::new(Gsi(t.gsi), t.sport)
}

/// The daemon.
pub(crate) struct Daemon {
    shared: Arc<Mutex<Shared>>,
    config_path: std::path::PathBuf,
    ifaces: Vec<Iface>,
    senders: HashMap<u32, HdrInclSender>,
    rx: mpsc::Receiver<Incoming>,
    settings: Settings,
    /// `serve = "listed"`: the sessions; `None` serves all.
    listed: Option<Vec<DlrSession>>,
    /// `max_engines` as started (a change needs a restart).
    max_engines: usize,
    txbuf: Vec<u8>,
    seed: u64,
}

impl Daemon {
    /// Opens every socket, joins the listed groups and starts the receive tasks (so it must
    /// run inside the runtime).
    pub(crate) fn start(config: &Config, config_path: std::path::PathBuf) -> Result<Self> {
        let d = config
            .dlr
            .as_ref()
            .context("the configuration has no [dlr] section")?;
        let ifaces = resolve_interfaces(d)?;
        let listed = (d.serve == DlrServe::Listed).then(|| d.sessions.clone());
        let (tx, rx) = mpsc::channel(4096);
        let mut senders = HashMap::new();
        for i in &ifaces {
            let ip = sockets::open_ip(&i.name, listed.is_none())
                .with_context(|| format!("cannot open the PGM/IP socket on {}", i.name))?;
            if let Some(sessions) = &listed {
                let mut groups: Vec<Ipv4Addr> = sessions.iter().map(|s| s.group).collect();
                groups.sort();
                groups.dedup();
                for g in groups {
                    sockets::join(&ip, g, i.index)
                        .with_context(|| format!("cannot join {g} on {}", i.name))?;
                    tracing::info!(interface = %i.name, group = %g, "joined");
                }
            } else {
                let link = sockets::open_link(i.index).with_context(|| {
                    format!(
                        "cannot open the link socket on {} (serve = \"all\")",
                        i.name
                    )
                })?;
                sockets::spawn_reader(link, i.index, "link", tx.clone())?;
            }
            sockets::spawn_reader(ip, i.index, "ip", tx.clone())?;
            senders.insert(
                i.index,
                HdrInclSender::open(&i.name, i.index)
                    .with_context(|| format!("cannot open the sender on {}", i.name))?,
            );
        }
        let settings = Settings::from(d);
        let names = ifaces.iter().map(|i| (i.index, i.name.clone())).collect();
        let shared = Arc::new(Mutex::new(Shared::new(d, names)));
        let mut daemon = Self {
            shared,
            config_path,
            ifaces,
            senders,
            rx,
            settings,
            listed,
            max_engines: d.max_engines,
            txbuf: Vec::with_capacity(2048),
            seed: u64::from(std::process::id()),
        };
        // Listed sessions have their engines from the start.
        if let Some(sessions) = daemon.listed.clone() {
            for i in daemon.ifaces.clone() {
                for s in &sessions {
                    daemon.ensure_engine((i.index, s.group, s.port));
                }
            }
        }
        tracing::info!(
            interfaces = ?daemon.ifaces.iter().map(|i| &i.name).collect::<Vec<_>>(),
            serve = daemon.lock().serve,
            cache_bytes = d.cache_bytes,
            cache_age = ?d.cache_age,
            upstream = d.upstream,
            off_tree = d.off_tree,
            max_engines = d.max_engines,
            max_sessions = d.max_sessions,
            "pgm-dlrd started"
        );
        Ok(daemon)
    }

    pub(crate) fn shared(&self) -> Arc<Mutex<Shared>> {
        Arc::clone(&self.shared)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `(group, port)` is served.
    fn serves(&self, group: Ipv4Addr, port: u16) -> bool {
        self.listed
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s.group == group && s.port == port))
    }

    fn dlr_config(&mut self, key: Key) -> Option<DlrConfig> {
        let (ifindex, group, port) = key;
        let addr = self.ifaces.iter().find(|i| i.index == ifindex)?.addr;
        self.seed = self
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let mut c = self.settings.engine_config(group, port, addr, self.seed);
        // Only listed TSIs if every entry of this group and port names one.
        c.serve = self.listed.as_ref().and_then(|l| {
            let entries: Vec<&DlrSession> = l
                .iter()
                .filter(|s| s.group == group && s.port == port)
                .collect();
            entries
                .iter()
                .map(|s| s.tsi.map(wire_tsi))
                .collect::<Option<Vec<Tsi>>>()
        });
        Some(c)
    }

    /// Makes sure the engine `key` runs; `false` if it cannot (the engine limit).
    fn ensure_engine(&mut self, key: Key) -> bool {
        if self.lock().engines.contains_key(&key) {
            return true;
        }
        if self.listed.is_none() && !self.make_room() {
            self.lock().extra.engines_refused += 1;
            return false;
        }
        let Some(config) = self.dlr_config(key) else {
            return false;
        };
        let repairer = Repairer::new(config);
        let name = self.lock().name_of(key.0);
        tracing::info!(interface = %name, group = %key.1, port = key.2, "serving group and port");
        self.lock().add_engine(key, Engine::new(repairer));
        true
    }

    /// With `serve = "all"` at `max_engines`: retires an idle engine (no session in its
    /// receiver, nothing cached), if one of the next few in rotation is. Whether there is room now.
    fn make_room(&mut self) -> bool {
        let mut s = self.lock();
        let (room, idle) = s.make_room();
        if let Some(k) = idle {
            let name = s.name_of(k.0);
            tracing::info!(interface = %name, group = %k.1, port = k.2, "idle engine retired");
        }
        room
    }

    /// Keeps the cached bytes of all engines together within `cache_bytes`.
    fn bound_cache(&mut self) {
        let limit = self.settings.cache_bytes as u64;
        self.lock().bound_cache(limit);
    }

    /// The engine a packet belongs to, creating it (`serve = "all"`) for the multicast of a
    /// new group and port. `Err` is a malformed reason.
    fn route(&mut self, inc: &Incoming) -> Result<Option<Key>, &'static str> {
        let pgm = &inc.bytes[inc.ip.pgm_offset..inc.ip.len];
        let p = Packet::new_checked(pgm).map_err(|e| e.reason())?;
        let ty = p.packet_type();
        let tsi = p.tsi();
        let ifindex = inc.ifindex;
        let key = if ty.is_upstream() {
            // Upstream: the source port field is the data-destination port; NAKs and NNAKs
            // name their group.
            match ty {
                PacketType::Nak | PacketType::Nnak => {
                    let n = NakPacket::new_checked(pgm).map_err(|e| e.reason())?;
                    match n.group_nla().0 {
                        IpAddr::V4(g) => Some((ifindex, g, p.source_port())),
                        IpAddr::V6(_) => None,
                    }
                }
                _ => self.lock().route_of(ifindex, tsi),
            }
        } else if inc.ip.destination.is_multicast() {
            let key = (ifindex, inc.ip.destination, p.dest_port());
            if self.serves(key.1, key.2) {
                if !self.ensure_engine(key) {
                    return Ok(None);
                }
                // Not learnt (counted) only when every engine's receiver is full: the
                // packet still reaches its engine, which refuses the new session too.
                self.lock().learn_route(ifindex, tsi, key);
            }
            Some(key)
        } else {
            self.lock().route_of(ifindex, tsi)
        };
        Ok(key.filter(|k| self.serves(k.1, k.2)))
    }

    fn handle(&mut self, now: Instant, inc: &Incoming) {
        if inc.ip.fragment {
            // The link-layer socket sees fragments before reassembly: a non-first one would
            // read as a packet of its own.
            self.lock().count(inc.ifindex, Dir::In, "malformed");
            *self
                .lock()
                .extra
                .malformed
                .entry("ip_fragment")
                .or_default() += 1;
            return;
        }
        let pgm = &inc.bytes[inc.ip.pgm_offset..inc.ip.len];
        let label = Packet::new_checked(pgm).map_or("malformed", |p| p.packet_type().label());
        self.lock().count(inc.ifindex, Dir::In, label);
        let key = match self.route(inc) {
            Ok(Some(k)) => k,
            Ok(None) => {
                self.lock().extra.unserved += 1;
                return;
            }
            Err(reason) => {
                *self.lock().extra.malformed.entry(reason).or_default() += 1;
                return;
            }
        };
        let meta = RecvMeta {
            source: IpAddr::V4(inc.ip.source),
            destination: IpAddr::V4(inc.ip.destination),
        };
        let mut s = self.lock();
        match s.engines.get_mut(&key) {
            Some(e) => {
                e.repairer.handle_packet(now, meta, pgm);
                s.touch(key);
            }
            None => s.extra.unserved += 1,
        }
    }

    /// Sends every engine's transmits; drops the embedded receivers' application events.
    fn flush(&mut self, now: Instant) {
        let shared = Arc::clone(&self.shared);
        let mut s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut sent: Vec<(u32, &'static str)> = Vec::new();
        let mut errors = 0;
        // Only the engines that handled something: the work per batch does not grow with the
        // number of engines.
        let touched = s.take_touched();
        for &key in &touched {
            let ifindex = key.0;
            let Some(e) = s.engines.get_mut(&key) else {
                continue;
            };
            while let Some(ev) = e.repairer.poll_event() {
                tracing::trace!(event = ?ev, "receiver event");
            }
            while let Some(t) = e.repairer.poll_transmit(now, &mut self.txbuf) {
                let Some(tx) = self.senders.get(&ifindex) else {
                    errors += 1;
                    continue;
                };
                let dst = t.destination.addr();
                let ttl = t.ttl.unwrap_or(if dst.is_multicast() {
                    MULTICAST_TTL
                } else {
                    UNICAST_TTL
                });
                match tx.send(t.source, dst, ttl, t.router_alert, &self.txbuf[..t.len]) {
                    Ok(()) => {
                        tracing::debug!(
                            ty = t.packet_type.label(), source = %t.source, destination = %dst,
                            router_alert = t.router_alert, "sent"
                        );
                        sent.push((ifindex, t.packet_type.label()));
                    }
                    Err(err) => {
                        errors += 1;
                        tracing::debug!(error = %err, ty = t.packet_type.label(), %dst, "send failed");
                    }
                }
            }
        }
        for key in touched {
            s.schedule(key);
        }
        for (i, ty) in sent {
            s.count(i, Dir::Out, ty);
        }
        s.extra.send_errors += errors;
    }

    fn deadline(&self) -> Option<Instant> {
        self.lock().next_wake()
    }

    fn timeout(&self, now: Instant) {
        let mut s = self.lock();
        for key in s.due(now) {
            if let Some(e) = s.engines.get_mut(&key) {
                if e.repairer.poll_timeout().is_some_and(|t| t <= now) {
                    e.repairer.handle_timeout(now);
                }
            }
            // Touched either way, so that its next deadline is scheduled.
            s.touch(key);
        }
    }

    /// SIGHUP: re-reads the configuration. The cache bounds apply to the engines created
    /// from now on (the engine has no way to change a running one's); the rest needs a
    /// restart.
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
        let Some(d) = config.dlr.as_ref() else {
            tracing::error!("reload: no [dlr] section, keeping the old configuration");
            return;
        };
        let old: Vec<&str> = self.ifaces.iter().map(|i| i.name.as_str()).collect();
        let listed = (d.serve == DlrServe::Listed).then(|| d.sessions.clone());
        if d.interfaces != old
            || listed != self.listed
            || d.upstream != self.settings.upstream
            || d.off_tree != self.settings.off_tree
            || d.max_engines != self.max_engines
            || d.max_sessions != self.settings.max_sessions
            || d.receive_buffer_bytes as usize != self.settings.receive_buffer_bytes
            || d.nak_window_slack != self.settings.nak_window_slack
        {
            tracing::warn!(
                "reload: interface, session, role, engine/session limit, receive_buffer_bytes and nak_window_slack changes take effect after a restart"
            );
        }
        self.settings.cache_bytes = usize::try_from(d.cache_bytes).unwrap_or(usize::MAX);
        self.settings.cache_age = d.cache_age;
        let (bytes, age) = (self.settings.cache_bytes, self.settings.cache_age);
        let now = now();
        let running = {
            let mut s = self.lock();
            s.cache_limit = d.cache_bytes;
            s.cache_age_secs = d.cache_age.as_secs_f64();
            let keys: Vec<Key> = s.engines.keys().copied().collect();
            for key in keys {
                if let Some(e) = s.engines.get_mut(&key) {
                    e.repairer.set_cache_limits(now, bytes, age);
                }
                s.touch(key);
            }
            s.engines.len()
        };
        self.bound_cache();
        tracing::info!(
            cache_bytes = d.cache_bytes,
            cache_age = ?d.cache_age,
            running_engines = running,
            "configuration reloaded: cache bounds applied to every engine"
        );
    }

    fn log_totals(&self) {
        let t = self.lock().totals();
        tracing::info!(
            repairs_served = t.repairs_served,
            nnaks_sent = t.nnaks_sent,
            ncfs_sent = t.ncfs_sent,
            naks_forwarded = t.naks_forwarded,
            redirects_announced = t.redirects_announced,
            polls_answered = t.polls_answered,
            cache_hits = t.cache_hits,
            cache_misses = t.cache_misses,
            "pgm-dlrd stopped"
        );
    }

    /// Runs until SIGINT or SIGTERM.
    pub(crate) async fn run(mut self) -> Result<()> {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let far = Duration::from_secs(3600);
        loop {
            let sleep_to = self.deadline().unwrap_or_else(|| now() + far);
            tokio::select! {
                inc = self.rx.recv() => {
                    let Some(inc) = inc else { bail!("every receive task ended") };
                    let t = now();
                    self.handle(t, &inc);
                    // Take what else is queued before sending.
                    while let Ok(inc) = self.rx.try_recv() {
                        self.handle(t, &inc);
                    }
                    self.bound_cache();
                }
                () = tokio::time::sleep_until(sleep_to.into()) => self.timeout(now()),
                _ = sighup.recv() => self.reload(),
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
            }
            self.flush(now());
        }
        self.log_totals();
        Ok(())
    }
}
