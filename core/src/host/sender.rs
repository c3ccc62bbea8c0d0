//! The sending half: a [`Source`] engine on a transport, driven by a tokio task.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::io::AsyncTransport;
use super::tx::Core;
use super::{Error, now, sleep_until};
use crate::net::{RecvBatch, Transport, TransportConfig};
use crate::proto::source::{SendError, Source, SourceConfig, SourceStats};
use crate::wire::Tsi;

/// What a [`Sender`] is bound with.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The source engine's configuration.
    pub engine: SourceConfig,
    /// The transport. [`Sender::bind`] opens it with `listen_unicast` on and
    /// `listen_multicast` off: a source takes NAKs and SPMRs by unicast and has no use for
    /// the group's traffic (its own data, looped back).
    pub transport: TransportConfig,
    /// How long [`Sender::close`] keeps answering NAKs after the last data was sent, so that
    /// receivers can still repair the end of the session (§9.7). Default 2 s: ten times the
    /// receivers' default NAK_RPT_IVL.
    pub linger: Duration,
    /// Messages [`Sender::send`] queues for the driver before it waits (also bounded by 8
    /// MiB of messages). Default 1024: enough to keep the driver busy between two of the
    /// application's time slices, small beside the transmit window.
    pub send_queue: usize,
}

impl SenderConfig {
    /// A configuration with the default linger.
    pub fn new(engine: SourceConfig, transport: TransportConfig) -> Self {
        Self {
            engine,
            transport,
            linger: Duration::from_secs(2),
            send_queue: 1024,
        }
    }
}

/// Counters of a [`Sender`]: the engine's and the driver's.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SenderStats {
    /// The source engine's counters.
    pub engine: SourceStats,
    /// Transmits the kernel refused (each dropped; PGM repairs what it must).
    pub send_errors: u64,
    /// Receive errors (skipped packets).
    pub recv_errors: u64,
    /// Messages the engine refused after [`Sender::send`] had queued them (too many
    /// fragments for the transmit window).
    pub refused: u64,
}

/// Messages accepted by [`Sender::send`] and not yet taken by the driver, with the requests
/// that ride along with them. Shared by the handles and the driver under one lock, held only
/// to push or take.
#[derive(Default)]
struct Queue {
    msgs: VecDeque<Vec<u8>>,
    bytes: usize,
    close_requested: bool,
    driver_gone: bool,
    flushes: Vec<oneshot::Sender<()>>,
    closes: Vec<oneshot::Sender<SenderStats>>,
    stats: Vec<oneshot::Sender<SenderStats>>,
}

impl Queue {
    /// Why a message cannot be accepted now, if it cannot.
    fn refuse(&self) -> Result<(), Error> {
        if self.driver_gone {
            return Err(Error::DriverGone);
        }
        if self.close_requested {
            return Err(Error::Send(SendError::Closed));
        }
        Ok(())
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// The engine and the packets on their way out (lock order: `core`, then `queue`).
    core: Mutex<Core>,
    transport: Arc<dyn Transport>,
    /// When `send` was last called, in ns since `epoch` (0: never).
    last_send: AtomicU64,
    /// Average time between `send` calls, in ns (0: unknown).
    interval: AtomicU64,
    /// Average time an inline send takes, in ns (0: unknown).
    inline_cost: AtomicU64,
    epoch: Instant,
    /// Wakes the driver: the queue went from empty to not, or a request arrived.
    wake_driver: Notify,
    /// Wakes handles waiting for room in the queue (or for the driver's end).
    room: Notify,
    /// Most messages queued; `send` waits beyond.
    max_msgs: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while the lock was held cannot leave the queue inconsistent: each
        // critical section is a push or a take.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        // The engine's calls do not panic on any input; a panic elsewhere under the lock
        // (an allocation failure) would leave at worst a packet unsent, which PGM repairs.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine, if no one else holds it now.
    fn try_core(&self) -> Option<MutexGuard<'_, Core>> {
        match self.core.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Nanoseconds from `epoch` to `t`.
    fn since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records a message sent at `t`, and tells whether it may be sent inline: while the
    /// application's messages come, on average, at least one and a half times as far apart
    /// as an inline send takes, that is while it spends between two messages at least half
    /// as long as sending one. A stream of messages sent back to back (a loop that only
    /// makes them) falls below, and goes through the driver, whose batches cost less per
    /// message (one system call each) and run beside the application on another thread.
    /// The interval is averaged over about 64 messages (exponential, weight 1/64), so that
    /// it is the application's rate: a paced sender that was held up and sends the
    /// messages due since then back to back stays inline (the pause counts too). The cost
    /// is averaged with weight 1/8.
    fn paced_at(&self, t: Instant) -> bool {
        let at = self.since_epoch(t).max(1);
        let prev = self.last_send.swap(at, Ordering::Relaxed);
        let mut interval = self.interval.load(Ordering::Relaxed);
        if prev != 0 {
            let gap = at.saturating_sub(prev);
            interval = ewma(interval, gap, 6);
            self.interval.store(interval, Ordering::Relaxed);
        }
        let cost = self.inline_cost.load(Ordering::Relaxed);
        interval == 0 || interval >= cost.saturating_add(cost / 2)
    }

    /// Does the driver's sending from the calling task, if no one else is: takes the queue
    /// `q` (locked by the caller, the new message last) behind the messages pending,
    /// admits them to the engine in order and sends one batch, with no wakeup of the
    /// driver in between. A message sent while everything before it has left goes out at
    /// once; one sent while the driver is behind (its thread not scheduled, say) helps it
    /// catch up. The driver is woken only if work remains or the engine's next deadline
    /// comes before the one it waits for. Gives the queue back if someone else is sending:
    /// the caller leaves it to the driver.
    fn send_inline<'a>(
        &self,
        mut q: MutexGuard<'a, Queue>,
        start: Instant,
    ) -> Result<(), MutexGuard<'a, Queue>> {
        let Some(mut core) = self.try_core() else {
            return Err(q);
        };
        core.pending.append(&mut q.msgs);
        q.bytes = 0;
        // Messages are in the engine's order now: later ones may queue.
        drop(q);
        self.room.notify_waiters();
        core.admit();
        let pump = core.pump(&*self.transport);
        // The driver sends what did not fit, and re-arms its timer if the engine's next
        // deadline (a heartbeat SPM) comes before the one it waits for.
        let sooner = match (core.source.poll_timeout(), core.armed) {
            (Some(t), Some(armed)) => t < armed,
            (t, _) => t.is_some(),
        };
        let more = pump.blocked.is_some() || pump.more || !core.pending.is_empty();
        drop(core);
        if more || sooner {
            self.wake_driver.notify_one();
        }
        // The time this send took, counted at most twice the average: a send preempted for
        // milliseconds would otherwise hold the average high, and with it every later
        // message in the driver's queue, where no inline send can bring it down again.
        let avg = self.inline_cost.load(Ordering::Relaxed);
        let took =
            u64::try_from(now().saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        let took = if avg == 0 {
            took
        } else {
            took.min(avg.saturating_mul(2))
        };
        self.inline_cost
            .store(ewma(avg, took, 3), Ordering::Relaxed);
        Ok(())
    }

    fn request(&self, f: impl FnOnce(&mut Queue)) -> Result<(), Error> {
        let mut q = self.lock();
        if q.driver_gone {
            return Err(Error::DriverGone);
        }
        f(&mut q);
        drop(q);
        self.wake_driver.notify_one();
        Ok(())
    }
}

/// The exponential average of `avg` (0: none yet) and `sample`, weight `1 / 2^shift`.
fn ewma(avg: u64, sample: u64, shift: u32) -> u64 {
    if avg == 0 {
        sample.max(1)
    } else {
        (avg - (avg >> shift))
            .saturating_add(sample >> shift)
            .max(1)
    }
}

/// Most bytes of messages queued (beyond one message); `send` waits beyond.
const QUEUE_BYTES: usize = 8 << 20;

/// What every clone of a [`Sender`] shares; dropping the last closes the session.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Every handle is gone: close as `close` would, in the background.
        let _ = self.shared.request(|q| q.close_requested = true);
    }
}

/// A PGM source: one transport session sending to one group.
///
/// Created by [`Sender::bind`] inside a tokio runtime, which then runs its driver task.
/// Dropping every handle without [`Sender::close`] closes the session the same way in the
/// background, as long as the runtime lives.
///
/// # Example
///
/// ```no_run
/// use std::net::Ipv4Addr;
///
/// use pgm_core::host::{Sender, SenderConfig};
/// use pgm_core::net::{Encapsulation, TransportConfig};
/// use pgm_core::proto::source::SourceConfig;
/// use pgm_core::wire::Gsi;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let group = Ipv4Addr::new(239, 192, 0, 1);
/// let iface = pgm_core::net::iface::resolve("eth0")?.addr;
/// let mut engine = SourceConfig::new(Gsi([1, 2, 3, 4, 5, 6]), 4000, 7500, group.into(), iface.into());
/// engine.txw_max_rte = 10_000_000; // bytes per second
/// let transport = TransportConfig::new(Encapsulation::UDP, group, iface);
/// let sender = Sender::bind(SenderConfig::new(engine, transport))?;
/// for i in 0..1000u32 {
///     sender.send(&i.to_be_bytes()).await?; // waits while the send queue is full
/// }
/// sender.flush().await?; // every message has left as ODATA
/// let stats = sender.close().await?; // OPT_FIN, then linger for repairs
/// println!("{} NAKs answered", stats.engine.naks_received);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Sender {
    handle: Arc<Handle>,
    tsi: Tsi,
    max_apdu: usize,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("tsi", &self.tsi).finish()
    }
}

impl Sender {
    /// Opens the transport `config` describes and starts the session on the current tokio
    /// runtime. The group and interface of the transport must be the engine's `group` and
    /// `source_addr` (unless the interface is unspecified).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn bind(config: SenderConfig) -> io::Result<Self> {
        let mut t = config.transport.clone();
        if IpAddr::V4(t.group) != config.engine.group {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the transport's group differs from the engine's",
            ));
        }
        if !t.interface.is_unspecified() && IpAddr::V4(t.interface) != config.engine.source_addr {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the transport's interface differs from the engine's source_addr",
            ));
        }
        t.listen_unicast = true;
        t.listen_multicast = false;
        let transport = t.open()?;
        Self::start(config.engine, transport, config.linger, config.send_queue)
    }

    /// Starts a session on a transport opened by the caller.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn with_transport<T: Transport + 'static>(
        engine: SourceConfig,
        transport: T,
        linger: Duration,
    ) -> io::Result<Self> {
        Self::start(engine, transport, linger, 1024)
    }

    fn start<T: Transport + 'static>(
        engine: SourceConfig,
        transport: T,
        linger: Duration,
        send_queue: usize,
    ) -> io::Result<Self> {
        let transport: Arc<dyn Transport> = Arc::new(transport);
        let io = AsyncTransport::new(transport.clone())?;
        let max_apdu = engine.max_apdu;
        let source = Source::new(engine, now());
        let tsi = source.tsi();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            core: Mutex::new(Core::new(source, &*transport)),
            transport,
            last_send: AtomicU64::new(0),
            interval: AtomicU64::new(0),
            inline_cost: AtomicU64::new(0),
            epoch: now(),
            wake_driver: Notify::new(),
            room: Notify::new(),
            max_msgs: send_queue.max(1),
        });
        let driver = Driver {
            io,
            shared: shared.clone(),
            flushes: Vec::new(),
            closes: Vec::new(),
            close_requested: false,
            close_started: false,
            linger,
            linger_until: None,
        };
        tokio::spawn(driver.run());
        Ok(Self {
            handle: Arc::new(Handle { shared }),
            tsi,
            max_apdu,
        })
    }

    /// The session's TSI.
    pub fn tsi(&self) -> Tsi {
        self.tsi
    }

    /// Sends one message (fragmented if larger than a packet). Messages are sent in the
    /// order their `send` calls complete. A message larger than the engine's `max_apdu` is
    /// refused at once.
    ///
    /// While the application's messages come, on average, at least one and a half times as
    /// far apart as sending one this way takes (the application is paced, not streaming),
    /// and the driver is not sending at that moment, the message (behind any still queued)
    /// is transmitted by this call itself, without waiting for the driver task to be
    /// scheduled (a wakeup costs microseconds, tens on another thread); the driver keeps the
    /// timers and the input. Otherwise, as for a stream of messages sent back to back, it is
    /// queued for the driver, which sends in batches; this call waits while that queue
    /// ([`SenderConfig::send_queue`]) is full, which it stays while the engine's own queue
    /// of unsent packets (`SourceConfig::send_queue_sqns`) is full.
    pub async fn send(&self, data: &[u8]) -> Result<(), Error> {
        if data.len() > self.max_apdu {
            return Err(Error::Send(SendError::TooLarge));
        }
        let shared = &self.handle.shared;
        let start = now();
        let paced = shared.paced_at(start);
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            {
                let mut q = shared.lock();
                q.refuse()?;
                let fits = q.msgs.len() < shared.max_msgs && q.bytes + data.len() <= QUEUE_BYTES;
                if q.msgs.is_empty() || fits {
                    let was_empty = q.msgs.is_empty();
                    q.bytes += data.len();
                    q.msgs.push_back(data.to_vec());
                    if paced {
                        match shared.send_inline(q, start) {
                            Ok(()) => return Ok(()),
                            Err(back) => q = back,
                        }
                    }
                    drop(q);
                    if was_empty {
                        shared.wake_driver.notify_one();
                    }
                    return Ok(());
                }
                // Registered before the lock is released, so the driver's wakeup after it
                // takes the queue cannot be missed.
                room.as_mut().enable();
            }
            room.await;
        }
    }

    /// Waits until every message accepted so far has been sent as ODATA.
    pub async fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.handle.shared.request(|q| q.flushes.push(tx))?;
        rx.await.map_err(|_| Error::DriverGone)
    }

    /// Closes the session: every accepted message is sent, the last with OPT_FIN (or the
    /// SPMs after it, §9.7), then the driver lingers for the configured time answering NAKs,
    /// and stops. Returns the final counters. Other clones of this handle get
    /// [`SendError::Closed`] from then on.
    pub async fn close(self) -> Result<SenderStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.handle.shared.request(|q| {
            q.close_requested = true;
            q.closes.push(tx);
        })?;
        rx.await.map_err(|_| Error::DriverGone)
    }

    /// The current counters.
    pub async fn stats(&self) -> Result<SenderStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.handle.shared.request(|q| q.stats.push(tx))?;
        rx.await.map_err(|_| Error::DriverGone)
    }
}

/// Marks the driver gone when it ends, however it ends, so that handles stop waiting.
struct GoneOnDrop(Arc<Shared>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.lock().driver_gone = true;
        self.0.room.notify_waiters();
    }
}

/// Packets the sender's driver sends before it yields to the runtime (the application's
/// tasks, and its own wakeups: requests, sockets, timers).
const DRAIN_BUDGET: usize = 1024;

struct Driver {
    io: AsyncTransport<Arc<dyn Transport>>,
    shared: Arc<Shared>,
    flushes: Vec<oneshot::Sender<()>>,
    closes: Vec<oneshot::Sender<SenderStats>>,
    close_requested: bool,
    /// `Source::close` was called (all pending messages were admitted first).
    close_started: bool,
    linger: Duration,
    linger_until: Option<Instant>,
}

impl Driver {
    async fn run(mut self) {
        let shared = self.shared.clone();
        let _gone = GoneOnDrop(shared.clone());
        let mut rbatch = RecvBatch::new();
        loop {
            let now = now();
            self.take_queue(&mut shared.core());
            let more = self.drain().await;
            if self.linger_until.is_some_and(|t| now >= t) {
                break;
            }
            if more {
                // Still data to send: take NAKs and timers without waiting, then go on.
                self.shared.core().poll_input(&*self.shared.transport);
                tokio::task::yield_now().await;
                continue;
            }
            let (deadline, recv_broken) = {
                let mut core = shared.core();
                let deadline = match (core.source.poll_timeout(), self.linger_until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                core.armed = deadline;
                (deadline, core.recv_broken)
            };
            tokio::select! {
                () = self.shared.wake_driver.notified() => {}
                r = self.io.recv_batch(&mut rbatch), if !recv_broken => {
                    self.shared.core().on_recv(super::now(), r, &rbatch);
                }
                () = sleep_until(deadline) => {
                    self.shared.core().source.handle_timeout(super::now());
                }
            }
        }
        let stats = self.snapshot(&self.shared.core());
        for c in self.closes.drain(..) {
            let _ = c.send(stats.clone());
        }
    }

    /// Takes the requests, and the queued messages once the previous ones are admitted.
    fn take_queue(&mut self, core: &mut Core) {
        let mut q = self.shared.lock();
        let stats = std::mem::take(&mut q.stats);
        self.flushes.append(&mut q.flushes);
        self.closes.append(&mut q.closes);
        let mut took = false;
        if core.pending.is_empty() && !q.msgs.is_empty() {
            std::mem::swap(&mut core.pending, &mut q.msgs);
            q.bytes = 0;
            took = true;
        }
        // Close once every message queued before it is taken.
        if q.close_requested && q.msgs.is_empty() {
            self.close_requested = true;
        }
        drop(q);
        if took {
            self.shared.room.notify_waiters();
        }
        if !stats.is_empty() {
            let snapshot = self.snapshot(core);
            for s in stats {
                let _ = s.send(snapshot.clone());
            }
        }
    }

    fn snapshot(&self, core: &Core) -> SenderStats {
        SenderStats {
            engine: core.source.stats().clone(),
            send_errors: core.send_errors,
            recv_errors: core.recv_errors,
            refused: core.refused,
        }
    }

    /// Admits pending messages and sends what the engine has, a batch at a time, until
    /// neither makes progress or [`DRAIN_BUDGET`] packets went out. Returns whether work
    /// remains. Between batches the engine reads the input already queued (see
    /// [`Core::pump`]), so NAKs are confirmed while a backlog drains.
    async fn drain(&mut self) -> bool {
        let shared = self.shared.clone();
        let mut sent = 0;
        loop {
            let pump = {
                let mut core = shared.core();
                core.admit();
                if core.pending.is_empty() {
                    self.take_queue(&mut core);
                    core.admit();
                }
                if core.pending.is_empty() && self.close_requested && !self.close_started {
                    core.source.close(now());
                    self.close_started = true;
                }
                core.pump(&*shared.transport)
            };
            sent += pump.sent;
            if let Some(socket) = pump.blocked {
                if self.io.writable(socket).await.is_err() {
                    // No way to wait: drop the packet rather than spin on it.
                    let mut core = self.shared.core();
                    core.send_errors += 1;
                    core.batch.drop_front();
                }
                continue;
            }
            if sent >= DRAIN_BUDGET {
                return true;
            }
            if !pump.more && pump.sent == 0 {
                break;
            }
        }
        let core = shared.core();
        if core.is_drained() {
            for f in self.flushes.drain(..) {
                let _ = f.send(());
            }
            if self.close_started && self.linger_until.is_none() {
                self.linger_until = Some(now() + self.linger);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::os::fd::{AsFd, BorrowedFd};
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::net::mmsg::SEND_BATCH;
    use crate::proto::{RecvMeta, Transmit};
    use crate::wire::{Body, Gsi, NakRepr, Nla, OptionList, PacketType, Repr, Sqn};

    const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const RCV: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const GSI: Gsi = Gsi([1, 2, 3, 4, 5, 6]);

    /// A transport that records the type of every packet sent and the number of send calls
    /// and, when the `inject_at`-th ODATA is handed to it, queues `nak` on its receiving
    /// socket (a Unix datagram pair: a real descriptor, so the driver's readiness machinery
    /// is the real one). It takes up to 64 packets per call, as `sendmmsg` does.
    struct Recorder {
        rx: UnixDatagram,
        inject: UnixDatagram,
        nak: Vec<u8>,
        inject_at: usize,
        sent: Mutex<Vec<PacketType>>,
        calls: AtomicUsize,
    }

    impl Recorder {
        fn new(nak: Vec<u8>, inject_at: usize) -> Arc<Self> {
            let (rx, inject) = UnixDatagram::pair().expect("socketpair");
            rx.set_nonblocking(true).expect("non-blocking");
            Arc::new(Self {
                rx,
                inject,
                nak,
                inject_at,
                sent: Mutex::new(Vec::new()),
                calls: AtomicUsize::new(0),
            })
        }

        fn log(&self) -> MutexGuard<'_, Vec<PacketType>> {
            self.sent.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn count(&self, ty: PacketType) -> usize {
            self.log().iter().filter(|t| **t == ty).count()
        }
    }

    impl Transport for Recorder {
        fn send(&self, transmit: &Transmit, packet: &[u8]) -> io::Result<()> {
            self.send_batch(&[(*transmit, packet)]).map(drop)
        }

        fn send_batch(&self, batch: &[(Transmit, &[u8])]) -> io::Result<usize> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut log = self.log();
            let n = batch.len().min(SEND_BATCH);
            for (t, _) in &batch[..n] {
                log.push(t.packet_type);
                if t.packet_type == PacketType::Odata {
                    let odata = log.iter().filter(|t| **t == PacketType::Odata).count();
                    if odata == self.inject_at {
                        self.inject.send(&self.nak)?;
                    }
                }
            }
            Ok(n)
        }

        fn send_socket(&self, _transmit: &Transmit) -> usize {
            0
        }

        fn recv(&self, _socket: usize, buf: &mut [u8]) -> io::Result<(RecvMeta, usize)> {
            let n = self.rx.recv(buf)?;
            let meta = RecvMeta {
                source: RCV.into(),
                destination: SRC.into(),
            };
            Ok((meta, n))
        }

        fn sockets(&self) -> Vec<(BorrowedFd<'_>, bool)> {
            vec![(self.rx.as_fd(), true)]
        }
    }

    /// The session under test, without PGMCC: nothing here ACKs, and the tests are about
    /// the driver, not the congestion window.
    fn engine() -> SourceConfig {
        let mut engine = SourceConfig::new(GSI, 4000, 7500, GROUP.into(), SRC.into());
        engine.pgmcc.enabled = false;
        engine
    }

    /// A NAK from the receiver for `sqn` of the session `SourceConfig::new(GSI, 4000, 7500,
    /// ..)` sends.
    fn nak(sqn: u32) -> Vec<u8> {
        let repr = Repr {
            sport: 7500,
            dport: 4000,
            gsi: GSI,
            parity: false,
            var_pktlen: false,
            body: Body::Nak(NakRepr {
                sqn: Sqn(sqn),
                source: Nla(SRC.into()),
                group: Nla(GROUP.into()),
            }),
            options: OptionList::EMPTY,
        };
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut buf).expect("emit NAK");
        buf
    }

    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.2
    //# A source MUST immediately multicast an NCF in response to any NAK it
    //# receives.
    /// With a backlog of thousands of queued messages, a NAK that arrives while the driver
    /// is sending is confirmed within one send batch, not after the driver's whole budget.
    #[tokio::test]
    async fn a_nak_arriving_under_load_is_confirmed_within_one_batch() {
        const INJECT_AT: usize = 100;
        const MESSAGES: usize = 4000;
        let recorder = Recorder::new(nak(10), INJECT_AT);
        let engine = engine();
        let sender =
            Sender::with_transport(engine, recorder.clone(), Duration::ZERO).expect("sender");
        for i in 0..MESSAGES as u32 {
            sender.send(&i.to_be_bytes()).await.expect("send");
        }
        let stats = sender.close().await.expect("close");
        assert_eq!(stats.engine.naks_received, 1);
        assert_eq!(stats.engine.ncf_sent, 1);

        let log = recorder.log();
        let injected = log
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == PacketType::Odata)
            .nth(INJECT_AT - 1)
            .map(|(i, _)| i)
            .expect("the NAK was injected");
        let ncf = log
            .iter()
            .position(|t| *t == PacketType::Ncf)
            .expect("an NCF was sent");
        let odata_between = log[injected + 1..ncf]
            .iter()
            .filter(|t| **t == PacketType::Odata)
            .count();
        // The batch the NAK arrived in is finished, then the NCF opens the next one.
        assert!(
            odata_between < SEND_BATCH,
            "{odata_between} ODATA went out between the NAK's arrival and its NCF"
        );
        assert_eq!(
            log[ncf + 1],
            PacketType::Rdata,
            "the repair follows its NCF"
        );
        let odata = log.iter().filter(|t| **t == PacketType::Odata).count();
        assert_eq!(odata, MESSAGES, "every message left as ODATA");
    }

    /// A message sent by an application idle since its previous one leaves within the
    /// `send` call, without the driver task being scheduled; a long stream of messages sent
    /// back to back goes through the driver, in batches.
    #[tokio::test]
    async fn an_idle_sender_transmits_within_send_and_a_busy_one_in_batches() {
        // Far longer than an inline send takes, even in a debug build on a loaded machine.
        const IDLE: Duration = Duration::from_millis(50);
        let recorder = Recorder::new(Vec::new(), 0);
        let engine = engine();
        let sender =
            Sender::with_transport(engine, recorder.clone(), Duration::ZERO).expect("sender");
        for i in 1..=3 {
            tokio::time::sleep(IDLE).await;
            sender.send(b"idle").await.expect("send");
            // No await between: the driver has not run since `send`.
            assert_eq!(
                recorder.count(PacketType::Odata),
                i,
                "message {i} went out in send"
            );
        }

        // A stream: once the average interval (over about 64 messages, from the idle pauses
        // before) has fallen below the time an inline send takes, a few hundred messages
        // in, messages are queued and sent a batch per call.
        tokio::time::sleep(IDLE).await;
        let calls = recorder.calls.load(Ordering::Relaxed);
        const BURST: usize = 8192;
        for _ in 0..BURST {
            sender.send(b"burst").await.expect("send");
        }
        sender.flush().await.expect("flush");
        assert_eq!(recorder.count(PacketType::Odata), 3 + BURST);
        let calls = recorder.calls.load(Ordering::Relaxed) - calls;
        // One call per message would be 8192; batched, it is a few messages per call. Two
        // CPU-bound processes beside this test made it 2,100-2,400 (4 per call), so the bound
        // is 2 per call: clearly batched, without depending on the machine's load.
        assert!(
            calls <= BURST / 2,
            "{calls} send calls for a burst of {BURST}: not batched"
        );
        let stats = sender.close().await.expect("close");
        assert_eq!(stats.engine.odata_sent, 3 + BURST as u64);
    }
}
