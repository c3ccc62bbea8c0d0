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

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pgm_netns_tests::bins;
use pgm_netns_tests::lab::{self, Host, LossSpec, Ns, Process, RefTopology, Selector};

/// The admin listener of every daemon, inside its own namespace.
const ROUTER_ADMIN: &str = "127.0.0.1:9470";
const DLR_ADMIN: &str = "127.0.0.1:9471";
const PORT: u16 = 7500;
const SIZE: usize = 1000;

/// The embedded configuration of the routers: full mode (the daemon owns multicast routing),
/// Router Alert interception, a static (S,G) route. `{...}` are filled in per lab.
const R1_TOML: &str = r#"# pgm-lab: R1, next to the source.
[admin]
listen = "{admin}"

[router]
mode = "full"
intercept = "router-alert"

[[router.interface]]
name = "to-src"

[[router.interface]]
name = "to-r2"
{dlr_iface}
[[router.route]]
group = "{group}"
source = "{source}"
upstream = "to-src"
downstream = [{r1_down}]

[router.poll]
interval = "5s"
backoff = "1s"
"#;

const R2_TOML: &str = r#"# pgm-lab: R2, next to the receivers.
[admin]
listen = "{admin}"

[router]
mode = "full"
intercept = "router-alert"

[[router.interface]]
name = "to-r1"

[[router.interface]]
name = "lana"

[[router.interface]]
name = "lanb"

[[router.route]]
group = "{group}"
source = "{source}"
upstream = "to-r1"
downstream = ["lana", "lanb"]

[router.poll]
interval = "5s"
backoff = "1s"
"#;

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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs missing system packages (root only; we are root here).
fn install_deps() -> Result<()> {
    let script = workspace_root().join("scripts/install-deps.sh");
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

/// The profile directory this binary was built into (`debug` or `release`).
fn own_profile() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.file_name()?.to_string_lossy().into_owned();
    ["debug", "release"].contains(&dir.as_str()).then_some(dir)
}

/// Builds `bin` of `package` (under `cargo run`, where `CARGO` is set) and returns its path.
fn ensure_bin(package: &str, bin: &str) -> Result<PathBuf> {
    let profile = own_profile();
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "-q", "-p", package, "--bin", bin]);
        if profile.as_deref() == Some("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().with_context(|| format!("cargo build {bin}"))?;
        if !status.success() {
            bail!("cargo build -p {package} --bin {bin} failed");
        }
    }
    if let Some(p) = profile {
        let path = bins::target_dir().join(p).join(bin);
        if path.is_file() {
            return Ok(path);
        }
    }
    bins::workspace_bin(bin)
}

/// A plain HTTP/1.0 request to `addr` inside `ns`; the body of a 200 answer.
fn http(ns: &Ns, method: &str, addr: &str, path: &str) -> Result<String> {
    let (method, path) = (method.to_owned(), path.to_owned());
    let addr: SocketAddr = addr.parse().context("admin address")?;
    ns.run(move || -> Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: lab\r\nContent-Length: 0\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("{method} {path}: {}", head.lines().next().unwrap_or(""));
        }
        Ok(body.to_owned())
    })?
}

/// Sums the samples of `name` whose labels contain every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (n, lab) = key.split_once('{').unwrap_or((key, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| lab.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
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

    fn value(&mut self) -> Result<Json> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            bail!("unexpected end of JSON");
        };
        Ok(match c {
            b'{' => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if !self.eat("}") {
                    loop {
                        self.ws();
                        let Json::Str(k) = self.value()? else {
                            bail!("JSON object key is not a string at {}", self.i);
                        };
                        self.ws();
                        if !self.eat(":") {
                            bail!("expected ':' at {}", self.i);
                        }
                        m.push((k, self.value()?));
                        self.ws();
                        if self.eat("}") {
                            break;
                        }
                        if !self.eat(",") {
                            bail!("expected ',' or '}}' at {}", self.i);
                        }
                    }
                }
                Json::Obj(m)
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if !self.eat("]") {
                    loop {
                        a.push(self.value()?);
                        self.ws();
                        if self.eat("]") {
                            break;
                        }
                        if !self.eat(",") {
                            bail!("expected ',' or ']' at {}", self.i);
                        }
                    }
                }
                Json::Arr(a)
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

/// Writes `template` with `{key}` replaced, into the lab directory; returns the path.
fn write_config(
    topo: &RefTopology,
    label: &str,
    template: &str,
    vars: &[(&str, String)],
) -> Result<PathBuf> {
    let mut text = template.to_owned();
    for (k, v) in vars {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    let path = topo.lab.file(label, "toml");
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Checks `config` with `--check-config` in `ns`, then starts the daemon; waits until its
/// admin listener answers.
fn start_daemon(
    topo: &RefTopology,
    ns: &Ns,
    bin: &Path,
    config: &Path,
    label: &str,
    admin: &str,
) -> Result<Process> {
    let check = topo.lab.exec_unchecked(
        ns,
        &[
            bin.as_os_str(),
            "--check-config".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        Duration::from_secs(10),
    )?;
    if !check.status.success() {
        bail!(
            "{label}: --check-config rejected {}:\n{}",
            config.display(),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let mut cmd = topo.lab.command(
        ns,
        &[bin.as_os_str(), "--config".as_ref(), config.as_os_str()],
    );
    cmd.env("RUST_LOG", "info");
    let p = topo.lab.spawn_command(cmd, label)?;
    for _ in 0..100 {
        if http(ns, "GET", admin, "/metrics").is_ok() {
            return Ok(p);
        }
        if p.try_wait()?.is_some() {
            bail!(
                "{label} exited at start:\n{}",
                p.stderr().unwrap_or_default()
            );
        }
        sleep(Duration::from_millis(100))?;
    }
    bail!(
        "{label}: the admin listener {admin} did not answer within 10 s:\n{}",
        p.stderr().unwrap_or_default()
    )
}

/// Whether `pgm-dlrd` exists and runs (`--help`); the reason if not.
fn dlr_available() -> std::result::Result<PathBuf, String> {
    let bin = ensure_bin("pgm-dlr", "pgm-dlrd").map_err(|e| format!("{e:#}"))?;
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
    let cfg = write_config(topo, "dlr", DLR_TOML, &[("admin", DLR_ADMIN.to_owned())])?;
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

fn curl_lines(ns: &Ns, admin: &str, what: &str) -> String {
    format!(
        "  {what}:\n    ip netns exec {ns} curl -s http://{admin}/metrics\n    \
         ip netns exec {ns} curl -s http://{admin}/api/v1/state\n    \
         ip netns exec {ns} curl -s http://{admin}/api/v1/traffic\n"
    )
}

/// Runs the demo; `Ok(true)` if every receiver delivered everything.
fn run(opts: &Options) -> Result<bool> {
    install_deps()?;
    eprintln!("pgm-lab: building the daemons and tools (cargo build)");
    let pgm = ensure_bin("pgm-core", "pgm")?;
    let routerd = ensure_bin("pgm-router", "pgm-routerd")?;
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
    let (dlr_iface, r1_down) = if dlr.is_some() {
        (
            "\n[[router.interface]]\nname = \"to-dlr\"\n".to_owned(),
            "\"to-r2\", \"to-dlr\"".to_owned(),
        )
    } else {
        (String::new(), "\"to-r2\"".to_owned())
    };
    let vars = [
        ("admin", ROUTER_ADMIN.to_owned()),
        ("group", group.to_string()),
        ("source", source.to_string()),
        ("dlr_iface", dlr_iface),
        ("r1_down", r1_down),
    ];
    let r1_cfg = write_config(&topo, "r1-router", R1_TOML, &vars)?;
    let r2_cfg = write_config(&topo, "r2-router", R2_TOML, &vars)?;
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
    print!(
        "{}",
        curl_lines(&topo.r1.ns, ROUTER_ADMIN, "R1 pgm-routerd")
    );
    print!(
        "{}",
        curl_lines(&topo.r2.ns, ROUTER_ADMIN, "R2 pgm-routerd")
    );
    if let Some((ns, _, _)) = &dlr {
        print!("{}", curl_lines(ns, DLR_ADMIN, "DLR pgm-dlrd"));
    }
    println!(
        "  logs and configs: {} (run with --keep to look at them)",
        topo.lab.dir().display()
    );
    println!();
    let _ = std::io::stdout().flush();

    // The transfer: the receivers first, then the sender; loss starts once every receiver
    // has the session (a receiver whose first ODATA is lost starts its window after it).
    let count = opts.count.to_string();
    let size = SIZE.to_string();
    let pgm_s = pgm.to_string_lossy().into_owned();
    let network = |h: &Host| format!("{};{group}", h.addr());
    let mut receivers = Vec::new();
    for h in &topo.receivers {
        receivers.push(topo.lab.spawn(
            &h.ns,
            &[
                pgm_s.as_str(),
                "recv",
                "--ip",
                "--network",
                &network(h),
                "--count",
                &count,
                "--verify",
                "--size",
                &size,
                "--idle-timeout",
                "15",
                "-o",
                "/dev/null",
            ],
        )?);
    }
    sleep(Duration::from_millis(1500))?;
    eprintln!("pgm-lab: sending {} messages from {source}", opts.count);
    let sender = topo.lab.spawn(
        &topo.source.ns,
        &[
            pgm_s.as_str(),
            "send",
            "--ip",
            "--network",
            &network(&topo.source),
            "--count",
            &count,
            "--size",
            &size,
            "--rate",
            "1000000",
            "--linger",
            "8",
        ],
    )?;
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
            if let Ok(m) = http(&topo.r2.ns, "GET", ROUTER_ADMIN, "/metrics") {
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
    let m1 = http(&topo.r1.ns, "GET", ROUTER_ADMIN, "/metrics")?;
    let m2 = http(&topo.r2.ns, "GET", ROUTER_ADMIN, "/metrics")?;
    let t1 = Json::parse(&http(&topo.r1.ns, "GET", ROUTER_ADMIN, "/api/v1/traffic")?)
        .context("R1 /api/v1/traffic")?;
    let t2 = Json::parse(&http(&topo.r2.ns, "GET", ROUTER_ADMIN, "/api/v1/traffic")?)
        .context("R2 /api/v1/traffic")?;
    let state2 = Json::parse(&http(&topo.r2.ns, "GET", ROUTER_ADMIN, "/api/v1/state")?)
        .context("R2 /api/v1/state")?;

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
    println!(
        "  LAN A receivers -> R2 (lana)   {:>6}",
        rx(&m2, "lana", "nak")
    );
    println!(
        "  LAN B receiver  -> R2 (lanb)   {:>6}",
        rx(&m2, "lanb", "nak")
    );
    println!(
        "  R2 -> R1        (to-r1)        {:>6}",
        tx(&m2, "to-r1", "nak")
    );
    println!(
        "  R1 -> source    (to-src)       {:>6}",
        tx(&m1, "to-src", "nak")
    );
    if dlr.is_some() {
        println!(
            "  R1 -> DLR       (to-dlr)       {:>6}",
            tx(&m1, "to-dlr", "nak")
        );
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
            match http(ns, "GET", DLR_ADMIN, "/metrics") {
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
            let m = http(ns, "GET", DLR_ADMIN, "/metrics").unwrap_or_default();
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
        print!(
            "{}",
            curl_lines(&topo.r1.ns, ROUTER_ADMIN, "R1 pgm-routerd")
        );
        print!(
            "{}",
            curl_lines(&topo.r2.ns, ROUTER_ADMIN, "R2 pgm-routerd")
        );
        if let Some((ns, _, _)) = &dlr {
            print!("{}", curl_lines(ns, DLR_ADMIN, "DLR pgm-dlrd"));
        }
        println!("  another transfer (receiver first, then sender):");
        println!(
            "    ip netns exec {} {} recv --ip --network '{}' --count {count} --verify --size {size} -o /dev/null",
            topo.receivers[0].ns,
            pgm.display(),
            network(&topo.receivers[0])
        );
        println!(
            "    ip netns exec {} {} send --ip --network '{}' --count {count} --size {size} --rate 1000000",
            topo.source.ns,
            pgm.display(),
            network(&topo.source)
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
fn interfaces(metrics: &str) -> Vec<String> {
    let mut v: Vec<String> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("pgm_router_sent_packets_total{")
                || l.starts_with("pgm_router_received_packets_total{")
        })
        .filter_map(|l| {
            let rest = l.split_once("interface=\"")?.1;
            Some(rest.split_once('"')?.0.to_owned())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}
