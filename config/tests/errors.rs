//! Each class of error is reported with its exact file, line, column and dotted key, and
//! every problem of a file is reported, not just the first.

use pgm_config::{Config, ConfigError, ErrorKind};

/// The errors of `text` as (line, column, key, kind), in file order.
fn errors(text: &str) -> Vec<(usize, usize, String, ErrorKind)> {
    match Config::from_str(text, "test.toml") {
        Ok(config) => panic!("accepted: {config:#?}"),
        Err(errors) => errors
            .0
            .into_iter()
            .inspect(|e| assert_eq!(e.file, "test.toml"))
            .map(|e| (e.line, e.column, e.key, e.kind))
            .collect(),
    }
}

/// The one error of `text`.
fn only_error(text: &str) -> ConfigError {
    let errors = Config::from_str(text, "test.toml").unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap()
}

fn e(line: usize, column: usize, key: &str, kind: ErrorKind) -> (usize, usize, String, ErrorKind) {
    (line, column, key.to_owned(), kind)
}

const IFACES: &str =
    "[[router.interface]]\nname = \"eth0\"\n[[router.interface]]\nname = \"eth1\"\n";

#[test]
fn display_is_file_line_column_key_reason() {
    let text = format!("{IFACES}[router.timers]\nnak_elim_iv = \"10ms\"\n");
    let error = only_error(&text);
    assert_eq!(
        error.to_string(),
        "test.toml:6:1: router.timers.nak_elim_iv: unknown key; did you mean `nak_elim_ivl`?"
    );
    assert_eq!(error.kind, ErrorKind::UnknownKey);
}

#[test]
fn unknown_keys_everywhere() {
    let text = r#"
colour = "blue"
[admin]
listn = "127.0.0.1:1"
[router]
nak_rpt_ivl = "1s"
[[router.interface]]
name = "eth0"
pmg = true
[router.poll]
intervall = "1s"
[dlr]
interfaces = ["eth0"]
cache_byte = 5
[host]
txw_sqn = 5
"#;
    assert_eq!(
        errors(text),
        vec![
            e(2, 1, "colour", ErrorKind::UnknownKey),
            e(4, 1, "admin.listn", ErrorKind::UnknownKey),
            e(6, 1, "router.nak_rpt_ivl", ErrorKind::UnknownKey),
            e(9, 1, "router.interface[0].pmg", ErrorKind::UnknownKey),
            e(11, 1, "router.poll.intervall", ErrorKind::UnknownKey),
            e(14, 1, "dlr.cache_byte", ErrorKind::UnknownKey),
            e(16, 1, "host.txw_sqn", ErrorKind::UnknownKey),
        ]
    );
    let reasons: Vec<String> = Config::from_str(text, "t")
        .unwrap_err()
        .0
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert!(reasons[0].starts_with("unknown key; known keys here: `router`"));
    assert_eq!(reasons[1], "unknown key; did you mean `listen`?");
    assert_eq!(
        reasons[2],
        "unknown key; `nak_rpt_ivl` belongs in [router.timers]"
    );
    assert_eq!(reasons[3], "unknown key; did you mean `pgm`?");
}

#[test]
fn dlr_limit_typos() {
    let text = "[dlr]\ninterfaces = [\"eth0\"]\nmax_engine = 8\nmax_sesions = 8\nmax_tsis = 8\n";
    assert_eq!(
        errors(text),
        vec![
            e(3, 1, "dlr.max_engine", ErrorKind::UnknownKey),
            e(4, 1, "dlr.max_sesions", ErrorKind::UnknownKey),
            e(5, 1, "dlr.max_tsis", ErrorKind::UnknownKey),
        ]
    );
    let reasons: Vec<String> = Config::from_str(text, "t")
        .unwrap_err()
        .0
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "unknown key; did you mean `max_engines`?",
            "unknown key; did you mean `max_sessions`?",
            "unknown key; `max_tsis` belongs in [router.limits]",
        ]
    );
}

#[test]
fn wrong_types() {
    let text = r#"
[[router.interface]]
name = 5
pgm = "yes"
[[router.interface]]
name = "eth1"
[[router.route]]
group = "239.1.2.300"
source = "10.0.0.1/24"
upstream = "eth1"
downstream = "eth1"
[router.timers]
nak_rpt_ivl = 500
nak_rdata_ivl = "2 fortnights"
nak_elim_ivl = "1.5s"
[router.limits]
max_tsis = "4096"
max_repair_states = 1.5
[host]
port = "7500"
network = "eth0"
"#;
    assert_eq!(
        errors(text),
        vec![
            e(3, 8, "router.interface[0].name", ErrorKind::WrongType),
            e(4, 7, "router.interface[0].pgm", ErrorKind::WrongType),
            e(8, 9, "router.route[0].group", ErrorKind::InvalidValue),
            e(9, 10, "router.route[0].source", ErrorKind::InvalidValue),
            e(11, 14, "router.route[0].downstream", ErrorKind::WrongType),
            e(13, 15, "router.timers.nak_rpt_ivl", ErrorKind::WrongType),
            e(
                14,
                17,
                "router.timers.nak_rdata_ivl",
                ErrorKind::InvalidValue
            ),
            e(
                15,
                16,
                "router.timers.nak_elim_ivl",
                ErrorKind::InvalidValue
            ),
            e(17, 12, "router.limits.max_tsis", ErrorKind::WrongType),
            e(
                18,
                21,
                "router.limits.max_repair_states",
                ErrorKind::WrongType
            ),
            e(20, 8, "host.port", ErrorKind::WrongType),
            e(21, 11, "host.network", ErrorKind::InvalidValue),
        ]
    );
    let error = only_error("[router]\ninterface = \"eth0\"\n");
    assert_eq!((error.line, error.column), (2, 13));
    assert_eq!(error.key, "router.interface");
    assert_eq!(error.kind, ErrorKind::WrongType);
    assert_eq!(
        error.reason,
        "expected an array of tables [[router.interface]], found string \"eth0\""
    );
    let error = only_error("router = 5\n");
    assert_eq!(
        (error.line, error.column, error.key.as_str()),
        (1, 10, "router")
    );
}

#[test]
fn contradictory_timers() {
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
    //# NAK_ELIM_IVL MUST be some small fraction of
    //# NAK_RDATA_IVL.
    // Both set: reported at nak_elim_ivl.
    let text =
        format!("{IFACES}[router.timers]\nnak_rdata_ivl = \"100ms\"\nnak_elim_ivl = \"100ms\"\n");
    let error = only_error(&text);
    assert_eq!((error.line, error.column), (7, 16));
    assert_eq!(error.key, "router.timers.nak_elim_ivl");
    assert_eq!(error.kind, ErrorKind::Contradiction);
    assert!(error.reason.contains("§7.4"), "{}", error.reason);
    // Only nak_rdata_ivl set, below the default nak_elim_ivl: reported where it is set.
    let text = format!("{IFACES}[router.timers]\nnak_rdata_ivl = \"50ms\"\n");
    assert_eq!(
        errors(&text),
        vec![e(
            6,
            17,
            "router.timers.nak_rdata_ivl",
            ErrorKind::Contradiction
        )]
    );
    let text =
        format!("{IFACES}[router.timers]\nnak_rpt_ivl = \"200ms\"\nnak_rpt_rte_ivl = \"300ms\"\n");
    let error = only_error(&text);
    assert_eq!(
        error.to_string(),
        "test.toml:7:19: router.timers.nak_rpt_rte_ivl: nak_rpt_rte_ivl (300ms) exceeds \
         nak_rpt_ivl (200ms): a pending NAK would never be repeated before forwarding is cancelled"
    );
    // A rejected value is not also compared.
    let text = format!("{IFACES}[router.timers]\nnak_rdata_ivl = \"0s\"\n");
    assert_eq!(
        errors(&text),
        vec![e(
            6,
            17,
            "router.timers.nak_rdata_ivl",
            ErrorKind::InvalidValue
        )]
    );
}

#[test]
fn zero_durations() {
    let text = format!(
        "{IFACES}[router.timers]\nnak_rpt_ivl = \"0s\"\nnak_rpt_rte_ivl = \"0ms\"\nnak_elim_ivl = \"0\"\ntsi_expiry = \"0s\"\nncf_holdoff = \"0s\"\n[router.poll]\ninterval = \"0s\"\nbackoff = \"0s\"\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            e(6, 15, "router.timers.nak_rpt_ivl", ErrorKind::InvalidValue),
            e(
                7,
                19,
                "router.timers.nak_rpt_rte_ivl",
                ErrorKind::InvalidValue
            ),
            e(8, 16, "router.timers.nak_elim_ivl", ErrorKind::InvalidValue),
            e(9, 14, "router.timers.tsi_expiry", ErrorKind::InvalidValue),
            // ncf_holdoff = "0s" is allowed: no hold-off.
            e(12, 12, "router.poll.interval", ErrorKind::InvalidValue),
            e(13, 11, "router.poll.backoff", ErrorKind::InvalidValue),
        ]
    );
    assert_eq!(
        errors("[host]\ntxw_secs = \"0s\"\nnak_bo_ivl = \"0s\"\n"),
        vec![
            e(2, 12, "host.txw_secs", ErrorKind::InvalidValue),
            e(3, 14, "host.nak_bo_ivl", ErrorKind::InvalidValue),
        ]
    );
    assert_eq!(
        errors("[dlr]\ninterfaces = [\"eth0\"]\ncache_age = \"0s\"\ncache_bytes = 0\n"),
        vec![
            e(3, 13, "dlr.cache_age", ErrorKind::InvalidValue),
            e(4, 15, "dlr.cache_bytes", ErrorKind::OutOfRange),
        ]
    );
}

#[test]
fn other_contradictions() {
    let text = format!("{IFACES}[router.poll]\ninterval = \"1s\"\nbackoff = \"1s\"\n");
    assert_eq!(
        errors(&text),
        vec![e(7, 11, "router.poll.backoff", ErrorKind::Contradiction)]
    );
    let text = format!(
        "[router]\nmode = \"assist-only\"\n{IFACES}[[router.route]]\ngroup = \"239.1.1.1\"\nupstream = \"eth0\"\ndownstream = [\"eth1\"]\n"
    );
    assert_eq!(
        errors(&text),
        vec![e(7, 1, "router.route[0]", ErrorKind::Contradiction)]
    );
    assert_eq!(
        errors("[dlr]\ninterfaces = [\"eth0\"]\nupstream = false\noff_tree = false\n"),
        vec![e(4, 12, "dlr.off_tree", ErrorKind::Contradiction)]
    );
    assert_eq!(
        errors(
            "[dlr]\ninterfaces = [\"eth0\"]\n[[dlr.session]]\ngroup = \"239.1.1.1\"\nport = 1\n"
        ),
        vec![e(3, 1, "dlr.session[0]", ErrorKind::Contradiction)]
    );
    assert_eq!(
        errors("[dlr]\ninterfaces = [\"eth0\"]\nserve = \"listed\"\n"),
        vec![e(3, 9, "dlr.serve", ErrorKind::MissingKey)]
    );
    assert_eq!(
        errors("[host]\nencapsulation = \"ip\"\nudp_multicast_port = 4000\n"),
        vec![e(
            3,
            22,
            "host.udp_multicast_port",
            ErrorKind::Contradiction
        )]
    );
}

#[test]
fn nflog_group_is_a_16_bit_group() {
    let text = "[router]\nnflog_group = 65536\n[[router.interface]]\nname = \"eth0\"\n";
    assert_eq!(
        errors(text),
        vec![e(2, 15, "router.nflog_group", ErrorKind::OutOfRange)]
    );
    let text = "[router]\nnflog_group = -1\n[[router.interface]]\nname = \"eth0\"\n";
    assert_eq!(
        errors(text),
        vec![e(2, 15, "router.nflog_group", ErrorKind::OutOfRange)]
    );
    for (given, want) in [
        ("", 113),
        ("nflog_group = 0\n", 0),
        ("nflog_group = 65535\n", 65535),
    ] {
        let text = format!("[router]\n{given}[[router.interface]]\nname = \"eth0\"\n");
        let router = Config::from_str(&text, "t").unwrap().router.unwrap();
        assert_eq!(router.nflog_group, want, "{given:?}");
    }
}

#[test]
fn nak_window_slack_is_at_most_half_the_sequence_space() {
    let text = format!("{IFACES}[router.limits]\nnak_window_slack = 2147483648\n");
    assert_eq!(
        only_error(&text).to_string(),
        "test.toml:6:20: router.limits.nak_window_slack: 2147483648 is out of range 0..=2147483647"
    );
    assert_eq!(
        errors(&format!("{IFACES}[router.limits]\nnak_window_slack = -1\n")),
        vec![e(
            6,
            20,
            "router.limits.nak_window_slack",
            ErrorKind::OutOfRange
        )]
    );
    for (given, want) in [("0", 0), ("2147483647", i32::MAX as u32)] {
        let ok = format!("{IFACES}[router.limits]\nnak_window_slack = {given}\n");
        let router = Config::from_str(&ok, "t").unwrap().router.unwrap();
        assert_eq!(router.limits.nak_window_slack, want);
    }
}

#[test]
fn limits_out_of_range() {
    let text = format!(
        "{IFACES}[router.limits]\nmax_tsis = 0\nmax_repair_states = 10_000_001\n[router.poll]\nmask_bits = 32\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            e(6, 12, "router.limits.max_tsis", ErrorKind::OutOfRange),
            e(
                7,
                21,
                "router.limits.max_repair_states",
                ErrorKind::OutOfRange
            ),
            e(9, 13, "router.poll.mask_bits", ErrorKind::OutOfRange),
        ]
    );
    let ok = format!(
        "{IFACES}[router.limits]\nmax_tsis = 1\nmax_repair_states = 10_000_000\n[router.poll]\nmask_bits = 31\n"
    );
    let router = Config::from_str(&ok, "t").unwrap().router.unwrap();
    assert_eq!(router.limits.max_tsis, 1);
    assert_eq!(router.limits.max_repair_states, 10_000_000);
    assert_eq!(router.poll.mask_bits, 31);
    assert_eq!(
        errors(
            "[host]\nport = 0\nudp_unicast_port = 65536\nudp_multicast_port = -1\nttl = 256\ntxw_sqns = 2147483648\nnak_ncf_retries = 0\n"
        ),
        vec![
            e(2, 8, "host.port", ErrorKind::OutOfRange),
            e(3, 20, "host.udp_unicast_port", ErrorKind::OutOfRange),
            e(4, 22, "host.udp_multicast_port", ErrorKind::OutOfRange),
            e(5, 7, "host.ttl", ErrorKind::OutOfRange),
            e(6, 12, "host.txw_sqns", ErrorKind::OutOfRange),
            e(7, 19, "host.nak_ncf_retries", ErrorKind::OutOfRange),
        ]
    );
    assert_eq!(
        errors("[dlr]\ninterfaces = [\"eth0\"]\nmax_engines = 0\nmax_sessions = 10_000_001\n"),
        vec![
            e(3, 15, "dlr.max_engines", ErrorKind::OutOfRange),
            e(4, 16, "dlr.max_sessions", ErrorKind::OutOfRange),
        ]
    );
    assert_eq!(
        errors(
            "[dlr]\ninterfaces = [\"eth0\"]\nmax_sessions = -1\nmax_engines = 99999999999999999999999\n"
        ),
        vec![
            e(3, 16, "dlr.max_sessions", ErrorKind::OutOfRange),
            e(4, 15, "dlr.max_engines", ErrorKind::OutOfRange),
        ]
    );
    assert_eq!(
        errors("[dlr]\ninterfaces = [\"eth0\"]\nmax_engines = \"256\"\nmax_sessions = 1.5\n"),
        vec![
            e(3, 15, "dlr.max_engines", ErrorKind::WrongType),
            e(4, 16, "dlr.max_sessions", ErrorKind::WrongType),
        ]
    );
    let error = only_error("[dlr]\ninterfaces = [\"eth0\"]\nmax_sessions = 0\n");
    assert_eq!(
        error.to_string(),
        "test.toml:3:16: dlr.max_sessions: 0 is out of range 1..=10000000"
    );
    let error = only_error(
        "[dlr]\ninterfaces = [\"eth0\"]\nserve = \"listed\"\n[[dlr.session]]\ngroup = \"239.1.1.1\"\nport = 70000\n",
    );
    assert_eq!((error.line, error.column), (6, 8));
    assert_eq!(error.key, "dlr.session[0].port");
    assert_eq!(error.reason, "70000 is out of range 1..=65535");
}

#[test]
fn interfaces_routes_and_groups() {
    let text = r#"
[[router.interface]]
name = "eth0"
[[router.interface]]
name = "eth1"
[[router.interface]]
name = "eth0"
[[router.route]]
group = "10.0.0.1"
upstream = "eth9"
downstream = ["eth1", "eth0", "wlan0"]
[[router.route]]
group = "224.0.0.5"
upstream = "eth0"
downstream = ["eth0", "eth1", "eth1"]
[[router.route]]
group = "239.1.1.1"
source = "10.0.0.2"
upstream = "eth0"
downstream = ["eth1"]
[[router.route]]
group = "239.1.1.1"
source = "10.0.0.2"
upstream = "eth0"
downstream = []
[[router.route]]
group = "239.1.1.2"
source = "239.1.1.3"
"#;
    assert_eq!(
        errors(text),
        vec![
            e(7, 8, "router.interface[2].name", ErrorKind::Duplicate),
            e(9, 9, "router.route[0].group", ErrorKind::InvalidValue),
            e(
                10,
                12,
                "router.route[0].upstream",
                ErrorKind::UndefinedInterface
            ),
            e(
                11,
                31,
                "router.route[0].downstream[2]",
                ErrorKind::UndefinedInterface
            ),
            e(13, 9, "router.route[1].group", ErrorKind::InvalidValue),
            e(
                15,
                15,
                "router.route[1].downstream[0]",
                ErrorKind::Contradiction
            ),
            e(
                15,
                31,
                "router.route[1].downstream[2]",
                ErrorKind::Duplicate
            ),
            e(22, 9, "router.route[3].group", ErrorKind::Duplicate),
            e(
                25,
                14,
                "router.route[3].downstream",
                ErrorKind::InvalidValue
            ),
            e(26, 1, "router.route[4].upstream", ErrorKind::MissingKey),
            e(26, 1, "router.route[4].downstream", ErrorKind::MissingKey),
            e(28, 10, "router.route[4].source", ErrorKind::InvalidValue),
        ]
    );
    let reasons: Vec<String> = Config::from_str(text, "t")
        .unwrap_err()
        .0
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons[0], "interface `eth0` is already listed at line 3");
    assert_eq!(
        reasons[1],
        "10.0.0.1 is not a multicast group (224.0.0.0/4)"
    );
    assert_eq!(
        reasons[2],
        "interface `eth9` is not listed under [[router.interface]] (listed: eth0, eth1)"
    );
    assert_eq!(
        reasons[4],
        "224.0.0.5 is link-local multicast (224.0.0.0/24), which is never routed"
    );
    assert_eq!(
        reasons[7],
        "route (10.0.0.2, 239.1.1.1) is already defined at line 17"
    );

    assert_eq!(
        errors("[router]\nmode = \"full\"\n"),
        vec![e(1, 1, "router.interface", ErrorKind::MissingKey)]
    );
    assert_eq!(
        errors("[dlr]\ninterfaces = [\"eth0\", \"eth0\", \"\", \"a-very-long-interface\"]\n"),
        vec![
            e(2, 23, "dlr.interfaces[1]", ErrorKind::Duplicate),
            e(2, 31, "dlr.interfaces[2]", ErrorKind::InvalidValue),
            e(2, 35, "dlr.interfaces[3]", ErrorKind::InvalidValue),
        ]
    );
    assert_eq!(
        errors("[[dlr.session]]\ngroup = \"10.0.0.1\"\ntsi = \"1.2.3\"\n"),
        vec![
            // Without serve = "listed", and on the implicit [dlr] (its name in the header).
            e(1, 1, "dlr.session[0].port", ErrorKind::MissingKey),
            e(1, 1, "dlr.session[0]", ErrorKind::Contradiction),
            e(1, 3, "dlr.interfaces", ErrorKind::MissingKey),
            e(2, 9, "dlr.session[0].group", ErrorKind::InvalidValue),
            e(3, 7, "dlr.session[0].tsi", ErrorKind::InvalidValue),
        ]
    );
    assert_eq!(
        errors("[host]\nnetwork = \"eth0;10.0.0.1\"\n"),
        vec![e(2, 11, "host.network", ErrorKind::InvalidValue)]
    );
}

#[test]
fn every_problem_of_a_file_is_reported_in_order() {
    let text = include_str!("bad.toml");
    let errors = Config::from_str(text, "bad.toml").unwrap_err();
    let lines: Vec<String> = errors.to_string().lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "bad.toml:2:10: admin.listen: invalid address \"localhost\": expected address:port, e.g. \"127.0.0.1:9470\"",
            "bad.toml:5:8: router.mode: unknown value \"assist_only\": expected one of \"full\", \"assist-only\"; did you mean \"assist-only\"?",
            "bad.toml:11:8: router.interface[1].name: interface `eth0` is already listed at line 8",
            "bad.toml:14:9: router.route[0].group: 10.1.1.1 is not a multicast group (224.0.0.0/4)",
            "bad.toml:16:15: router.route[0].downstream[0]: interface `eth3` is not listed under [[router.interface]] (listed: eth0)",
            "bad.toml:19:17: router.timers.nak_rdata_ivl: nak_elim_ivl (100ms) must be smaller than nak_rdata_ivl (50ms): NAK_ELIM_IVL MUST be some small fraction of NAK_RDATA_IVL (RFC 3208 §7.4)",
            "bad.toml:20:1: router.timers.nak_elim_iv: unknown key; did you mean `nak_elim_ivl`?",
            "bad.toml:21:15: router.timers.nak_rpt_ivl: expected a duration string with a unit, found integer 500; write e.g. \"500ms\" or \"500s\"",
            "bad.toml:22:14: router.timers.tsi_expiry: must not be zero",
            "bad.toml:23:15: router.timers.ncf_holdoff: invalid duration \"10 parsecs\": unknown unit \"parsecs\"; use ns, us, ms, s, m or h",
            "bad.toml:26:12: router.limits.max_tsis: 0 is out of range 1..=10000000",
            "bad.toml:27:21: router.limits.max_repair_states: expected an integer, found string \"lots\"",
            "bad.toml:30:13: router.poll.mask_bits: 32 is out of range 0..=31",
        ]
    );
}

#[test]
fn syntax_errors() {
    let errors = errors("[router\nmode = \n");
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|(line, _, key, kind)| {
        *line >= 1 && key.is_empty() && *kind == ErrorKind::Syntax
    }));
    let error = &Config::from_str("a = 1\na = 2\n", "dup.toml")
        .unwrap_err()
        .0[0];
    assert_eq!((error.line, error.kind), (2, ErrorKind::Syntax));
    assert!(error.to_string().starts_with("dup.toml:2:1: "), "{error}");
}

#[test]
fn unreadable_file() {
    let path = std::path::Path::new("/nonexistent/pgm.toml");
    let errors = Config::from_file(path).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].kind, ErrorKind::Io);
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/pgm.toml: cannot read: "),
        "{errors}"
    );
}

#[test]
fn interfaces_missing_on_the_host() {
    let text = r#"[[router.interface]]
name = "eth0"
[[router.interface]]
name = "eth7"
[dlr]
interfaces = ["eth0", "eth8"]
[host]
network = "eth9;239.192.0.1"
"#;
    let config = Config::from_str(text, "site.toml").unwrap();
    let exists = |name: &str| name == "eth0";
    let errors = config.check_interfaces(&exists).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "site.toml:4:8: router.interface[1].name: interface `eth7` does not exist on this host\n\
         site.toml:6:23: dlr.interfaces[1]: interface `eth8` does not exist on this host\n\
         site.toml:8:11: host.network: interface `eth9` does not exist on this host"
    );
    assert!(errors.iter().all(|e| e.kind == ErrorKind::NoSuchInterface));
    assert!(config.check_interfaces(&|_: &str| true).is_ok());
    // An address instead of a name is not looked up.
    let config = Config::from_str("[host]\nnetwork = \"10.0.0.1;239.192.0.1\"\n", "t").unwrap();
    assert!(config.check_interfaces(&|_: &str| false).is_ok());
}

#[test]
fn data_plane_keys() {
    // An unknown plane names the choices.
    let error = only_error("[router]\ndataplane = \"tc\"\n[[router.interface]]\nname = \"eth0\"\n");
    assert_eq!(
        (error.line, error.column, error.key.as_str(), error.kind),
        (2, 13, "router.dataplane", ErrorKind::InvalidValue)
    );
    assert!(
        error.reason.contains("\"auto\"") && error.reason.contains("\"netdev\""),
        "{}",
        error.reason
    );
    // The netdev plane forwards on its own: not beside another multicast router.
    assert_eq!(
        errors(
            "[router]\nmode = \"assist-only\"\ndataplane = \"netdev\"\n[[router.interface]]\nname = \"eth0\"\n"
        ),
        vec![e(3, 13, "router.dataplane", ErrorKind::Contradiction)]
    );
    // The new bounds.
    let text = format!(
        "{IFACES}[router.limits]\nmax_routes = 0\nmax_memberships = 10000001\nlearn_rate = 0\n\
         [router.timers]\nroute_idle = \"0s\"\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            e(6, 14, "router.limits.max_routes", ErrorKind::OutOfRange),
            e(
                7,
                19,
                "router.limits.max_memberships",
                ErrorKind::OutOfRange
            ),
            e(8, 14, "router.limits.learn_rate", ErrorKind::OutOfRange),
            e(10, 14, "router.timers.route_idle", ErrorKind::InvalidValue),
        ]
    );
}

#[test]
fn pgmcc_acker_must_be_a_unicast_address() {
    let error = only_error("[host]\npgmcc_acker = \"239.1.1.1\"\n");
    assert_eq!((error.line, error.kind), (2, ErrorKind::InvalidValue));
    assert_eq!(error.key, "host.pgmcc_acker");
    let error = only_error("[host]\npgmcc = \"yes\"\n");
    assert_eq!((error.line, error.key.as_str()), (2, "host.pgmcc"));
}
