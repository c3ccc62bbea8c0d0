//! The tokio application API: a [`Sender`] and a [`Receiver`] built on the sans-IO engines
//! of [`proto`](crate::proto) and the transports of [`net`](crate::net).
//!
//! Each handle owns a driver task, spawned on the current tokio runtime when it is bound.
//! The driver follows the engine contract of [`proto`](crate::proto): it waits on the
//! transport's sockets, the engine's `poll_timeout` and the application's commands; after
//! every input it drains `poll_transmit` to the transport and `poll_event` to the
//! application. It is the only place besides `net` that reads the clock.
//!
//! IPv4 only for now (the engines are address-family neutral, the transports are not yet).
//!
//! # Example
//!
//! A sender and a receiver on one host over PGM/UDP:
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//!
//! use pgm_core::host::{Receiver, ReceiverConfig, Sender, SenderConfig};
//! use pgm_core::net::{Encapsulation, TransportConfig};
//! use pgm_core::proto::receiver::{self, Event};
//! use pgm_core::proto::source::SourceConfig;
//! use pgm_core::wire::Gsi;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let group = Ipv4Addr::new(239, 192, 0, 1);
//! let iface = pgm_core::net::iface::resolve("eth0")?.addr;
//!
//! let mut transport = TransportConfig::new(Encapsulation::UDP, group, iface);
//! transport.listen_unicast = false; // the sender of this host owns the unicast port
//! let engine = receiver::ReceiverConfig::new(7500, group.into());
//! let mut rx = Receiver::bind(ReceiverConfig::new(engine, transport.clone()))?;
//!
//! let engine = SourceConfig::new(Gsi([1, 2, 3, 4, 5, 6]), 4000, 7500, group.into(), iface.into());
//! let tx = Sender::bind(SenderConfig::new(engine, transport))?;
//! tx.send(b"hello").await?;
//! tx.close().await?;
//!
//! while let Some(event) = rx.next_event().await {
//!     match event {
//!         Event::Data { tsi, data } => println!("{tsi}: {} bytes", data.len()),
//!         Event::SessionEnd { .. } => break,
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod io;
mod receiver;
mod sender;
mod tx;

pub use receiver::{Receiver, ReceiverConfig, ReceiverStats};
pub use sender::{Sender, SenderConfig, SenderStats};
use std::time::Instant;

pub use crate::proto::receiver::Event;

/// Why a host API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused the message (too large, or the session is closed).
    #[error("send refused: {0}")]
    Send(#[from] crate::proto::source::SendError),
    /// The driver task is gone (its runtime shut down, or it panicked).
    #[error("the driver task has stopped")]
    DriverGone,
}

/// The current time, for the engines.
#[expect(
    clippy::disallowed_methods,
    reason = "the host drivers read the clock and pass it to the engines"
)]
fn now() -> Instant {
    Instant::now()
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Whether a socket error is transient and the driver should just go on: the per-packet
/// errors that leave the socket usable.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        WouldBlock | Interrupted | InvalidData | ConnectionRefused | ConnectionReset
    ) || e.raw_os_error().is_some_and(|c| {
        matches!(
            c,
            libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EPERM | libc::ENOBUFS | libc::EMSGSIZE
        )
    })
}
