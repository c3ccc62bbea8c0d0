//! `pgm-dlrd`: the PGM Designated Local Repairer daemon (RFC 3208 §9.5).
//!
//! A receiver of the sessions it serves that caches their ODATA and RDATA (bounded by bytes
//! and age) and repairs from the cache, driving the sans-IO engine
//! `pgm_core::proto::repairer`: as an upstream DLR it answers its parent's NCFs with a
//! redirecting POLR and the NAKs then directed to it with NCF, NNAK and RDATA bearing the
//! source's address and Router Alert; as an off-tree DLR it answers `PGM_POLL_DLR` with a
//! unicast redirecting POLR and its parent's NAKs with unicast NCF, NNAK and RDATA.
//! See the admin module for `/metrics` and the JSON API.
//!
//! ```text
//! pgm-dlrd --config /etc/pgm/dlr.toml
//! pgm-dlrd --config /etc/pgm/dlr.toml --check-config
//! ```

mod admin;
mod daemon;
mod metrics;
mod sockets;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use pgm_config::Config;
use pgm_config::daemon::DaemonSpec;

const SPEC: DaemonSpec = DaemonSpec {
    name: "pgm-dlrd",
    about: "PGM Designated Local Repairer (RFC 3208 §9.5) for Linux.",
    default_config: "/etc/pgm/dlr.toml",
    section: "dlr",
    has_section: |c| c.dlr.is_some(),
    interface_exists: pgm_core::net::iface::exists,
    describe: |_| Ok(Vec::new()),
};

fn main() -> ExitCode {
    pgm_config::daemon::main(&SPEC, run)
}

async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let daemon = daemon::Daemon::start(&config, path)?;
    let server = admin::bind(config.admin.listen, daemon.shared()).await?;
    tokio::spawn(server);
    daemon.run().await
}
