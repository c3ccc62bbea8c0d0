//! The receiving half: a [`proto::receiver::Receiver`](crate::proto::receiver::Receiver)
//! engine on a transport, driven by a tokio task.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::io::AsyncTransport;
use super::{Error, Event, is_transient, now, sleep_until};
use crate::net::{RecvBatch, Transport, TransportConfig};
use crate::proto::Transmit;
use crate::proto::receiver::{self, ReceiverConfig as EngineConfig};

/// What a [`Receiver`] is bound with.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The receiver engine's configuration.
    pub engine: EngineConfig,
    /// The transport. [`Receiver::bind`] opens it with `listen_multicast` on; set
    /// `listen_unicast` off when a sender on the same host owns the unicast port (PGM/UDP),
    /// as the receiver engine needs no unicast today.
    pub transport: TransportConfig,
    /// Events buffered for the application; when this many wait, the driver stops reading
    /// the sockets until the application takes them (the kernel then drops, and PGM
    /// repairs). The application's side holds up to as many again, taken in one go. Default
    /// 4096.
    pub event_queue: usize,
}

impl ReceiverConfig {
    /// A configuration with the default event queue.
    pub fn new(engine: EngineConfig, transport: TransportConfig) -> Self {
        Self {
            engine,
            transport,
            event_queue: 4096,
        }
    }
}

/// Counters of a [`Receiver`]: the engine's and the driver's.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReceiverStats {
    /// The receiver engine's counters.
    pub engine: receiver::ReceiverStats,
    /// Transmits (NAK, SPMR, POLR) the kernel refused.
    pub send_errors: u64,
    /// Receive errors (skipped packets).
    pub recv_errors: u64,
}

/// A PGM receiver for one data-destination port on one group, any number of sources.
///
/// Created by [`Receiver::bind`] inside a tokio runtime, which then runs its driver task;
/// dropping the receiver stops the driver and closes the sockets.
///
/// # Example
///
/// ```no_run
/// use std::net::Ipv4Addr;
///
/// use pgm_core::host::{Event, Receiver, ReceiverConfig};
/// use pgm_core::net::{Encapsulation, TransportConfig};
/// use pgm_core::proto::receiver;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let group = Ipv4Addr::new(239, 192, 0, 1);
/// let iface = pgm_core::net::iface::resolve("eth0")?.addr;
/// let transport = TransportConfig::new(Encapsulation::Ip, group, iface); // CAP_NET_RAW
/// let engine = receiver::ReceiverConfig::new(7500, group.into());
/// let mut rx = Receiver::bind(ReceiverConfig::new(engine, transport))?;
/// while let Some(event) = rx.next_event().await {
///     match event {
///         Event::SessionStart { tsi } => println!("{tsi} started"),
///         Event::Data { tsi, data } => println!("{tsi}: {} bytes", data.len()),
///         Event::Loss { tsi, first, count } => println!("{tsi}: lost {count} from {first:?}"),
///         Event::SessionEnd { tsi, reason } => println!("{tsi} ended: {reason:?}"),
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
    /// Events taken from the driver in one go, handed out one by one.
    local: VecDeque<Event>,
    stats: mpsc::Sender<oneshot::Sender<ReceiverStats>>,
    driver: JoinHandle<io::Result<()>>,
}

/// Events from the driver to the application, under one lock held only to push or take.
#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<Event>,
    driver_done: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the application: events arrived, or the driver ended.
    ready: Notify,
    /// Wakes the driver: the application took the events of a full queue.
    room: Notify,
    limit: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Each critical section is a push or a take: a panic cannot leave it half done.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks the driver done when it ends, however it ends, so that the application stops
/// waiting for events.
struct DoneOnDrop(Arc<Shared>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.lock().driver_done = true;
        self.0.ready.notify_one();
    }
}

impl Receiver {
    /// Opens the transport `config` describes (joining the group) and starts receiving on
    /// the current tokio runtime. The engine's `local_addr` (PGMCC's name for this receiver)
    /// defaults to the transport's interface address.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn bind(config: ReceiverConfig) -> io::Result<Self> {
        let mut t = config.transport.clone();
        if std::net::IpAddr::V4(t.group) != config.engine.group {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the transport's group differs from the engine's",
            ));
        }
        t.listen_multicast = true;
        let transport = t.open()?;
        let mut engine = config.engine;
        // PGMCC names an acker by its address: the interface's, which its ACKs leave from.
        if engine.local_addr.is_none() && !t.interface.is_unspecified() {
            engine.local_addr = Some(std::net::IpAddr::V4(t.interface));
        }
        Self::with_transport(engine, transport, config.event_queue)
    }

    /// Starts receiving on a transport opened by the caller.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn with_transport<T: Transport + 'static>(
        engine: EngineConfig,
        transport: T,
        event_queue: usize,
    ) -> io::Result<Self> {
        let io = AsyncTransport::new(transport)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            room: Notify::new(),
            limit: event_queue.max(1),
        });
        let (stats, stats_rx) = mpsc::channel(4);
        let driver = Driver {
            engine: receiver::Receiver::new(engine),
            io,
            shared: shared.clone(),
            stats_requests: stats_rx,
            stats: ReceiverStats::default(),
        };
        let driver = tokio::spawn(driver.run());
        Ok(Self {
            shared,
            local: VecDeque::new(),
            stats,
            driver,
        })
    }

    /// The next event: data (in order per source), loss, session start and end. `None` once
    /// the driver has stopped (see [`Receiver::stop`] for why).
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.local.pop_front() {
                return Some(e);
            }
            let ready = self.shared.ready.notified();
            tokio::pin!(ready);
            {
                let mut q = self.shared.lock();
                if !q.events.is_empty() {
                    std::mem::swap(&mut self.local, &mut q.events);
                    let was_full = self.local.len() >= self.shared.limit;
                    drop(q);
                    if was_full {
                        self.shared.room.notify_one();
                    }
                    continue;
                }
                if q.driver_done {
                    return None;
                }
                // Registered before the lock is released: the driver's next push wakes us.
                ready.as_mut().enable();
            }
            ready.await;
        }
    }

    /// The current counters.
    pub async fn stats(&self) -> Result<ReceiverStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.stats.send(tx).await.map_err(|_| Error::DriverGone)?;
        rx.await.map_err(|_| Error::DriverGone)
    }

    /// Stops the driver and returns why it had stopped on its own, if it had: a socket
    /// error that was not per-packet.
    pub async fn stop(self) -> io::Result<()> {
        let Self { stats, driver, .. } = self;
        drop(stats);
        match driver.await {
            Ok(r) => r,
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

struct Driver<T> {
    engine: receiver::Receiver,
    io: AsyncTransport<T>,
    shared: Arc<Shared>,
    stats_requests: mpsc::Receiver<oneshot::Sender<ReceiverStats>>,
    stats: ReceiverStats,
}

impl<T: Transport> Driver<T> {
    async fn run(mut self) -> io::Result<()> {
        let _done = DoneOnDrop(self.shared.clone());
        let mut buf = Vec::with_capacity(512);
        let mut out: Vec<(Transmit, Vec<u8>)> = Vec::new();
        let mut rbatch = RecvBatch::new();
        loop {
            let now = now();
            while let Some(t) = self.engine.poll_transmit(now, &mut buf) {
                if t.len > 0 {
                    out.push((t, buf[..t.len].to_vec()));
                }
            }
            if !out.is_empty() {
                let batch: Vec<(Transmit, &[u8])> = out.iter().map(|(t, p)| (*t, &p[..])).collect();
                let mut done = 0;
                while done < batch.len() {
                    let (n, r) = self.io.send_batch(&batch[done..]).await;
                    done += n;
                    if let Err(e) = r {
                        self.stats.send_errors += 1;
                        if !is_transient(&e) {
                            return Err(e);
                        }
                        done += 1;
                    }
                }
                drop(batch);
                out.clear();
            }
            let (full, woke) = self.publish();
            if woke {
                // Let the application take what it was woken for before this task reads the
                // sockets again (a receive that finds nothing is a system call too).
                tokio::task::yield_now().await;
            }
            let deadline = self.engine.poll_timeout();
            tokio::select! {
                r = self.io.recv_batch(&mut rbatch), if !full => {
                    self.on_recv(super::now(), r, &rbatch)?;
                }
                () = self.shared.room.notified(), if full => {}
                () = sleep_until(deadline) => self.engine.handle_timeout(super::now()),
                req = self.stats_requests.recv() => match req {
                    Some(reply) => {
                        let mut s = self.stats.clone();
                        s.engine = self.engine.stats().clone();
                        let _ = reply.send(s);
                    }
                    // The application dropped the receiver.
                    None => return Ok(()),
                },
            }
        }
    }

    /// Moves the engine's events to the application's queue, waking it if it may be
    /// waiting. Returns whether the queue is full, and whether the application was woken.
    fn publish(&mut self) -> (bool, bool) {
        let mut q = self.shared.lock();
        let was_empty = q.events.is_empty();
        while let Some(ev) = self.engine.poll_event() {
            q.events.push_back(ev);
        }
        let (len, limit) = (q.events.len(), self.shared.limit);
        drop(q);
        let woke = was_empty && len > 0;
        if woke {
            self.shared.ready.notify_one();
        }
        (len >= limit, woke)
    }

    fn on_recv(&mut self, now: Instant, r: io::Result<usize>, batch: &RecvBatch) -> io::Result<()> {
        match r {
            Ok(n) => {
                for i in 0..n {
                    match batch.get(i) {
                        Ok((meta, bytes)) => self.engine.handle_packet(now, meta, bytes),
                        Err(_) => self.stats.recv_errors += 1,
                    }
                }
            }
            Err(e) => {
                self.stats.recv_errors += 1;
                if !is_transient(&e) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
