//! Plain multicast forwarding without kernel multicast routing and without a daemon: the
//! forwarding rules of the router's netdev data plane
//! ([`pgm_core::net::router::netdev`]) with its intercept off, so every PGM type is
//! forwarded alike, as by a router without PGM assist.
//!
//! [`Lab::start_forwarding`] installs, in a router namespace, one nftables `netdev` table that
//! forwards each [`McRoute`] from its inbound interface to its outbound ones (the kernel
//! `dup`s the frame, decrements the TTL and writes the outgoing interface's MAC address). The
//! table belongs to the returned [`Forwarding`]'s netlink socket: it goes when the guard is
//! dropped (or the test process dies). No smcroute, no `CONFIG_IP_MROUTE`.
//!
//! To see it: `ip netns exec <ns> nft list table netdev <name>`.

use anyhow::{Context, Result, ensure};
use pgm_core::net::iface;
use pgm_core::net::router::netdev::{NetdevConfig, NetdevPlane, PlaneIface};
use pgm_core::net::router::plane::{PlaneChanges, PlaneRoute, RouteKey};

use super::mroute::McRoute;
use super::{Lab, Ns};

/// Forwarding rules installed by [`Lab::start_forwarding`]; removed when dropped.
#[derive(Debug)]
pub struct Forwarding {
    ns: Ns,
    plane: NetdevPlane,
}

impl Forwarding {
    /// The namespace.
    pub fn ns(&self) -> &Ns {
        &self.ns
    }

    /// ODATA packets the rules forwarded so far (all PGM types count here: the intercept is
    /// off).
    pub fn forwarded(&mut self) -> Result<u64> {
        Ok(self.plane.counters()?.forwarded)
    }
}

impl Lab {
    /// Forwards `routes` in `ns` with netdev rules (see the [module docs](self)); `table`
    /// names the nftables table.
    pub fn start_forwarding(&self, ns: &Ns, routes: &[McRoute]) -> Result<Forwarding> {
        ensure!(!routes.is_empty(), "forwarding needs at least one route");
        let table = format!("{}_fwd{}", self.prefix(), self.next_seq()).replace('-', "_");
        let routes = routes.to_vec();
        let plane = ns.run(move || -> Result<NetdevPlane> {
            let all = iface::interfaces()?;
            let index = |name: &str| -> Result<u32> {
                all.iter()
                    .find(|i| i.name == name)
                    .map(|i| i.index)
                    .with_context(|| format!("no interface {name} with an IPv4 address"))
            };
            let mut names: Vec<&str> = routes
                .iter()
                .flat_map(|r| {
                    std::iter::once(r.inbound.as_str()).chain(r.outbound.iter().map(String::as_str))
                })
                .collect();
            names.sort_unstable();
            names.dedup();
            let interfaces = names
                .iter()
                .map(|&n| {
                    Ok(PlaneIface {
                        name: n.to_owned(),
                        index: index(n)?,
                        mac: iface::hardware_address(n)?.1,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut plane = NetdevPlane::install(NetdevConfig {
                table,
                interfaces,
                log_group: 0,
                intercept: false,
                learn_rate: 1,
                learn_burst: 1,
                owner: true,
            })?;
            let mut changes = PlaneChanges::default();
            for r in &routes {
                let key = match r.source {
                    Some(s) => RouteKey::sg(s, r.group),
                    None => RouteKey::any(r.group),
                };
                let mut oifs = r
                    .outbound
                    .iter()
                    .map(|o| index(o))
                    .collect::<Result<Vec<u32>>>()?;
                oifs.sort_unstable();
                changes.routes.insert(
                    key,
                    Some(PlaneRoute {
                        iif: index(&r.inbound)?,
                        oifs,
                    }),
                );
            }
            plane.apply(&changes)?;
            Ok(plane)
        })??;
        Ok(Forwarding {
            ns: ns.clone(),
            plane,
        })
    }
}
