//! Parsing and validation: a walk over the spanned TOML tree that collects every problem.
//!
//! serde's derive stops at the first error and loses the position of semantic problems, so
//! the schema is walked by hand over `toml::de::DeTable`, whose keys and values carry their
//! byte spans. Each section function reads its keys into the defaults (the `Default` impls
//! of `model.rs`), reports what is wrong with each value, then checks the values against each
//! other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::model::{
    AdminSection, Config, Dataplane, DlrSection, DlrServe, DlrSession, HostEncapsulation,
    HostNetwork, HostSection, InterceptMode, Locations, PollSettings, RouterInterface,
    RouterLimits, RouterMode, RouterSection, RouterTimers, StaticRoute, Tsi,
};
use crate::values::{format_duration, parse_byte_size, parse_duration};
use crate::{ConfigError, ConfigErrors, ErrorKind};

/// The keys of each table. The single list both the parser and the "belongs in" hints use.
mod keys {
    pub(super) const ROOT: &[&str] = &["router", "dlr", "host", "admin"];
    pub(super) const ADMIN: &[&str] = &["listen"];
    pub(super) const ROUTER: &[&str] = &[
        "mode",
        "dataplane",
        "intercept",
        "nflog_group",
        "interface",
        "route",
        "timers",
        "limits",
        "poll",
    ];
    pub(super) const ROUTER_INTERFACE: &[&str] = &["name", "pgm"];
    pub(super) const ROUTER_ROUTE: &[&str] = &["group", "source", "upstream", "downstream"];
    pub(super) const ROUTER_TIMERS: &[&str] = &[
        "nak_rpt_ivl",
        "nak_rpt_rte_ivl",
        "nak_rdata_ivl",
        "nak_elim_ivl",
        "ncf_holdoff",
        "tsi_expiry",
        "route_idle",
    ];
    pub(super) const ROUTER_LIMITS: &[&str] = &[
        "max_tsis",
        "max_repair_states",
        "max_routes",
        "max_memberships",
        "learn_rate",
        "nak_window_slack",
    ];
    pub(super) const ROUTER_POLL: &[&str] = &["interval", "backoff", "mask_bits"];
    pub(super) const DLR: &[&str] = &[
        "interfaces",
        "serve",
        "session",
        "cache_bytes",
        "cache_age",
        "upstream",
        "off_tree",
        "max_engines",
        "max_sessions",
        "receive_buffer_bytes",
        "nak_window_slack",
    ];
    pub(super) const DLR_SESSION: &[&str] = &["group", "port", "tsi"];
    pub(super) const HOST: &[&str] = &[
        "network",
        "port",
        "encapsulation",
        "udp_unicast_port",
        "udp_multicast_port",
        "ttl",
        "rate",
        "txw_sqns",
        "txw_secs",
        "nak_bo_ivl",
        "nak_rpt_ivl",
        "nak_rdata_ivl",
        "nak_ncf_retries",
        "nak_data_retries",
        "rxw_sqns",
        "max_buffer_bytes",
        "pgmcc",
        "pgmcc_acker",
    ];

    /// Every table, by the dotted path written in a header (`[[...]]` entries without the
    /// index), with its keys.
    pub(super) const ALL: &[(&str, &[&str])] = &[
        ("", ROOT),
        ("admin", ADMIN),
        ("router", ROUTER),
        ("router.interface", ROUTER_INTERFACE),
        ("router.route", ROUTER_ROUTE),
        ("router.timers", ROUTER_TIMERS),
        ("router.limits", ROUTER_LIMITS),
        ("router.poll", ROUTER_POLL),
        ("dlr", DLR),
        ("dlr.session", DLR_SESSION),
        ("host", HOST),
    ];
}

/// Most interfaces a network element serves (`NeConfig`'s limit).
const MAX_ROUTER_INTERFACES: usize = 64;
/// Longest interface name Linux accepts (IFNAMSIZ less the terminating NUL).
const MAX_IFNAME: usize = 15;
/// Range of the state limits.
const LIMIT_RANGE: RangeInclusive<i128> = 1..=10_000_000;
/// Range of window sizes in sequence numbers: less than half the sequence space (§3).
const WINDOW_RANGE: RangeInclusive<i128> = 1..=(i32::MAX as i128);
/// Range of a network element's NAK window slack: less than half the sequence space (§3.3).
const SLACK_RANGE: RangeInclusive<i128> = 0..=(i32::MAX as i128);
/// Range of ports.
const PORT_RANGE: RangeInclusive<i128> = 1..=65_535;

pub(crate) fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx::new(text, origin);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // The tree of a file with syntax errors is partial: checking it would report
        // missing keys that are only unreadable. Report the syntax errors alone.
        for error in syntax {
            let span = error.span().unwrap_or(0..0);
            let reason = error.message().trim().to_owned();
            ctx.error(span, "", ErrorKind::Syntax, reason);
        }
        return Err(ctx.into_errors());
    }
    let mut root = Section::new(String::new(), root.get_ref(), root.span(), keys::ROOT);
    let mut config = Config::default();
    if let Some(section) = root.table(&mut ctx, "router") {
        config.router = Some(router(&mut ctx, section));
    }
    if let Some(section) = root.table(&mut ctx, "dlr") {
        config.dlr = Some(dlr(&mut ctx, section));
    }
    if let Some(section) = root.table(&mut ctx, "host") {
        config.host = Some(host(&mut ctx, section));
    }
    if let Some(section) = root.table(&mut ctx, "admin") {
        config.admin = admin(&mut ctx, section);
    }
    root.finish(&mut ctx);
    if !ctx.errors.is_empty() {
        return Err(ctx.into_errors());
    }
    config.locations = ctx.locations();
    Ok(config)
}

fn admin(ctx: &mut Ctx<'_>, mut section: Section<'_, '_>) -> AdminSection {
    let mut admin = AdminSection::default();
    if let Some((text, span, key)) = section.string(ctx, "listen") {
        match text.parse::<SocketAddr>() {
            Ok(addr) if addr.port() == 0 => ctx.error(
                span,
                &key,
                ErrorKind::OutOfRange,
                "port 0 is not a port to listen on".to_owned(),
            ),
            Ok(addr) => admin.listen = addr,
            Err(_) => ctx.error(
                span,
                &key,
                ErrorKind::InvalidValue,
                format!("invalid address {text:?}: expected address:port, e.g. \"127.0.0.1:9470\""),
            ),
        }
    }
    section.finish(ctx);
    admin
}

fn router(ctx: &mut Ctx<'_>, mut section: Section<'_, '_>) -> RouterSection {
    let mut router = RouterSection::default();
    section.choice(
        ctx,
        "mode",
        &mut router.mode,
        &[
            ("full", RouterMode::Full),
            ("assist-only", RouterMode::AssistOnly),
        ],
    );
    section.choice(
        ctx,
        "dataplane",
        &mut router.dataplane,
        &[
            ("auto", Dataplane::Auto),
            ("netdev", Dataplane::Netdev),
            ("mroute", Dataplane::Mroute),
        ],
    );
    section.choice(
        ctx,
        "intercept",
        &mut router.intercept,
        &[
            ("nftables", InterceptMode::Nftables),
            ("router-alert", InterceptMode::RouterAlert),
        ],
    );
    section.integer(ctx, "nflog_group", &mut router.nflog_group, 0..=65_535);

    // Interfaces: each listed once, named properly.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let interfaces = section.tables(ctx, "interface", keys::ROUTER_INTERFACE);
    let defined = !interfaces.is_empty() || section.has("interface");
    for mut entry in interfaces {
        let mut interface = RouterInterface::new("");
        if let Some((name, span, key)) = entry.string(ctx, "name") {
            if check_ifname(ctx, &name, span.clone(), &key) {
                if let Some(&first) = seen.get(&name) {
                    let line = ctx.position(first).0;
                    ctx.error(
                        span,
                        &key,
                        ErrorKind::Duplicate,
                        format!("interface `{name}` is already listed at line {line}"),
                    );
                } else {
                    seen.insert(name.clone(), span.start);
                }
            }
            interface.name = name;
        } else if !entry.has("name") {
            entry.missing(ctx, "name", "the interface name, e.g. name = \"eth1\"");
        }
        entry.boolean(ctx, "pgm", &mut interface.pgm);
        entry.finish(ctx);
        router.interfaces.push(interface);
    }
    if !defined {
        ctx.error(
            section.span.clone(),
            &section.key("interface"),
            ErrorKind::MissingKey,
            "no [[router.interface]]: list at least one interface the router serves".to_owned(),
        );
    } else if router.interfaces.len() > MAX_ROUTER_INTERFACES {
        let key = format!("{}[{MAX_ROUTER_INTERFACES}]", section.key("interface"));
        let span = ctx.span_of(&key).unwrap_or(section.span.clone());
        ctx.error(
            span,
            &key,
            ErrorKind::OutOfRange,
            format!(
                "{} interfaces: a network element serves at most {MAX_ROUTER_INTERFACES}",
                router.interfaces.len()
            ),
        );
    }

    // Static routes: over listed interfaces, each (source, group) once.
    let mut routes_seen: BTreeMap<(Ipv4Addr, Option<Ipv4Addr>), usize> = BTreeMap::new();
    for mut entry in section.tables(ctx, "route", keys::ROUTER_ROUTE) {
        let mut route = StaticRoute {
            group: Ipv4Addr::UNSPECIFIED,
            source: None,
            upstream: String::new(),
            downstream: Vec::new(),
        };
        let group = entry.multicast_group(ctx, "group", true);
        if group.is_none() && !entry.has("group") {
            entry.missing(
                ctx,
                "group",
                "the multicast group, e.g. group = \"239.192.0.1\"",
            );
        }
        if let Some((source, span, key)) = entry.ipv4(ctx, "source") {
            if source.is_multicast() || source.is_unspecified() || source.is_broadcast() {
                ctx.error(
                    span,
                    &key,
                    ErrorKind::InvalidValue,
                    format!("{source} is not a unicast source address; leave `source` out for every source"),
                );
            } else {
                route.source = Some(source);
            }
        }
        if let Some(group) = group {
            route.group = group;
            let (span, key) = entry.spot(ctx, "group");
            let identity = (group, route.source);
            if let Some(&first) = routes_seen.get(&identity) {
                let line = ctx.position(first).0;
                let what = match route.source {
                    Some(source) => format!("({source}, {group})"),
                    None => format!("(*, {group})"),
                };
                ctx.error(
                    span,
                    &key,
                    ErrorKind::Duplicate,
                    format!("route {what} is already defined at line {line}"),
                );
            } else {
                routes_seen.insert(identity, span.start);
            }
        }
        if let Some((name, span, key)) = entry.string(ctx, "upstream") {
            route_interface(ctx, &name, span, &key, &seen, defined);
            route.upstream = name;
        } else if !entry.has("upstream") {
            entry.missing(
                ctx,
                "upstream",
                "the interface towards the source, e.g. upstream = \"eth0\"",
            );
        }
        if let Some(items) = entry.string_array(ctx, "downstream") {
            let mut downstream_seen = HashSet::new();
            for (name, span, key) in items {
                if !route.upstream.is_empty() && name == route.upstream {
                    ctx.error(
                        span,
                        &key,
                        ErrorKind::Contradiction,
                        format!("`{name}` is the route's upstream interface; data is never forwarded back upstream"),
                    );
                } else if !downstream_seen.insert(name.clone()) {
                    ctx.error(
                        span,
                        &key,
                        ErrorKind::Duplicate,
                        format!("`{name}` is listed twice"),
                    );
                } else {
                    route_interface(ctx, &name, span, &key, &seen, defined);
                }
                route.downstream.push(name);
            }
            if route.downstream.is_empty() {
                let (span, key) = entry.spot(ctx, "downstream");
                ctx.error(
                    span,
                    &key,
                    ErrorKind::InvalidValue,
                    "no downstream interface: a route forwards to at least one".to_owned(),
                );
            }
        } else if !entry.has("downstream") {
            entry.missing(
                ctx,
                "downstream",
                "the interfaces to forward to, e.g. downstream = [\"eth1\", \"eth2\"]",
            );
        }
        entry.finish(ctx);
        router.static_routes.push(route);
    }
    if router.mode == RouterMode::AssistOnly && section.has("route") {
        let key = format!("{}[0]", section.key("route"));
        let span = ctx.span_of(&key).unwrap_or(section.span.clone());
        ctx.error(
            span,
            &key,
            ErrorKind::Contradiction,
            "static routes need mode = \"full\": in \"assist-only\" mode the kernel's multicast routes belong to smcroute or pimd".to_owned(),
        );
    }

    if router.mode == RouterMode::AssistOnly && router.dataplane == Dataplane::Netdev {
        section.conflict(
            ctx,
            "dataplane",
            "mode",
            "dataplane = \"netdev\" forwards on its own and cannot run beside smcroute or pimd: assist-only mode reads the kernel's multicast routing table, which needs dataplane = \"mroute\" (or \"auto\")".to_owned(),
        );
    }

    if let Some(mut timers) = section.table(ctx, "timers") {
        router_timers(ctx, &mut timers, &mut router.timers);
        timers.finish(ctx);
    }
    if let Some(mut limits) = section.table(ctx, "limits") {
        let RouterLimits {
            max_tsis,
            max_repair_states,
            max_routes,
            max_memberships,
            learn_rate,
            nak_window_slack,
        } = &mut router.limits;
        limits.integer(ctx, "max_tsis", max_tsis, LIMIT_RANGE);
        limits.integer(ctx, "max_repair_states", max_repair_states, LIMIT_RANGE);
        limits.integer(ctx, "max_routes", max_routes, LIMIT_RANGE);
        limits.integer(ctx, "max_memberships", max_memberships, LIMIT_RANGE);
        limits.integer(ctx, "learn_rate", learn_rate, 1..=1_000_000);
        limits.integer(ctx, "nak_window_slack", nak_window_slack, SLACK_RANGE);
        limits.finish(ctx);
    }
    if let Some(mut poll) = section.table(ctx, "poll") {
        router_poll(ctx, &mut poll, &mut router.poll);
        poll.finish(ctx);
    }
    section.finish(ctx);
    router
}

fn router_timers(ctx: &mut Ctx<'_>, section: &mut Section<'_, '_>, timers: &mut RouterTimers) {
    let RouterTimers {
        nak_rpt_ivl,
        nak_rpt_rte_ivl,
        nak_rdata_ivl,
        nak_elim_ivl,
        ncf_holdoff,
        tsi_expiry,
        route_idle,
    } = timers;
    section.duration(ctx, "nak_rpt_ivl", nak_rpt_ivl, true);
    section.duration(ctx, "nak_rpt_rte_ivl", nak_rpt_rte_ivl, true);
    section.duration(ctx, "nak_rdata_ivl", nak_rdata_ivl, true);
    section.duration(ctx, "nak_elim_ivl", nak_elim_ivl, true);
    section.duration(ctx, "ncf_holdoff", ncf_holdoff, false);
    section.duration(ctx, "tsi_expiry", tsi_expiry, true);
    section.duration(ctx, "route_idle", route_idle, true);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
    //# NAK_ELIM_IVL MUST be some small fraction of
    //# NAK_RDATA_IVL.
    // A configuration whose NAK_ELIM_IVL is not below its NAK_RDATA_IVL is refused; the
    // defaults are 100 ms and 2 s (`NeConfig::new` has the same).
    if *nak_elim_ivl >= *nak_rdata_ivl {
        section.conflict(
            ctx,
            "nak_elim_ivl",
            "nak_rdata_ivl",
            format!(
                "nak_elim_ivl ({}) must be smaller than nak_rdata_ivl ({}): NAK_ELIM_IVL MUST be some small fraction of NAK_RDATA_IVL (RFC 3208 §7.4)",
                format_duration(*nak_elim_ivl),
                format_duration(*nak_rdata_ivl)
            ),
        );
    }
    if *nak_rpt_rte_ivl > *nak_rpt_ivl {
        section.conflict(
            ctx,
            "nak_rpt_rte_ivl",
            "nak_rpt_ivl",
            format!(
                "nak_rpt_rte_ivl ({}) exceeds nak_rpt_ivl ({}): a pending NAK would never be repeated before forwarding is cancelled",
                format_duration(*nak_rpt_rte_ivl),
                format_duration(*nak_rpt_ivl)
            ),
        );
    }
}

fn router_poll(ctx: &mut Ctx<'_>, section: &mut Section<'_, '_>, poll: &mut PollSettings) {
    if let Some(value) = section.value(ctx, "interval") {
        let key = section.key("interval");
        match value.get_ref() {
            DeValue::String(text) if text.trim() == "off" => poll.interval = None,
            DeValue::String(text) => match parse_duration(text) {
                Ok(interval) if interval.is_zero() => {
                    ctx.error(
                        value.span(),
                        &key,
                        ErrorKind::InvalidValue,
                        "zero interval: write \"off\" to disable polling".to_owned(),
                    );
                }
                Ok(interval) => poll.interval = Some(interval),
                Err(reason) => ctx.error(
                    value.span(),
                    &key,
                    ErrorKind::InvalidValue,
                    format!("{reason}, or \"off\""),
                ),
            },
            other => ctx.wrong_type(value.span(), &key, "a duration string or \"off\"", other),
        }
    }
    section.duration(ctx, "backoff", &mut poll.backoff, true);
    section.integer(ctx, "mask_bits", &mut poll.mask_bits, 0..=31);
    if let Some(interval) = poll.interval {
        if poll.backoff >= interval {
            section.conflict(
                ctx,
                "backoff",
                "interval",
                format!(
                    "backoff ({}) must be smaller than interval ({}): replies to one poll would overlap the next",
                    format_duration(poll.backoff),
                    format_duration(interval)
                ),
            );
        }
    }
}

/// Checks a name a route uses against the `[[router.interface]]` names.
fn route_interface(
    ctx: &mut Ctx<'_>,
    name: &str,
    span: Range<usize>,
    key: &str,
    interfaces: &BTreeMap<String, usize>,
    any_listed: bool,
) {
    if !check_ifname(ctx, name, span.clone(), key) || !any_listed {
        return;
    }
    if !interfaces.contains_key(name) {
        let names: Vec<&str> = interfaces.keys().map(String::as_str).collect();
        let hint = if names.is_empty() {
            String::new()
        } else {
            format!(" (listed: {})", names.join(", "))
        };
        ctx.error(
            span,
            key,
            ErrorKind::UndefinedInterface,
            format!("interface `{name}` is not listed under [[router.interface]]{hint}"),
        );
    }
}

/// Reports an impossible interface name; true if the name is plausible.
fn check_ifname(ctx: &mut Ctx<'_>, name: &str, span: Range<usize>, key: &str) -> bool {
    let reason = if name.is_empty() {
        "empty interface name".to_owned()
    } else if name.len() > MAX_IFNAME {
        format!("interface name `{name}` is longer than {MAX_IFNAME} bytes (IFNAMSIZ)")
    } else if name.contains(|c: char| c == '/' || c.is_whitespace()) || name == "." || name == ".."
    {
        format!("`{name}` is not a valid interface name")
    } else {
        return true;
    };
    ctx.error(span, key, ErrorKind::InvalidValue, reason);
    false
}

fn dlr(ctx: &mut Ctx<'_>, mut section: Section<'_, '_>) -> DlrSection {
    let mut dlr = DlrSection::default();
    if let Some(items) = section.string_array(ctx, "interfaces") {
        let mut seen = HashSet::new();
        for (name, span, key) in items {
            if check_ifname(ctx, &name, span.clone(), &key) && !seen.insert(name.clone()) {
                ctx.error(
                    span,
                    &key,
                    ErrorKind::Duplicate,
                    format!("interface `{name}` is listed twice"),
                );
            }
            dlr.interfaces.push(name);
        }
        if dlr.interfaces.is_empty() {
            let (span, key) = section.spot(ctx, "interfaces");
            ctx.error(
                span,
                &key,
                ErrorKind::InvalidValue,
                "no interface: list at least one, e.g. interfaces = [\"eth0\"]".to_owned(),
            );
        }
    } else if !section.has("interfaces") {
        section.missing(
            ctx,
            "interfaces",
            "the interfaces the DLR serves, e.g. interfaces = [\"eth0\"]",
        );
    }
    section.choice(
        ctx,
        "serve",
        &mut dlr.serve,
        &[("all", DlrServe::All), ("listed", DlrServe::Listed)],
    );

    let mut seen: HashMap<(Ipv4Addr, u16, Option<Tsi>), usize> = HashMap::new();
    for mut entry in section.tables(ctx, "session", keys::DLR_SESSION) {
        let mut session = DlrSession {
            group: Ipv4Addr::UNSPECIFIED,
            port: 0,
            tsi: None,
        };
        let group = entry.multicast_group(ctx, "group", false);
        if group.is_none() && !entry.has("group") {
            entry.missing(
                ctx,
                "group",
                "the session's group, e.g. group = \"239.192.0.1\"",
            );
        }
        let port_ok =
            entry.has("port") && entry.integer(ctx, "port", &mut session.port, PORT_RANGE);
        if !entry.has("port") {
            entry.missing(ctx, "port", "the data-destination port, e.g. port = 7500");
        }
        if let Some((text, span, key)) = entry.string(ctx, "tsi") {
            match parse_tsi(&text) {
                Ok(tsi) => session.tsi = Some(tsi),
                Err(reason) => ctx.error(span, &key, ErrorKind::InvalidValue, reason),
            }
        }
        if let (Some(group), true) = (group, port_ok) {
            session.group = group;
            let (span, key) = entry.spot(ctx, "group");
            let identity = (group, session.port, session.tsi);
            if let Some(&first) = seen.get(&identity) {
                let line = ctx.position(first).0;
                ctx.error(
                    span,
                    &key,
                    ErrorKind::Duplicate,
                    format!("the same session is already listed at line {line}"),
                );
            } else {
                seen.insert(identity, span.start);
            }
        }
        entry.finish(ctx);
        dlr.sessions.push(session);
    }
    match dlr.serve {
        DlrServe::All if section.has("session") => {
            let key = format!("{}[0]", section.key("session"));
            let span = ctx.span_of(&key).unwrap_or(section.span.clone());
            ctx.error(
                span,
                &key,
                ErrorKind::Contradiction,
                "[[dlr.session]] entries are listed but serve = \"all\": set serve = \"listed\" to serve only them, or remove them".to_owned(),
            );
        }
        DlrServe::Listed if !section.has("session") => {
            let (span, key) = section.spot(ctx, "serve");
            ctx.error(
                span,
                &key,
                ErrorKind::MissingKey,
                "serve = \"listed\" but there is no [[dlr.session]]".to_owned(),
            );
        }
        _ => {}
    }

    section.bytes(
        ctx,
        "cache_bytes",
        &mut dlr.cache_bytes,
        "the DLR would cache nothing",
    );
    section.bytes(
        ctx,
        "receive_buffer_bytes",
        &mut dlr.receive_buffer_bytes,
        "no engine could hold a packet",
    );
    section.integer(
        ctx,
        "nak_window_slack",
        &mut dlr.nak_window_slack,
        0..=(i32::MAX as i128),
    );
    section.duration(ctx, "cache_age", &mut dlr.cache_age, true);
    section.boolean(ctx, "upstream", &mut dlr.upstream);
    section.boolean(ctx, "off_tree", &mut dlr.off_tree);
    section.integer(ctx, "max_engines", &mut dlr.max_engines, LIMIT_RANGE);
    section.integer(ctx, "max_sessions", &mut dlr.max_sessions, LIMIT_RANGE);
    if !dlr.upstream && !dlr.off_tree {
        section.conflict(
            ctx,
            "off_tree",
            "upstream",
            "upstream and off_tree are both false: the DLR would never repair".to_owned(),
        );
    }
    section.finish(ctx);
    dlr
}

/// Parses a TSI written `"g1.g2.g3.g4.g5.g6.sport"`.
fn parse_tsi(text: &str) -> Result<Tsi, String> {
    let bad = || {
        format!(
            "invalid TSI {text:?}: expected the six GSI bytes and the source port in decimal, e.g. \"10.0.1.2.0.1.4000\""
        )
    };
    let parts: Vec<&str> = text.trim().split('.').collect();
    let [g @ .., sport] = parts.as_slice() else {
        return Err(bad());
    };
    if g.len() != 6 {
        return Err(bad());
    }
    let mut gsi = [0_u8; 6];
    for (byte, part) in gsi.iter_mut().zip(g) {
        *byte = part.parse().map_err(|_| bad())?;
    }
    let sport: u16 = sport.parse().map_err(|_| bad())?;
    if sport == 0 {
        return Err(bad());
    }
    Ok(Tsi { gsi, sport })
}

fn host(ctx: &mut Ctx<'_>, mut section: Section<'_, '_>) -> HostSection {
    let mut host = HostSection::default();
    if let Some((text, span, key)) = section.string(ctx, "network") {
        match text.split(';').collect::<Vec<_>>().as_slice() {
            [interface, group] => {
                let interface = interface.trim();
                let group_text = group.trim();
                let interface_ok = interface.parse::<Ipv4Addr>().is_ok()
                    || check_ifname(ctx, interface, span.clone(), &key);
                match group_text.parse::<Ipv4Addr>() {
                    Ok(group) if group.is_multicast() => {
                        if interface_ok {
                            host.network = Some(HostNetwork {
                                interface: interface.to_owned(),
                                group,
                            });
                        }
                    }
                    Ok(group) => ctx.error(
                        span,
                        &key,
                        ErrorKind::InvalidValue,
                        format!("{group} is not a multicast group (224.0.0.0/4)"),
                    ),
                    Err(_) => ctx.error(
                        span,
                        &key,
                        ErrorKind::InvalidValue,
                        format!(
                            "invalid group {group_text:?} in {text:?}: expected an IPv4 multicast address"
                        ),
                    ),
                }
            }
            _ => ctx.error(
                span,
                &key,
                ErrorKind::InvalidValue,
                format!(
                    "invalid network {text:?}: expected \"iface;group\", e.g. \"eth0;239.192.0.1\""
                ),
            ),
        }
    }
    let mut port = 0_u16;
    if section.has("port") && section.integer(ctx, "port", &mut port, PORT_RANGE) {
        host.port = Some(port);
    }
    section.choice(
        ctx,
        "encapsulation",
        &mut host.encapsulation,
        &[
            ("udp", HostEncapsulation::Udp),
            ("ip", HostEncapsulation::Ip),
        ],
    );
    section.integer(
        ctx,
        "udp_unicast_port",
        &mut host.udp_unicast_port,
        PORT_RANGE,
    );
    section.integer(
        ctx,
        "udp_multicast_port",
        &mut host.udp_multicast_port,
        PORT_RANGE,
    );
    if host.encapsulation == HostEncapsulation::Ip {
        for name in ["udp_unicast_port", "udp_multicast_port"] {
            if section.has(name) {
                let (span, key) = section.spot(ctx, name);
                ctx.error(
                    span,
                    &key,
                    ErrorKind::Contradiction,
                    format!("{name} applies only with encapsulation = \"udp\", not \"ip\""),
                );
            }
        }
    }
    section.integer(ctx, "ttl", &mut host.ttl, 1..=255);
    section.integer(ctx, "rate", &mut host.rate, 0..=(i64::MAX as i128));
    section.integer(ctx, "txw_sqns", &mut host.txw_sqns, WINDOW_RANGE);
    section.duration(ctx, "txw_secs", &mut host.txw_secs, true);
    section.duration(ctx, "nak_bo_ivl", &mut host.nak_bo_ivl, true);
    section.duration(ctx, "nak_rpt_ivl", &mut host.nak_rpt_ivl, true);
    section.duration(ctx, "nak_rdata_ivl", &mut host.nak_rdata_ivl, true);
    section.integer(ctx, "nak_ncf_retries", &mut host.nak_ncf_retries, 1..=1000);
    section.integer(
        ctx,
        "nak_data_retries",
        &mut host.nak_data_retries,
        1..=1000,
    );
    section.integer(ctx, "rxw_sqns", &mut host.rxw_sqns, WINDOW_RANGE);
    section.bytes(
        ctx,
        "max_buffer_bytes",
        &mut host.max_buffer_bytes,
        "the receiver could hold nothing",
    );
    section.boolean(ctx, "pgmcc", &mut host.pgmcc);
    if let Some((addr, span, key)) = section.ipv4(ctx, "pgmcc_acker") {
        if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
            ctx.error(
                span,
                &key,
                ErrorKind::InvalidValue,
                format!("pgmcc_acker {addr} is not a receiver's unicast address"),
            );
        } else {
            host.pgmcc_acker = Some(addr);
        }
    }
    section.finish(ctx);
    host
}

/// The error sink and position bookkeeping of one parse.
struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
    /// Span of the value of each dotted key read.
    spans: BTreeMap<String, Range<usize>>,
    /// Keys whose value was rejected: they hold defaults, so cross-checks skip them.
    rejected: HashSet<String>,
}

impl<'a> Ctx<'a> {
    fn new(text: &'a str, origin: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            text,
            origin,
            line_starts,
            errors: Vec::new(),
            spans: BTreeMap::new(),
            rejected: HashSet::new(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, column + 1)
    }

    fn error(&mut self, span: Range<usize>, key: &str, kind: ErrorKind, reason: String) {
        let (line, column) = self.position(span.start);
        self.rejected.insert(key.to_owned());
        self.errors.push(ConfigError {
            file: self.origin.to_owned(),
            line,
            column,
            key: key.to_owned(),
            reason,
            kind,
        });
    }

    fn wrong_type(&mut self, span: Range<usize>, key: &str, expected: &str, found: &DeValue<'_>) {
        let found = match found {
            DeValue::String(s) => format!("string {s:?}"),
            DeValue::Integer(i) => format!("integer {i}"),
            DeValue::Float(f) => format!("float {}", f.as_str()),
            DeValue::Boolean(b) => format!("boolean {b}"),
            other => other.type_str().to_owned(),
        };
        self.error(
            span,
            key,
            ErrorKind::WrongType,
            format!("expected {expected}, found {found}"),
        );
    }

    fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.spans.get(key).cloned()
    }

    fn into_errors(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors.dedup();
        ConfigErrors(self.errors)
    }

    fn locations(&self) -> Locations {
        Locations {
            file: self.origin.to_owned(),
            positions: self
                .spans
                .iter()
                .map(|(key, span)| (key.clone(), self.position(span.start)))
                .collect(),
        }
    }
}

/// One TOML table being read: the keys asked for are the known ones; the rest are reported
/// by [`Section::finish`].
struct Section<'t, 'i> {
    path: String,
    table: &'t DeTable<'i>,
    span: Range<usize>,
    known: &'static [&'static str],
}

type Entry<'t, 'i> = (&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>);
type DeString<'i> = std::borrow::Cow<'i, str>;

impl<'t, 'i> Section<'t, 'i> {
    fn new(
        path: String,
        table: &'t DeTable<'i>,
        span: Range<usize>,
        known: &'static [&'static str],
    ) -> Self {
        Self {
            path,
            table,
            span,
            known,
        }
    }

    fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn entry(&self, name: &str) -> Option<Entry<'t, 'i>> {
        debug_assert!(self.known.contains(&name), "{name} missing from keys");
        self.table.iter().find(|(key, _)| key.get_ref() == name)
    }

    fn has(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    /// The value of `name`, its position recorded.
    fn value(&mut self, ctx: &mut Ctx<'_>, name: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        let (_, value) = self.entry(name)?;
        ctx.spans.insert(self.key(name), value.span());
        Some(value)
    }

    /// Where to point for `name`: its value if present, else the table.
    fn spot(&self, ctx: &Ctx<'_>, name: &str) -> (Range<usize>, String) {
        let key = self.key(name);
        let span = ctx.span_of(&key).unwrap_or(self.span.clone());
        (span, key)
    }

    fn missing(&self, ctx: &mut Ctx<'_>, name: &str, what: &str) {
        let key = self.key(name);
        ctx.error(
            self.span.clone(),
            &key,
            ErrorKind::MissingKey,
            format!("missing: {what}"),
        );
    }

    /// Reports values that contradict each other at `first` if the file sets it, else at
    /// `second`; skipped when either was rejected (it then holds its default) or neither is
    /// set (the defaults agree).
    fn conflict(&self, ctx: &mut Ctx<'_>, first: &str, second: &str, reason: String) {
        let (first, second) = (self.key(first), self.key(second));
        if ctx.rejected.contains(&first) || ctx.rejected.contains(&second) {
            return;
        }
        let Some((key, span)) = [first, second]
            .into_iter()
            .find_map(|key| ctx.span_of(&key).map(|span| (key, span)))
        else {
            return;
        };
        ctx.error(span, &key, ErrorKind::Contradiction, reason);
    }

    fn table(&mut self, ctx: &mut Ctx<'_>, name: &str) -> Option<Self> {
        let value = self.value(ctx, name)?;
        let key = self.key(name);
        match value.get_ref() {
            DeValue::Table(table) => {
                let known = keys::ALL
                    .iter()
                    .find(|(path, _)| *path == key)
                    .map_or(&[][..], |(_, known)| *known);
                Some(Section::new(key, table, value.span(), known))
            }
            other => {
                ctx.wrong_type(value.span(), &key, &format!("a table [{key}]"), other);
                None
            }
        }
    }

    /// The entries of an array of tables `[[name]]`, each with its index in the path.
    fn tables(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        known: &'static [&'static str],
    ) -> Vec<Self> {
        let Some(value) = self.value(ctx, name) else {
            return Vec::new();
        };
        let key = self.key(name);
        let DeValue::Array(items) = value.get_ref() else {
            ctx.wrong_type(
                value.span(),
                &key,
                &format!("an array of tables [[{key}]]"),
                value.get_ref(),
            );
            return Vec::new();
        };
        let mut sections = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            ctx.spans.insert(item_key.clone(), item.span());
            match item.get_ref() {
                DeValue::Table(table) => {
                    sections.push(Section::new(item_key, table, item.span(), known));
                }
                other => ctx.wrong_type(item.span(), &item_key, "a table", other),
            }
        }
        sections
    }

    fn string(&mut self, ctx: &mut Ctx<'_>, name: &str) -> Option<(String, Range<usize>, String)> {
        let value = self.value(ctx, name)?;
        let key = self.key(name);
        match value.get_ref() {
            DeValue::String(text) => Some((text.to_string(), value.span(), key)),
            other => {
                ctx.wrong_type(value.span(), &key, "a string", other);
                None
            }
        }
    }

    /// An array of strings, each with its span and indexed key.
    fn string_array(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
    ) -> Option<Vec<(String, Range<usize>, String)>> {
        let value = self.value(ctx, name)?;
        let key = self.key(name);
        let DeValue::Array(items) = value.get_ref() else {
            ctx.wrong_type(value.span(), &key, "an array of strings", value.get_ref());
            return None;
        };
        let mut strings = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            ctx.spans.insert(item_key.clone(), item.span());
            match item.get_ref() {
                DeValue::String(text) => strings.push((text.to_string(), item.span(), item_key)),
                other => ctx.wrong_type(item.span(), &item_key, "a string", other),
            }
        }
        Some(strings)
    }

    fn ipv4(&mut self, ctx: &mut Ctx<'_>, name: &str) -> Option<(Ipv4Addr, Range<usize>, String)> {
        let (text, span, key) = self.string(ctx, name)?;
        match text.trim().parse::<Ipv4Addr>() {
            Ok(addr) => Some((addr, span, key)),
            Err(_) => {
                ctx.error(
                    span,
                    &key,
                    ErrorKind::InvalidValue,
                    format!("invalid IPv4 address {text:?}"),
                );
                None
            }
        }
    }

    /// A multicast group; `routed` also refuses the link-local block, never routed.
    fn multicast_group(&mut self, ctx: &mut Ctx<'_>, name: &str, routed: bool) -> Option<Ipv4Addr> {
        let (group, span, key) = self.ipv4(ctx, name)?;
        let reason = if !group.is_multicast() {
            format!("{group} is not a multicast group (224.0.0.0/4)")
        } else if routed && group.octets()[..3] == [224, 0, 0] {
            format!("{group} is link-local multicast (224.0.0.0/24), which is never routed")
        } else {
            return Some(group);
        };
        ctx.error(span, &key, ErrorKind::InvalidValue, reason);
        None
    }

    fn boolean(&mut self, ctx: &mut Ctx<'_>, name: &str, out: &mut bool) {
        let Some(value) = self.value(ctx, name) else {
            return;
        };
        match value.get_ref() {
            DeValue::Boolean(b) => *out = *b,
            other => ctx.wrong_type(value.span(), &self.key(name), "true or false", other),
        }
    }

    /// An integer in `range` into `out`; true if the file set a valid one.
    fn integer<T: TryFrom<i128>>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        out: &mut T,
        range: RangeInclusive<i128>,
    ) -> bool {
        let Some(value) = self.value(ctx, name) else {
            return false;
        };
        let key = self.key(name);
        let DeValue::Integer(int) = value.get_ref() else {
            ctx.wrong_type(value.span(), &key, "an integer", value.get_ref());
            return false;
        };
        let number = i128::from_str_radix(int.as_str(), int.radix()).ok();
        match number.filter(|n| range.contains(n)).map(T::try_from) {
            Some(Ok(n)) => {
                *out = n;
                true
            }
            _ => {
                ctx.error(
                    value.span(),
                    &key,
                    ErrorKind::OutOfRange,
                    format!("{int} is out of range {}..={}", range.start(), range.end()),
                );
                false
            }
        }
    }

    /// A number of bytes: an integer or a string with a unit (`"64MiB"`). Zero is refused
    /// with `zero_means` as the reason.
    fn bytes(&mut self, ctx: &mut Ctx<'_>, name: &str, out: &mut u64, zero_means: &str) {
        let Some(value) = self.value(ctx, name) else {
            return;
        };
        let key = self.key(name);
        let parsed = match value.get_ref() {
            DeValue::Integer(int) => i128::from_str_radix(int.as_str(), int.radix())
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| format!("{int} is not a number of bytes")),
            DeValue::String(text) => parse_byte_size(text),
            other => {
                ctx.wrong_type(value.span(), &key, "bytes (integer or \"64MiB\")", other);
                Err(String::new())
            }
        };
        match parsed {
            Ok(0) => ctx.error(
                value.span(),
                &key,
                ErrorKind::OutOfRange,
                format!("zero: {zero_means}"),
            ),
            Ok(bytes) => *out = bytes,
            Err(reason) if reason.is_empty() => {}
            Err(reason) => ctx.error(value.span(), &key, ErrorKind::InvalidValue, reason),
        }
    }

    fn duration(&mut self, ctx: &mut Ctx<'_>, name: &str, out: &mut Duration, nonzero: bool) {
        let Some(value) = self.value(ctx, name) else {
            return;
        };
        let key = self.key(name);
        match value.get_ref() {
            DeValue::String(text) => match parse_duration(text) {
                Ok(duration) if nonzero && duration.is_zero() => ctx.error(
                    value.span(),
                    &key,
                    ErrorKind::InvalidValue,
                    "must not be zero".to_owned(),
                ),
                Ok(duration) => *out = duration,
                Err(reason) => ctx.error(value.span(), &key, ErrorKind::InvalidValue, reason),
            },
            DeValue::Integer(int) => ctx.error(
                value.span(),
                &key,
                ErrorKind::WrongType,
                format!("expected a duration string with a unit, found integer {int}; write e.g. \"{int}ms\" or \"{int}s\""),
            ),
            other => ctx.wrong_type(value.span(), &key, "a duration string such as \"500ms\"", other),
        }
    }

    fn choice<T: Copy>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        out: &mut T,
        options: &[(&str, T)],
    ) {
        let Some((text, span, key)) = self.string(ctx, name) else {
            return;
        };
        if let Some((_, choice)) = options.iter().find(|(option, _)| *option == text) {
            *out = *choice;
            return;
        }
        let names: Vec<&str> = options.iter().map(|(option, _)| *option).collect();
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let hint = closest(&text, &names)
            .map(|close| format!("; did you mean \"{close}\"?"))
            .unwrap_or_default();
        ctx.error(
            span,
            &key,
            ErrorKind::InvalidValue,
            format!(
                "unknown value {text:?}: expected one of {}{hint}",
                quoted.join(", ")
            ),
        );
    }

    /// Reports the keys of the table that were never asked for.
    fn finish(self, ctx: &mut Ctx<'_>) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if self.known.contains(&name) {
                continue;
            }
            let hint = if let Some(close) = closest(name, self.known) {
                format!("; did you mean `{close}`?")
            } else if let Some(home) = home_of(name, &self.path) {
                format!("; `{name}` belongs in [{home}]")
            } else {
                let list: Vec<String> = self.known.iter().map(|k| format!("`{k}`")).collect();
                format!("; known keys here: {}", list.join(", "))
            };
            ctx.error(
                key.span(),
                &self.key(name),
                ErrorKind::UnknownKey,
                format!("unknown key{hint}"),
            );
        }
    }
}

/// The table (other than `path`'s own) that has a key `name`.
fn home_of(name: &str, path: &str) -> Option<&'static str> {
    let own = strip_indices(path);
    let top = own.split('.').next().unwrap_or_default();
    let homes = || {
        keys::ALL
            .iter()
            .filter(|(table, known)| !table.is_empty() && *table != own && known.contains(&name))
            .map(|(table, _)| *table)
    };
    // Prefer a table of the same role: `nak_rpt_ivl` in [router] belongs in
    // [router.timers], in [dlr] in [host].
    homes()
        .find(|table| table.split('.').next() == Some(top))
        .or_else(|| homes().next())
}

/// `router.interface[2]` to `router.interface`.
fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0_usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The candidate closest to `word` by edit distance, if close enough to be a typo.
fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Edit distance counting a transposition of neighbours as one edit (optimal string
/// alignment), so that `pmg` is one edit from `pgm`.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0_usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("nak_elim_iv", "nak_elim_ivl"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("pmg", "pgm"), 1);
        assert_eq!(
            closest("nak_elim_iv", keys::ROUTER_TIMERS),
            Some("nak_elim_ivl")
        );
        assert_eq!(closest("zzz", keys::ROUTER_TIMERS), None);
    }

    #[test]
    fn tsi() {
        assert_eq!(
            parse_tsi("10.0.1.2.0.1.4000"),
            Ok(Tsi {
                gsi: [10, 0, 1, 2, 0, 1],
                sport: 4000
            })
        );
        assert!(parse_tsi("1.2.3.4.5.4000").is_err());
        assert!(parse_tsi("1.2.3.4.5.256.4000").is_err());
        assert!(parse_tsi("1.2.3.4.5.6.0").is_err());
    }

    #[test]
    fn positions() {
        let ctx = Ctx::new("ab\ncdé\nx", "f");
        assert_eq!(ctx.position(0), (1, 1));
        assert_eq!(ctx.position(3), (2, 1));
        assert_eq!(ctx.position(7), (2, 4));
        assert_eq!(ctx.position(8), (3, 1));
    }

    #[test]
    fn every_table_has_its_keys() {
        assert_eq!(
            strip_indices("router.interface[12].x"),
            "router.interface.x"
        );
        for (table, known) in keys::ALL {
            assert!(!known.is_empty(), "{table}");
        }
    }
}
