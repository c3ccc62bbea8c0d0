//! The mroute data plane: the kernel's multicast routing forwards ODATA along MFC entries
//! written through the multicast-routing socket ([`super::mroute`]), and, with the nftables
//! intercept, [`super::intercept`] hands the daemon the other PGM packets of the assisted
//! groups. Needs `CONFIG_IP_MROUTE`.
//!
//! The MFC holds `(S,G)` entries only: a `(*,G)` route is written per source, as the
//! controller makes them from the kernel's upcalls. In assist-only mode the MFC belongs to
//! another daemon and only the intercept is written.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::intercept::InterceptTable;
use super::mroute::MrouteSocket;
use super::nftables::NftError;
use super::plane::{PlaneChanges, PlaneRoute, PlaneState};

/// The mroute plane. See the [module documentation](self).
#[derive(Debug)]
pub struct MroutePlane {
    /// The MFC's writer (`None` in assist-only mode).
    mroute: Option<Arc<MrouteSocket>>,
    /// Interface index -> VIF.
    vifs: HashMap<u32, u16>,
    intercept: Option<InterceptTable>,
    mfc: HashMap<(Ipv4Addr, Ipv4Addr), PlaneRoute>,
    groups: Vec<Ipv4Addr>,
}

/// A failed change of the mroute plane.
#[derive(Debug, thiserror::Error)]
pub enum MroutePlaneError {
    /// The intercept's nftables transaction.
    #[error(transparent)]
    Intercept(#[from] NftError),
    /// An MFC entry.
    #[error("cannot write the MFC entry of ({source_addr}, {group}): {error}")]
    Mfc {
        /// The source.
        source_addr: Ipv4Addr,
        /// The group.
        group: Ipv4Addr,
        /// The kernel's error.
        error: std::io::Error,
    },
}

impl MroutePlane {
    /// A plane writing the MFC through `mroute` (with `vifs`: interface index to VIF), and
    /// the intercept's group set through `intercept`.
    pub fn new(
        mroute: Option<Arc<MrouteSocket>>,
        vifs: HashMap<u32, u16>,
        intercept: Option<InterceptTable>,
    ) -> Self {
        Self {
            mroute,
            vifs,
            intercept,
            mfc: HashMap::new(),
            groups: Vec::new(),
        }
    }

    /// Applies `changes`: the intercept's groups first (so that the kernel, forwarding what
    /// it queued for a new entry, already stops its SPMs), then the MFC entries.
    pub fn apply(&mut self, changes: &PlaneChanges) -> Result<(), MroutePlaneError> {
        if let Some(full) = &changes.full {
            return self.replace(full);
        }
        if let Some(t) = &mut self.intercept {
            let add: Vec<Ipv4Addr> = changes
                .assisted
                .iter()
                .filter(|e| *e.1)
                .map(|e| *e.0)
                .collect();
            let del: Vec<Ipv4Addr> = changes
                .assisted
                .iter()
                .filter(|e| !*e.1)
                .map(|e| *e.0)
                .collect();
            if !add.is_empty() || !del.is_empty() {
                t.update(&add, &del)?;
            }
        }
        for (key, route) in &changes.routes {
            let Some(source) = key.source else { continue };
            self.write_mfc(source, key.group, route.as_ref())?;
        }
        Ok(())
    }

    fn write_mfc(
        &mut self,
        source: Ipv4Addr,
        group: Ipv4Addr,
        route: Option<&PlaneRoute>,
    ) -> Result<(), MroutePlaneError> {
        let Some(m) = &self.mroute else {
            return Ok(());
        };
        let err = |error| MroutePlaneError::Mfc {
            source_addr: source,
            group,
            error,
        };
        match route {
            Some(r) => {
                let Some(&parent) = self.vifs.get(&r.iif) else {
                    return Ok(());
                };
                let oifs: Vec<u16> = r
                    .oifs
                    .iter()
                    .filter_map(|o| self.vifs.get(o).copied())
                    .collect();
                m.add_mfc(source, group, parent, &oifs).map_err(err)?;
                self.mfc.insert((source, group), r.clone());
            }
            None => {
                if self.mfc.remove(&(source, group)).is_some() {
                    m.del_mfc(source, group).map_err(err)?;
                }
            }
        }
        Ok(())
    }

    /// Replaces everything with `state`.
    pub fn replace(&mut self, state: &PlaneState) -> Result<(), MroutePlaneError> {
        if let Some(t) = &mut self.intercept {
            let groups: Vec<Ipv4Addr> = state.assisted.iter().copied().collect();
            t.replace(&groups)?;
            self.groups = groups;
        }
        let old: Vec<(Ipv4Addr, Ipv4Addr)> = self.mfc.keys().copied().collect();
        for (s, g) in old {
            if !state.routes.contains_key(&super::plane::RouteKey::sg(s, g)) {
                self.write_mfc(s, g, None)?;
            }
        }
        for (key, route) in &state.routes {
            if let Some(source) = key.source {
                self.write_mfc(source, key.group, Some(route))?;
            }
        }
        Ok(())
    }

    /// The packets the intercept's forward rule stopped (0 without the intercept).
    pub fn stopped_packets(&mut self) -> u64 {
        self.intercept
            .as_mut()
            .and_then(|t| t.stopped_packets().ok())
            .unwrap_or(0)
    }

    /// MFC entries written.
    pub fn route_count(&self) -> usize {
        self.mfc.len()
    }
}
