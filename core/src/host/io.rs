//! A [`Transport`] driven by tokio readiness.
//!
//! Readiness comes from a duplicate (`dup(2)`) of each receiving descriptor of the
//! transport, registered with tokio for *read* readiness only; all I/O goes through the
//! transport. A duplicate shares the open socket, so its readiness is the socket's, and the
//! transport keeps its own descriptor, so nothing is closed twice.
//!
//! Write readiness is not registered: on a socket in epoll for writing, every packet the
//! kernel frees (each one sent, on a veth as soon as it is delivered) wakes the epoll
//! waiter. At a hundred thousand packets a second that was a third of a sender's time. A
//! driver that finds a send buffer full registers the socket for writing just for that wait.

use std::future::poll_fn;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::net::{RecvBatch, Transport};
use crate::proto::Transmit;

/// Async send and receive over a non-blocking [`Transport`].
#[derive(Debug)]
pub(crate) struct AsyncTransport<T> {
    /// Read readiness, per transport socket that receives.
    fds: Vec<Option<AsyncFd<OwnedFd>>>,
    /// Where the next receive starts looking, rotated so that no socket starves the others.
    start: AtomicUsize,
    transport: T,
}

/// Registers a duplicate of `fd` with the current tokio runtime for `interest`.
#[allow(unsafe_code)]
fn register(fd: std::os::fd::BorrowedFd<'_>, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    let dup = fd.try_clone_to_owned()?;
    // SAFETY: `dup` is a valid descriptor owned by the `AsyncFd` for its whole life (an
    // `OwnedFd` closes only when dropped, and always returns the same descriptor).
    unsafe { AsyncFd::register_with_interest(dup, interest) }.map_err(io::Error::from)
}

impl<T: Transport> AsyncTransport<T> {
    /// Registers the transport's receiving sockets with the current tokio runtime.
    pub(crate) fn new(transport: T) -> io::Result<Self> {
        let fds = transport
            .sockets()
            .into_iter()
            .map(|(fd, receives)| {
                receives
                    .then(|| register(fd, Interest::READABLE))
                    .transpose()
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
                    let sockets = self.transport.sockets();
                    let Some(&(fd, _)) = sockets.get(socket) else {
                        return (done, Err(e));
                    };
                    let waiter = match register(fd, Interest::WRITABLE) {
                        Ok(w) => w,
                        Err(e) => return (done, Err(e)),
                    };
                    waiter
                        .async_io(Interest::WRITABLE, |_| self.transport.send_batch(rest))
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

    /// Waits until socket `socket` of the transport (an index into
    /// [`Transport::sockets`]) may be writable: for a sender whose last send found the
    /// socket's buffer full. Registers it for write readiness just for this wait.
    pub(crate) async fn writable(&self, socket: usize) -> io::Result<()> {
        let sockets = self.transport.sockets();
        let Some(&(fd, _)) = sockets.get(socket) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the transport has no such socket",
            ));
        };
        let waiter = register(fd, Interest::WRITABLE)?;
        drop(waiter.writable().await?);
        Ok(())
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
            let Some(fd) = &self.fds[i] else {
                continue;
            };
            loop {
                match fd.poll_read_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(mut guard)) => {
                        match guard.try_io(|_| self.transport.recv_batch(i, batch)) {
                            Ok(r) => return Poll::Ready(r),
                            // Nothing queued after all: readiness cleared, poll again.
                            Err(_would_block) => continue,
                        }
                    }
                }
            }
        }
        Poll::Pending
    }
}
