//! A [`Transport`] driven by tokio readiness.
//!
//! Readiness comes from a duplicate (`dup(2)`) of each of the transport's descriptors,
//! registered with tokio as a `tokio::net::UdpSocket`, which only ever serves as a readiness
//! source, whatever the socket's type (UDP or raw): all I/O goes through the transport. A
//! duplicate shares the open socket, so its readiness is the socket's. This needs no unsafe
//! code (tokio's `AsyncFd::register` is unsafe since 1.52) and closes nothing twice.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::net::Transport;
use crate::proto::{RecvMeta, Transmit};

/// Async send and receive over a non-blocking [`Transport`].
#[derive(Debug)]
pub(crate) struct AsyncTransport<T> {
    /// Readiness sources, one per transport socket, with whether it receives.
    fds: Vec<(UdpSocket, bool)>,
    /// Where the next receive starts looking, rotated so that no socket starves the others.
    start: AtomicUsize,
    transport: T,
}

impl<T: Transport> AsyncTransport<T> {
    /// Registers the transport's sockets with the current tokio runtime.
    pub(crate) fn new(transport: T) -> io::Result<Self> {
        let fds = transport
            .sockets()
            .into_iter()
            .map(|(fd, receives)| {
                let dup = std::net::UdpSocket::from(fd.try_clone_to_owned()?);
                Ok((UdpSocket::from_std(dup)?, receives))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            fds,
            start: AtomicUsize::new(0),
            transport,
        })
    }

    /// Sends one transmit, waiting while the socket's send buffer is full.
    pub(crate) async fn send(&self, transmit: &Transmit, packet: &[u8]) -> io::Result<()> {
        match self.transport.send(transmit, packet) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return r,
        }
        let Some((fd, _)) = self.fds.get(self.transport.send_socket(transmit)) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        fd.async_io(Interest::WRITABLE, || self.transport.send(transmit, packet))
            .await
    }

    /// Receives the next packet from any receiving socket.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<(RecvMeta, usize)> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(RecvMeta, usize)>> {
        let n = self.fds.len();
        let start = self.start.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            let (fd, receives) = &self.fds[i];
            if !receives {
                continue;
            }
            loop {
                match fd.poll_recv_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        match fd.try_io(Interest::READABLE, || self.transport.recv(i, buf)) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            r => return Poll::Ready(r),
                        }
                    }
                }
            }
        }
        Poll::Pending
    }

    /// Receives a packet already queued on any receiving socket, without waiting: `None`
    /// when none is. For draining a batch after [`AsyncTransport::recv`] returned.
    pub(crate) fn try_recv(&self, buf: &mut [u8]) -> Option<io::Result<(RecvMeta, usize)>> {
        for (i, (_, receives)) in self.fds.iter().enumerate() {
            if !receives {
                continue;
            }
            match self.transport.recv(i, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Some(r),
            }
        }
        None
    }
}
