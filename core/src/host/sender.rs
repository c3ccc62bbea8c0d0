//! The sending half: a [`Source`] engine on a transport, driven by a tokio task.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::io::AsyncTransport;
use super::{Error, RECV_BATCH, RECV_BUF, is_transient, now, sleep_until};
use crate::net::{Transport, TransportConfig};
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
}

impl SenderConfig {
    /// A configuration with the default linger.
    pub fn new(engine: SourceConfig, transport: TransportConfig) -> Self {
        Self {
            engine,
            transport,
            linger: Duration::from_secs(2),
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
}

/// Where the outcome of one `send` goes.
type SendReply = oneshot::Sender<Result<(), SendError>>;

enum Command {
    Send(Vec<u8>, SendReply),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<SenderStats>),
    Stats(oneshot::Sender<SenderStats>),
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
///     sender.send(&i.to_be_bytes()).await?; // waits while the transmit window is full
/// }
/// sender.flush().await?; // every message has left as ODATA
/// let stats = sender.close().await?; // OPT_FIN, then linger for repairs
/// println!("{} NAKs answered", stats.engine.naks_received);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Sender {
    commands: mpsc::Sender<Command>,
    tsi: Tsi,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Send(..) => "Send",
            Self::Flush(_) => "Flush",
            Self::Close(_) => "Close",
            Self::Stats(_) => "Stats",
        })
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
        Self::with_transport(config.engine, transport, config.linger)
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
        let io = AsyncTransport::new(transport)?;
        let source = Source::new(engine, now());
        let tsi = source.tsi();
        let (commands, rx) = mpsc::channel(64);
        let driver = Driver {
            source,
            io,
            commands: rx,
            commands_open: true,
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
        Ok(Self { commands, tsi })
    }

    /// The session's TSI.
    pub fn tsi(&self) -> Tsi {
        self.tsi
    }

    /// Queues one message (fragmented if larger than a packet), waiting while the transmit
    /// window is full of unsent data. Messages are sent in the order their `send` calls
    /// complete.
    pub async fn send(&self, data: &[u8]) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Send(data.to_vec(), tx)).await?;
        rx.await
            .map_err(|_| Error::DriverGone)?
            .map_err(Error::Send)
    }

    /// Waits until every message accepted so far has been sent as ODATA.
    pub async fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Flush(tx)).await?;
        rx.await.map_err(|_| Error::DriverGone)
    }

    /// Closes the session: every accepted message is sent, the last with OPT_FIN (or the
    /// SPMs after it, §9.7), then the driver lingers for the configured time answering NAKs,
    /// and stops. Returns the final counters. Other clones of this handle get
    /// [`SendError::Closed`] from then on.
    pub async fn close(self) -> Result<SenderStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Close(tx)).await?;
        rx.await.map_err(|_| Error::DriverGone)
    }

    /// The current counters.
    pub async fn stats(&self) -> Result<SenderStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Stats(tx)).await?;
        rx.await.map_err(|_| Error::DriverGone)
    }

    async fn command(&self, c: Command) -> Result<(), Error> {
        self.commands.send(c).await.map_err(|_| Error::DriverGone)
    }
}

struct Driver<T> {
    source: Source,
    io: AsyncTransport<T>,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    /// Messages refused with WouldBlock, retried in order as the window drains.
    pending: VecDeque<(Vec<u8>, SendReply)>,
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
        let mut buf = Vec::with_capacity(2048);
        let mut rbuf = vec![0u8; RECV_BUF];
        loop {
            let now = now();
            self.drain(now, &mut buf).await;
            if self.linger_until.is_some_and(|t| now >= t) {
                break;
            }
            let deadline = match (self.source.poll_timeout(), self.linger_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                cmd = self.commands.recv(), if self.commands_open => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every handle is gone: close as `close` would.
                    None => {
                        self.commands_open = false;
                        self.close_requested = true;
                    }
                },
                r = self.io.recv(&mut rbuf), if !self.recv_broken => {
                    let now = super::now();
                    self.on_recv(now, r, &rbuf);
                    for _ in 1..RECV_BATCH {
                        let Some(r) = self.io.try_recv(&mut rbuf) else { break };
                        self.on_recv(now, r, &rbuf);
                    }
                }
                () = sleep_until(deadline) => self.source.handle_timeout(super::now()),
            }
        }
        let stats = self.snapshot();
        for c in self.closes.drain(..) {
            let _ = c.send(stats.clone());
        }
    }

    fn on_recv(
        &mut self,
        now: Instant,
        r: io::Result<(crate::proto::RecvMeta, usize)>,
        buf: &[u8],
    ) {
        match r {
            Ok((meta, n)) => self.source.handle_packet(now, meta, &buf[..n]),
            Err(e) => {
                self.stats.recv_errors += 1;
                if !is_transient(&e) {
                    // A broken socket would wake us forever: stop receiving, keep sending.
                    self.recv_broken = true;
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send(data, reply) => {
                if self.close_requested {
                    let _ = reply.send(Err(SendError::Closed));
                } else {
                    self.pending.push_back((data, reply));
                }
            }
            Command::Flush(reply) => self.flushes.push(reply),
            Command::Close(reply) => {
                self.close_requested = true;
                self.closes.push(reply);
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.snapshot());
            }
        }
    }

    fn snapshot(&self) -> SenderStats {
        SenderStats {
            engine: self.source.stats().clone(),
            ..self.stats.clone()
        }
    }

    /// Admits pending messages and sends what the engine has, until neither makes progress.
    async fn drain(&mut self, now: Instant, buf: &mut Vec<u8>) {
        loop {
            self.admit();
            if self.pending.is_empty() && self.close_requested && !self.close_started {
                self.source.close(now);
                self.close_started = true;
            }
            let mut sent = false;
            while let Some(t) = self.source.poll_transmit(now, buf) {
                sent = true;
                if t.len == 0 {
                    continue;
                }
                // A refused transmit is dropped and counted: receivers NAK lost data, and the
                // timers resend SPMs.
                if self.io.send(&t, &buf[..t.len]).await.is_err() {
                    self.stats.send_errors += 1;
                }
            }
            if !sent || self.pending.is_empty() {
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
    }

    /// Hands pending messages to the engine, in order, until it refuses one for lack of
    /// room; other refusals are answered at once.
    fn admit(&mut self) {
        while let Some((data, _)) = self.pending.front() {
            match self.source.send(data) {
                Err(SendError::WouldBlock) => return,
                r => {
                    if let Some((_, reply)) = self.pending.pop_front() {
                        let _ = reply.send(r);
                    }
                }
            }
        }
    }
}
