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

use crate::net::{RecvBatch, Transport};
use crate::proto::Transmit;

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

    /// Sends the transmits of `batch` in order, as few system calls as the transport
    /// allows, waiting while a socket's send buffer is full. Stops at the first transmit
    /// the kernel refuses otherwise: returns how many were sent before it, and its error.
    pub(crate) async fn send_batch(&self, batch: &[(Transmit, &[u8])]) -> (usize, io::Result<()>) {
        let mut done = 0;
        while done < batch.len() {
            let rest = &batch[done..];
            let r = match self.transport.send_batch(rest) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let socket = self.transport.send_socket(&rest[0].0);
                    let Some((fd, _)) = self.fds.get(socket) else {
                        return (done, Err(e));
                    };
                    fd.async_io(Interest::WRITABLE, || self.transport.send_batch(rest))
                        .await
                }
                r => r,
            };
            match r {
                Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(e) => return (done, Err(e)),
            }
        }
        (done, Ok(()))
    }

    /// Receives the packets queued on the next ready receiving socket into `batch`,
    /// waiting until one is.
    pub(crate) async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        poll_fn(|cx| self.poll_recv_batch(cx, batch)).await
    }

    fn poll_recv_batch(
        &self,
        cx: &mut Context<'_>,
        batch: &mut RecvBatch,
    ) -> Poll<io::Result<usize>> {
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
                        match fd.try_io(Interest::READABLE, || self.transport.recv_batch(i, batch))
                        {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            r => return Poll::Ready(r),
                        }
                    }
                }
            }
        }
        Poll::Pending
    }

    /// Receives the packets already queued on the first receiving socket that has any,
    /// without waiting: `None` when none has.
    pub(crate) fn try_recv_batch(&self, batch: &mut RecvBatch) -> Option<io::Result<usize>> {
        for (i, (_, receives)) in self.fds.iter().enumerate() {
            if !receives {
                continue;
            }
            match self.transport.recv_batch(i, batch) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Some(r),
            }
        }
        None
    }
}
