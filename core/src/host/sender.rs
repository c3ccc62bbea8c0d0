//! The sending half: a [`Source`] engine on a transport, driven by a tokio task.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, oneshot};

use super::io::AsyncTransport;
use super::{Error, is_transient, now, sleep_until};
use crate::net::{RecvBatch, Transport, TransportConfig};
use crate::proto::Transmit;
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

struct Shared {
    queue: Mutex<Queue>,
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
        let io = AsyncTransport::new(transport)?;
        let max_apdu = engine.max_apdu;
        let source = Source::new(engine, now());
        let tsi = source.tsi();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake_driver: Notify::new(),
            room: Notify::new(),
            max_msgs: send_queue.max(1),
        });
        let driver = Driver {
            source,
            io,
            shared: shared.clone(),
            pending: VecDeque::new(),
            flushes: Vec::new(),
            closes: Vec::new(),
            close_requested: false,
            close_started: false,
            linger,
            linger_until: None,
            stats: SenderStats::default(),
            recv_broken: false,
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

    /// Queues one message (fragmented if larger than a packet) for the driver, waiting while
    /// its queue ([`SenderConfig::send_queue`]) is full, which it stays while the engine's
    /// own queue of unsent packets (`SourceConfig::send_queue_sqns`) is full. Messages are
    /// sent in the order their `send` calls complete. A message larger than the engine's `max_apdu` is refused at once.
    pub async fn send(&self, data: &[u8]) -> Result<(), Error> {
        if data.len() > self.max_apdu {
            return Err(Error::Send(SendError::TooLarge));
        }
        let shared = &self.handle.shared;
        let mut msg = Some(data.to_vec());
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            {
                let mut q = shared.lock();
                if q.driver_gone {
                    return Err(Error::DriverGone);
                }
                if q.close_requested {
                    return Err(Error::Send(SendError::Closed));
                }
                let fits = q.msgs.len() < shared.max_msgs && q.bytes + data.len() <= QUEUE_BYTES;
                if q.msgs.is_empty() || fits {
                    let was_empty = q.msgs.is_empty();
                    q.bytes += data.len();
                    q.msgs.extend(msg.take());
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

/// Packets a driver hands to the transport per call, and the bytes kept for them.
struct TxBatch {
    arena: Vec<u8>,
    transmits: Vec<(Transmit, usize, usize)>,
}

impl TxBatch {
    fn new() -> Self {
        Self {
            arena: Vec::with_capacity(crate::net::mmsg::SEND_BATCH * 1500),
            transmits: Vec::with_capacity(crate::net::mmsg::SEND_BATCH),
        }
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.transmits.clear();
    }

    fn push(&mut self, t: Transmit, packet: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(packet);
        self.transmits.push((t, start, self.arena.len()));
    }

    fn is_full(&self) -> bool {
        self.transmits.len() >= crate::net::mmsg::SEND_BATCH
    }

    /// Sends the batch; a transmit the kernel refuses is dropped and counted in `errors`
    /// (receivers NAK lost data, and the timers resend SPMs).
    async fn send<T: Transport>(&mut self, io: &AsyncTransport<T>, errors: &mut u64) {
        let slices: Vec<(Transmit, &[u8])> = self
            .transmits
            .iter()
            .map(|&(t, a, b)| (t, &self.arena[a..b]))
            .collect();
        let mut done = 0;
        while done < slices.len() {
            let (n, r) = io.send_batch(&slices[done..]).await;
            done += n;
            if r.is_err() {
                *errors += 1;
                done += 1;
            }
        }
        drop(slices);
        self.clear();
    }
}

/// Packets the sender's driver sends before it yields to the runtime (the application's
/// tasks, and its own wakeups: requests, sockets, timers).
const DRAIN_BUDGET: usize = 1024;

struct Driver<T> {
    source: Source,
    io: AsyncTransport<T>,
    shared: Arc<Shared>,
    /// Messages taken from the queue, admitted in order as the window has room.
    pending: VecDeque<Vec<u8>>,
    flushes: Vec<oneshot::Sender<()>>,
    closes: Vec<oneshot::Sender<SenderStats>>,
    close_requested: bool,
    /// `Source::close` was called (all pending messages were admitted first).
    close_started: bool,
    linger: Duration,
    linger_until: Option<Instant>,
    stats: SenderStats,
    recv_broken: bool,
}

impl<T: Transport> Driver<T> {
    async fn run(mut self) {
        let _gone = GoneOnDrop(self.shared.clone());
        let mut buf = Vec::with_capacity(2048);
        let mut batch = TxBatch::new();
        let mut rbatch = RecvBatch::new();
        loop {
            let now = now();
            self.take_queue();
            let more = self.drain(&mut buf, &mut batch, &mut rbatch).await;
            if self.linger_until.is_some_and(|t| now >= t) {
                break;
            }
            if more {
                // Still data to send: take NAKs and timers without waiting, then go on.
                self.poll_input(&mut rbatch);
                tokio::task::yield_now().await;
                continue;
            }
            let deadline = match (self.source.poll_timeout(), self.linger_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                () = self.shared.wake_driver.notified() => {}
                r = self.io.recv_batch(&mut rbatch), if !self.recv_broken => {
                    self.on_recv(super::now(), r, &rbatch);
                }
                () = sleep_until(deadline) => self.source.handle_timeout(super::now()),
            }
        }
        let stats = self.snapshot();
        for c in self.closes.drain(..) {
            let _ = c.send(stats.clone());
        }
    }

    /// Takes NAKs and SPMRs already queued on the sockets (a bounded number of receive
    /// batches) and runs due timers, without waiting. Returns the time it passed the
    /// engine, which later calls must not precede.
    fn poll_input(&mut self, rbatch: &mut RecvBatch) -> Instant {
        let now = now();
        if !self.recv_broken {
            for _ in 0..4 {
                let Some(r) = self.io.try_recv_batch(rbatch) else {
                    break;
                };
                self.on_recv(now, r, rbatch);
            }
        }
        if self.source.poll_timeout().is_some_and(|t| t <= now) {
            self.source.handle_timeout(now);
        }
        now
    }

    fn on_recv(&mut self, now: Instant, r: io::Result<usize>, batch: &RecvBatch) {
        match r {
            Ok(n) => {
                for i in 0..n {
                    match batch.get(i) {
                        Ok((meta, bytes)) => self.source.handle_packet(now, meta, bytes),
                        Err(_) => self.stats.recv_errors += 1,
                    }
                }
            }
            Err(e) => {
                self.stats.recv_errors += 1;
                if !is_transient(&e) {
                    // A broken socket would wake us forever: stop receiving, keep sending.
                    self.recv_broken = true;
                }
            }
        }
    }

    /// Takes the requests, and the queued messages once the previous ones are admitted.
    fn take_queue(&mut self) {
        let mut q = self.shared.lock();
        let stats = std::mem::take(&mut q.stats);
        self.flushes.append(&mut q.flushes);
        self.closes.append(&mut q.closes);
        let mut took = false;
        if self.pending.is_empty() && !q.msgs.is_empty() {
            std::mem::swap(&mut self.pending, &mut q.msgs);
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
            let snapshot = self.snapshot();
            for s in stats {
                let _ = s.send(snapshot.clone());
            }
        }
    }

    fn snapshot(&self) -> SenderStats {
        SenderStats {
            engine: self.source.stats().clone(),
            ..self.stats.clone()
        }
    }

    /// Admits pending messages and sends what the engine has in batches, until neither
    /// makes progress or [`DRAIN_BUDGET`] packets went out. Returns whether work remains.
    ///
    /// Between two full batches it takes the NAKs and SPMRs already queued on the sockets
    /// (and runs due timers), without waiting: the engine puts NCFs before everything else
    /// (§5.1.3), so a NAK that arrives while a backlog drains is confirmed in the next
    /// batch, after at most one batch ([`SEND_BATCH`](crate::net::mmsg::SEND_BATCH)
    /// packets) more of ODATA, not after the whole budget (§5.2: "immediately"). That costs
    /// one non-blocking receive per batch.
    async fn drain(
        &mut self,
        buf: &mut Vec<u8>,
        batch: &mut TxBatch,
        rbatch: &mut RecvBatch,
    ) -> bool {
        let mut now = now();
        let mut sent = 0;
        loop {
            self.admit();
            if self.pending.is_empty() {
                self.take_queue();
                self.admit();
            }
            if self.pending.is_empty() && self.close_requested && !self.close_started {
                self.source.close(now);
                self.close_started = true;
            }
            let mut progress = false;
            while let Some(t) = self.source.poll_transmit(now, buf) {
                progress = true;
                if t.len == 0 {
                    continue;
                }
                batch.push(t, &buf[..t.len]);
                if batch.is_full() {
                    sent += batch.transmits.len();
                    batch.send(&self.io, &mut self.stats.send_errors).await;
                    if sent >= DRAIN_BUDGET {
                        break;
                    }
                    now = self.poll_input(rbatch);
                }
            }
            sent += batch.transmits.len();
            batch.send(&self.io, &mut self.stats.send_errors).await;
            if sent >= DRAIN_BUDGET {
                return true;
            }
            if !progress || self.pending.is_empty() {
                break;
            }
        }
        if self.pending.is_empty() && self.source.is_drained() {
            for f in self.flushes.drain(..) {
                let _ = f.send(());
            }
            if self.close_started && self.linger_until.is_none() {
                self.linger_until = Some(now + self.linger);
            }
        }
        false
    }

    /// Hands pending messages to the engine, in order, until it refuses one for lack of
    /// room; other refusals (the engine's own limits) drop the message, counted.
    fn admit(&mut self) {
        while let Some(data) = self.pending.front() {
            match self.source.send(data) {
                Err(SendError::WouldBlock) => return,
                Ok(()) => {}
                Err(_) => self.stats.refused += 1,
            }
            self.pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::os::fd::{AsFd, BorrowedFd};
    use std::os::unix::net::UnixDatagram;

    use super::*;
    use crate::net::mmsg::SEND_BATCH;
    use crate::proto::RecvMeta;
    use crate::wire::{Body, Gsi, NakRepr, Nla, OptionList, PacketType, Repr, Sqn};

    const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const RCV: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const GSI: Gsi = Gsi([1, 2, 3, 4, 5, 6]);

    /// A transport that records the type of every packet sent and, when the `inject_at`-th
    /// ODATA is handed to it, queues `nak` on its receiving socket (a Unix datagram pair:
    /// a real descriptor, so the driver's readiness machinery is the real one).
    struct Recorder {
        rx: UnixDatagram,
        inject: UnixDatagram,
        nak: Vec<u8>,
        inject_at: usize,
        sent: Mutex<Vec<PacketType>>,
    }

    impl Recorder {
        fn log(&self) -> MutexGuard<'_, Vec<PacketType>> {
            self.sent.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    impl Transport for Arc<Recorder> {
        fn send(&self, transmit: &Transmit, _packet: &[u8]) -> io::Result<()> {
            let mut log = self.log();
            log.push(transmit.packet_type);
            if transmit.packet_type == PacketType::Odata {
                let odata = log.iter().filter(|t| **t == PacketType::Odata).count();
                if odata == self.inject_at {
                    self.inject.send(&self.nak)?;
                }
            }
            Ok(())
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
        let (rx, inject) = UnixDatagram::pair().expect("socketpair");
        rx.set_nonblocking(true).expect("non-blocking");
        let recorder = Arc::new(Recorder {
            rx,
            inject,
            nak: nak(10),
            inject_at: INJECT_AT,
            sent: Mutex::new(Vec::new()),
        });
        let engine = SourceConfig::new(GSI, 4000, 7500, GROUP.into(), SRC.into());
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
}
