//! `pgm-routerd`'s and `pgm-dlrd`'s `/metrics` as Prometheus sees them: both expositions pass
//! `promtool check metrics` (naming lint), the router's carries every metric the alert rules
//! use, and a real Prometheus server in the same namespace scrapes both daemons, loads
//! `deploy/prometheus/alerts.yml` and answers queries about them.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pgm_netns_tests::admin::{self, DEFAULT_LISTEN as ADMIN};
use pgm_netns_tests::bins;
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::{Lab, Ns};
use pgm_netns_tests::on_each_plane;
use pgm_netns_tests::plane::Plane;

const DLR_ADMIN: SocketAddr = admin::loopback(9471);
const PROMETHEUS: SocketAddr = admin::loopback(9090);

/// A plain HTTP/1.0 GET to `addr` inside `ns`: (status line, body), or `None` if nothing
/// answers yet.
fn get(ns: &Ns, addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let answer = admin::request_in(ns, addr, "GET", path).ok()?;
    Some((answer.status_line, answer.body))
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..secs * 10 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run scripts/install-deps.sh (package prometheus)"
    );
    name.to_owned()
}

/// `promtool check metrics` on an exposition: no output, exit 0.
fn promtool_check(promtool: &str, metrics: &str) {
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n{metrics}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

on_each_plane!(
    router_metrics_pass_promtool_and_prometheus_scrapes_them,
    |plane| ops(plane)
);

fn ops(plane: Plane) {
    let promtool = tool("promtool");
    let prometheus = tool("prometheus");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");

    // One namespace, one veth pair inside it: two interfaces for the router.
    let lab = Lab::new(&format!("opsprom{}", &plane.name()[..1])).expect("lab");
    let ns = lab.add_ns("r").expect("namespace");
    lab.add_veth(&ns, "eth0", &ns, "eth1").expect("veth");
    let b = lab.block();
    lab.add_addr(&ns, "eth0", b.addr(1, 1), 24).unwrap();
    lab.add_addr(&ns, "eth1", b.addr(2, 1), 24).unwrap();
    let config = RouterConfig::new()
        .mode("full")
        .dataplane(plane.name())
        .intercept("router-alert")
        .interfaces(&["eth0", "eth1"])
        .section("[router.limits]\nmax_repair_states = 4321\n")
        .admin(ADMIN);
    let routerd = bins::workspace_bin("pgm-routerd").expect("pgm-routerd");
    let _daemon = Daemon::new(routerd)
        .start(&lab, &ns, "router", &config.to_string())
        .expect("pgm-routerd started");

    // The DLR beside it, with a cache limit of its own to read back.
    let dlr_config = format!(
        "[admin]\nlisten = \"{DLR_ADMIN}\"\n\n[dlr]\ninterfaces = [\"eth1\"]\nserve = \"listed\"\n\
         cache_bytes = \"5MiB\"\n\n[[dlr.session]]\ngroup = \"239.192.0.1\"\nport = 7500\n"
    );
    let dlrd = bins::workspace_bin("pgm-dlrd").expect("pgm-dlrd");
    let _dlr = Daemon::new(dlrd)
        .start(&lab, &ns, "dlr", &dlr_config)
        .expect("pgm-dlrd started");
    let (status, dlr_metrics) =
        wait_for("the DLR's /metrics", 10, || get(&ns, DLR_ADMIN, "/metrics"));
    assert!(status.contains(" 200"), "{status}");
    promtool_check(&promtool, &dlr_metrics);

    // promtool's lint of the exposition format and the metric names.
    let (status, metrics) = wait_for("/metrics", 10, || get(&ns, ADMIN, "/metrics"));
    assert!(status.contains(" 200"), "{status}");
    promtool_check(&promtool, &metrics);
    // The plane that runs is shown; no label takes values the network could multiply (the
    // old `children{tsi}`).
    assert!(
        metrics.contains(&format!(
            "\npgm_router_dataplane_info{{dataplane=\"{}\"}} 1\n",
            plane.name()
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains("tsi=\""),
        "a metric labelled by TSI:\n{metrics}"
    );

    // Every pgm_router_* metric the alert expressions use is exported.
    let alerts = std::fs::read_to_string(deploy.join("prometheus/alerts.yml")).unwrap();
    for name in alerts
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
        .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("pgm_router_"))
    {
        assert!(
            metrics.contains(&format!("\n{name} ")) || metrics.contains(&format!("\n{name}{{")),
            "alerts.yml uses {name}, which /metrics does not export:\n{metrics}"
        );
    }

    // A real Prometheus in the namespace, scraping every second, with our alert rules.
    let prom_cfg = lab.file("prometheus", "yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: pgm-routerd\n    static_configs:\n      - targets: [\"{ADMIN}\"]\n\
             \x20 - job_name: pgm-dlrd\n    static_configs:\n      - targets: [\"{DLR_ADMIN}\"]\n",
            deploy.join("prometheus/alerts.yml").display()
        ),
    )
    .unwrap();
    let tsdb = lab.dir().join("tsdb");
    let server = lab
        .spawn(
            &ns,
            &[
                prometheus.as_str(),
                &format!("--config.file={}", prom_cfg.display()),
                &format!("--storage.tsdb.path={}", tsdb.display()),
                &format!("--web.listen-address={PROMETHEUS}"),
            ],
        )
        .expect("spawn prometheus");
    let query = |q: &str| {
        get(&ns, PROMETHEUS, &format!("/api/v1/query?query={q}"))
            .filter(|(s, _)| s.contains(" 200"))
            .map(|(_, body)| body)
    };
    // up{job="pgm-routerd"} == 1 once a scrape has succeeded.
    let up = wait_for("a successful scrape (up == 1)", 60, || {
        assert!(
            server.is_running(),
            "prometheus exited:\n{}",
            server.stderr().unwrap_or_default()
        );
        query("up%7Bjob%3D%22pgm-routerd%22%7D").filter(|b| b.contains("\"1\"]"))
    });
    assert!(up.contains("\"status\":\"success\""), "{up}");
    // A value of the daemon's own, as configured.
    let limit = wait_for("pgm_router_repair_states_limit", 30, || {
        query("pgm_router_repair_states_limit").filter(|b| b.contains("\"4321\"]"))
    });
    assert!(limit.contains("\"job\":\"pgm-routerd\""), "{limit}");
    // The DLR is scraped too, and its configured cache limit reads back (5 MiB).
    let dlr_limit = wait_for("pgm_dlr_cache_limit_bytes", 30, || {
        query("pgm_dlr_cache_limit_bytes").filter(|b| b.contains("\"5242880\"]"))
    });
    assert!(dlr_limit.contains("\"job\":\"pgm-dlrd\""), "{dlr_limit}");
    // pgm_router_tsis is there (no session: 0).
    let tsis = wait_for("pgm_router_tsis", 30, || {
        query("pgm_router_tsis").filter(|b| b.contains("\"0\"]"))
    });
    assert!(tsis.contains("pgm_router_tsis"), "{tsis}");
    // The alert rules loaded and evaluate without errors.
    let rules = wait_for("the alert rules", 30, || {
        get(&ns, PROMETHEUS, "/api/v1/rules")
            .map(|(_, b)| b)
            .filter(|b| b.contains("PgmNakStorm") && b.contains("\"health\":\"ok\""))
    });
    assert!(!rules.contains("\"health\":\"err\""), "{rules}");
    for alert in [
        "PgmNakStorm",
        "PgmRepairStateNearLimit",
        "PgmRdataDroppedNoState",
        "PgmNoSpmFromSource",
    ] {
        assert!(rules.contains(alert), "{alert} not loaded: {rules}");
    }
    // Nothing fires on an idle, healthy router.
    let firing = get(&ns, PROMETHEUS, "/api/v1/alerts").expect("alerts").1;
    assert!(!firing.contains("\"state\":\"firing\""), "{firing}");
}
