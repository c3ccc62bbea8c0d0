//! Real-kernel network labs in Linux network namespaces.
//!
//! A [`Lab`] is a guard object. It creates namespaces, veth pairs, bridges, addresses, routes,
//! nftables loss rules, captures and processes, records every one of them, and removes them all
//! when dropped, whether the test passed or panicked. Drop never panics; it:
//!
//! 1. kills (SIGKILL, whole process group) and reaps every process it spawned, then kills any
//!    other process still running in its namespaces (daemons that double-forked);
//! 2. deletes its nftables tables and veth pairs;
//! 3. deletes its namespaces (which takes bridges, addresses and routes with them);
//! 4. deletes its work directory, unless the thread is panicking or `PGM_LAB_KEEP` is set, in
//!    which case the path is printed so captures and logs can be inspected.
//!
//! # Names
//!
//! Every namespace is called `pgl-<tag>-<pid>-<n>-<node>`: `<tag>` is the sanitized test tag
//! given to [`Lab::new`] (at most 10 characters of `[a-z0-9]`), `<pid>` the creating process,
//! `<n>` a per-process counter, `<node>` the node name ([`Lab::prefix`] is everything before
//! `-<node>`). Interfaces are created directly inside lab namespaces, never in the root
//! namespace, so their names (at most 15 bytes, the kernel's `IFNAMSIZ - 1`) need only be unique
//! within one namespace and can be short and descriptive (`eth0`, `to-r2`).
//!
//! Leftovers of a crashed run are removed by [`Lab::cleanup_stale`] (by prefix) and
//! [`Lab::cleanup_orphans`] (namespaces whose creating process is gone; run automatically once
//! per process by the first [`Lab::new`]).
//!
//! # Addresses
//!
//! Each lab leases its own `10.<octet>.0.0/16` ([`AddrBlock`]) across all processes of the
//! machine, so tests running in parallel never share addresses.
//!
//! # Threads and namespaces
//!
//! Commands run through `ip -n <ns>` or `ip netns exec <ns>`, so lab methods work from any
//! thread. In-process sockets (the [`mcast`] and [`ping`] helpers) use the network namespace of
//! the *calling thread*: run them through [`Ns::run`] or [`Ns::spawn_thread`], which move a
//! fresh thread into the namespace.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

mod addr;
pub mod capture;
pub mod delay;
pub mod forward;
pub mod loss;
pub mod mcast;
pub mod mroute;
pub mod pgm_pcap;
pub mod ping;
mod process;
pub mod topology;
pub(crate) mod util;

pub use addr::AddrBlock;
pub use capture::{Capture, CaptureFile, kernel_drops, tshark_count, tshark_fields};
pub use delay::{Delay, DelayStats};
pub use forward::Forwarding;
pub use loss::{Hook, LossCounters, LossRule, LossSpec, Selector};
pub use mroute::{McRoute, Smcroute};
pub use pgm_pcap::{PgmFrame, read_pgm};
pub use process::{Memory, Process, Signal, memory_of};
pub use topology::{Host, Iface, RefTopology, RefTopologyBuilder, Router, Switch};

use addr::Lease;
use process::ProcInner;
use util::{SETUP_TIMEOUT, pid_alive, run_checked, run_output};

/// The first component of every lab namespace name.
pub const ROOT: &str = "pgl";

/// How long [`Lab::exec`] lets a command run before killing it.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest interface name the kernel accepts (`IFNAMSIZ - 1`).
pub const IFNAME_MAX: usize = 15;

/// Whether the tests run as root (labs need CAP_NET_ADMIN and CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    util::euid_is_root()
}

/// Returns `true`, after printing why, when `test` must be skipped because we are not root.
///
/// ```no_run
/// # use pgm_netns_tests::lab;
/// if lab::skip_without_root("my_test") {
///     return;
/// }
/// ```
pub fn skip_without_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIPPED {test}: network-namespace tests need root (run as root, as CI does)");
    true
}

/// A network namespace created by a [`Lab`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ns {
    name: String,
}

impl Ns {
    /// The namespace's name, as `ip netns` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the **calling thread** into this namespace (`setns(2)`). Sockets it opens afterwards
    /// live there. Use on a thread you own; [`Ns::run`] and [`Ns::spawn_thread`] do it for you.
    pub fn enter(&self) -> Result<()> {
        let path = Path::new("/run/netns").join(&self.name);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: setns(2) on a valid descriptor only changes this thread's network namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(util::os_error(format!("setns into {}", self.name)));
        }
        Ok(())
    }

    /// The IPv4 multicast memberships of the hosts' sockets in this namespace, as
    /// `(interface, group)`, from `/proc/net/igmp` (read by a thread inside it).
    pub fn igmp_memberships(&self) -> Result<Vec<(String, Ipv4Addr)>> {
        // `/proc/self` is the process, whose namespace is not this thread's.
        let text = self.run(|| fs::read_to_string("/proc/thread-self/net/igmp"))??;
        Ok(parse_proc_igmp(&text))
    }

    /// Runs `f` on a new thread inside this namespace and returns its result. A panic in `f` is
    /// propagated to the caller.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        thread::scope(|s| {
            let handle = s.spawn(|| -> Result<T> {
                self.enter()?;
                Ok(f())
            });
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Starts `f` on a new thread inside this namespace. The thread's result is `Err` if it could
    /// not enter the namespace.
    pub fn spawn_thread<T, F>(&self, f: F) -> JoinHandle<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let ns = self.clone();
        thread::spawn(move || {
            ns.enter()?;
            Ok(f())
        })
    }
}

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A set of namespaces and everything in them, removed on drop (see the [module docs](self)).
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    lease: Lease,
    state: Mutex<State>,
}

/// What a lab has created, in creation order.
#[derive(Debug, Default)]
struct State {
    namespaces: Vec<Ns>,
    veths: Vec<(Ns, String)>,
    /// (namespace, family, name).
    tables: Vec<(Ns, &'static str, String)>,
    procs: Vec<Arc<ProcInner>>,
    seq: u32,
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static ORPHAN_SWEEP: Once = Once::new();

impl Lab {
    /// Creates an empty lab for the test called `tag` (sanitized to at most 10 characters of
    /// `[a-z0-9]`) and leases its address block. Needs root.
    pub fn new(tag: &str) -> Result<Self> {
        ensure!(
            is_root(),
            "a Lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
        );
        ORPHAN_SWEEP.call_once(|| {
            if let Err(e) = Self::cleanup_orphans() {
                eprintln!("pgm lab: sweeping orphaned namespaces failed: {e:#}");
            }
        });
        let mut tag: String = tag
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
        if tag.is_empty() {
            tag.push_str("lab");
        }
        let pid = std::process::id();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{ROOT}-{tag}-{pid}-{n}");
        // Anything already named like us is a leftover of a crashed process with our pid.
        Self::cleanup_stale(&format!("{prefix}-"))?;
        let lease = Lease::acquire(pid.wrapping_mul(7).wrapping_add(n))?;
        let dir = work_root().join(&prefix);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self {
            prefix,
            dir,
            lease,
            state: Mutex::new(State::default()),
        })
    }

    /// The prefix of every namespace name of this lab (`pgl-<tag>-<pid>-<n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's leased address block, `10.<octet>.0.0/16`.
    pub fn block(&self) -> AddrBlock {
        self.lease.block()
    }

    /// The lab's work directory (process output, captures, generated configs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespaces created so far.
    pub fn namespaces(&self) -> Vec<Ns> {
        self.state().namespaces.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh sequence number, for unique file names in the work directory.
    fn next_seq(&self) -> u32 {
        let mut state = self.state();
        state.seq += 1;
        state.seq
    }

    /// A fresh path in the work directory: `<dir>/<seq>-<label>.<ext>`.
    pub fn file(&self, label: &str, ext: &str) -> PathBuf {
        let seq = self.next_seq();
        self.dir.join(format!("{seq:03}-{label}.{ext}"))
    }

    // ---- topology -------------------------------------------------------------------------

    /// Creates the namespace `<prefix>-<node>` (`node`: 1 to 10 characters of `[a-z0-9]`), brings
    /// its loopback up and turns reverse-path filtering off in it (so results do not depend on
    /// the host's defaults, which new namespaces inherit for IPv4).
    pub fn add_ns(&self, node: &str) -> Result<Ns> {
        ensure!(
            (1..=10).contains(&node.len())
                && node
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "bad node name {node:?}: use 1 to 10 characters of [a-z0-9]"
        );
        let ns = Ns {
            name: format!("{}-{node}", self.prefix),
        };
        ensure!(
            !self.state().namespaces.contains(&ns),
            "namespace {ns} already exists in this lab"
        );
        run_checked(ip_cmd(None, &["netns", "add", &ns.name]), SETUP_TIMEOUT)?;
        self.state().namespaces.push(ns.clone());
        self.ip(&ns, &["link", "set", "dev", "lo", "up"])?;
        self.sysctls(
            &ns,
            &[
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
            ],
        )?;
        Ok(ns)
    }

    /// Creates a veth pair, `a_if` in `a` and `b_if` in `b` (which may be the same namespace),
    /// and brings both ends up.
    pub fn add_veth(&self, a: &Ns, a_if: &str, b: &Ns, b_if: &str) -> Result<()> {
        check_ifname(a_if)?;
        check_ifname(b_if)?;
        #[rustfmt::skip]
        self.ip(a, &["link", "add", "name", a_if, "type", "veth", "peer", "name", b_if,
                     "netns", &b.name])?;
        self.state().veths.push((a.clone(), a_if.to_owned()));
        self.link_up(a, a_if)?;
        self.link_up(b, b_if)
    }

    /// Creates the bridge `name` in `ns`, with IGMP snooping on or off, and brings it up.
    /// STP stays off, so ports forward as soon as they are attached.
    pub fn add_bridge(&self, ns: &Ns, name: &str, mcast_snooping: bool) -> Result<()> {
        check_ifname(name)?;
        let snooping = if mcast_snooping { "1" } else { "0" };
        #[rustfmt::skip]
        self.ip(ns, &["link", "add", "name", name, "type", "bridge", "stp_state", "0",
                      "mcast_snooping", snooping])?;
        self.link_up(ns, name)
    }

    /// Makes `port` (an interface in `ns`) a port of `bridge` (in the same namespace).
    pub fn bridge_attach(&self, ns: &Ns, bridge: &str, port: &str) -> Result<()> {
        self.ip(ns, &["link", "set", "dev", port, "master", bridge])?;
        Ok(())
    }

    /// Brings `iface` in `ns` up.
    pub fn link_up(&self, ns: &Ns, iface: &str) -> Result<()> {
        self.ip(ns, &["link", "set", "dev", iface, "up"])?;
        Ok(())
    }

    /// Assigns `addr/prefix_len` to `iface` in `ns`.
    pub fn add_addr(&self, ns: &Ns, iface: &str, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        ensure!(prefix_len <= 32, "bad prefix length {prefix_len}");
        let cidr = format!("{addr}/{prefix_len}");
        self.ip(ns, &["addr", "add", &cidr, "dev", iface])?;
        Ok(())
    }

    /// Adds the route `dest` (CIDR, e.g. `10.20.0.0/16`) via the gateway `gw` in `ns`.
    pub fn route_via(&self, ns: &Ns, dest: &str, gw: Ipv4Addr) -> Result<()> {
        self.ip(ns, &["route", "add", dest, "via", &gw.to_string()])?;
        Ok(())
    }

    /// Adds the on-link route `dest` (CIDR, e.g. `224.0.0.0/4`) out of `dev` in `ns`.
    pub fn route_dev(&self, ns: &Ns, dest: &str, dev: &str) -> Result<()> {
        self.ip(ns, &["route", "add", dest, "dev", dev])?;
        Ok(())
    }

    /// Turns IPv4 unicast forwarding on in `ns`.
    ///
    /// Multicast forwarding has no switch to turn on: the kernel sets the read-only
    /// `mc_forwarding` sysctls when a multicast router (smcroute, `pgm-routerd`) opens the
    /// mroute socket (`MRT_INIT`); see [`Lab::mc_forwarding`].
    pub fn enable_forwarding(&self, ns: &Ns) -> Result<()> {
        self.sysctls(ns, &[("net.ipv4.ip_forward", "1")])
    }

    /// Whether the kernel forwards multicast on `iface` in `ns` (`conf/<iface>/mc_forwarding`;
    /// `all` for the namespace-wide flag).
    pub fn mc_forwarding(&self, ns: &Ns, iface: &str) -> Result<bool> {
        check_ifname(iface)?;
        let path = format!("/proc/sys/net/ipv4/conf/{iface}/mc_forwarding");
        let out = self.exec(ns, &["cat", &path])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "1")
    }

    /// Sets sysctls (`net.ipv4.ip_forward` style keys) in `ns`.
    pub fn sysctls(&self, ns: &Ns, settings: &[(&str, &str)]) -> Result<()> {
        let mut args = vec!["sysctl".to_owned(), "-q".to_owned(), "-w".to_owned()];
        args.extend(settings.iter().map(|(k, v)| format!("{k}={v}")));
        self.exec(ns, &args)?;
        Ok(())
    }

    /// Runs `ip -n <ns> <args>`; a non-zero exit is an error carrying `ip`'s stderr.
    pub fn ip(&self, ns: &Ns, args: &[&str]) -> Result<Output> {
        run_checked(ip_cmd(Some(ns), args), SETUP_TIMEOUT)
    }

    // ---- commands and processes -----------------------------------------------------------

    /// A `Command` that runs `args` inside `ns` (`ip netns exec <ns> <args..>`), for callers that
    /// need environment variables or a working directory; run it with [`Lab::spawn_command`] or
    /// as they like.
    pub fn command<S: AsRef<OsStr>>(&self, ns: &Ns, args: &[S]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name]).args(args);
        cmd
    }

    /// Runs `args` inside `ns` and waits for it (at most [`EXEC_TIMEOUT`]). A non-zero exit
    /// status is an error that quotes the command's stderr.
    pub fn exec<S: AsRef<OsStr>>(&self, ns: &Ns, args: &[S]) -> Result<Output> {
        run_checked(self.command(ns, args), EXEC_TIMEOUT)
    }

    /// Runs `args` inside `ns` and returns its output whatever its exit status; fails only if
    /// it cannot be started or outlives `timeout` (it is then killed).
    pub fn exec_unchecked<S: AsRef<OsStr>>(
        &self,
        ns: &Ns,
        args: &[S],
        timeout: Duration,
    ) -> Result<Output> {
        run_output(self.command(ns, args), timeout)
    }

    /// Starts `args` inside `ns` in the background, stdout and stderr going to files in the lab
    /// directory. The process is killed when the handle or the lab is dropped.
    pub fn spawn<S: AsRef<OsStr>>(&self, ns: &Ns, args: &[S]) -> Result<Process> {
        ensure!(!args.is_empty(), "spawn: empty command");
        let label = Path::new(args[0].as_ref())
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "proc".to_owned());
        self.spawn_command(self.command(ns, args), &label)
    }

    /// Starts a prepared command (typically from [`Lab::command`]) like [`Lab::spawn`]. Its
    /// stdin, stdout, stderr and process group are set here.
    pub fn spawn_command(&self, mut cmd: Command, label: &str) -> Result<Process> {
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(32)
            .collect();
        let seq = self.next_seq();
        let stdout = self.dir.join(format!("{seq:03}-{label}.stdout"));
        let stderr = self.dir.join(format!("{seq:03}-{label}.stderr"));
        let out =
            File::create(&stdout).with_context(|| format!("cannot create {}", stdout.display()))?;
        let err =
            File::create(&stderr).with_context(|| format!("cannot create {}", stderr.display()))?;
        let desc = util::describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot spawn `{desc}`"))?;
        let inner = Arc::new(ProcInner::new(child, label, stdout, stderr));
        self.state().procs.push(Arc::clone(&inner));
        Ok(Process::new(inner))
    }

    /// Sends one ICMP echo request at a time from `ns` to `dst` until a reply arrives or
    /// `timeout` passes.
    pub fn ping(&self, ns: &Ns, dst: Ipv4Addr, timeout: Duration) -> Result<()> {
        ns.run(|| ping::ping(dst, timeout))?
            .with_context(|| format!("ping {dst} from {ns}"))
    }

    /// Records an nftables table created in `ns`, for deletion on drop.
    fn record_table(&self, ns: &Ns, family: &'static str, table: &str) {
        self.state()
            .tables
            .push((ns.clone(), family, table.to_owned()));
    }

    // ---- cleanup --------------------------------------------------------------------------

    /// Removes every namespace whose name starts with `prefix` (killing the processes in it) and
    /// every root-namespace link whose name does. `prefix` must start with [`ROOT`]`-`, so
    /// namespaces that labs did not create are never touched. Returns how many namespaces went.
    pub fn cleanup_stale(prefix: &str) -> Result<usize> {
        ensure!(
            prefix.starts_with(&format!("{ROOT}-")),
            "refusing to clean up {prefix:?}: lab prefixes start with \"{ROOT}-\""
        );
        let mut removed = 0;
        for name in list_netns()? {
            if name.starts_with(prefix) {
                remove_netns(&name);
                removed += 1;
            }
        }
        for link in root_links()? {
            if link.starts_with(prefix) {
                let _ = run_output(ip_cmd(None, &["link", "del", "dev", &link]), SETUP_TIMEOUT);
            }
        }
        Ok(removed)
    }

    /// Removes lab namespaces whose creating process (the `<pid>` in their name) is gone.
    /// Returns how many were removed.
    pub fn cleanup_orphans() -> Result<usize> {
        let mut removed = 0;
        for name in list_netns()? {
            let mut parts = name.split('-');
            if parts.next() != Some(ROOT) {
                continue;
            }
            let Some(pid) = parts.nth(1).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !pid_alive(pid) {
                remove_netns(&name);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let state = std::mem::take(&mut *self.state());
        for proc in &state.procs {
            proc.terminate();
        }
        for ns in &state.namespaces {
            kill_netns_pids(&ns.name);
        }
        for (ns, family, table) in &state.tables {
            let cmd = self.command(ns, &["nft", "delete", "table", family, table]);
            let _ = run_output(cmd, SETUP_TIMEOUT);
        }
        for (ns, veth) in &state.veths {
            let _ = run_output(
                ip_cmd(Some(ns), &["link", "del", "dev", veth]),
                SETUP_TIMEOUT,
            );
        }
        for ns in state.namespaces.iter().rev() {
            let _ = run_output(ip_cmd(None, &["netns", "del", &ns.name]), SETUP_TIMEOUT);
        }
        if thread::panicking() || std::env::var_os("PGM_LAB_KEEP").is_some() {
            eprintln!("pgm lab: kept {} for inspection", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Where labs put their work directories: `$PGM_LAB_DIR`, else `<tmp>/pgm-netns-lab`.
fn work_root() -> PathBuf {
    std::env::var_os("PGM_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("pgm-netns-lab"))
}

fn check_ifname(name: &str) -> Result<()> {
    ensure!(
        (1..=IFNAME_MAX).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
            && name != "."
            && name != "..",
        "bad interface name {name:?}: 1 to {IFNAME_MAX} printable bytes, no '/' or ':'"
    );
    Ok(())
}

/// `ip [-n <ns>] <args>`.
fn ip_cmd(ns: Option<&Ns>, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", &ns.name]);
    }
    cmd.args(args);
    cmd
}

/// Names from `ip netns list` (lines look like `name (id: 3)` or `name`).
fn list_netns() -> Result<Vec<String>> {
    let out = run_checked(ip_cmd(None, &["netns", "list"]), SETUP_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Link names in the root namespace (`ip -o link show` lines look like `4: eth0@if5: <...>`).
fn root_links() -> Result<Vec<String>> {
    let out = run_checked(ip_cmd(None, &["-o", "link", "show"]), SETUP_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect())
}

/// SIGKILLs every process in the namespace `name` except ourselves.
fn kill_netns_pids(name: &str) {
    let Ok(out) = run_output(ip_cmd(None, &["netns", "pids", name]), SETUP_TIMEOUT) else {
        return;
    };
    let me = std::process::id();
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        if pid == me {
            continue;
        }
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill(2) has no memory effects. The pid was just listed as living in a lab
            // namespace; a recycled pid would have to be reused within microseconds.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Kills what runs in the namespace `name` and deletes it; errors are ignored.
fn remove_netns(name: &str) {
    kill_netns_pids(name);
    let _ = run_output(ip_cmd(None, &["netns", "del", name]), SETUP_TIMEOUT);
}

/// Parses `/proc/net/igmp`: an interface line (`1\tlo        :     1      V3`) followed by its
/// groups, one per line, in hex of the address in host byte order (`010000E0` = 224.0.0.1).
fn parse_proc_igmp(text: &str) -> Vec<(String, Ipv4Addr)> {
    let mut out = Vec::new();
    let mut iface = String::new();
    for line in text.lines().skip(1) {
        if !line.starts_with(char::is_whitespace) {
            iface = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            continue;
        }
        let Some(hex) = line.split_whitespace().next() else {
            continue;
        };
        if let Ok(v) = u32::from_str_radix(hex, 16) {
            out.push((iface.clone(), Ipv4Addr::from(v.to_le_bytes())));
        }
    }
    out
}

#[cfg(test)]
mod igmp_tests {
    use super::*;

    #[test]
    fn proc_igmp_is_parsed() {
        let text = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                    1\tlo        :     1      V3\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                    5\tto-src    :     2      V3\n\
                    \t\t\t\t01ECC0EF     1 0:00000000\t\t0\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        assert_eq!(
            parse_proc_igmp(text),
            vec![
                ("lo".to_owned(), Ipv4Addr::new(224, 0, 0, 1)),
                ("to-src".to_owned(), Ipv4Addr::new(239, 192, 236, 1)),
                ("to-src".to_owned(), Ipv4Addr::new(224, 0, 0, 1)),
            ]
        );
    }
}
