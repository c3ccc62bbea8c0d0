//! Baseline multicast routing with `smcroute` (plain kernel multicast forwarding, no PGM assist).
//!
//! [`Lab::start_smcroute`] writes an `smcroute.conf` into the lab directory, for example
//!
//! ```text
//! phyint to-src enable
//! phyint to-r2 enable
//! mroute from to-src source 10.16.1.2 group 239.192.16.1 to to-r2
//! ```
//!
//! and runs `smcrouted -n -N -f <conf> -u <sock> -P <pidfile> -i <ident> -l debug` in the router
//! namespace. `-N` creates multicast VIFs only for the `phyint ... enable` lines, and the socket
//! and pid file live in the lab directory, so several smcroute instances (one per router
//! namespace, in several labs) never collide. smcrouted opens the mroute socket (`MRT_INIT`),
//! which turns the namespace's `mc_forwarding` on. It returns once every `(S,G)` route shows up
//! in `ip mroute show`; `(*,G)` routes are installed by the kernel upcall on the first packet.
//!
//! To do the same by hand: `ip netns exec <ns> smcrouted -n -N -f smcroute.conf -u /tmp/s.sock`
//! with the configuration above, and `ip -n <ns> mroute show` to see the kernel's MFC.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::process::Process;
use super::util::{Deadline, poll_until};
use super::{Lab, Ns};

/// How long smcrouted may take to install its routes.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A static multicast route: packets for `group` (from `source`, or from any source) arriving
/// on `inbound` are forwarded out of every `outbound` interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McRoute {
    /// Interface the traffic arrives on (the reverse-path interface).
    pub inbound: String,
    /// The source address for an `(S,G)` route, `None` for `(*,G)`.
    pub source: Option<Ipv4Addr>,
    /// The multicast group.
    pub group: Ipv4Addr,
    /// Interfaces the traffic leaves through.
    pub outbound: Vec<String>,
}

impl McRoute {
    /// An `(S,G)` route.
    pub fn sg(inbound: &str, source: Ipv4Addr, group: Ipv4Addr, outbound: &[&str]) -> Self {
        Self {
            inbound: inbound.to_owned(),
            source: Some(source),
            group,
            outbound: outbound.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// A `(*,G)` route.
    pub fn any_source(inbound: &str, group: Ipv4Addr, outbound: &[&str]) -> Self {
        Self {
            inbound: inbound.to_owned(),
            source: None,
            group,
            outbound: outbound.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// A running `smcrouted` (see [`Lab::start_smcroute`]); killed when dropped.
#[derive(Debug)]
pub struct Smcroute {
    ns: Ns,
    process: Process,
    conf: PathBuf,
}

impl Smcroute {
    /// The smcrouted process (its log is its stderr).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The generated configuration file.
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The namespace it routes in.
    pub fn ns(&self) -> &Ns {
        &self.ns
    }
}

impl Lab {
    /// Runs smcrouted in `ns` with `routes` and waits until its `(S,G)` routes are in the
    /// kernel. See the [module docs](self) for the generated configuration.
    pub fn start_smcroute(&self, ns: &Ns, routes: &[McRoute]) -> Result<Smcroute> {
        ensure!(!routes.is_empty(), "smcroute needs at least one route");
        let conf = self.file("smcroute", "conf");
        let sock = self.file("smcroute", "sock");
        let pidfile = self.file("smcroute", "pid");
        fs::write(&conf, config(routes)?)
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let ident = format!("smcroute-{}", self.next_seq());
        let (conf_s, sock_s, pid_s) = (
            conf.to_string_lossy(),
            sock.to_string_lossy(),
            pidfile.to_string_lossy(),
        );
        #[rustfmt::skip]
        let process = self.spawn(ns, &["smcrouted", "-n", "-N", "-f", &conf_s, "-u", &sock_s,
                                       "-P", &pid_s, "-i", &ident, "-l", "debug"])?;
        let want = routes.iter().filter(|r| r.source.is_some()).count();
        let ready = poll_until(Deadline::after(START_TIMEOUT), || {
            if let Some(status) = process.try_wait()? {
                bail!(
                    "smcrouted exited with {status}: {}",
                    process.stderr().unwrap_or_default()
                );
            }
            let installed = self.mroutes(ns)?.len();
            Ok((sock.exists() && installed >= want).then_some(()))
        })?;
        if ready.is_none() {
            bail!(
                "smcrouted in {ns} did not install {want} routes within {START_TIMEOUT:?}: {}",
                process.stderr().unwrap_or_default()
            );
        }
        Ok(Smcroute {
            ns: ns.clone(),
            process,
            conf,
        })
    }

    /// The kernel's multicast forwarding cache in `ns`: one `ip mroute show` line per entry,
    /// e.g. `(10.16.1.2,239.192.16.1)  Iif: to-src  Oifs: to-r2  State: resolved`.
    pub fn mroutes(&self, ns: &Ns) -> Result<Vec<String>> {
        let out = self.ip(ns, &["mroute", "show"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('('))
            .map(str::to_owned)
            .collect())
    }
}

/// The smcroute.conf text for `routes`.
fn config(routes: &[McRoute]) -> Result<String> {
    let mut ifaces = BTreeSet::new();
    for route in routes {
        ensure!(
            !route.outbound.is_empty(),
            "route {route:?} has no outbound interface"
        );
        ensure!(
            route.group.is_multicast(),
            "{} is not a multicast group",
            route.group
        );
        ifaces.insert(route.inbound.as_str());
        ifaces.extend(route.outbound.iter().map(String::as_str));
    }
    for iface in &ifaces {
        ensure!(
            !iface.is_empty() && iface.bytes().all(|b| b.is_ascii_graphic()),
            "bad interface name {iface:?}"
        );
    }
    let mut text = String::from("# generated by pgm-netns-tests\n");
    for iface in &ifaces {
        let _ = writeln!(text, "phyint {iface} enable");
    }
    for r in routes {
        let _ = write!(text, "mroute from {}", r.inbound);
        if let Some(source) = r.source {
            let _ = write!(text, " source {source}");
        }
        let _ = writeln!(text, " group {} to {}", r.group, r.outbound.join(" "));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text() {
        let g = Ipv4Addr::new(239, 192, 16, 1);
        let text = config(&[
            McRoute::sg("up", Ipv4Addr::new(10, 16, 1, 2), g, &["lana", "lanb"]),
            McRoute::any_source("up", g, &["lanb"]),
        ])
        .unwrap();
        assert_eq!(
            text,
            "# generated by pgm-netns-tests\nphyint lana enable\nphyint lanb enable\n\
             phyint up enable\nmroute from up source 10.16.1.2 group 239.192.16.1 to lana lanb\n\
             mroute from up group 239.192.16.1 to lanb\n"
        );
        assert!(config(&[McRoute::sg("up", g, Ipv4Addr::new(10, 0, 0, 1), &["x"])]).is_err());
    }
}
