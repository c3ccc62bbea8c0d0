//! Batched datagram I/O on IPv4 sockets, UDP or raw: `sendmmsg(2)` and `recvmmsg(2)`.
//!
//! One system call moves up to [`SEND_BATCH`] or [`RECV_BATCH`] datagrams. At the rates a
//! multicast sender reaches on a LAN, the per-call cost of `sendto`/`recvfrom` (entry, socket
//! lock, wakeups) is most of the cost of a small packet; batching pays it once per batch.
//! Neither call is in `std` or `socket2`, and `quinn-udp` serves UDP sockets only (PGM/IP
//! needs raw ones), so the two calls are wrapped here; the unsafe code is the building of
//! the kernel's message headers over buffers that outlive each call.

#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Most datagrams sent per `sendmmsg` call.
pub const SEND_BATCH: usize = 64;
/// Most datagrams received per `recvmmsg` call.
pub const RECV_BATCH: usize = 32;

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Points header `i` at `names[i]` and the one iovec `iovs[i]`, for every header given.
fn link(hdrs: &mut [libc::mmsghdr], names: &mut [libc::sockaddr_in], iovs: &mut [libc::iovec]) {
    for ((h, name), iov) in hdrs.iter_mut().zip(names).zip(iovs) {
        let h = &mut h.msg_hdr;
        h.msg_name = (name as *mut libc::sockaddr_in).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = iov;
        h.msg_iovlen = 1;
    }
}

/// Sends each `(destination, datagram)` of `msgs` (at most [`SEND_BATCH`] are looked at) in
/// one `sendmmsg` call on `fd`. Returns how many left, at least one, or the error of the
/// first; a caller retries the rest. `WouldBlock` when the send buffer is full.
pub fn send_batch(fd: BorrowedFd<'_>, msgs: &[(SocketAddrV4, &[u8])]) -> io::Result<usize> {
    let n = msgs.len().min(SEND_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut names = [sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); SEND_BATCH];
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH];
    // SAFETY: `mmsghdr` is a plain C struct for which all-zero bytes are a valid value
    // (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for (i, (dest, data)) in msgs[..n].iter().enumerate() {
        names[i] = sockaddr(*dest);
        iovs[i] = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
    }
    link(&mut hdrs[..n], &mut names, &mut iovs);
    // SAFETY: every header points at a name and one iovec in the arrays above, which live
    // until the call returns; each iovec describes a datagram of `msgs`, borrowed for the
    // call, which the kernel only reads. `n` ≤ the arrays' length.
    let r = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Buffers for [`recv_batch`]: [`RECV_BATCH`] slots of `slot` bytes each.
#[derive(Debug)]
pub struct RecvBuffers {
    buf: Vec<u8>,
    slot: usize,
    /// Per slot: the sender's address (or `None` if the kernel gave none) and the datagram's
    /// length; `usize::MAX` marks a datagram truncated to fit the slot.
    got: Vec<(Option<SocketAddrV4>, usize)>,
}

impl RecvBuffers {
    /// Buffers whose slots hold datagrams of up to `slot` bytes.
    pub fn new(slot: usize) -> Self {
        Self {
            buf: vec![0; slot.max(1) * RECV_BATCH],
            slot: slot.max(1),
            got: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Slot `i`, for a receive made without [`recv_batch`].
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = (i * self.slot).min(self.buf.len());
        let end = (start + self.slot).min(self.buf.len());
        &mut self.buf[start..end]
    }

    /// Records one datagram of `len` bytes in slot 0, received without [`recv_batch`].
    pub(crate) fn set_one(&mut self, from: Option<SocketAddrV4>, len: usize) {
        self.got.clear();
        self.got.push((from, len.min(self.slot)));
    }

    /// How many datagrams the last [`recv_batch`] received.
    pub fn len(&self) -> usize {
        self.got.len()
    }

    /// Whether the last [`recv_batch`] received nothing.
    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Datagram `i` of the last batch: its sender and bytes, or `None` if it was larger
    /// than a slot (truncated: its bytes are not given).
    pub fn get(&self, i: usize) -> Option<(Option<SocketAddrV4>, &[u8])> {
        let &(from, len) = self.got.get(i)?;
        if len == usize::MAX {
            return None;
        }
        let start = i * self.slot;
        Some((from, &self.buf[start..start + len]))
    }
}

/// Receives up to [`RECV_BATCH`] datagrams queued on `fd` in one `recvmmsg` call, without
/// waiting: `WouldBlock` when none is queued. Returns how many arrived (see
/// [`RecvBuffers::get`]).
pub fn recv_batch(fd: BorrowedFd<'_>, bufs: &mut RecvBuffers) -> io::Result<usize> {
    bufs.got.clear();
    let slot = bufs.slot;
    let mut names = [sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); RECV_BATCH];
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; RECV_BATCH];
    // SAFETY: as in `send_batch`, all-zero `mmsghdr`s are valid.
    let mut hdrs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (i, chunk) in bufs.buf.chunks_exact_mut(slot).enumerate().take(RECV_BATCH) {
        iovs[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
    }
    link(&mut hdrs, &mut names, &mut iovs);
    // SAFETY: each header points at its own name and iovec; each iovec describes a distinct
    // slot of `bufs.buf`, which is borrowed mutably for the call. All live until it returns.
    // A null timeout with MSG_DONTWAIT returns at once with what is queued.
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            RECV_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = r as usize;
    for i in 0..n {
        let h = &hdrs[i];
        let from = (h.msg_hdr.msg_namelen as usize >= size_of::<libc::sockaddr_in>()
            && names[i].sin_family == libc::AF_INET as libc::sa_family_t)
            .then(|| {
                SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(names[i].sin_addr.s_addr)),
                    u16::from_be(names[i].sin_port),
                )
            });
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let len = if truncated {
            usize::MAX
        } else {
            (h.msg_len as usize).min(slot)
        };
        bufs.got.push((from, len));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v4 = |s: &UdpSocket| match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(a) => panic!("{a} is not IPv4"),
        };
        let to = v4(&rx);
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        let mut sent = 0;
        while sent < payloads.len() {
            let msgs: Vec<_> = payloads[sent..].iter().map(|p| (to, &p[..])).collect();
            sent += send_batch(tx.as_fd(), &msgs).unwrap();
        }
        let mut bufs = RecvBuffers::new(64);
        let mut got = Vec::new();
        while got.len() < payloads.len() {
            let n = recv_batch(rx.as_fd(), &mut bufs).unwrap();
            assert!(n <= RECV_BATCH);
            for i in 0..n {
                match bufs.get(i) {
                    Some((from, data)) => {
                        assert_eq!(from, Some(v4(&tx)));
                        got.push(Some(data.to_vec()));
                    }
                    None => got.push(None),
                }
            }
        }
        for (i, g) in got.iter().enumerate() {
            if payloads[i].len() > 64 {
                assert_eq!(g, &None, "#{i} is larger than a slot: reported truncated");
            } else {
                assert_eq!(g.as_deref(), Some(&payloads[i][..]), "#{i}");
            }
        }
        rx.set_nonblocking(true).unwrap();
        let e = recv_batch(rx.as_fd(), &mut bufs).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(bufs.is_empty());
    }
}
