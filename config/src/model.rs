//! The configuration's types and their defaults.
//!
//! Every default lives in one `Default` impl below; the parser starts from it and overrides
//! what the file sets. The engine defaults (`NeConfig::new`, `SourceConfig::new`,
//! `ReceiverConfig::new`, `TransportConfig::new` in `pgm-core`) are repeated here on purpose:
//! this crate is a leaf and does not depend on `pgm-core`. A test in each daemon should
//! check that the two agree.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A whole configuration file: one section per role, plus the admin listener.
///
/// Each daemon reads its own section and ignores the others, so one file may serve all the
/// roles of a host. Sections absent from the file are `None` (the admin section, which
/// every daemon has, takes its defaults).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `[router]`: the network-element daemon `pgm-routerd`.
    pub router: Option<RouterSection>,
    /// `[dlr]`: the Designated Local Repairer daemon `pgm-dlrd`.
    pub dlr: Option<DlrSection>,
    /// `[host]`: defaults of end-host sessions (the `pgm` tool and applications).
    pub host: Option<HostSection>,
    /// `[admin]`: the metrics and admin API listener of every daemon.
    pub admin: AdminSection,
    /// Where each key was found (file name, line and column), for errors found after
    /// parsing such as [`Config::check_interfaces`](crate::Config::check_interfaces).
    /// Empty for a configuration built in code.
    pub locations: Locations,
}

/// The file and the positions of the keys a configuration was read from.
///
/// Positions are not part of the configuration's value: two `Locations` always compare
/// equal, so that a reload that only moved lines compares equal to the running
/// configuration.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// The name the file was read under (`origin` of [`Config::from_str`](crate::Config::from_str)).
    pub file: String,
    /// Dotted key (`router.interface[1].name`) to 1-based (line, column) of its value.
    pub(crate) positions: BTreeMap<String, (usize, usize)>,
}

impl Locations {
    /// The 1-based (line, column) of the value of the dotted `key`, if it was in the file.
    pub fn position(&self, key: &str) -> Option<(usize, usize)> {
        self.positions.get(key).copied()
    }
}

impl PartialEq for Locations {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// `[admin]`: the HTTP listener of Prometheus `/metrics` and the JSON admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSection {
    /// `listen`: address and port to listen on. Default `127.0.0.1:9470`: local only, since
    /// the admin API can clear state; expose it deliberately.
    pub listen: SocketAddr,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9470),
        }
    }
}

/// `[router]`: the PGM network element (`pgm-routerd`).
#[derive(Debug, Clone, PartialEq)]
pub struct RouterSection {
    /// `mode`: `"full"` or `"assist-only"`. Default `"full"`.
    pub mode: RouterMode,
    /// `dataplane`: what forwards multicast, `"auto"`, `"netdev"` or `"mroute"`.
    pub dataplane: Dataplane,
    /// `intercept`: how PGM packets reach the daemon, `"nftables"` or `"router-alert"`.
    /// Default `"nftables"`.
    pub intercept: InterceptMode,
    /// `nflog_group`: the `nfnetlink_log` group (of the router's network namespace) through
    /// which the nftables intercept hands packets to the daemon; it must be free (ulogd, for
    /// one, binds groups). Default [`DEFAULT_NFLOG_GROUP`].
    pub nflog_group: u16,
    /// `[[router.interface]]`: the interfaces the daemon serves. At least one, at most 64
    /// (the engine's limit), each listed once.
    pub interfaces: Vec<RouterInterface>,
    /// `[[router.route]]`: static multicast routes, installed in the kernel MFC in `"full"`
    /// mode (not allowed in `"assist-only"` mode, where the MFC belongs to another daemon).
    pub static_routes: Vec<StaticRoute>,
    /// `[router.timers]`: the network element's timers.
    pub timers: RouterTimers,
    /// `[router.limits]`: bounds on the network element's state.
    pub limits: RouterLimits,
    /// `[router.poll]`: polling of the downstream receivers and DLRs (§14, Appendix D).
    pub poll: PollSettings,
}

/// The default `nflog_group`: PGM's IP protocol number.
pub const DEFAULT_NFLOG_GROUP: u16 = 113;

impl Default for RouterSection {
    fn default() -> Self {
        Self {
            mode: RouterMode::default(),
            dataplane: Dataplane::default(),
            intercept: InterceptMode::default(),
            nflog_group: DEFAULT_NFLOG_GROUP,
            interfaces: Vec::new(),
            static_routes: Vec::new(),
            timers: RouterTimers::default(),
            limits: RouterLimits::default(),
            poll: PollSettings::default(),
        }
    }
}

/// Who owns multicast routing on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouterMode {
    /// `"full"`: the daemon owns multicast routing (`MRT_INIT`, the VIFs and the MFC),
    /// installs [`RouterSection::static_routes`] and forwards on its own.
    #[default]
    Full,
    /// `"assist-only"`: beside smcroute or pimd, which own the kernel's multicast routing;
    /// the daemon reads the kernel MFC and only adds PGM network-element assist.
    AssistOnly,
}

/// What forwards ODATA in the kernel, and how the daemon gets the other PGM packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dataplane {
    /// `"auto"`: `"mroute"` where the kernel has multicast routing (`CONFIG_IP_MROUTE`),
    /// `"netdev"` elsewhere; always `"mroute"` in assist-only mode.
    #[default]
    Auto,
    /// `"netdev"`: nftables netdev-family ingress chains forward ODATA (`dup`) and hand the
    /// daemon every other PGM packet and IGMP through `nfnetlink_log`; needs no kernel
    /// multicast routing. Full mode only.
    Netdev,
    /// `"mroute"`: the kernel's multicast routing (`MRT_INIT`, VIFs, MFC) forwards ODATA;
    /// Router Alert and, with `intercept = "nftables"`, an nftables intercept bring the
    /// other packets. Needs `CONFIG_IP_MROUTE`.
    Mroute,
}

/// How PGM packets are diverted to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterceptMode {
    /// `"router-alert"`: only packets carrying the IP Router Alert option (RFC 2113), as
    /// RFC 3208 sources send SPM, NAK, NCF and RDATA. Needs no firewall rules.
    RouterAlert,
    /// `"nftables"`: an nftables rule diverts PGM (IP protocol 113) in addition to Router
    /// Alert, so that sources that omit Router Alert are assisted too.
    #[default]
    Nftables,
}

/// `[[router.interface]]`: one interface the router serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterInterface {
    /// `name`: the interface name (`"eth1"`). Required.
    pub name: String,
    /// `pgm`: whether PGM network-element assist runs on the interface (`ip pgm router`);
    /// `false` still forwards multicast on it. Default `true`.
    pub pgm: bool,
}

impl RouterInterface {
    /// A PGM-enabled interface named `name` (the default of `pgm`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pgm: true,
        }
    }
}

/// `[[router.route]]`: a static multicast route, `(source, group)` or `(*, group)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    /// `group`: the multicast group (224.0.0.0/4). Required.
    pub group: Ipv4Addr,
    /// `source`: the unicast source address; absent for every source of the group.
    pub source: Option<Ipv4Addr>,
    /// `upstream`: the interface the group's data arrives on (towards the source), one of
    /// the `[[router.interface]]` names. Required.
    pub upstream: String,
    /// `downstream`: the interfaces the data is forwarded to, each a `[[router.interface]]`
    /// name other than `upstream`. Required, not empty.
    pub downstream: Vec<String>,
}

/// `[router.timers]`: the network element's timers (RFC 3208 §7). Durations are written as
/// strings with a unit: `"10ms"`, `"2s"`, `"1m"`, `"1m30s"` (units `ns`, `us`, `ms`, `s`,
/// `m`, `h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterTimers {
    /// `nak_rpt_ivl`: NAK_RPT_IVL, how long a forwarded NAK is repeated waiting for an NCF
    /// before NAK forwarding is cancelled (§7.3). Default `"500ms"`. Not zero.
    pub nak_rpt_ivl: Duration,
    /// `nak_rpt_rte_ivl`: the interval between repeats of a pending NAK (1 / NAK_RPT_RTE).
    /// Default `"100ms"`. Not zero, not above `nak_rpt_ivl`.
    pub nak_rpt_rte_ivl: Duration,
    /// `nak_rdata_ivl`: NAK_RDATA_IVL, how long repair state waits for RDATA after an NCF
    /// (§7.3, §7.8). Default `"2s"`: longer than a receiver's own wait. Not zero.
    pub nak_rdata_ivl: Duration,
    /// `nak_elim_ivl`: NAK_ELIM_IVL, how long duplicates of an outstanding NAK are
    /// discarded (§7.4). Default `"100ms"`. Not zero, and below `nak_rdata_ivl` (§7.4: "some
    /// small fraction of NAK_RDATA_IVL").
    pub nak_elim_ivl: Duration,
    /// `ncf_holdoff`: identical NCFs on one interface are not repeated within this interval
    /// (§7.2's NAK storm countermeasure). Default `"10ms"`; `"0s"` disables the hold-off.
    pub ncf_holdoff: Duration,
    /// `tsi_expiry`: source path state not refreshed by an SPM for this long is dropped.
    /// Default `"60s"`: twelve ambient SPM intervals of our source's default. Not zero.
    pub tsi_expiry: Duration,
    /// `route_idle`: a learned `(S,G)` route the daemon hears nothing of (no SPM, no other
    /// packet) for this long is dropped. Default `"180s"`. Not zero.
    pub route_idle: Duration,
}

impl Default for RouterTimers {
    fn default() -> Self {
        Self {
            nak_rpt_ivl: Duration::from_millis(500),
            nak_rpt_rte_ivl: Duration::from_millis(100),
            nak_rdata_ivl: Duration::from_secs(2),
            nak_elim_ivl: Duration::from_millis(100),
            ncf_holdoff: Duration::from_millis(10),
            tsi_expiry: Duration::from_secs(60),
            route_idle: Duration::from_secs(180),
        }
    }
}

/// `[router.limits]`: bounds on the network element's state and on the NAKs it acts on.
/// Beyond a state bound the least recently used entry is evicted, and the eviction counted in
/// the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterLimits {
    /// `max_tsis`: most TSIs with source path state. Default 4096. 1 to 10 000 000.
    pub max_tsis: usize,
    /// `max_repair_states`: most repair states over all TSIs. Default 65536. 1 to
    /// 10 000 000.
    pub max_repair_states: usize,
    /// `max_routes`: most learned `(S,G)` routes (each also a kernel entry); beyond it the
    /// least recently heard is evicted. Default 4096. 1 to 10 000 000.
    pub max_routes: usize,
    /// `max_memberships`: most IGMP (interface, group) memberships; reports for new ones
    /// beyond it are refused. Default 4096. 1 to 10 000 000.
    pub max_memberships: usize,
    /// `learn_rate`: packets of sources without a route handed to the daemon per second at
    /// most (netdev plane; the kernel drops the rest). Default 1000. 1 to 1 000 000.
    pub learn_rate: u32,
    /// `nak_window_slack`: how far past a session's leading edge (from its source's SPMs and
    /// the RDATA the router forwards) a NAK's sequence numbers may lie and still be confirmed
    /// and forwarded; entries outside the window leave the NCF and the forwarded NAK, and NAKs
    /// wholly outside it are dropped (`pgm_router_naks_outside_window_total`). Default
    /// 1048576 (2^20): the router does not see ODATA, so the window it knows lags the data by
    /// up to an ambient SPM interval at the start of a burst; 2^20 covers 100 000 packets/s
    /// for ten seconds. 0 to 2^31 - 1.
    pub nak_window_slack: u32,
}

impl Default for RouterLimits {
    fn default() -> Self {
        Self {
            max_tsis: 4096,
            max_repair_states: 65_536,
            max_routes: 4096,
            max_memberships: 4096,
            learn_rate: 1000,
            nak_window_slack: 1 << 20,
        }
    }
}

/// `[router.poll]`: general polls of the receivers and DLRs below each downstream interface
/// (§14, Appendix D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSettings {
    /// `interval`: between general polls on each downstream interface of each TSI, a
    /// duration or `"off"` (`None`). Default `"30s"`. Not zero.
    pub interval: Option<Duration>,
    /// `backoff`: POLL_BO_IVL of our polls, the window the replies are spread over. Default
    /// `"1s"`. Not zero.
    pub backoff: Duration,
    /// `mask_bits`: bits set in POLL_MASK; each child replies with probability 1 / 2^bits
    /// (§14.4). Default 0: every child replies, which suits LANs of up to a few hundred
    /// receivers. 0 to 31.
    pub mask_bits: u32,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(30)),
            backoff: Duration::from_secs(1),
            mask_bits: 0,
        }
    }
}

/// `[dlr]`: the Designated Local Repairer (`pgm-dlrd`, RFC 3208 §9.5).
#[derive(Debug, Clone, PartialEq)]
pub struct DlrSection {
    /// `interfaces`: the interfaces the DLR receives its sessions on and answers from, e.g.
    /// `["eth0"]`. At least one, each listed once.
    pub interfaces: Vec<String>,
    /// `serve`: `"all"` (every session heard) or `"listed"` (only the [`Self::sessions`]).
    /// Default `"all"`.
    pub serve: DlrServe,
    /// `[[dlr.session]]`: the sessions served when `serve = "listed"`; must be empty with
    /// `serve = "all"` and not empty with `serve = "listed"`.
    pub sessions: Vec<DlrSession>,
    /// `cache_bytes`: bound on the cached ODATA/RDATA payload over all sessions, an integer
    /// number of bytes or a string with a unit (`"64MiB"`; units `B`, `KiB`, `MiB`, `GiB`,
    /// `kB`, `MB`, `GB`). Default 64 MiB. Not zero.
    pub cache_bytes: u64,
    /// `cache_age`: cached packets older than this are dropped. Default `"30s"`, the
    /// default transmit window (TXW_SECS) of our sources. Not zero.
    pub cache_age: Duration,
    /// `upstream`: act as an upstream DLR (§9.5.2.1): answer the parent's NCFs with a
    /// redirecting POLR and repair from the cache. Default `true`.
    pub upstream: bool,
    /// `off_tree`: act as an off-tree DLR (§9.5.2.2): answer `PGM_POLL_DLR` polls with a
    /// unicast redirecting POLR. Default `true`. At least one of `upstream` and `off_tree`
    /// must be `true`.
    pub off_tree: bool,
    /// `max_engines`: with `serve = "all"`, most engines (one per interface, group and
    /// data-destination port heard) running at once. When full, an engine with no session
    /// left and nothing cached makes room; otherwise the new group and port are not served
    /// (counted in `pgm_dlr_engines_refused_total`). Ignored with `serve = "listed"`, where
    /// the `[[dlr.session]]` entries fix the engines. Default 256. 1 to 10 000 000.
    pub max_engines: usize,
    /// `max_sessions`: most sessions (TSIs) each engine tracks at once, in its cache and in
    /// its embedded receiver; packets of further sessions are neither cached nor repaired
    /// (`pgm_dlr_sessions_refused_total`) unless an idle session makes room
    /// (`pgm_dlr_sessions_evicted_total`). Also bounds the daemon's (interface, TSI) routes at
    /// `max_sessions` per running engine. Default 1024, the engine's own default. 1 to
    /// 10 000 000.
    pub max_sessions: usize,
    /// `receive_buffer_bytes`: bound on what each engine's embedded receiver holds (its
    /// receive windows: data waiting for the gap before it to be repaired, messages being
    /// reassembled), bytes as for `cache_bytes`. Default 16 MiB. Not zero. The DLR's memory
    /// is about `cache_bytes` + engines x `receive_buffer_bytes`.
    pub receive_buffer_bytes: u64,
    /// `nak_window_slack`: how far past a session's leading edge (from its source's SPMs and
    /// ODATA) a NAK's sequence numbers may lie and still be confirmed, served or forwarded;
    /// NAKs wholly outside the window are dropped (`pgm_dlr_naks_outside_window_total`).
    /// Default 64. 0 to 2^31 - 1.
    pub nak_window_slack: u32,
}

impl Default for DlrSection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            serve: DlrServe::All,
            sessions: Vec::new(),
            cache_bytes: 64 << 20,
            cache_age: Duration::from_secs(30),
            upstream: true,
            off_tree: true,
            max_engines: 256,
            max_sessions: 1024,
            receive_buffer_bytes: 16 << 20,
            nak_window_slack: 64,
        }
    }
}

/// Which sessions a DLR serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DlrServe {
    /// `"all"`: every session heard on the DLR's interfaces.
    #[default]
    All,
    /// `"listed"`: only the `[[dlr.session]]` entries.
    Listed,
}

/// `[[dlr.session]]`: one session (or every source of one group and port) a DLR serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlrSession {
    /// `group`: the session's multicast group. Required.
    pub group: Ipv4Addr,
    /// `port`: the data-destination port. Required, 1 to 65535.
    pub port: u16,
    /// `tsi`: only this source's session, written `"g1.g2.g3.g4.g5.g6.sport"` (the six GSI
    /// bytes and the source port, in decimal, as OpenPGM prints a TSI). Absent for every
    /// source of the group and port.
    pub tsi: Option<Tsi>,
}

/// A Transport Session Identifier (GSI and source port), as written in a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tsi {
    /// The Global Source ID.
    pub gsi: [u8; 6],
    /// The data-source port.
    pub sport: u16,
}

/// `[host]`: defaults of end-host sessions (the `pgm` tool and applications built on
/// `pgm-core`'s host API). Anything given on a command line overrides these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSection {
    /// `network`: `"iface;group"`, the interface (name or IPv4 address) and the multicast
    /// group, as in OpenPGM (`"eth0;239.192.0.1"`). Absent: the command line gives it.
    pub network: Option<HostNetwork>,
    /// `port`: the data-destination port. Absent: the command line gives it. 1 to 65535.
    pub port: Option<u16>,
    /// `encapsulation`: `"udp"` (PGM/UDP, OpenPGM's port pair, no privileges) or `"ip"`
    /// (PGM/IP, raw sockets, needs `CAP_NET_RAW`). Default `"udp"`.
    pub encapsulation: HostEncapsulation,
    /// `udp_unicast_port`: with `"udp"`, the port of unicast packets (NAK, SPMR, POLR).
    /// Default 3055 (OpenPGM's). 1 to 65535.
    pub udp_unicast_port: u16,
    /// `udp_multicast_port`: with `"udp"`, the port of multicast packets. Default 3056
    /// (OpenPGM's). 1 to 65535.
    pub udp_multicast_port: u16,
    /// `ttl`: multicast TTL. Default 16. 1 to 255.
    pub ttl: u8,
    /// `rate`: TXW_MAX_RTE in bytes per second over ODATA, RDATA, SPM and NCF (§5.1.1);
    /// 0 for no limit. Default 0: choose a rate for the network.
    pub rate: u64,
    /// `txw_sqns`: transmit window in sequence numbers. Default 32768. 1 to 2^31 - 1.
    pub txw_sqns: u32,
    /// `txw_secs`: transmit window in time. Default `"30s"`. Not zero.
    pub txw_secs: Duration,
    /// `nak_bo_ivl`: NAK_BO_IVL, the random back-off before a NAK (§6.3). Default `"50ms"`.
    /// Not zero.
    pub nak_bo_ivl: Duration,
    /// `nak_rpt_ivl`: NAK_RPT_IVL, the wait for an NCF after a NAK. Default `"200ms"`. Not
    /// zero.
    pub nak_rpt_ivl: Duration,
    /// `nak_rdata_ivl`: NAK_RDATA_IVL, the wait for the repair after an NCF. Default
    /// `"500ms"`. Not zero.
    pub nak_rdata_ivl: Duration,
    /// `nak_ncf_retries`: NAK_NCF_RETRIES, NAKs sent without an NCF before the data is
    /// given up. Default 50. 1 to 1000.
    pub nak_ncf_retries: u32,
    /// `nak_data_retries`: NAK_DATA_RETRIES, NCF-confirmed waits that time out before the
    /// data is given up. Default 50. 1 to 1000.
    pub nak_data_retries: u32,
    /// `rxw_sqns`: receive window bound per source in sequence numbers. Default 32768. 1
    /// to 2^31 - 1.
    pub rxw_sqns: u32,
    /// `max_buffer_bytes`: bound on what the receiver holds over its receive windows (the
    /// slots, data waiting for a repair before it, messages being reassembled), bytes as for
    /// `[dlr] cache_bytes`. A packet beyond it is dropped and counted (`buffer_full`), and
    /// NAKed later as if lost. Default 256 MiB. Not zero.
    pub max_buffer_bytes: u64,
    /// `pgmcc`: PGMCC congestion control (draft-ietf-rmt-bb-pgmcc-03). A sender runs it
    /// (the acker's ACKs clock its data; with no acker it sends under `rate` alone); a
    /// receiver reports its loss and round trip and ACKs when named acker. Default true.
    pub pgmcc: bool,
    /// `pgmcc_acker`: the receiver (IPv4 address) a sender prefers as acker while it sends
    /// feedback, for receivers that never volunteer (OpenPGM's). Absent: elected.
    pub pgmcc_acker: Option<Ipv4Addr>,
}

impl Default for HostSection {
    fn default() -> Self {
        Self {
            network: None,
            port: None,
            encapsulation: HostEncapsulation::Udp,
            udp_unicast_port: 3055,
            udp_multicast_port: 3056,
            ttl: 16,
            rate: 0,
            txw_sqns: 32_768,
            txw_secs: Duration::from_secs(30),
            nak_bo_ivl: Duration::from_millis(50),
            nak_rpt_ivl: Duration::from_millis(200),
            nak_rdata_ivl: Duration::from_millis(500),
            nak_ncf_retries: 50,
            nak_data_retries: 50,
            rxw_sqns: 32_768,
            max_buffer_bytes: 256 << 20,
            pgmcc: true,
            pgmcc_acker: None,
        }
    }
}

/// The `network` of a `[host]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNetwork {
    /// The interface name (`"eth0"`) or its IPv4 address.
    pub interface: String,
    /// The multicast group.
    pub group: Ipv4Addr,
}

/// PGM/UDP or PGM/IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostEncapsulation {
    /// `"udp"`: PGM/UDP on `udp_unicast_port` and `udp_multicast_port`.
    #[default]
    Udp,
    /// `"ip"`: PGM/IP, IP protocol 113.
    Ip,
}
