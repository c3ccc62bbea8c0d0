//! Valid files parse to the expected values; absent keys and sections take the defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use pgm_config::{
    AdminSection, Config, Dataplane, DlrSection, DlrServe, DlrSession, HostEncapsulation,
    HostNetwork, HostSection, InterceptMode, PollSettings, RouterInterface, RouterLimits,
    RouterMode, RouterSection, RouterTimers, StaticRoute, Tsi,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn empty_file_gives_defaults() {
    let config = Config::from_str("", "empty.toml").unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.router, None);
    assert_eq!(config.dlr, None);
    assert_eq!(config.host, None);
    assert_eq!(
        config.admin.listen,
        "127.0.0.1:9470".parse::<SocketAddr>().unwrap()
    );
    let config = Config::from_str("# nothing\n\n", "comments.toml").unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn engine_defaults() {
    // The values of NeConfig::new, ReceiverConfig::new, SourceConfig::new.
    let timers = RouterTimers::default();
    assert_eq!(timers.nak_rpt_ivl, ms(500));
    assert_eq!(timers.nak_rpt_rte_ivl, ms(100));
    assert_eq!(timers.nak_rdata_ivl, ms(2000));
    assert_eq!(timers.nak_elim_ivl, ms(100));
    assert_eq!(timers.ncf_holdoff, ms(10));
    assert_eq!(timers.tsi_expiry, ms(60_000));
    assert_eq!(
        RouterLimits::default(),
        RouterLimits {
            max_tsis: 4096,
            max_repair_states: 65_536,
            max_routes: 4096,
            max_memberships: 4096,
            learn_rate: 1000,
            nak_window_slack: 1 << 20,
        }
    );
    assert_eq!(timers.route_idle, ms(180_000));
    assert_eq!(
        PollSettings::default(),
        PollSettings {
            interval: Some(ms(30_000)),
            backoff: ms(1000),
            mask_bits: 0
        }
    );
    let router = RouterSection::default();
    assert_eq!(router.mode, RouterMode::Full);
    assert_eq!(router.dataplane, Dataplane::Auto);
    assert_eq!(router.intercept, InterceptMode::Nftables);
    let host = HostSection::default();
    assert_eq!(host.nak_bo_ivl, ms(50));
    assert_eq!(host.nak_rpt_ivl, ms(200));
    assert_eq!(host.nak_rdata_ivl, ms(500));
    assert_eq!((host.nak_ncf_retries, host.nak_data_retries), (50, 50));
    assert_eq!((host.txw_sqns, host.rxw_sqns), (32_768, 32_768));
    assert_eq!(host.txw_secs, ms(30_000));
    assert_eq!(
        (host.udp_unicast_port, host.udp_multicast_port),
        (3055, 3056)
    );
    assert_eq!(host.ttl, 16);
    // The DLR's bounds: DlrConfig::new's max_sessions (and ReceiverConfig::new's
    // max_sources), and the daemon's engine limit before it was configurable.
    let dlr = DlrSection::default();
    assert_eq!((dlr.max_engines, dlr.max_sessions), (256, 1024));
    assert_eq!(dlr.cache_bytes, 64 << 20);
    assert_eq!(dlr.cache_age, ms(30_000));
}

#[test]
fn dlr_limits() {
    let dlr = |keys: &str| {
        Config::from_str(&format!("[dlr]\ninterfaces = [\"eth0\"]\n{keys}"), "t")
            .unwrap()
            .dlr
            .unwrap()
    };
    let defaults = dlr("");
    assert_eq!((defaults.max_engines, defaults.max_sessions), (256, 1024));
    let small = dlr("max_engines = 1\nmax_sessions = 1\n");
    assert_eq!((small.max_engines, small.max_sessions), (1, 1));
    assert_eq!(
        small,
        DlrSection {
            interfaces: vec!["eth0".to_owned()],
            max_engines: 1,
            max_sessions: 1,
            ..DlrSection::default()
        }
    );
    let large = dlr("max_engines = 10_000_000\nmax_sessions = 0x989680\n");
    assert_eq!(
        (large.max_engines, large.max_sessions),
        (10_000_000, 10_000_000)
    );
    // Allowed, and ignored by the daemon, with serve = "listed".
    let listed = dlr(
        "serve = \"listed\"\nmax_engines = 8\n[[dlr.session]]\ngroup = \"239.1.1.1\"\nport = 7500\n",
    );
    assert_eq!((listed.max_engines, listed.max_sessions), (8, 1024));
    // Inline, with their positions.
    let config = Config::from_str(
        "dlr = { interfaces = [\"eth0\"], max_sessions = 64 }\n",
        "t",
    )
    .unwrap();
    assert_eq!(config.dlr.unwrap().max_sessions, 64);
    assert_eq!(config.locations.position("dlr.max_sessions"), Some((1, 47)));
}

#[test]
fn sections_with_only_required_keys_take_defaults() {
    let config = Config::from_str(
        "[[router.interface]]\nname = \"eth0\"\n[dlr]\ninterfaces = [\"eth0\"]\n[host]\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        config.router.unwrap(),
        RouterSection {
            interfaces: vec![RouterInterface::new("eth0")],
            ..RouterSection::default()
        }
    );
    assert_eq!(
        config.dlr.unwrap(),
        DlrSection {
            interfaces: vec!["eth0".to_owned()],
            ..DlrSection::default()
        }
    );
    assert_eq!(config.host.unwrap(), HostSection::default());
}

#[test]
fn full_example() {
    let text = r#"
[admin]
listen = "[::1]:9100"

[router]
mode = "assist-only"
dataplane = "mroute"
intercept = "router-alert"
nflog_group = 7

[[router.interface]]
name = "eth0"

[[router.interface]]
name = "eth1"
pgm = false

[router.timers]
nak_rpt_ivl = "1s"
nak_rpt_rte_ivl = "250ms"
nak_rdata_ivl = "3s"
nak_elim_ivl = "150ms"
ncf_holdoff = "0s"
tsi_expiry = "2m"
route_idle = "5m"

[router.limits]
max_tsis = 100
max_repair_states = 1_000
max_routes = 50
max_memberships = 60
learn_rate = 200
nak_window_slack = 4096

[router.poll]
interval = "off"
backoff = "500ms"
mask_bits = 4

[dlr]
interfaces = ["eth1"]
serve = "listed"
cache_bytes = "1GiB"
cache_age = "1m30s"
upstream = false
max_engines = 16
max_sessions = 10_000
receive_buffer_bytes = "8MiB"
nak_window_slack = 500

[[dlr.session]]
group = "239.192.0.1"
port = 7500

[[dlr.session]]
group = "239.192.0.1"
port = 7500
tsi = "1.2.3.4.5.6.4000"

[host]
network = "eth0;239.192.0.9"
port = 7501
encapsulation = "ip"
ttl = 1
rate = 1_250_000
txw_sqns = 1000
txw_secs = "10s"
nak_bo_ivl = "20ms"
nak_rpt_ivl = "100ms"
nak_rdata_ivl = "1s"
nak_ncf_retries = 3
nak_data_retries = 4
rxw_sqns = 2000
max_buffer_bytes = 1_000_000
pgmcc = false
pgmcc_acker = "10.1.2.3"
"#;
    let config = Config::from_str(text, "full.toml").unwrap();
    assert_eq!(
        config.admin,
        AdminSection {
            listen: "[::1]:9100".parse().unwrap()
        }
    );
    assert_eq!(
        config.router.unwrap(),
        RouterSection {
            mode: RouterMode::AssistOnly,
            dataplane: Dataplane::Mroute,
            intercept: InterceptMode::RouterAlert,
            nflog_group: 7,
            interfaces: vec![
                RouterInterface::new("eth0"),
                RouterInterface {
                    name: "eth1".to_owned(),
                    pgm: false
                },
            ],
            static_routes: vec![],
            timers: RouterTimers {
                nak_rpt_ivl: ms(1000),
                nak_rpt_rte_ivl: ms(250),
                nak_rdata_ivl: ms(3000),
                nak_elim_ivl: ms(150),
                ncf_holdoff: Duration::ZERO,
                tsi_expiry: ms(120_000),
                route_idle: ms(300_000),
            },
            limits: RouterLimits {
                max_tsis: 100,
                max_repair_states: 1000,
                max_routes: 50,
                max_memberships: 60,
                learn_rate: 200,
                nak_window_slack: 4096,
            },
            poll: PollSettings {
                interval: None,
                backoff: ms(500),
                mask_bits: 4
            },
        }
    );
    let group = Ipv4Addr::new(239, 192, 0, 1);
    assert_eq!(
        config.dlr.unwrap(),
        DlrSection {
            interfaces: vec!["eth1".to_owned()],
            serve: DlrServe::Listed,
            sessions: vec![
                DlrSession {
                    group,
                    port: 7500,
                    tsi: None
                },
                DlrSession {
                    group,
                    port: 7500,
                    tsi: Some(Tsi {
                        gsi: [1, 2, 3, 4, 5, 6],
                        sport: 4000
                    })
                },
            ],
            cache_bytes: 1 << 30,
            cache_age: ms(90_000),
            upstream: false,
            off_tree: true,
            max_engines: 16,
            max_sessions: 10_000,
            receive_buffer_bytes: 8 << 20,
            nak_window_slack: 500,
        }
    );
    assert_eq!(
        config.host.unwrap(),
        HostSection {
            network: Some(HostNetwork {
                interface: "eth0".to_owned(),
                group: Ipv4Addr::new(239, 192, 0, 9)
            }),
            port: Some(7501),
            encapsulation: HostEncapsulation::Ip,
            udp_unicast_port: 3055,
            udp_multicast_port: 3056,
            ttl: 1,
            rate: 1_250_000,
            txw_sqns: 1000,
            txw_secs: ms(10_000),
            nak_bo_ivl: ms(20),
            nak_rpt_ivl: ms(100),
            nak_rdata_ivl: ms(1000),
            nak_ncf_retries: 3,
            nak_data_retries: 4,
            rxw_sqns: 2000,
            max_buffer_bytes: 1_000_000,
            pgmcc: false,
            pgmcc_acker: Some(Ipv4Addr::new(10, 1, 2, 3)),
        }
    );
    assert_eq!(config.locations.file, "full.toml");
    assert_eq!(
        config.locations.position("router.timers.nak_elim_ivl"),
        Some((22, 16))
    );
    assert_eq!(
        config.locations.position("router.interface[1].name"),
        Some((15, 8))
    );
}

#[test]
fn static_routes_and_inline_tables() {
    let text = r#"
router.interface = [{ name = "eth0" }, { name = "eth1" }, { name = "eth2" }]
router.route = [
    { group = "239.192.0.1", source = "10.0.1.2", upstream = "eth0", downstream = ["eth1", "eth2"] },
    { group = "239.192.0.2", upstream = "eth0", downstream = ["eth2"] },
]
router.timers.nak_elim_ivl = "50ms"
"#;
    let router = Config::from_str(text, "t").unwrap().router.unwrap();
    assert_eq!(
        router.static_routes,
        vec![
            StaticRoute {
                group: Ipv4Addr::new(239, 192, 0, 1),
                source: Some(Ipv4Addr::new(10, 0, 1, 2)),
                upstream: "eth0".to_owned(),
                downstream: vec!["eth1".to_owned(), "eth2".to_owned()],
            },
            StaticRoute {
                group: Ipv4Addr::new(239, 192, 0, 2),
                source: None,
                upstream: "eth0".to_owned(),
                downstream: vec!["eth2".to_owned()],
            },
        ]
    );
    assert_eq!(router.timers.nak_elim_ivl, ms(50));
    // Errors inside inline tables point into the line.
    let errors = Config::from_str(
        "router.interface = [{ name = \"eth0\", pgn = true }]\n",
        "t",
    )
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "t:1:38: router.interface[0].pgn: unknown key; did you mean `pgm`?"
    );
}

#[test]
fn deploy_examples_parse() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            seen.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                config,
            ));
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["dlr.toml", "host.toml", "router.toml"]);
    // The examples show the defaults.
    let router = seen[2].1.router.as_ref().unwrap();
    assert_eq!(router.timers, RouterTimers::default());
    assert_eq!(router.limits, RouterLimits::default());
    assert_eq!(router.poll, PollSettings::default());
    assert_eq!(router.static_routes.len(), 1);
    let host = seen[1].1.host.as_ref().unwrap();
    assert_eq!(
        HostSection {
            network: None,
            port: None,
            ..host.clone()
        },
        HostSection::default()
    );
    let dlr = seen[0].1.dlr.as_ref().unwrap();
    assert_eq!(
        DlrSection {
            interfaces: Vec::new(),
            serve: DlrServe::All,
            sessions: Vec::new(),
            ..dlr.clone()
        },
        DlrSection::default()
    );
    assert_eq!(dlr.sessions.len(), 2);
}
