//! The receiving half: a [`proto::receiver::Receiver`](crate::proto::receiver::Receiver)
//! engine on a transport, driven by a tokio task.

use std::io;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::io::AsyncTransport;
use super::{Error, Event, RECV_BATCH, RECV_BUF, is_transient, now, sleep_until};
use crate::net::{Transport, TransportConfig};
use crate::proto::RecvMeta;
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
    /// Events buffered for the application; when full, the driver stops reading the sockets
    /// until the application catches up (the kernel then drops, and PGM repairs). Default
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
    events: mpsc::Receiver<Event>,
    stats: mpsc::Sender<oneshot::Sender<ReceiverStats>>,
    driver: JoinHandle<io::Result<()>>,
}

impl Receiver {
    /// Opens the transport `config` describes (joining the group) and starts receiving on
    /// the current tokio runtime.
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
        Self::with_transport(config.engine, transport, config.event_queue)
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
        let (events_tx, events) = mpsc::channel(event_queue.max(1));
        let (stats, stats_rx) = mpsc::channel(4);
        let driver = Driver {
            engine: receiver::Receiver::new(engine),
            io,
            events: events_tx,
            stats_requests: stats_rx,
            stats: ReceiverStats::default(),
        };
        let driver = tokio::spawn(driver.run());
        Ok(Self {
            events,
            stats,
            driver,
        })
    }

    /// The next event: data (in order per source), loss, session start and end. `None` once
    /// the driver has stopped (see [`Receiver::stop`] for why).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
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
        let Self {
            events,
            stats,
            driver,
        } = self;
        drop(events);
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
    events: mpsc::Sender<Event>,
    stats_requests: mpsc::Receiver<oneshot::Sender<ReceiverStats>>,
    stats: ReceiverStats,
}

impl<T: Transport> Driver<T> {
    async fn run(mut self) -> io::Result<()> {
        let mut buf = Vec::with_capacity(512);
        let mut rbuf = vec![0u8; RECV_BUF];
        loop {
            let now = now();
            while let Some(t) = self.engine.poll_transmit(now, &mut buf) {
                if t.len == 0 {
                    continue;
                }
                if let Err(e) = self.io.send(&t, &buf[..t.len]).await {
                    self.stats.send_errors += 1;
                    if !is_transient(&e) {
                        return Err(e);
                    }
                }
            }
            while let Some(ev) = self.engine.poll_event() {
                if self.events.send(ev).await.is_err() {
                    return Ok(()); // the application dropped the receiver
                }
            }
            let deadline = self.engine.poll_timeout();
            tokio::select! {
                r = self.io.recv(&mut rbuf) => {
                    let now = super::now();
                    self.on_recv(now, r, &rbuf)?;
                    for _ in 1..RECV_BATCH {
                        let Some(r) = self.io.try_recv(&mut rbuf) else { break };
                        self.on_recv(now, r, &rbuf)?;
                    }
                }
                () = sleep_until(deadline) => self.engine.handle_timeout(super::now()),
                req = self.stats_requests.recv() => match req {
                    Some(reply) => {
                        let mut s = self.stats.clone();
                        s.engine = self.engine.stats().clone();
                        let _ = reply.send(s);
                    }
                    None => return Ok(()),
                },
                () = self.events.closed() => return Ok(()),
            }
        }
    }

    fn on_recv(
        &mut self,
        now: Instant,
        r: io::Result<(RecvMeta, usize)>,
        buf: &[u8],
    ) -> io::Result<()> {
        match r {
            Ok((meta, n)) => self.engine.handle_packet(now, meta, &buf[..n]),
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
