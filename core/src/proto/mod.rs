//! The PGM protocol engines, sans-IO.
//!
//! Heads up! Read RFC 3208 §5 (sources), §6 (receivers), §13 (SPMR) and Appendix D (polls)
//! before changing the engines here.
//!
//! # Contract shared by every engine
//!
//! An engine never touches a socket or a clock. The driver:
//!
//! 1. passes each arriving packet to `handle_packet(now, meta, bytes)`;
//! 2. calls `handle_timeout(now)` when the instant given by `poll_timeout()` has passed
//!    (calling it early is harmless);
//! 3. drains `poll_transmit(now, buf)` until it returns `None`, sending each [`Transmit`];
//! 4. drains `poll_event()` for application events.
//!
//! After any `handle_*` call or application call the driver must redo steps 2–4, because the
//! engine's deadlines and output may have changed. `now` never goes backwards. Every call does
//! a bounded amount of work, documented on the method. Malformed or unexpected packets are
//! dropped and counted in the engine's stats struct, one counter per reason, never panicking.
//!
//! Random choices (NAK back-off, POLR back-off, SPMR back-off) come from a ChaCha generator
//! seeded from the engine's configuration, so runs in the simulator replay exactly.

pub mod network_element;
pub mod pgmcc;
pub mod receiver;
pub mod repairer;
pub mod rotation;
mod rtt;
mod slab;
pub mod source;
mod timers;

use std::net::IpAddr;

use crate::wire::PacketType;

/// Where a transmit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Destination {
    /// The session's multicast group (downstream packets: ODATA, RDATA, SPM, NCF, POLL).
    Group(IpAddr),
    /// A unicast address (upstream packets: NAK to the PGM parent, SPMR and POLR).
    Unicast(IpAddr),
}

impl Destination {
    /// The IP address.
    pub fn addr(&self) -> IpAddr {
        match *self {
            Self::Group(a) | Self::Unicast(a) => a,
        }
    }
}

/// A packet an engine asks the driver to send. The PGM bytes are in the caller's buffer given
/// to `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: Destination,
    /// The packet's type, for per-type accounting without re-parsing.
    pub packet_type: PacketType,
    /// Whether the IP Router Alert option should be set (§4: SPM, NCF, RDATA, POLL over IP
    /// multicast). Ignored by PGM/UDP.
    pub router_alert: bool,
    /// The multicast TTL to use instead of the transport's default, e.g. 1 for the
    /// subnet-local SPMR multicast of §13.5.
    pub ttl: Option<u8>,
    /// The length of the packet in the buffer.
    pub len: usize,
}

/// What the driver knows of an arriving packet besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// The IP source address.
    pub source: IpAddr,
    /// The IP destination address (a group for multicast, our address for unicast).
    pub destination: IpAddr,
}

/// A seeded random generator for an engine's back-off choices.
pub(crate) type EngineRng = rand_chacha::ChaCha8Rng;

/// Builds the engine's generator from a seed.
pub(crate) fn rng_from_seed(seed: u64) -> EngineRng {
    use rand::SeedableRng;
    EngineRng::seed_from_u64(seed)
}

/// The hasher of the tables whose keys come from the network (TSIs, sequence numbers):
/// foldhash, much faster than SipHash, keyed with random bits from the OS (through std's
/// `RandomState`: 64 per process, 64 more per table) so that colliding keys cannot be
/// chosen in advance.
pub(crate) type KeyedHasher = foldhash::fast::SeedableRandomState;

/// A new [`KeyedHasher`].
pub(crate) fn keyed_hasher() -> KeyedHasher {
    use std::hash::{BuildHasher, RandomState};
    static SHARED: std::sync::OnceLock<foldhash::SharedSeed> = std::sync::OnceLock::new();
    let random = || RandomState::new().hash_one(0x5eed_u64);
    let shared = SHARED.get_or_init(|| foldhash::SharedSeed::from_u64(random()));
    foldhash::fast::SeedableRandomState::with_seed(random(), shared)
}
