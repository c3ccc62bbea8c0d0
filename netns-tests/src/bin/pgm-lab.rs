//! `pgm-lab`: the PGM suite's lab demo. Builds the reference topology in network namespaces,
//! runs `pgm-routerd` on both routers (and `pgm-dlrd` when it is available), sends a few
//! thousand messages through 5% loss on LAN A, and reports what every receiver delivered and
//! what the network elements did about the loss.
//!
//! ```text
//! sudo cargo run -p pgm-netns-tests --bin pgm-lab            # run once, report, clean up
//! sudo cargo run -p pgm-netns-tests --bin pgm-lab -- --keep  # keep it up until Ctrl-C
//! ```
//!
//! ```text
//!                       +-- dlr (pgm-dlrd, off-tree, when available)
//!                       |
//!  src --------------- r1 --------------- r2 ---- lana [5% loss out] --- switch --- rcv1, rcv2
//!  (pgm send)    (pgm-routerd)      (pgm-routerd)
//!                                         +---- lanb ------------------------------- rcv3
//! ```
//!
//! Everything lives in namespaces named `pgl-lab-<pid>-...`; they are removed when the demo
//! ends, fails or is interrupted (Ctrl-C, SIGTERM, SIGHUP).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pgm_netns_tests::admin;
use pgm_netns_tests::bins;
use pgm_netns_tests::daemon::{self, Daemon, RouterConfig};
use pgm_netns_tests::lab::{self, Host, LossSpec, Ns, Process, RefTopology, Selector};
use pgm_netns_tests::metrics::{self, sum as metric};
use pgm_netns_tests::transfer::Transfer;

/// The admin listener of every daemon, inside its own namespace.
const ROUTER_ADMIN: SocketAddr = admin::DEFAULT_LISTEN;
const DLR_ADMIN: SocketAddr = admin::loopback(9471);
const PORT: u16 = 7500;
const SIZE: usize = 1000;

/// Polls from both routers every 5 s: how R1 finds the off-tree DLR.
const ROUTER_POLL: &str = "[router.poll]\ninterval = \"5s\"\nbackoff = \"1s\"\n";

/// The DLR's configuration (`{admin}` is filled in): it serves every session it hears.
const DLR_TOML: &str = r#"# pgm-lab: an off-tree DLR on R1's side of the transit.
[admin]
listen = "{admin}"

[dlr]
interfaces = ["eth0"]
serve = "all"
cache_bytes = "16MiB"
cache_age = "60s"
upstream = true
off_tree = true
"#;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C, SIGTERM and SIGHUP only set a flag: every wait of the demo checks it and returns an
/// error, which unwinds to `main` and drops the lab (killing its processes, deleting its
/// namespaces).
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps `d`, failing early if the demo was interrupted.
fn sleep(d: Duration) -> Result<()> {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() {
        if interrupted() {
            bail!("interrupted");
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

struct Options {
    keep: bool,
    count: usize,
    loss: u8,
    dlr: bool,
}

const USAGE: &str = "\
pgm-lab: the PGM suite's lab demo (needs root: network namespaces and raw sockets)

usage: sudo cargo run -p pgm-netns-tests --bin pgm-lab -- [OPTIONS]

  --keep        keep the topology and the daemons up after the report, until Ctrl-C
  --count N     messages to send (default 3000, 1000 bytes each)
  --loss PCT    loss on R2's LAN A egress, in percent (default 5)
  --no-dlr      do not run pgm-dlrd even if it is available
  -h, --help    this text
";

fn parse_args() -> Result<Option<Options>> {
    let mut o = Options {
        keep: false,
        count: 3000,
        loss: 5,
        dlr: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--keep" => o.keep = true,
            "--no-dlr" => o.dlr = false,
            "--count" => {
                o.count = args
                    .next()
                    .context("--count needs a number")?
                    .parse()
                    .context("--count")?;
            }
            "--loss" => {
                o.loss = args
                    .next()
                    .context("--loss needs a percentage")?
                    .parse()
                    .context("--loss")?;
                if o.loss > 100 {
                    bail!("--loss is a percentage (0 to 100)");
                }
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if o.count == 0 {
        bail!("--count must be at least 1");
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgm-lab: {e:#}");
            return ExitCode::from(2);
        }
    };
    if !lab::is_root() {
        eprintln!(
            "pgm-lab needs root: it creates network namespaces, veth pairs, a bridge and \
             nftables loss rules, and runs daemons with raw sockets (CAP_NET_ADMIN, \
             CAP_SYS_ADMIN, CAP_NET_RAW).\n\
             It also installs the system packages it uses (iproute2, nftables, ...: \
             scripts/install-deps.sh) when they are missing.\n\n\
             Run:  sudo cargo run -p pgm-netns-tests --bin pgm-lab\n\
             or, after `cargo build --workspace --bins`:  sudo target/debug/pgm-lab"
        );
        return ExitCode::from(2);
    }
    install_signal_handlers();
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(_) if interrupted() => {
            eprintln!("pgm-lab: interrupted; the lab has been removed");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("pgm-lab: {e:#}");
            eprintln!("pgm-lab: the lab has been removed");
            ExitCode::FAILURE
        }
    }
}

/// Installs missing system packages (root only; we are root here).
fn install_deps() -> Result<()> {
    let script = bins::workspace_root().join("scripts/install-deps.sh");
    if !script.is_file() {
        eprintln!(
            "pgm-lab: {} not found; assuming the system packages are installed",
            script.display()
        );
        return Ok(());
    }
    eprintln!("pgm-lab: checking system packages (scripts/install-deps.sh)");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .context("running scripts/install-deps.sh")?;
    if !status.success() {
        bail!("scripts/install-deps.sh failed ({status}): install the packages it names");
    }
    Ok(())
}

/// A JSON value, for the admin API's answers (this crate has no JSON dependency).
#[derive(Debug)]
enum Json {
    /// `null`, `true` or `false`: not needed by the report.
    Other,
    Num(f64),
    Str(String),
    Arr(Vec<Self>),
    Obj(Vec<(String, Self)>),
}

impl Json {
    fn parse(text: &str) -> Result<Self> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            bail!("trailing characters in JSON at {}", p.i);
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn path(&self, keys: &[&str]) -> Option<&Self> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    fn num(&self) -> u64 {
        match self {
            Self::Num(n) => *n as u64,
            _ => 0,
        }
    }

    fn entries(&self) -> &[(String, Self)] {
        match self {
            Self::Obj(m) => m,
            _ => &[],
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    /// The items of an object or array, after its opening bracket: none, or `item` separated
    /// by commas, up to and including `close`.
    fn items<T>(
        &mut self,
        close: &str,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut v = Vec::new();
        self.ws();
        if self.eat(close) {
            return Ok(v);
        }
        loop {
            v.push(item(self)?);
            self.ws();
            if self.eat(close) {
                return Ok(v);
            }
            if !self.eat(",") {
                bail!("expected ',' or '{close}' at {}", self.i);
            }
        }
    }

    fn value(&mut self) -> Result<Json> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            bail!("unexpected end of JSON");
        };
        Ok(match c {
            b'{' => {
                self.i += 1;
                Json::Obj(self.items("}", |p| {
                    p.ws();
                    let Json::Str(k) = p.value()? else {
                        bail!("JSON object key is not a string at {}", p.i);
                    };
                    p.ws();
                    if !p.eat(":") {
                        bail!("expected ':' at {}", p.i);
                    }
                    Ok((k, p.value()?))
                })?)
            }
            b'[' => {
                self.i += 1;
                Json::Arr(self.items("]", Self::value)?)
            }
            b'"' => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    let Some(&b) = self.s.get(self.i) else {
                        bail!("unterminated JSON string");
                    };
                    self.i += 1;
                    match b {
                        b'"' => break,
                        b'\\' => {
                            let Some(&e) = self.s.get(self.i) else {
                                bail!("unterminated JSON escape");
                            };
                            self.i += 1;
                            match e {
                                b'n' => out.push(b'\n'),
                                b't' => out.push(b'\t'),
                                b'r' => out.push(b'\r'),
                                b'b' | b'f' => {}
                                b'u' => {
                                    // Not needed for the admin API's ASCII: keep it visible.
                                    out.extend_from_slice(b"\\u");
                                }
                                other => out.push(other),
                            }
                        }
                        other => out.push(other),
                    }
                }
                Json::Str(String::from_utf8_lossy(&out).into_owned())
            }
            b't' | b'f' | b'n' if self.eat("true") || self.eat("false") || self.eat("null") => {
                Json::Other
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                Json::Num(
                    t.parse()
                        .with_context(|| format!("bad JSON number {t:?} at {start}"))?,
                )
            }
        })
    }
}

/// The configurations of the routers: full mode (the daemon owns multicast routing), Router
/// Alert interception, a static (S,G) route for the session, polls ([`ROUTER_POLL`]); R1 also
/// serves the DLR's link and forwards the session on it when there is a DLR.
fn router_configs(topo: &RefTopology, group: Ipv4Addr, dlr: bool) -> [RouterConfig; 2] {
    let base = RouterConfig::new()
        .mode("full")
        .intercept("router-alert")
        .admin(ROUTER_ADMIN);
    let r1 = if dlr {
        base.clone()
            .interfaces(&["to-src", "to-r2", "to-dlr"])
            .route(group, topo.source.addr(), "to-src", &["to-r2", "to-dlr"])
    } else {
        topo.r1_config(&base, Some(group))
    };
    let r2 = topo.r2_config(&base, Some(group));
    [r1.section(ROUTER_POLL), r2.section(ROUTER_POLL)]
}

/// Checks `config` with `--check-config` in `ns`, then starts the daemon `bin` (process
/// `label`); waits until its admin listener answers, giving up on Ctrl-C.
fn start_daemon(
    topo: &RefTopology,
    ns: &Ns,
    bin: &Path,
    config: &Path,
    label: &str,
    admin: SocketAddr,
) -> Result<Process> {
    Daemon::new(bin)
        .ready_when_admin_answers(admin)
        .cancel_if(interrupted)
        .start_with_file(&topo.lab, ns, label, config)
}

/// Whether `pgm-dlrd` exists and runs (`--help`); the reason if not.
fn dlr_available() -> std::result::Result<PathBuf, String> {
    let bin = bins::cargo_bin("pgm-dlr", "pgm-dlrd").map_err(|e| format!("{e:#}"))?;
    let out = Command::new(&bin)
        .arg("--help")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("--check-config") {
        return Err(format!(
            "`pgm-dlrd --help` failed or lacks --check-config: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(bin)
}

/// The DLR: namespace `dlr` on its own link to R1 (`to-dlr`, subnet 5), R1 forwarding the
/// session to it; checked with `--check-config` before it starts.
fn start_dlr(topo: &RefTopology, bin: &Path) -> Result<(Ns, Ipv4Addr, Process)> {
    let lab = &topo.lab;
    let b = lab.block();
    let ns = lab.add_ns("dlr")?;
    lab.add_veth(&topo.r1.ns, "to-dlr", &ns, "eth0")?;
    lab.add_addr(&topo.r1.ns, "to-dlr", b.addr(5, 1), 24)?;
    let addr = b.addr(5, 2);
    lab.add_addr(&ns, "eth0", addr, 24)?;
    lab.route_via(&ns, &b.cidr(), b.addr(5, 1))?;
    lab.route_dev(&ns, "224.0.0.0/4", "eth0")?;
    lab.route_via(&topo.r2.ns, &b.subnet(5), topo.r1.downstream[0].addr)?;
    let toml = DLR_TOML.replace("{admin}", &DLR_ADMIN.to_string());
    let cfg = daemon::write_config(&topo.lab, "dlr", &toml)?;
    let p = start_daemon(topo, &ns, bin, &cfg, "dlrd", DLR_ADMIN)?;
    Ok((ns, addr, p))
}

struct RecvResult {
    name: String,
    ns: String,
    received: u64,
    bad: u64,
    ok: bool,
    summary: String,
}

/// Parses a receiver's `RESULT received=.. bytes=.. bad=.. lost_events=.. status=..` line and
/// its stderr summary.
fn recv_result(name: &str, host: &Host, p: &Process) -> RecvResult {
    let out = p.stdout().unwrap_or_default();
    let err = p.stderr().unwrap_or_default();
    let field = |k: &str| -> u64 {
        out.lines()
            .find(|l| l.starts_with("RESULT "))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(&format!("{k}=")).map(str::to_owned))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let ok = out.contains("status=ok") && matches!(p.try_wait(), Ok(Some(s)) if s.success());
    let summary = err
        .lines()
        .rev()
        .find(|l| l.contains("received") && l.contains("repairs requested"))
        .map(|l| l.trim_start_matches("pgm: ").to_owned())
        .unwrap_or_else(|| err.lines().last().unwrap_or("(no output)").to_owned());
    RecvResult {
        name: name.to_owned(),
        ns: host.ns.name().to_owned(),
        received: field("received"),
        bad: field("bad"),
        ok,
        summary,
    }
}

/// The `curl` commands for each daemon's metrics and admin API.
fn curl_lines(topo: &RefTopology, dlr: Option<&Ns>) -> String {
    let mut daemons = vec![
        (&topo.r1.ns, ROUTER_ADMIN, "R1 pgm-routerd"),
        (&topo.r2.ns, ROUTER_ADMIN, "R2 pgm-routerd"),
    ];
    daemons.extend(dlr.map(|ns| (ns, DLR_ADMIN, "DLR pgm-dlrd")));
    daemons
        .into_iter()
        .map(|(ns, admin, what)| {
            format!(
                "  {what}:\n    ip netns exec {ns} curl -s http://{admin}/metrics\n    \
                 ip netns exec {ns} curl -s http://{admin}/api/v1/state\n    \
                 ip netns exec {ns} curl -s http://{admin}/api/v1/traffic\n"
            )
        })
        .collect()
}

/// Runs the demo; `Ok(true)` if every receiver delivered everything.
fn run(opts: &Options) -> Result<bool> {
    install_deps()?;
    eprintln!("pgm-lab: building the daemons and tools (cargo build)");
    let pgm = bins::cargo_bin("pgm-core", "pgm")?;
    let routerd = bins::cargo_bin("pgm-router", "pgm-routerd")?;
    let dlrd = if opts.dlr {
        match dlr_available() {
            Ok(p) => Some(p),
            Err(why) => {
                eprintln!("pgm-lab: no DLR in this run: pgm-dlrd is not available ({why})");
                None
            }
        }
    } else {
        eprintln!("pgm-lab: no DLR in this run (--no-dlr)");
        None
    };
    sleep(Duration::ZERO)?;

    eprintln!("pgm-lab: building the reference topology in network namespaces");
    let topo = RefTopology::build("lab")?;
    let group = topo.group(1);
    let source = topo.source.addr();

    let dlr = match &dlrd {
        Some(bin) => match start_dlr(&topo, bin) {
            Ok(d) => Some(d),
            Err(e) if interrupted() => return Err(e),
            Err(e) => {
                eprintln!("pgm-lab: no DLR in this run: pgm-dlrd did not start: {e:#}");
                None
            }
        },
        None => None,
    };
    let [r1_toml, r2_toml] = router_configs(&topo, group, dlr.is_some());
    let r1_cfg = daemon::write_config(&topo.lab, "r1-router", &r1_toml.to_string())?;
    let r2_cfg = daemon::write_config(&topo.lab, "r2-router", &r2_toml.to_string())?;
    let r1 = start_daemon(
        &topo,
        &topo.r1.ns,
        &routerd,
        &r1_cfg,
        "routerd-r1",
        ROUTER_ADMIN,
    )?;
    let r2 = start_daemon(
        &topo,
        &topo.r2.ns,
        &routerd,
        &r2_cfg,
        "routerd-r2",
        ROUTER_ADMIN,
    )?;

    let b = topo.lab.block();
    println!();
    println!("== pgm-lab: the reference topology ({})", topo.lab.prefix());
    println!("  source  {:<15} ns {}", source.to_string(), topo.source.ns);
    println!(
        "  R1      {:<15} ns {}   pgm-routerd, config {}",
        topo.r1.upstream.addr.to_string(),
        topo.r1.ns,
        r1_cfg.display()
    );
    println!(
        "  R2      {:<15} ns {}   pgm-routerd, config {}",
        topo.r2.upstream.addr.to_string(),
        topo.r2.ns,
        r2_cfg.display()
    );
    for (i, h) in topo.receivers.iter().enumerate() {
        let lan = if i < 2 { "LAN A" } else { "LAN B" };
        println!(
            "  rcv{}    {:<15} ns {}   {lan}",
            i + 1,
            h.addr().to_string(),
            h.ns
        );
    }
    match &dlr {
        Some((ns, addr, _)) => println!(
            "  DLR     {:<15} ns {}   pgm-dlrd (off-tree, on R1's interface to-dlr)",
            addr.to_string(),
            ns
        ),
        None => println!("  DLR     (none)"),
    }
    println!(
        "  session {group} port {PORT}, {} messages of {SIZE} bytes; {}% loss on R2's LAN A egress (lana), PGM packets only; subnets {}",
        opts.count,
        opts.loss,
        b.cidr()
    );
    println!();
    println!("== metrics and admin API during the run (from another terminal, as root)");
    print!("{}", curl_lines(&topo, dlr.as_ref().map(|(ns, _, _)| ns)));
    println!(
        "  logs and configs: {} (run with --keep to look at them)",
        topo.lab.dir().display()
    );
    println!();
    let _ = std::io::stdout().flush();

    // The transfer: the receivers first, then the sender; loss starts once every receiver
    // has the session (a receiver whose first ODATA is lost starts its window after it).
    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: opts.count,
        size: SIZE,
    };
    let mut receivers = Vec::new();
    for h in &topo.receivers {
        receivers.push(topo.lab.spawn(&h.ns, &transfer.recv_args(h.addr(), 15))?);
    }
    sleep(Duration::from_millis(1500))?;
    eprintln!("pgm-lab: sending {} messages from {source}", opts.count);
    let sender = topo
        .lab
        .spawn(&topo.source.ns, &transfer.send_args(source, 1_000_000, 8))?;
    for (i, r) in receivers.iter().enumerate() {
        let mut started = false;
        for _ in 0..200 {
            if r.stderr().unwrap_or_default().contains("started") {
                started = true;
                break;
            }
            if r.try_wait()?.is_some() {
                break;
            }
            sleep(Duration::from_millis(50))?;
        }
        if !started {
            bail!(
                "rcv{} did not see the session start:\n{}\nsender:\n{}",
                i + 1,
                r.stderr().unwrap_or_default(),
                sender.stderr().unwrap_or_default()
            );
        }
    }
    let loss = topo.lab.add_loss(
        &topo.r2.ns,
        &LossSpec::egress("lana", opts.loss).only(Selector::Pgm),
    )?;
    // Progress from R2's /metrics while the receivers work.
    let mut ticks = 0u32;
    loop {
        let running = receivers.iter().filter(|r| r.is_running()).count();
        if running == 0 || ticks >= 900 {
            break;
        }
        if ticks % 20 == 0 {
            if let Ok(m) = admin::get(&topo.r2.ns, ROUTER_ADMIN, "/metrics") {
                eprintln!(
                    "pgm-lab: {:>3} s: {running} receiver(s) running; R2 NAKs received {}, NCFs sent {}, RDATA forwarded {}",
                    ticks / 10,
                    metric(&m, "pgm_router_naks_received_total", &[]),
                    metric(&m, "pgm_router_ncfs_sent_total", &[]),
                    metric(&m, "pgm_router_rdata_forwarded_total", &[]),
                );
            }
        }
        sleep(Duration::from_millis(100))?;
        ticks += 1;
    }
    for r in &receivers {
        if r.is_running() {
            r.kill()?;
        }
    }
    for _ in 0..100 {
        if !sender.is_running() {
            break;
        }
        sleep(Duration::from_millis(100))?;
    }
    let dropped = loss.counters()?.dropped;

    // The report.
    let results: Vec<RecvResult> = topo
        .receivers
        .iter()
        .zip(&receivers)
        .enumerate()
        .map(|(i, (h, p))| recv_result(&format!("rcv{}", i + 1), h, p))
        .collect();
    let m1 = admin::get(&topo.r1.ns, ROUTER_ADMIN, "/metrics")?;
    let m2 = admin::get(&topo.r2.ns, ROUTER_ADMIN, "/metrics")?;
    let t1 = Json::parse(&admin::get(&topo.r1.ns, ROUTER_ADMIN, "/api/v1/traffic")?)
        .context("R1 /api/v1/traffic")?;
    let t2 = Json::parse(&admin::get(&topo.r2.ns, ROUTER_ADMIN, "/api/v1/traffic")?)
        .context("R2 /api/v1/traffic")?;
    let state2 = Json::parse(&admin::get(&topo.r2.ns, ROUTER_ADMIN, "/api/v1/state")?)
        .context("R2 /api/v1/state")?;
    let state1 = Json::parse(&admin::get(&topo.r1.ns, ROUTER_ADMIN, "/api/v1/state")?)
        .context("R1 /api/v1/state")?;

    let total = opts.count as u64;
    println!();
    println!("== pgm-lab report");
    println!();
    println!(
        "Delivery ({total} messages sent; {dropped} PGM packets dropped by the loss rule on lana)"
    );
    for r in &results {
        let lost = total.saturating_sub(r.received);
        println!(
            "  {:<5} {:<8} delivered {:>6}/{total}  lost {:>4}  corrupt {:>3}  {}",
            r.name,
            if r.ok { "OK" } else { "FAILED" },
            r.received,
            lost,
            r.bad,
            r.ns
        );
        println!("        {}", r.summary);
    }
    println!();
    println!("Data plane (the kernel forwards ODATA; from /api/v1/state and /metrics)");
    for (name, state, m) in [("R1", &state1, &m1), ("R2", &state2, &m2)] {
        let text = |k: &str| match state.get(k) {
            Some(Json::Str(s)) => s.clone(),
            _ => "?".to_owned(),
        };
        let ev = |e: &str| metric(m, "pgm_router_dataplane_packets_total", &[("event", e)]);
        println!(
            "  {name}: {} ({})",
            text("dataplane"),
            text("dataplane_reason")
        );
        if text("dataplane") == "netdev" {
            println!(
                "      ODATA forwarded by the kernel {}; other PGM packets handed to the daemon \
                 {}; a new source's first ODATA forwarded by the daemon {}",
                ev("forwarded"),
                ev("intercepted"),
                metric(m, "pgm_router_odata_slow_path_total", &[])
            );
        } else {
            println!(
                "      the kernel's multicast routing forwards ODATA along the daemon's MFC \
                 entries; {} upcalls",
                metric(m, "pgm_router_mroute_upcalls_total", &[])
            );
        }
    }
    println!();
    let rx = |m: &str, i: &str, t: &str| {
        metric(
            m,
            "pgm_router_received_packets_total",
            &[("interface", i), ("type", t)],
        )
    };
    let tx = |m: &str, i: &str, t: &str| {
        metric(
            m,
            "pgm_router_sent_packets_total",
            &[("interface", i), ("type", t)],
        )
    };
    println!("NAKs per hop (from /metrics)");
    let mut hops = vec![
        ("LAN A receivers -> R2 (lana)", rx(&m2, "lana", "nak")),
        ("LAN B receiver  -> R2 (lanb)", rx(&m2, "lanb", "nak")),
        ("R2 -> R1        (to-r1)", tx(&m2, "to-r1", "nak")),
        ("R1 -> source    (to-src)", tx(&m1, "to-src", "nak")),
    ];
    if dlr.is_some() {
        hops.push(("R1 -> DLR       (to-dlr)", tx(&m1, "to-dlr", "nak")));
    }
    for (hop, naks) in hops {
        println!("  {hop:<31}{naks:>6}");
    }
    for (name, m) in [("R1", &m1), ("R2", &m2)] {
        println!(
            "  {name}: received {}, forwarded {}, eliminated as duplicates {}, repeated {}, no state {}",
            metric(m, "pgm_router_naks_received_total", &[]),
            metric(m, "pgm_router_naks_forwarded_total", &[]),
            metric(m, "pgm_router_naks_eliminated_total", &[]),
            metric(m, "pgm_router_naks_repeated_total", &[]),
            metric(m, "pgm_router_naks_no_state_total", &[]),
        );
    }
    println!();
    println!("NCFs (from /metrics)");
    for (name, m) in [("R1", &m1), ("R2", &m2)] {
        let per_if: Vec<String> = interfaces(m)
            .into_iter()
            .map(|i| format!("{i} {}", tx(m, &i, "ncf")))
            .collect();
        println!(
            "  {name}: sent {} ({}), rate limited {}, received from upstream {}",
            metric(m, "pgm_router_ncfs_sent_total", &[]),
            per_if.join(", "),
            metric(m, "pgm_router_ncfs_rate_limited_total", &[]),
            metric(m, "pgm_router_ncfs_received_total", &[]),
        );
    }
    println!();
    println!("RDATA per interface (from /api/v1/traffic: packets in / out)");
    for (name, t, m) in [("R1", &t1, &m1), ("R2", &t2, &m2)] {
        for (ifname, v) in t.get("interfaces").map(Json::entries).unwrap_or(&[]) {
            let inn = v.path(&["in", "rdata", "packets"]).map_or(0, Json::num);
            let out = v.path(&["out", "rdata", "packets"]).map_or(0, Json::num);
            println!("  {name} {ifname:<7} in {inn:>6}   out {out:>6}");
        }
        println!(
            "  {name} forwarded {} RDATA as {} copies; dropped for lack of repair state {}",
            metric(m, "pgm_router_rdata_forwarded_total", &[]),
            metric(m, "pgm_router_rdata_copies_total", &[]),
            metric(m, "pgm_router_rdata_dropped_no_state_total", &[]),
        );
    }
    println!(
        "  (RDATA on lanb repairs only what rcv3 itself asked for: repair state constrains it)"
    );
    println!();
    if let Some(Json::Arr(list)) = state2.get("tsis") {
        for t in list {
            let s = |k: &str| match t.get(k) {
                Some(Json::Str(s)) => s.clone(),
                Some(Json::Num(n)) => n.to_string(),
                _ => "?".to_owned(),
            };
            println!(
                "R2 state (/api/v1/state): TSI {} from {} group {}: upstream neighbour {} on {}, last SPM #{}",
                s("tsi"),
                s("source"),
                s("group"),
                s("upstream_neighbour"),
                s("upstream_interface"),
                s("last_spm_sqn")
            );
        }
    }
    println!();
    match &dlr {
        Some((ns, _, p)) => {
            println!("DLR (pgm-dlrd in {ns})");
            match admin::get(ns, DLR_ADMIN, "/metrics") {
                Ok(m) => {
                    let mut any = false;
                    for l in m.lines().filter(|l| l.starts_with("pgm_dlr_")) {
                        if let Some((k, v)) = l.rsplit_once(' ') {
                            if v != "0" {
                                println!("  {k:<55} {v}");
                                any = true;
                            }
                        }
                    }
                    if !any {
                        println!("  every pgm_dlr_* metric is zero");
                    }
                }
                Err(e) => println!("  /metrics failed: {e:#} (running: {})", p.is_running()),
            }
            let m = admin::get(ns, DLR_ADMIN, "/metrics").unwrap_or_default();
            println!(
                "  repairs served from the DLR's cache: {} (RDATA sent: {}; NAKs redirected to it by R1: {})",
                metric(&m, "pgm_dlr_repairs_served_total", &[]),
                metric(&m, "pgm_dlr_sent_packets_total", &[("type", "rdata")]),
                tx(&m1, "to-dlr", "nak"),
            );
        }
        None => println!("DLR: not run (pgm-dlrd not available, see above)"),
    }
    println!();
    let all_ok = results.iter().all(|r| r.ok);
    println!(
        "Result: {}",
        if all_ok {
            "every receiver delivered every message, in order and intact"
        } else {
            "some receivers did NOT deliver everything (see above and the logs)"
        }
    );
    let _ = std::io::stdout().flush();

    if opts.keep {
        println!();
        println!("== --keep: the topology and the daemons stay up until Ctrl-C");
        print!("{}", curl_lines(&topo, dlr.as_ref().map(|(ns, _, _)| ns)));
        println!("  another transfer (receiver first, then sender):");
        println!(
            "    ip netns exec {} {} recv --ip --network '{}' --count {} --verify --size {SIZE} -o /dev/null",
            topo.receivers[0].ns,
            pgm.display(),
            transfer.network(topo.receivers[0].addr()),
            opts.count
        );
        println!(
            "    ip netns exec {} {} send --ip --network '{}' --count {} --size {SIZE} --rate 1000000",
            topo.source.ns,
            pgm.display(),
            transfer.network(source),
            opts.count
        );
        println!("  logs, configs: {}", topo.lab.dir().display());
        let _ = std::io::stdout().flush();
        while !interrupted() {
            if !r1.is_running() || !r2.is_running() {
                eprintln!("pgm-lab: a router daemon exited; removing the lab");
                break;
            }
            let _ = sleep(Duration::from_millis(200));
        }
        eprintln!("pgm-lab: removing the lab");
    }
    drop(topo);
    eprintln!("pgm-lab: lab removed");
    Ok(all_ok)
}

/// The interfaces named in a router's traffic metrics.
fn interfaces(text: &str) -> Vec<String> {
    let mut v: Vec<String> = metrics::samples(text)
        .filter(|s| {
            s.name == "pgm_router_sent_packets_total"
                || s.name == "pgm_router_received_packets_total"
        })
        .filter_map(|s| s.label("interface").map(str::to_owned))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_admin_api_json() {
        let text = r#" {"interfaces": {"lana": {"in": {"rdata": {"packets": 12}}}, "x": []},
                        "tsis": [{"tsi": "1.2.3.4.5.6.7", "last_spm_sqn": 9, "ok": true}, null],
                        "empty": {}, "s": "a\"b\\n"} "#;
        let j = Json::parse(text).unwrap();
        let lana = j.path(&["interfaces", "lana", "in", "rdata", "packets"]);
        assert_eq!(lana.map(Json::num), Some(12));
        assert_eq!(j.get("interfaces").map(|i| i.entries().len()), Some(2));
        let Some(Json::Arr(tsis)) = j.get("tsis") else {
            panic!("{j:?}");
        };
        assert_eq!(tsis.len(), 2);
        assert!(matches!(tsis[0].get("tsi"), Some(Json::Str(s)) if s == "1.2.3.4.5.6.7"));
        assert_eq!(tsis[0].get("last_spm_sqn").map(Json::num), Some(9));
        assert!(matches!(j.get("empty"), Some(Json::Obj(m)) if m.is_empty()));
        assert!(matches!(j.get("s"), Some(Json::Str(s)) if s == "a\"b\\n"));
        for bad in [
            "",
            "{",
            "[1,",
            "[1 2]",
            "{\"a\" 1}",
            "{1: 2}",
            "{} x",
            "\"abc",
        ] {
            assert!(Json::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interfaces_of_the_traffic_metrics() {
        let m = "pgm_router_sent_packets_total{interface=\"to-r1\",type=\"nak\"} 3\n\
                 pgm_router_received_packets_total{interface=\"lana\",type=\"nak\"} 5\n\
                 pgm_router_sent_packets_total{interface=\"lana\",type=\"ncf\"} 5\n\
                 pgm_router_naks_received_total 5\n";
        assert_eq!(interfaces(m), ["lana", "to-r1"]);
    }
}
