//! The source engine of a [`Sender`](super::Sender) with what surrounds it on the way to
//! the transport: the messages not yet admitted, the packets polled and not yet sent, and
//! the input read between batches. One lock guards it all, taken by the driver task and,
//! for a message sent while the driver is idle, by the sending task itself (see
//! [`Sender::send`](super::Sender::send)).
//!
//! Packets leave in the order `poll_transmit` gives them: every packet polled goes to the
//! back of one batch and is sent from its front, by whoever holds the lock, without
//! waiting; a packet the kernel has no room for stays at the front until the driver has
//! waited for the socket.
//!
//! [`Shared::core`]: super::sender::Shared

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use super::{is_transient, now};
use crate::net::mmsg::SEND_BATCH;
use crate::net::{RecvBatch, Transport};
use crate::proto::Transmit;
use crate::proto::source::{SendError, Source};

/// Packets polled from the engine and not yet sent, in order, with the bytes kept for them.
pub(super) struct TxBatch {
    arena: Vec<u8>,
    transmits: Vec<(Transmit, usize, usize)>,
    /// How many at the front are sent.
    sent: usize,
}

impl TxBatch {
    fn new() -> Self {
        Self {
            arena: Vec::with_capacity(SEND_BATCH * 1500),
            transmits: Vec::with_capacity(SEND_BATCH),
            sent: 0,
        }
    }

    fn push(&mut self, t: Transmit, packet: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(packet);
        self.transmits.push((t, start, self.arena.len()));
    }

    fn is_full(&self) -> bool {
        self.transmits.len() >= SEND_BATCH
    }

    /// Whether every packet polled has been sent (or dropped).
    pub(super) fn is_empty(&self) -> bool {
        self.sent == self.transmits.len()
    }

    /// The first packet not yet sent.
    fn front(&self) -> Option<&Transmit> {
        self.transmits.get(self.sent).map(|(t, _, _)| t)
    }

    /// Drops the packet at the front (it cannot be sent).
    pub(super) fn drop_front(&mut self) {
        self.advance(1);
    }

    /// Marks `n` more packets at the front as gone; empties the batch once all are.
    fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.transmits.len());
        if self.is_empty() {
            self.arena.clear();
            self.transmits.clear();
            self.sent = 0;
        }
    }

    /// Sends from the front, as many as the transport takes without waiting. Returns how
    /// many went out, and the socket to wait for if the kernel had no room for the rest. A
    /// packet the kernel refuses otherwise is dropped and counted in `errors` (receivers
    /// NAK lost data, and the timers resend SPMs).
    fn send(&mut self, transport: &dyn Transport, errors: &mut u64) -> (usize, Option<usize>) {
        let mut sent = 0;
        while !self.is_empty() {
            let slices: Vec<(Transmit, &[u8])> = self.transmits[self.sent..]
                .iter()
                .map(|&(t, a, b)| (t, &self.arena[a..b]))
                .collect();
            let r = transport.send_batch(&slices);
            drop(slices);
            match r {
                Ok(0) => {
                    *errors += 1;
                    self.advance(1);
                }
                Ok(n) => {
                    sent += n;
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let socket = self.front().map(|t| transport.send_socket(t));
                    return (sent, socket);
                }
                Err(_) => {
                    *errors += 1;
                    self.advance(1);
                }
            }
        }
        (sent, None)
    }
}

/// What one [`Core::pump`] did.
pub(super) struct Pump {
    /// Packets sent.
    pub(super) sent: usize,
    /// The socket whose send buffer is full, with packets waiting at the front of the batch.
    pub(super) blocked: Option<usize>,
    /// A full batch was polled: the engine may have more to send at once.
    pub(super) more: bool,
}

/// The engine and its surroundings; see the [module documentation](self).
pub(super) struct Core {
    pub(super) source: Source,
    /// Messages taken from the handles' queue, admitted in order as the engine has room.
    pub(super) pending: VecDeque<Vec<u8>>,
    pub(super) batch: TxBatch,
    buf: Vec<u8>,
    /// Buffers for [`Core::poll_input`] (always `Some` between calls).
    rbatch: Option<RecvBatch>,
    /// The transport's receiving sockets.
    recv_sockets: Vec<usize>,
    /// A receive failed in a way that is not per packet: receiving stops, sending goes on.
    pub(super) recv_broken: bool,
    /// Packets sent since the input was last read.
    since_input: usize,
    /// Transmits the kernel refused.
    pub(super) send_errors: u64,
    /// Receive errors (skipped packets).
    pub(super) recv_errors: u64,
    /// Messages the engine refused after they were accepted.
    pub(super) refused: u64,
    /// The deadline the driver waits for, when it waits: a message sent by another task
    /// wakes it only if the engine's next deadline comes sooner.
    pub(super) armed: Option<Instant>,
}

impl Core {
    pub(super) fn new(source: Source, transport: &dyn Transport) -> Self {
        let recv_sockets = transport
            .sockets()
            .iter()
            .enumerate()
            .filter(|(_, (_, receives))| *receives)
            .map(|(i, _)| i)
            .collect();
        Self {
            source,
            pending: VecDeque::new(),
            batch: TxBatch::new(),
            buf: Vec::with_capacity(2048),
            rbatch: Some(RecvBatch::new()),
            recv_sockets,
            recv_broken: false,
            since_input: 0,
            send_errors: 0,
            recv_errors: 0,
            refused: 0,
            armed: None,
        }
    }

    /// Hands pending messages to the engine, in order, until it refuses one for lack of
    /// room; other refusals (the engine's own limits) drop the message, counted. Returns
    /// how many were taken.
    pub(super) fn admit(&mut self) -> usize {
        let mut n = 0;
        while let Some(data) = self.pending.front() {
            match self.source.send(data) {
                Err(SendError::WouldBlock) => break,
                Ok(()) => {}
                Err(_) => self.refused += 1,
            }
            self.pending.pop_front();
            n += 1;
        }
        n
    }

    /// Whether everything accepted has been sent as ODATA.
    pub(super) fn is_drained(&self) -> bool {
        self.pending.is_empty() && self.batch.is_empty() && self.source.is_drained()
    }

    /// Sends what waits at the front of the batch, then polls the engine for one batch more
    /// and sends it, without waiting. After every [`SEND_BATCH`] packets sent it reads the
    /// input already queued ([`Core::poll_input`]): the engine puts NCFs before everything
    /// else (§5.1.3), so a NAK that arrives while a backlog drains is confirmed after at
    /// most one batch more of ODATA (§5.2: "immediately").
    pub(super) fn pump(&mut self, transport: &dyn Transport) -> Pump {
        let (mut sent, blocked) = self.batch.send(transport, &mut self.send_errors);
        let mut more = false;
        if blocked.is_none() {
            let now = now();
            while let Some(t) = self.source.poll_transmit(now, &mut self.buf) {
                if t.len == 0 {
                    continue;
                }
                self.batch.push(t, &self.buf[..t.len]);
                if self.batch.is_full() {
                    more = true;
                    break;
                }
            }
        }
        let blocked = match blocked {
            Some(s) => Some(s),
            None => {
                let (n, b) = self.batch.send(transport, &mut self.send_errors);
                sent += n;
                b
            }
        };
        self.since_input += sent;
        if self.since_input >= SEND_BATCH {
            self.poll_input(transport);
        }
        Pump {
            sent,
            blocked,
            more,
        }
    }

    /// Takes NAKs and SPMRs already queued on the sockets (a bounded number of receive
    /// batches per socket) and runs due timers, without waiting.
    pub(super) fn poll_input(&mut self, transport: &dyn Transport) {
        self.since_input = 0;
        let now = now();
        let Some(mut rbatch) = self.rbatch.take() else {
            return;
        };
        for i in 0..self.recv_sockets.len() {
            for _ in 0..4 {
                if self.recv_broken {
                    break;
                }
                match transport.recv_batch(self.recv_sockets[i], &mut rbatch) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    r => self.on_recv(now, r, &rbatch),
                }
            }
        }
        self.rbatch = Some(rbatch);
        if self.source.poll_timeout().is_some_and(|t| t <= now) {
            self.source.handle_timeout(now);
        }
    }

    /// Hands the packets of a receive to the engine.
    pub(super) fn on_recv(&mut self, now: Instant, r: io::Result<usize>, batch: &RecvBatch) {
        match r {
            Ok(n) => {
                for i in 0..n {
                    match batch.get(i) {
                        Ok((meta, bytes)) => self.source.handle_packet(now, meta, bytes),
                        Err(_) => self.recv_errors += 1,
                    }
                }
            }
            Err(e) => {
                self.recv_errors += 1;
                if !is_transient(&e) {
                    // A broken socket would wake us forever: stop receiving, keep sending.
                    self.recv_broken = true;
                }
            }
        }
    }
}
