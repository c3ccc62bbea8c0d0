//! What a data plane is asked to do, whichever plane it is: forward the ODATA of each route
//! in the kernel, and hand the daemon every other PGM packet of the assisted groups.
//!
//! The daemon's controller decides the state ([`PlaneState`]); the changes to it since the
//! plane last applied them travel as a [`PlaneChanges`], built by [`PlaneSync`], which a
//! plane's worker thread takes and applies in one kernel transaction. Both stay bounded by
//! the controller's tables: a key changed twice is one change, and past a limit the changes
//! collapse into one full resynchronisation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A multicast route's key: `(S,G)`, or `(*,G)` without a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// The source, `None` for every source of the group.
    pub source: Option<Ipv4Addr>,
    /// The group.
    pub group: Ipv4Addr,
}

impl RouteKey {
    /// `(source, group)`.
    pub fn sg(source: Ipv4Addr, group: Ipv4Addr) -> Self {
        Self {
            source: Some(source),
            group,
        }
    }

    /// `(*, group)`.
    pub fn any(group: Ipv4Addr) -> Self {
        Self {
            source: None,
            group,
        }
    }
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.source {
            Some(s) => write!(f, "({s}, {})", self.group),
            None => write!(f, "(*, {})", self.group),
        }
    }
}

/// Where a route's packets come in and go out, by interface index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlaneRoute {
    /// The one interface the route's packets are accepted from (reverse path).
    pub iif: u32,
    /// The interfaces they are forwarded to, sorted, never `iif`.
    pub oifs: Vec<u32>,
}

/// The whole state a plane is asked to hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaneState {
    /// The routes.
    pub routes: BTreeMap<RouteKey, PlaneRoute>,
    /// The assisted groups: every PGM packet but ODATA of these goes to the daemon.
    pub assisted: BTreeSet<Ipv4Addr>,
    /// Groups whose packets from a source without a route go to the daemon, which makes
    /// the route (groups with members and no `(*,G)` route; netdev plane only).
    pub learn: BTreeSet<Ipv4Addr>,
}

/// Changes to apply: for each key, its new value (`None`: remove); or the whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaneChanges {
    /// Changed routes.
    pub routes: HashMap<RouteKey, Option<PlaneRoute>>,
    /// Changed assisted groups (`true`: add).
    pub assisted: HashMap<Ipv4Addr, bool>,
    /// Changed learning groups (`true`: add).
    pub learn: HashMap<Ipv4Addr, bool>,
    /// Replace everything with this state (after too many changes, or to recover).
    pub full: Option<PlaneState>,
}

impl PlaneChanges {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.full.is_none()
            && self.routes.is_empty()
            && self.assisted.is_empty()
            && self.learn.is_empty()
    }

    fn len(&self) -> usize {
        self.routes.len() + self.assisted.len() + self.learn.len()
    }
}

/// The state, and the changes not yet taken by the plane: shared by the controller, which
/// changes it, and the plane's worker thread, which takes the changes. See the
/// [module documentation](self).
#[derive(Debug, Default)]
pub struct PlaneSync {
    inner: Mutex<Inner>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    state: PlaneState,
    pending: PlaneChanges,
    /// The next take is the whole state (the pending changes are dropped).
    full: bool,
    /// Past this many pending changes, the next take is a full state.
    limit: usize,
    /// The driver asked the worker to read the kernel's routes now.
    read_requested: bool,
    closed: bool,
}

impl Inner {
    /// After a pending change was recorded: past the limit, the changes collapse into one
    /// full state.
    fn bound(&mut self) {
        if self.pending.len() > self.limit {
            self.pending = PlaneChanges::default();
            self.full = true;
        }
    }

    fn has_changes(&self) -> bool {
        self.full || !self.pending.is_empty()
    }
}

impl PlaneSync {
    /// An empty state; at most `limit` changes are kept one by one.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                limit: limit.max(1),
                ..Inner::default()
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self, changed: bool) {
        if changed {
            self.wake.notify_one();
        }
    }

    /// Reads the state.
    pub fn with_state<R>(&self, f: impl FnOnce(&PlaneState) -> R) -> R {
        f(&self.lock().state)
    }

    /// Sets (or removes, with `None`) a route.
    pub fn set_route(&self, key: RouteKey, route: Option<PlaneRoute>) {
        let mut i = self.lock();
        let old = match &route {
            Some(r) => i.state.routes.insert(key, r.clone()),
            None => i.state.routes.remove(&key),
        };
        let changed = old != route;
        if changed && !i.full {
            i.pending.routes.insert(key, route);
            i.bound();
        }
        drop(i);
        self.notify(changed);
    }

    /// Makes `group` assisted or not.
    pub fn set_assisted(&self, group: Ipv4Addr, on: bool) {
        let mut i = self.lock();
        let changed = if on {
            i.state.assisted.insert(group)
        } else {
            i.state.assisted.remove(&group)
        };
        if changed && !i.full {
            i.pending.assisted.insert(group, on);
            i.bound();
        }
        drop(i);
        self.notify(changed);
    }

    /// Makes `group` a learning group or not.
    pub fn set_learn(&self, group: Ipv4Addr, on: bool) {
        let mut i = self.lock();
        let changed = if on {
            i.state.learn.insert(group)
        } else {
            i.state.learn.remove(&group)
        };
        if changed && !i.full {
            i.pending.learn.insert(group, on);
            i.bound();
        }
        drop(i);
        self.notify(changed);
    }

    /// Asks for the whole state to be applied again (after the plane failed).
    pub fn resync(&self) {
        let mut i = self.lock();
        i.pending = PlaneChanges::default();
        i.full = true;
        drop(i);
        self.notify(true);
    }

    /// Whether changes wait to be taken.
    pub fn has_changes(&self) -> bool {
        self.lock().has_changes()
    }

    /// Takes the changes since the last take (empty if none).
    pub fn take(&self) -> PlaneChanges {
        Self::take_locked(&mut self.lock())
    }

    fn take_locked(i: &mut Inner) -> PlaneChanges {
        let mut c = std::mem::take(&mut i.pending);
        if std::mem::take(&mut i.full) {
            c.full = Some(i.state.clone());
        }
        c
    }

    /// Waits at most `timeout` for changes and takes them; `None` once [`PlaneSync::close`]d.
    pub fn wait_take(&self, timeout: Duration) -> Option<PlaneChanges> {
        let i = self.lock();
        let (mut i, _) = self
            .wake
            .wait_timeout_while(i, timeout, |i| {
                !i.closed && !i.has_changes() && !i.read_requested
            })
            .unwrap_or_else(PoisonError::into_inner);
        if i.closed {
            return None;
        }
        Some(Self::take_locked(&mut i))
    }

    /// Asks the worker to read the kernel's routes as soon as it can (assist-only mode: a
    /// packet of a route the daemon does not know yet), waking it.
    pub fn request_read(&self) {
        let mut i = self.lock();
        if !i.read_requested {
            i.read_requested = true;
            drop(i);
            self.wake.notify_one();
        }
    }

    /// Whether a read was asked for since the last call (and forgets the request).
    pub fn take_read_request(&self) -> bool {
        std::mem::take(&mut self.lock().read_requested)
    }

    /// Ends [`PlaneSync::wait_take`]: the worker stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
    const S: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn route(iif: u32, oifs: &[u32]) -> PlaneRoute {
        PlaneRoute {
            iif,
            oifs: oifs.to_vec(),
        }
    }

    #[test]
    fn changes_coalesce_by_key() {
        let s = PlaneSync::new(16);
        s.set_route(RouteKey::sg(S, G), Some(route(1, &[2])));
        s.set_route(RouteKey::sg(S, G), Some(route(1, &[2, 3])));
        s.set_assisted(G, true);
        s.set_assisted(G, true);
        let c = s.take();
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[&RouteKey::sg(S, G)], Some(route(1, &[2, 3])));
        assert_eq!(c.assisted.len(), 1);
        assert!(!s.has_changes());
        // An unchanged value is no change.
        s.set_route(RouteKey::sg(S, G), Some(route(1, &[2, 3])));
        assert!(!s.has_changes());
        s.set_route(RouteKey::sg(S, G), None);
        assert_eq!(s.take().routes[&RouteKey::sg(S, G)], None);
        assert!(s.with_state(|st| st.routes.is_empty()));
    }

    #[test]
    fn too_many_changes_become_one_full_state() {
        let s = PlaneSync::new(4);
        for i in 0..100u8 {
            s.set_route(
                RouteKey::sg(Ipv4Addr::new(10, 0, 0, i), G),
                Some(route(1, &[2])),
            );
            s.set_learn(Ipv4Addr::new(239, 0, 0, i), true);
        }
        s.set_assisted(G, true);
        let c = s.take();
        assert!(c.routes.is_empty() && c.learn.is_empty() && c.assisted.is_empty());
        let full = c.full.unwrap();
        assert_eq!((full.routes.len(), full.learn.len()), (100, 100));
        assert!(
            full.assisted.contains(&G),
            "changes after the overflow are in the state"
        );
        assert!(!s.has_changes());
    }

    #[test]
    fn changes_never_wait_for_the_worker() {
        // The worker takes a change and then hangs in its "kernel transaction" until the
        // producer is done: the producer's ten thousand changes go through meanwhile (a
        // producer that waited for the worker would deadlock here) and all arrive in the
        // next take, collapsed to a full state past the limit.
        let s = std::sync::Arc::new(PlaneSync::new(64));
        let (release, parked) = std::sync::mpsc::channel::<()>();
        let w = std::sync::Arc::clone(&s);
        let worker = std::thread::spawn(move || {
            let first = w.wait_take(Duration::from_secs(60));
            parked.recv().expect("released");
            (first, w.take())
        });
        s.set_assisted(G, true);
        while s.has_changes() {
            std::thread::yield_now();
        }
        for i in 0..10_000u32 {
            s.set_route(RouteKey::sg(Ipv4Addr::from(i), G), Some(route(1, &[2])));
        }
        release.send(()).expect("worker alive");
        let (first, second) = worker.join().expect("worker");
        assert_eq!(first.and_then(|c| c.assisted.get(&G).copied()), Some(true));
        assert_eq!(second.full.map(|f| f.routes.len()), Some(10_000));
    }

    #[test]
    fn the_worker_wakes_for_changes_and_stops_when_closed() {
        let s = std::sync::Arc::new(PlaneSync::new(4));
        assert_eq!(
            s.wait_take(Duration::from_millis(1)),
            Some(PlaneChanges::default())
        );
        let w = std::sync::Arc::clone(&s);
        let t = std::thread::spawn(move || w.wait_take(Duration::from_secs(30)));
        s.set_assisted(G, true);
        let c = t.join().unwrap().unwrap();
        assert_eq!(c.assisted.get(&G), Some(&true));
        // A read request wakes the worker too, with no change to take.
        let w = std::sync::Arc::clone(&s);
        let t = std::thread::spawn(move || {
            let c = w.wait_take(Duration::from_secs(30));
            (c, w.take_read_request())
        });
        s.request_read();
        let (c, asked) = t.join().unwrap();
        assert_eq!(c, Some(PlaneChanges::default()));
        assert!(asked && !s.take_read_request());
        s.close();
        assert_eq!(s.wait_take(Duration::from_secs(30)), None);
    }
}
