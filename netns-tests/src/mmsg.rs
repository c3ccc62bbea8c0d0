//! Batched datagram I/O for the benchmark harnesses' own senders and receivers: one buffer
//! of fixed-size slots, `sendmmsg` on a connected socket, `recvmmsg` with or without waiting.
//! (`pgm_core::net::mmsg` serves the PGM stack: per-call headers with a destination each,
//! never waiting; a harness wants the same headers reused, and a receiver that can block.)

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::thread;

use anyhow::{Context, Result};

/// `batch` `mmsghdr`s over one buffer of `batch` slots of `slot` bytes.
pub struct Mmsg {
    buf: Vec<u8>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    slot: usize,
}

impl Mmsg {
    /// `batch` slots of `slot` bytes.
    pub fn new(batch: usize, slot: usize) -> Self {
        let mut buf = vec![0u8; batch * slot];
        let base = buf.as_mut_ptr();
        let iov: Vec<libc::iovec> = (0..batch)
            .map(|k| libc::iovec {
                // In bounds: k * slot < batch * slot = buf.len().
                iov_base: base.wrapping_add(k * slot).cast(),
                iov_len: slot,
            })
            .collect();
        let mut m = Self {
            buf,
            iov,
            hdrs: Vec::with_capacity(batch),
            slot,
        };
        for k in 0..batch {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = m.iov.as_mut_ptr().wrapping_add(k);
            h.msg_hdr.msg_iovlen = 1;
            m.hdrs.push(h);
        }
        m
    }

    /// Slot `k`, to fill before [`Self::send`].
    pub fn slot_mut(&mut self, k: usize) -> &mut [u8] {
        &mut self.buf[k * self.slot..(k + 1) * self.slot]
    }

    /// Datagram `k` of the last [`Self::recv`] (at most a slot).
    pub fn received(&self, k: usize) -> &[u8] {
        let len = (self.hdrs[k].msg_len as usize).min(self.slot);
        &self.buf[k * self.slot..k * self.slot + len]
    }

    /// Sends slots `0..n` (each `len` bytes) on the connected `fd`; retries until all left.
    pub fn send(&mut self, fd: RawFd, n: usize, len: usize) -> Result<()> {
        for k in 0..n {
            self.iov[k].iov_len = len;
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: the headers point at `self.iov`, whose entries point into `self.buf`;
            // both live in `self` for the whole call, and `sent + (n - sent) <= hdrs.len()`.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(sent),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS | libc::EAGAIN) => {
                        thread::yield_now();
                        continue;
                    }
                    _ => return Err(e).context("sendmmsg"),
                }
            }
            sent += r as usize;
        }
        Ok(())
    }

    /// One `recvmmsg`: with `busy`, returns at once with what is queued; otherwise waits for
    /// the first datagram, up to the socket's read timeout. Returns how many arrived; 0 when
    /// none did.
    pub fn recv(&mut self, fd: RawFd, busy: bool) -> Result<usize> {
        for k in 0..self.hdrs.len() {
            self.iov[k].iov_len = self.slot;
            self.hdrs[k].msg_len = 0;
        }
        // SAFETY: as in `send`; the kernel writes at most `slot` bytes into each slot.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                if busy {
                    libc::MSG_DONTWAIT
                } else {
                    libc::MSG_WAITFORONE
                },
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(e).context("recvmmsg"),
            };
        }
        Ok(r as usize)
    }
}
