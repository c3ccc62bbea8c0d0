//! The data plane: which one runs on this kernel, and the worker thread that applies the
//! controller's changes to it, so that no kernel transaction ever runs on the task that
//! handles packets.
//!
//! The worker takes the changes from the [`PlaneSync`] the controller writes, applies them
//! in one transaction each, and on failure asks for the whole state to be applied again
//! (after a pause that doubles up to 5 s). Once a second it reads the plane's kernel
//! counters, and in assist-only mode the kernel's multicast routing table, for the daemon
//! (at once, at most every 50 ms, when the daemon sees a packet of a route it does not know).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgm_config::{Dataplane, RouterMode, RouterSection};
use pgm_core::net::router::mroute_plane::MroutePlane;
use pgm_core::net::router::netdev::{NetdevCounters, NetdevPlane};
use pgm_core::net::router::plane::{PlaneChanges, PlaneRoute, PlaneSync, RouteKey};
use pgm_core::net::router::procfs;
use pgm_core::net::router::support::{self, Unsupported};
use tokio::sync::watch;

/// Which plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaneKind {
    /// nftables netdev ingress chains (no kernel multicast routing).
    Netdev,
    /// The kernel's multicast routing.
    Mroute,
}

impl PlaneKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Netdev => "netdev",
            Self::Mroute => "mroute",
        }
    }
}

/// The plane chosen for a configuration, and why.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub(crate) kind: PlaneKind,
    pub(crate) why: String,
}

/// Chooses the data plane of `r` on this kernel; an error says which kernel option is
/// missing for the configured plane. Probing the netdev plane needs `CAP_NET_ADMIN`.
pub(crate) fn choose(r: &RouterSection) -> Result<Choice, String> {
    let assist_only = r.mode == RouterMode::AssistOnly;
    let mroute = || {
        support::mroute().map_err(|e| {
            let need = if assist_only {
                "mode = \"assist-only\" reads the kernel's multicast routing table"
            } else {
                "dataplane = \"mroute\" needs kernel multicast routing"
            };
            format!("{need}, but {e}; use dataplane = \"netdev\" (full mode) on this kernel")
        })
    };
    // The netdev plane's probe needs CAP_NET_ADMIN: without it (`--check-config` as a user)
    // the plane is chosen unprobed and the reason says so.
    let netdev = |why: String| match support::netdev() {
        Ok(()) => Ok(why),
        Err(e @ Unsupported::Missing { .. }) => {
            Err(format!("{why}, but the netdev data plane cannot run: {e}"))
        }
        Err(e @ Unsupported::CannotProbe(_)) => {
            Ok(format!("{why}; kernel support not probed: {e}"))
        }
    };
    match (r.dataplane, assist_only) {
        (Dataplane::Mroute, _) | (Dataplane::Auto, true) => {
            mroute()?;
            Ok(Choice {
                kind: PlaneKind::Mroute,
                why: if r.dataplane == Dataplane::Mroute {
                    "configured".to_owned()
                } else {
                    "auto: assist-only mode reads the kernel's multicast routing".to_owned()
                },
            })
        }
        (Dataplane::Netdev, _) => Ok(Choice {
            kind: PlaneKind::Netdev,
            why: netdev("configured".to_owned())?,
        }),
        (Dataplane::Auto, false) => match support::mroute() {
            Ok(()) => Ok(Choice {
                kind: PlaneKind::Mroute,
                why: "auto: the kernel has multicast routing (CONFIG_IP_MROUTE)".to_owned(),
            }),
            Err(e) => Ok(Choice {
                kind: PlaneKind::Netdev,
                why: netdev(format!("auto: {e}"))?,
            }),
        },
    }
}

/// The running plane.
#[derive(Debug)]
pub(crate) enum Plane {
    Netdev(NetdevPlane),
    Mroute(MroutePlane),
}

impl Plane {
    /// Applies `changes` in one transaction.
    pub(crate) fn apply(&mut self, changes: &PlaneChanges) -> Result<(), String> {
        match self {
            Self::Netdev(p) => p.apply(changes).map_err(|e| e.to_string()),
            Self::Mroute(p) => p.apply(changes).map_err(|e| e.to_string()),
        }
    }

    fn route_count(&self) -> usize {
        match self {
            Self::Netdev(p) => p.route_count(),
            Self::Mroute(p) => p.route_count(),
        }
    }
}

/// What the worker reports (read by `/metrics` and the admin API).
#[derive(Debug, Default)]
pub(crate) struct PlaneStats {
    /// Transactions applied.
    pub(crate) transactions: AtomicU64,
    /// Transactions the kernel refused (each followed by a full resynchronisation).
    pub(crate) errors: AtomicU64,
    /// Routes in the kernel.
    pub(crate) kernel_routes: AtomicU64,
    /// Netdev plane: its kernel counters, read once a second.
    pub(crate) netdev: Mutex<Option<NetdevCounters>>,
    /// Mroute plane: packets the intercept's forward rule stopped.
    pub(crate) stopped: AtomicU64,
    /// The last error.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl PlaneStats {
    pub(crate) fn netdev_counters(&self) -> Option<NetdevCounters> {
        *self.netdev.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Assist-only: the kernel's routes as the worker last read them, by interface index.
pub(crate) type KernelRoutes = Vec<(RouteKey, PlaneRoute)>;

/// The worker thread. Dropping it stops the thread and with it the plane (its table goes).
#[derive(Debug)]
pub(crate) struct PlaneWorker {
    sync: Arc<PlaneSync>,
    thread: Option<JoinHandle<()>>,
}

/// How often the worker reads counters and (assist-only) the kernel's routes.
const READ_PERIOD: Duration = Duration::from_secs(1);
/// The shortest time between two reads the driver asks for.
const READ_GAP: Duration = Duration::from_millis(50);

impl PlaneWorker {
    /// Starts the worker for `plane`. With `kernel` (assist-only: VIF names to interface
    /// indexes), it also reads the kernel's routes and sends them on the returned channel.
    pub(crate) fn start(
        mut plane: Plane,
        sync: Arc<PlaneSync>,
        stats: Arc<PlaneStats>,
        kernel: Option<HashMap<String, u32>>,
    ) -> std::io::Result<(Self, Option<watch::Receiver<KernelRoutes>>)> {
        let (tx, rx) = watch::channel(Vec::new());
        let rx = kernel.is_some().then_some(rx);
        let s = Arc::clone(&sync);
        let thread = std::thread::Builder::new()
            .name("dataplane".to_owned())
            .spawn(move || {
                let mut last_read: Option<Instant> = None;
                let mut backoff = Duration::from_millis(100);
                while let Some(changes) = s.wait_take(READ_PERIOD) {
                    if !changes.is_empty() {
                        match plane.apply(&changes) {
                            Ok(()) => {
                                stats.transactions.fetch_add(1, Ordering::Relaxed);
                                backoff = Duration::from_millis(100);
                            }
                            Err(e) => {
                                stats.errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(error = %e, "data plane change refused; applying the whole state again");
                                *stats.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                                    Some(e);
                                s.resync();
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(5));
                            }
                        }
                        stats
                            .kernel_routes
                            .store(plane.route_count() as u64, Ordering::Relaxed);
                    }
                    let mut now = crate::daemon::now();
                    let since = last_read.map(|t| now.duration_since(t));
                    if s.take_read_request() {
                        // Asked for (a packet of an unknown route): now, but not more often
                        // than every READ_GAP.
                        if let Some(wait) = since.and_then(|d| READ_GAP.checked_sub(d)) {
                            std::thread::sleep(wait);
                            now = crate::daemon::now();
                        }
                    } else if since.is_some_and(|d| d < READ_PERIOD) {
                        continue;
                    }
                    last_read = Some(now);
                    match &mut plane {
                        Plane::Netdev(p) => {
                            if let Ok(c) = p.counters() {
                                *stats.netdev.lock().unwrap_or_else(PoisonError::into_inner) =
                                    Some(c);
                            }
                        }
                        Plane::Mroute(p) => {
                            stats.stopped.store(p.stopped_packets(), Ordering::Relaxed);
                        }
                    }
                    if let Some(names) = &kernel {
                        if let Some(routes) = read_kernel_routes(names) {
                            tx.send_if_modified(|old| {
                                let changed = *old != routes;
                                *old = routes;
                                changed
                            });
                        }
                    }
                }
                // Dropping the plane closes its socket: an owned table goes with it.
                drop(plane);
            })?;
        Ok((
            Self {
                sync,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// Stops the worker and waits for it: the plane's kernel state is gone after this.
    pub(crate) fn stop(&mut self) {
        self.sync.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PlaneWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Assist-only: the kernel's MFC with VIFs resolved to the interface indexes of `names`;
/// `None` if it cannot be read.
fn read_kernel_routes(names: &HashMap<String, u32>) -> Option<KernelRoutes> {
    let (vifs, mfc) = match (procfs::read_vifs(), procfs::read_mfc()) {
        (Ok(v), Ok(m)) => (v, m),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot read the kernel's multicast routing table");
            return None;
        }
    };
    let index_of = |vif: u16| -> Option<u32> {
        let name = &vifs.iter().find(|v| v.vif == vif)?.name;
        names.get(name).copied()
    };
    let mut routes: KernelRoutes = mfc
        .iter()
        .filter_map(|e| {
            let key = if e.origin.is_unspecified() {
                RouteKey::any(e.group)
            } else {
                RouteKey::sg(e.origin, e.group)
            };
            let iif = index_of(e.iif?)?;
            let mut oifs: Vec<u32> = e.oifs.iter().filter_map(|&o| index_of(o)).collect();
            oifs.sort_unstable();
            oifs.retain(|&o| o != iif);
            Some((key, PlaneRoute { iif, oifs }))
        })
        .collect();
    routes.sort_by_key(|r| r.0);
    Some(routes)
}
