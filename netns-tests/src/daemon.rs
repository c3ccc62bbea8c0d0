//! Starting the suite's daemons (`pgm-routerd`, `pgm-dlrd`) in a lab namespace from a
//! generated configuration.
//!
//! A [`Daemon`] names the binary and says how to tell that it is ready; [`Daemon::start`] then,
//! in one namespace:
//!
//! 1. writes the TOML into the lab directory ([`write_config`]);
//! 2. has the binary check it ([`check_config`]: `--check-config` must succeed, and a rejected
//!    configuration is an error quoting the daemon's explanation);
//! 3. starts `<bin> --config <file>` with `RUST_LOG` set (`info` unless [`Daemon::rust_log`]
//!    says otherwise);
//! 4. waits at most 10 s until the daemon is ready: by default until it prints
//!    `<binary name> started` (both daemons do once their sockets and admin listener are
//!    open), or, with [`Daemon::ready_when_admin_answers`], until its admin API answers
//!    `GET /metrics` with `200`. A daemon that exits first is an error quoting its stderr.
//!
//! The process belongs to the lab like any other ([`Lab::spawn_command`]): it is killed when
//! its handle or the lab is dropped.
//!
//! [`RouterConfig`] writes the TOML of a `pgm-routerd` (the sections a test varies: mode,
//! interception, interfaces, static routes, the admin listener, and any other section as text).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::admin;
use crate::lab::util::Deadline;
use crate::lab::{Lab, Ns, Process};

/// How long `--check-config` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a daemon may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a started daemon shows that it is ready.
#[derive(Clone, Debug)]
enum Ready {
    /// It printed this text (on stdout or stderr).
    Prints(String),
    /// Its admin API at this address answers `GET /metrics` with `200`.
    AdminAnswers(SocketAddr),
}

/// How to start one of the suite's daemons (see the [module documentation](self)). One
/// `Daemon` can start the binary any number of times, in any namespaces.
#[derive(Clone, Debug)]
pub struct Daemon {
    bin: PathBuf,
    rust_log: String,
    ready: Ready,
    cancelled: Option<fn() -> bool>,
}

impl Daemon {
    /// The daemon at `bin`, logging at `info`, ready once it prints `<file name of bin>
    /// started`.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        let bin = bin.into();
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            bin,
            rust_log: "info".to_owned(),
            ready: Ready::Prints(format!("{name} started")),
            cancelled: None,
        }
    }

    /// The `RUST_LOG` filter to run it with (`info,pgm_routerd=debug`).
    pub fn rust_log(mut self, filter: &str) -> Self {
        filter.clone_into(&mut self.rust_log);
        self
    }

    /// Ready once its admin API, listening on `addr` in its namespace, answers `GET /metrics`
    /// with `200` (instead of waiting for the `started` line).
    pub fn ready_when_admin_answers(mut self, addr: SocketAddr) -> Self {
        self.ready = Ready::AdminAnswers(addr);
        self
    }

    /// Gives up waiting for readiness, with an error, as soon as `cancelled` returns `true`
    /// (checked between polls, so within about 100 ms): for a program that stops on Ctrl-C.
    pub fn cancel_if(mut self, cancelled: fn() -> bool) -> Self {
        self.cancelled = Some(cancelled);
        self
    }

    /// The binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Writes `toml` to the lab directory (file named after `label`), checks it, starts the
    /// daemon in `ns` (process labelled `label`) and waits until it is ready.
    pub fn start(&self, lab: &Lab, ns: &Ns, label: &str, toml: &str) -> Result<Process> {
        let config = write_config(lab, label, toml)?;
        self.start_with_file(lab, ns, label, &config)
    }

    /// [`Daemon::start`] with a configuration file written already.
    pub fn start_with_file(
        &self,
        lab: &Lab,
        ns: &Ns,
        label: &str,
        config: &Path,
    ) -> Result<Process> {
        check_config(lab, ns, &self.bin, config).with_context(|| label.to_owned())?;
        let mut cmd = lab.command(
            ns,
            &[
                self.bin.as_os_str(),
                "--config".as_ref(),
                config.as_os_str(),
            ],
        );
        cmd.env("RUST_LOG", &self.rust_log);
        let p = lab
            .spawn_command(cmd, label)
            .with_context(|| format!("{label}: start {}", self.bin.display()))?;
        self.wait_ready(ns, &p)
            .with_context(|| format!("{label} (pid {}) in {ns}", p.pid()))?;
        Ok(p)
    }

    fn wait_ready(&self, ns: &Ns, p: &Process) -> Result<()> {
        let (what, nap) = match &self.ready {
            Ready::Prints(needle) => (format!("print {needle:?}"), Duration::from_millis(20)),
            Ready::AdminAnswers(addr) => (
                format!("answer GET http://{addr}/metrics"),
                Duration::from_millis(100),
            ),
        };
        let deadline = Deadline::after(READY_TIMEOUT);
        loop {
            if self.is_ready(ns, p)? {
                return Ok(());
            }
            if let Some(status) = p.try_wait()? {
                // One last look: the sign may have come just before the exit.
                if self.is_ready(ns, p)? {
                    return Ok(());
                }
                bail!(
                    "exited ({status}) before it did {what}; stderr:\n{}",
                    p.stderr().unwrap_or_default()
                );
            }
            if self.cancelled.is_some_and(|f| f()) {
                bail!("cancelled while waiting for it to {what}");
            }
            if deadline.expired() {
                bail!(
                    "did not {what} within {READY_TIMEOUT:?}; stderr:\n{}",
                    p.stderr().unwrap_or_default()
                );
            }
            thread::sleep(nap.min(deadline.remaining()));
        }
    }

    fn is_ready(&self, ns: &Ns, p: &Process) -> Result<bool> {
        Ok(match &self.ready {
            Ready::Prints(needle) => p.stdout()?.contains(needle) || p.stderr()?.contains(needle),
            Ready::AdminAnswers(addr) => admin::get(ns, *addr, "/metrics").is_ok(),
        })
    }
}

/// Writes `toml` to a fresh file of the lab directory, `<seq>-<label>.toml`; returns its path.
pub fn write_config(lab: &Lab, label: &str, toml: &str) -> Result<PathBuf> {
    let path = lab.file(label, "toml");
    std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Runs `<bin> --check-config --config <config>` in `ns`; a rejection is an error quoting the
/// daemon's stderr.
pub fn check_config(lab: &Lab, ns: &Ns, bin: &Path, config: &Path) -> Result<()> {
    let out = lab
        .exec_unchecked(
            ns,
            &[
                bin.as_os_str(),
                "--check-config".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
            ],
            CHECK_TIMEOUT,
        )
        .with_context(|| format!("cannot run {} --check-config", bin.display()))?;
    if !out.status.success() {
        bail!(
            "--check-config rejected {} ({}):\n{}",
            config.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The configuration of a `pgm-routerd`, as TOML (`to_string()`). Keys left out take
/// pgm-config's defaults; the admin listener is [`admin::DEFAULT_LISTEN`] unless set.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    mode: Option<String>,
    dataplane: Option<String>,
    intercept: Option<String>,
    interfaces: Vec<String>,
    routes: Vec<String>,
    sections: String,
    admin: SocketAddr,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl RouterConfig {
    /// A `[router]` section with defaults only, and no interface yet.
    pub fn new() -> Self {
        Self {
            mode: None,
            dataplane: None,
            intercept: None,
            interfaces: Vec::new(),
            routes: Vec::new(),
            sections: String::new(),
            admin: admin::DEFAULT_LISTEN,
        }
    }

    /// `router.mode` (`"full"`, `"assist-only"`).
    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = Some(mode.to_owned());
        self
    }

    /// `router.dataplane` (`"auto"`, `"netdev"`, `"mroute"`).
    pub fn dataplane(mut self, dataplane: &str) -> Self {
        self.dataplane = Some(dataplane.to_owned());
        self
    }

    /// `router.intercept` (`"router-alert"`, `"nftables"`).
    pub fn intercept(mut self, intercept: &str) -> Self {
        self.intercept = Some(intercept.to_owned());
        self
    }

    /// One `[[router.interface]]` per name, after those already there.
    pub fn interfaces<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.interfaces
            .extend(names.iter().map(|n| n.as_ref().to_owned()));
        self
    }

    /// A `[[router.route]]`: the static (S,G) route (`source`, `group`) from `upstream` to
    /// `downstream`.
    pub fn route<S: AsRef<str>>(
        mut self,
        group: Ipv4Addr,
        source: Ipv4Addr,
        upstream: &str,
        downstream: &[S],
    ) -> Self {
        let down: Vec<String> = downstream
            .iter()
            .map(|d| format!("\"{}\"", d.as_ref()))
            .collect();
        self.routes.push(format!(
            "[[router.route]]\ngroup = \"{group}\"\nsource = \"{source}\"\n\
             upstream = \"{upstream}\"\ndownstream = [{}]\n",
            down.join(", ")
        ));
        self
    }

    /// Other sections, as TOML text (`"[router.limits]\nmax_tsis = 64\n"`), written after the
    /// routes.
    pub fn section(mut self, toml: &str) -> Self {
        self.sections.push_str(toml);
        if !toml.ends_with('\n') {
            self.sections.push('\n');
        }
        self
    }

    /// `admin.listen`.
    pub fn admin(mut self, listen: SocketAddr) -> Self {
        self.admin = listen;
        self
    }
}

impl fmt::Display for RouterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[router]")?;
        if let Some(mode) = &self.mode {
            writeln!(f, "mode = \"{mode}\"")?;
        }
        if let Some(dataplane) = &self.dataplane {
            writeln!(f, "dataplane = \"{dataplane}\"")?;
        }
        if let Some(intercept) = &self.intercept {
            writeln!(f, "intercept = \"{intercept}\"")?;
        }
        for name in &self.interfaces {
            writeln!(f, "[[router.interface]]\nname = \"{name}\"")?;
        }
        for route in &self.routes {
            f.write_str(route)?;
        }
        f.write_str(&self.sections)?;
        writeln!(f, "[admin]\nlisten = \"{}\"", self.admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_config_toml() {
        let group = Ipv4Addr::new(239, 192, 9, 1);
        let source = Ipv4Addr::new(10, 9, 1, 2);
        let toml = RouterConfig::new()
            .mode("full")
            .dataplane("netdev")
            .intercept("nftables")
            .interfaces(&["to-r1", "lana"])
            .interfaces(&["lanb"])
            .route(group, source, "to-r1", &["lana", "lanb"])
            .section("[router.limits]\nmax_tsis = 64")
            .admin(admin::loopback(9471))
            .to_string();
        assert_eq!(
            toml,
            "[router]\nmode = \"full\"\ndataplane = \"netdev\"\nintercept = \"nftables\"\n\
             [[router.interface]]\nname = \"to-r1\"\n[[router.interface]]\nname = \"lana\"\n\
             [[router.interface]]\nname = \"lanb\"\n\
             [[router.route]]\ngroup = \"239.192.9.1\"\nsource = \"10.9.1.2\"\n\
             upstream = \"to-r1\"\ndownstream = [\"lana\", \"lanb\"]\n\
             [router.limits]\nmax_tsis = 64\n[admin]\nlisten = \"127.0.0.1:9471\"\n"
        );
        assert_eq!(
            RouterConfig::new().to_string(),
            "[router]\n[admin]\nlisten = \"127.0.0.1:9470\"\n"
        );
    }
}
