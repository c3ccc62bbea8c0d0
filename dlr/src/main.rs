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

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pgm_config::Config;

/// PGM Designated Local Repairer (RFC 3208 §9.5) for Linux.
#[derive(Debug, Parser)]
#[command(name = "pgm-dlrd", version)]
struct Args {
    /// The TOML configuration file.
    #[arg(long, short, default_value = "/etc/pgm/dlr.toml")]
    config: PathBuf,
    /// Check the configuration (and that its interfaces exist), print every problem and exit.
    #[arg(long)]
    check_config: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
        || pgm_core::net::iface::interfaces()
            .map(|all| all.iter().any(|i| i.name == name))
            .unwrap_or(false)
}

fn load(args: &Args) -> Result<Config, String> {
    let config = Config::from_file(&args.config).map_err(|e| e.to_string())?;
    config
        .check_interfaces(&interface_exists)
        .map_err(|e| e.to_string())?;
    if config.dlr.is_none() {
        return Err(format!(
            "{}: the configuration has no [dlr] section",
            args.config.display()
        ));
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        let _ = writeln!(
            std::io::stdout(),
            "{}: configuration OK",
            args.config.display()
        );
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "pgm-dlrd failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let daemon = daemon::Daemon::start(&config, path)?;
    let server = admin::bind(config.admin.listen, daemon.shared()).await?;
    tokio::spawn(server);
    daemon.run().await
}
