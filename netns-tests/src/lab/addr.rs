//! Per-lab IPv4 address blocks, leased across processes so that parallel tests never share one.
//!
//! A block is `10.<octet>.0.0/16` with `octet` in [`AddrBlock::FIRST`]`..=`[`AddrBlock::LAST`].
//! The lease is an exclusive `flock(2)` on `/run/pgm-netns-lab/leases/<octet>`, held for the life
//! of the [`Lab`](super::Lab). The kernel drops the lock when the process dies, so a crashed test
//! never leaks a block. The lock is per open file description, so two labs of one process exclude
//! each other too.
//!
//! Labs live in their own namespaces, so equal addresses in two labs could not meet on a wire
//! anyway; distinct blocks keep captures, logs and error messages unambiguous.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Where lease files live (a tmpfs cleared on reboot; only root uses labs).
const LEASE_DIR: &str = "/run/pgm-netns-lab/leases";

/// The `10.<octet>.0.0/16` block of one lab. All addresses of a lab's topology come from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrBlock {
    octet: u8,
}

impl AddrBlock {
    /// The lowest second octet handed out (10.0/12 is left to whatever the host uses).
    pub const FIRST: u8 = 16;
    /// The highest second octet handed out.
    pub const LAST: u8 = 250;

    /// The block `10.<octet>.0.0/16`. No lease is taken: use [`Lab::block`](super::Lab::block).
    pub fn new(octet: u8) -> Self {
        Self { octet }
    }

    /// The second octet of the block.
    pub fn octet(self) -> u8 {
        self.octet
    }

    /// The address `10.<octet>.<subnet>.<host>`.
    pub fn addr(self, subnet: u8, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, subnet, host)
    }

    /// The /24 `10.<octet>.<subnet>.0/24`, in CIDR notation for `ip route`.
    pub fn subnet(self, subnet: u8) -> String {
        format!("10.{}.{subnet}.0/24", self.octet)
    }

    /// The whole block, `10.<octet>.0.0/16`, in CIDR notation.
    pub fn cidr(self) -> String {
        format!("10.{}.0.0/16", self.octet)
    }

    /// A multicast group private to this lab by convention: `239.192.<octet>.<n>`.
    pub fn group(self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(239, 192, self.octet, n)
    }
}

/// A held lease on one [`AddrBlock`]; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Lease {
    _file: File,
    block: AddrBlock,
}

impl Lease {
    /// Leases a free block, trying blocks in order from one derived from `seed`.
    pub(crate) fn acquire(seed: u32) -> Result<Self> {
        fs::create_dir_all(LEASE_DIR).with_context(|| format!("cannot create {LEASE_DIR}"))?;
        let span = u32::from(AddrBlock::LAST - AddrBlock::FIRST) + 1;
        for i in 0..span {
            let off = (seed.wrapping_add(i)) % span;
            // `off < span <= 235`, so the sum stays within `FIRST..=LAST`.
            let octet = AddrBlock::FIRST + u8::try_from(off).unwrap_or(0);
            if let Some(lease) = Self::try_lease(octet)? {
                return Ok(lease);
            }
        }
        bail!("all {span} address blocks are leased (too many labs at once?)")
    }

    fn try_lease(octet: u8) -> Result<Option<Self>> {
        let path = Path::new(LEASE_DIR).join(octet.to_string());
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock(2) on a descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
        // For people looking at the directory: who holds the block.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Some(Self {
            _file: file,
            block: AddrBlock::new(octet),
        }))
    }

    /// The leased block.
    pub(crate) fn block(&self) -> AddrBlock {
        self.block
    }
}
