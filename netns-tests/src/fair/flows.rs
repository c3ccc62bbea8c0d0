//! The flows the fairness harness measures, each counting the bytes its receiver delivers.
//!
//! - [`TcpFlow`]: one bulk TCP connection, sender and receiver both threads of the harness
//!   (sockets opened inside the hosts' namespaces), so CI machines need no iperf.
//! - [`PgmSink`]: what a `pgm recv` writes (`-o <fifo>`, the messages back to back) read from
//!   a FIFO by a harness thread, counted and checked against the test pattern
//!   (`peers/openpgm/PATTERN.md`, version 1, fixed size).
//!
//! Each counts delivered bytes in an atomic that the harness reads at the start and the end
//! of its measuring interval. Dropping a flow stops and joins its threads.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pgm_netns_tests::lab::Ns;

/// How often blocked threads look at their stop flag.
const POLL: Duration = Duration::from_millis(200);

/// What the kernel says about a TCP connection (`TCP_INFO`), read at the sender.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TcpInfo {
    /// Smoothed round trip in microseconds.
    pub(crate) rtt_us: u32,
    /// Congestion window in segments.
    pub(crate) cwnd: u32,
    /// Segments retransmitted over the connection's life.
    pub(crate) total_retrans: u32,
}

/// One bulk TCP transfer from a host to another (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct TcpFlow {
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<()>>,
    receiver: Option<JoinHandle<()>>,
    probe: TcpStream,
}

impl TcpFlow {
    /// Listens on `to:port` inside `to_ns`, connects from inside `from_ns`, sets the sender's
    /// congestion control to `cc` (`TCP_CONGESTION`: a namespace other than the initial one
    /// may not change its default) and starts writing as fast as the connection takes it.
    pub(crate) fn start(
        from_ns: &Ns,
        to_ns: &Ns,
        (to, port): (Ipv4Addr, u16),
        cc: &str,
    ) -> Result<Self> {
        let listener = to_ns
            .run(|| TcpListener::bind(SocketAddrV4::new(to, port)))?
            .with_context(|| format!("TCP listen on {to}:{port}"))?;
        let dest = SocketAddrV4::new(to, port).into();
        let out = from_ns
            .run(|| TcpStream::connect_timeout(&dest, Duration::from_secs(5)))?
            .with_context(|| format!("TCP connect to {to}:{port}"))?;
        let (inc, _) = listener.accept().context("TCP accept")?;
        set_congestion_control(&out, cc)?;
        let probe = out.try_clone()?;
        let delivered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        inc.set_read_timeout(Some(POLL))?;
        out.set_write_timeout(Some(POLL))?;
        let receiver = {
            let (delivered, stop) = (Arc::clone(&delivered), Arc::clone(&stop));
            thread::spawn(move || tcp_drain(inc, &delivered, &stop))
        };
        let sender = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || tcp_fill(out, &stop))
        };
        Ok(Self {
            delivered,
            stop,
            sender: Some(sender),
            receiver: Some(receiver),
            probe,
        })
    }

    /// Bytes the receiver has read so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The sender's `TCP_INFO` now.
    pub(crate) fn info(&self) -> Result<TcpInfo> {
        // SAFETY: `tcp_info` is plain old data, all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the buffer and its length describe `info`, which outlives the call.
        let rc = unsafe {
            libc::getsockopt(
                self.probe.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            bail!("TCP_INFO: {}", std::io::Error::last_os_error());
        }
        Ok(TcpInfo {
            rtt_us: info.tcpi_rtt,
            cwnd: info.tcpi_snd_cwnd,
            total_retrans: info.tcpi_total_retrans,
        })
    }

    /// Stops both ends and waits for their threads.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in [self.sender.take(), self.receiver.take()]
            .into_iter()
            .flatten()
        {
            let _ = handle.join();
        }
    }
}

impl Drop for TcpFlow {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets the congestion control of `s` (`TCP_CONGESTION`) and checks that it took.
fn set_congestion_control(s: &TcpStream, cc: &str) -> Result<()> {
    // SAFETY: the option value is `cc`'s bytes, which outlive the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            cc.as_ptr().cast(),
            cc.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("TCP_CONGESTION {cc}: {}", std::io::Error::last_os_error());
    }
    let mut name = [0_u8; 16];
    let mut len = name.len() as libc::socklen_t;
    // SAFETY: the buffer and its length describe `name`, which outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let got = String::from_utf8_lossy(&name[..(len as usize).min(name.len())]);
    let got = got.trim_end_matches('\0');
    if rc != 0 || got != cc {
        bail!("TCP_CONGESTION is {got:?}, not {cc:?}");
    }
    Ok(())
}

fn tcp_fill(mut out: TcpStream, stop: &AtomicBool) {
    let buf = vec![0x5a_u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match out.write(&buf) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = out.shutdown(std::net::Shutdown::Both);
}

fn tcp_drain(mut inc: TcpStream, delivered: &AtomicU64, stop: &AtomicBool) {
    let mut buf = vec![0_u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match inc.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                delivered.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// What a [`PgmSink`] found in the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Whole messages read.
    pub(crate) messages: u64,
    /// Messages whose bytes differ from the pattern.
    pub(crate) bad: u64,
    /// Places where the next message's index was not the one expected (messages lost for
    /// good, or repeated).
    pub(crate) gaps: u64,
}

/// The stream of one `pgm recv -o <fifo>`, counted and checked (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct PgmSink {
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<Checked>>,
}

impl PgmSink {
    /// Creates the FIFO `path` and starts reading it. Messages are `size` bytes of pattern
    /// version 1 with seed `seed`.
    pub(crate) fn start(path: &Path, size: usize, seed: u64) -> Result<Self> {
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: `c_path` is a NUL-terminated path that outlives the call.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            bail!(
                "mkfifo {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        // Read and write: the open does not wait for `pgm recv`, and the reader never sees
        // end-of-file, so it ends on the stop flag alone.
        let fifo = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        let delivered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (delivered, stop) = (Arc::clone(&delivered), Arc::clone(&stop));
            thread::spawn(move || read_pattern(fifo, size, seed, &delivered, &stop))
        };
        Ok(Self {
            delivered,
            stop,
            reader: Some(reader),
        })
    }

    /// Bytes read so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Stops reading (after what is already in the FIFO) and returns what was checked.
    pub(crate) fn finish(mut self) -> Checked {
        self.stop.store(true, Ordering::Relaxed);
        self.reader
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for PgmSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

fn read_pattern(
    mut fifo: File,
    size: usize,
    seed: u64,
    delivered: &AtomicU64,
    stop: &AtomicBool,
) -> Checked {
    let mut checked = Checked::default();
    let mut buf = vec![0_u8; 256 * 1024];
    let mut message = Vec::with_capacity(size);
    let mut expected = Vec::with_capacity(size);
    let mut next_index = 0_u64;
    loop {
        // Stop only once the FIFO is empty.
        if !readable(&fifo) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            continue;
        }
        let n = match fifo.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        delivered.fetch_add(n as u64, Ordering::Relaxed);
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let take = (size - message.len()).min(rest.len());
            message.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if message.len() < size {
                break;
            }
            if size >= 8 {
                let mut idx = [0_u8; 8];
                idx.copy_from_slice(&message[..8]);
                let index = u64::from_be_bytes(idx);
                if index != next_index {
                    checked.gaps += 1;
                    next_index = index;
                }
            }
            pattern(seed, next_index, size, &mut expected);
            if message != expected {
                checked.bad += 1;
            }
            checked.messages += 1;
            next_index += 1;
            message.clear();
        }
    }
    checked
}

/// Whether `fifo` has data, waiting at most [`POLL`].
fn readable(fifo: &File) -> bool {
    let mut pfd = libc::pollfd {
        fd: fifo.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, which outlives the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as libc::c_int) };
    rc > 0 && pfd.revents & libc::POLLIN != 0
}

/// Message `i` of pattern version 1 (`peers/openpgm/PATTERN.md`) with seed `seed` and fixed
/// size `size`, written into `out`.
pub(crate) fn pattern(seed: u64, i: u64, size: usize, out: &mut Vec<u8>) {
    let mut state = seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    // r0 is drawn (it picks the size in mixed mode) whatever the size.
    let _ = next();
    out.clear();
    out.extend_from_slice(&i.to_be_bytes());
    while out.len() < size {
        out.extend_from_slice(&next().to_be_bytes());
    }
    out.truncate(size);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The vectors of `core/src/bin/pgm.rs`, printed by the OpenPGM peer.
    #[test]
    fn pattern_matches_the_vectors() {
        let mut m = Vec::new();
        pattern(1, 0, 32, &mut m);
        assert_eq!(
            hex(&m),
            "0000000000000000beeb8da1658eec67f893a2eefb32555e71c18690ee42c90b"
        );
        pattern(1, 1, 24, &mut m);
        assert_eq!(hex(&m), "00000000000000018596845e7ea88ca14c71f30e500f0b72");
    }
}
