//! Kernel plumbing of the network-element daemon (`pgm-routerd`): the data-plane split of
//! the architecture's "network element: kernel fast path, PGM slow path", on two planes.
//!
//! - [`plane`]: what a data plane is asked to hold (routes, assisted and learning groups),
//!   and [`plane::PlaneSync`], through which the daemon's controller hands changes to the
//!   plane's worker thread.
//! - [`netdev`]: the netdev plane, nftables `netdev` ingress rules that forward ODATA and log
//!   the rest; no kernel multicast routing needed.
//! - [`mroute_plane`]: the mroute plane over [`mroute`], the multicast-routing control
//!   socket (`MRT_INIT` on a raw IGMP socket: VIFs, `(S,G)` MFC entries, `IGMPMSG_NOCACHE`
//!   upcalls and the IGMP reports heard on it), and [`intercept`], the nftables table that
//!   stops kernel forwarding of every PGM type but ODATA for assisted groups (sources that
//!   omit Router Alert) and logs what it stops.
//! - [`nftables`] and the private `netlink` module: `nf_tables` requests over netlink, one
//!   atomic batch per change, in tables owned by their socket.
//! - [`nflog`]: the daemon's `nfnetlink_log` socket, which receives the logged packets with
//!   the interface each came in on.
//! - [`igmp`]: membership reports parsed, and the querier's socket.
//! - [`sockets`]: the raw receive sockets (Router Alert, unicast), each telling the
//!   interface a packet arrived on, and the `IP_HDRINCL` sender that writes the IP header
//!   itself (spoofed ODATA-source address, Router Alert option, TTL) and leaves by a chosen
//!   interface.
//! - [`procfs`]: the kernel's multicast routing table as `/proc/net/ip_mr_vif` and
//!   `/proc/net/ip_mr_cache` show it (assist-only mode, beside smcroute or pimd).
//! - [`support`]: what the running kernel offers each plane, by configuration option.
//!
//! Everything here is IPv4 and Linux only, and needs `CAP_NET_ADMIN` + `CAP_NET_RAW`.

pub mod igmp;
pub mod intercept;
pub mod mroute;
pub mod mroute_plane;
pub mod netdev;
mod netlink;
pub mod nflog;
pub mod nftables;
pub mod plane;
pub mod procfs;
pub mod sockets;
pub mod support;
mod sys;

pub use igmp::{IgmpChange, IgmpQuerier, IgmpReport};
pub use intercept::InterceptTable;
pub use mroute::{MAXVIFS, MrouteMsg, MrouteSocket, UpcallKind};
pub use nflog::NflogSocket;
pub use procfs::{KernelMfc, KernelVif};
pub use sockets::{HdrInclSender, Received, RecvSocket, RecvSocketKind};
