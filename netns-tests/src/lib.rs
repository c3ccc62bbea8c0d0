//! Namespace topologies for real-kernel integration tests of the PGM suite.
//!
//! The [`lab`] module builds throw-away networks out of Linux network namespaces, veth pairs and
//! bridges, injects loss with nftables, captures with tcpdump and runs `smcroute` as a baseline
//! multicast router. Everything a [`lab::Lab`] creates is removed when it is dropped.
//!
//! The other modules hold what the tests and the lab demo do with the suite's programs: build
//! them ([`bins`]), start the daemons from a generated configuration ([`daemon`]), talk to
//! their admin API ([`admin`]), read their Prometheus metrics ([`metrics`]) and run transfers
//! with the `pgm` tool ([`transfer`]); the benchmark harnesses share batched I/O ([`mmsg`]).

pub mod admin;
pub mod bins;
pub mod daemon;
pub mod lab;
pub mod metrics;
pub mod mmsg;
pub mod transfer;
