//! Namespace topologies for real-kernel integration tests of the PGM suite.
//!
//! The [`lab`] module builds throw-away networks out of Linux network namespaces, veth pairs and
//! bridges, injects loss with nftables, captures with tcpdump, and forwards multicast without
//! PGM assist as a baseline (netdev rules on any kernel; `smcroute` where the kernel has
//! multicast routing). Everything a [`lab::Lab`] creates is removed when it is dropped.
//!
//! The other modules hold what the tests and the lab demo do with the suite's programs: build
//! them ([`bins`]), start the daemons from a generated configuration ([`daemon`]), talk to
//! their admin API ([`admin`]), read their Prometheus metrics ([`metrics`]) and run transfers
//! with the `pgm` tool ([`transfer`]); the benchmark harnesses share batched I/O ([`mmsg`])
//! and their labs, peers and helpers ([`bench`]); the adversarial tests craft hostile packets
//! ([`craft`]).
//! Router scenarios run on each data plane the kernel offers ([`plane`]).

pub mod admin;
pub mod bench;
pub mod bins;
pub mod craft;
pub mod daemon;
pub mod lab;
pub mod metrics;
pub mod mmsg;
pub mod plane;
pub mod transfer;
