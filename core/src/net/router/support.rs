//! What the running kernel offers the data planes, found out without changing anything, and
//! named by the kernel configuration option that is missing when something is.
//!
//! - The mroute plane needs multicast routing (`CONFIG_IP_MROUTE`): the kernel then has
//!   `/proc/net/ip_mr_vif` in every network namespace. Whether another daemon already owns
//!   it (`MRT_INIT` is exclusive) shows only when the plane opens it.
//! - The netdev plane needs nf_tables (`CONFIG_NF_TABLES`), its netdev family
//!   (`CONFIG_NF_TABLES_NETDEV`), ingress hooks (`CONFIG_NETFILTER_INGRESS`), `dup` for
//!   netdev (`CONFIG_NFT_DUP_NETDEV`), `log` (`CONFIG_NFT_LOG`), `limit`
//!   (`CONFIG_NFT_LIMIT`) and `nfnetlink_log` (`CONFIG_NETFILTER_NETLINK_LOG`). Each is
//!   probed with a batch the kernel validates and throws away ([`super::nftables::NftSocket::check`]),
//!   one feature per batch, on the loopback interface, so a failure names its option.
//!   Probing needs `CAP_NET_ADMIN`.

use std::fmt;
use std::io;
use std::path::Path;

use super::netlink::{self, NLM_F_ACK, NLM_F_REQUEST, Writer, ack_of, recv_into};
use super::nftables::{
    Batch, Expr, FAMILY_NETDEV, HOOK_INGRESS, Hook, NftError, NftSocket, Reg, Verdict,
};

/// Why a data plane cannot run on this kernel.
#[derive(Debug)]
pub enum Unsupported {
    /// The kernel lacks a feature: the configuration option that provides it, and what
    /// showed it.
    Missing {
        /// `CONFIG_IP_MROUTE`, ...
        option: &'static str,
        /// What failed.
        detail: String,
    },
    /// The probe itself failed (no `CAP_NET_ADMIN`, say): nothing is known.
    CannotProbe(io::Error),
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { option, detail } => {
                write!(f, "the kernel was built without {option} ({detail})")
            }
            Self::CannotProbe(e) => write!(f, "cannot probe the kernel: {e}"),
        }
    }
}

impl std::error::Error for Unsupported {}

/// The file the kernel's multicast routing provides in every network namespace.
const IP_MR_VIF: &str = "/proc/net/ip_mr_vif";

/// Whether the kernel has IPv4 multicast routing (needs no privilege).
pub fn mroute() -> Result<(), Unsupported> {
    if Path::new(IP_MR_VIF).exists() {
        Ok(())
    } else {
        Err(Unsupported::Missing {
            option: "CONFIG_IP_MROUTE",
            detail: format!("{IP_MR_VIF} does not exist: no kernel multicast routing"),
        })
    }
}

const PROBE_TABLE: &str = "pgm_probe";
const PROBE_CHAIN: &str = "probe";

/// Whether the kernel can run the netdev plane (needs `CAP_NET_ADMIN`).
pub fn netdev() -> Result<(), Unsupported> {
    let mut sock = NftSocket::open().map_err(|e| missing_or(e, "CONFIG_NF_TABLES"))?;
    let r0 = Reg(0);
    let lo = 1u32.to_ne_bytes();
    // Each step adds one feature to the batch before it; the first refused names its option.
    type Step<'a> = (&'static str, &'static str, Option<Vec<Expr<'a>>>);
    let steps: [Step<'_>; 6] = [
        ("CONFIG_NF_TABLES_NETDEV", "a netdev table", None),
        ("CONFIG_NETFILTER_INGRESS", "an ingress chain", None),
        (
            "CONFIG_NFT_DUP_NETDEV",
            "the netdev dup expression",
            Some(vec![
                Expr::Immediate {
                    dreg: r0,
                    data: &lo,
                },
                Expr::Dup { sreg_dev: r0 },
                Expr::Verdict(Verdict::Drop),
            ]),
        ),
        (
            "CONFIG_NFT_LOG",
            "the log expression",
            Some(vec![Expr::Log {
                group: 0,
                prefix: "",
            }]),
        ),
        (
            "CONFIG_NFT_LIMIT",
            "the limit expression",
            Some(vec![Expr::Limit { rate: 1, burst: 1 }]),
        ),
        (
            "CONFIG_NF_TABLES",
            "named counters",
            Some(vec![Expr::Counter]),
        ),
    ];
    for (n, (option, what, rule)) in steps.iter().enumerate() {
        let mut b = Batch::new(FAMILY_NETDEV);
        b.add_table(PROBE_TABLE, 0);
        if n >= 1 {
            b.add_chain(
                PROBE_TABLE,
                PROBE_CHAIN,
                Some(Hook {
                    num: HOOK_INGRESS,
                    priority: 0,
                    device: Some("lo"),
                }),
            );
        }
        if let Some(exprs) = rule {
            b.add_rule(PROBE_TABLE, PROBE_CHAIN, exprs, what);
        }
        if let Err(e) = check(&mut sock, &mut b) {
            return Err(refused(e, option, what));
        }
    }
    nflog()
}

/// Sends a checked batch, once more if the kernel asked for a replay (`EAGAIN`: it loaded
/// a module).
fn check(sock: &mut NftSocket, b: &mut Batch) -> Result<(), NftError> {
    match sock.check(b) {
        Err(e) if e.errno() == Some(libc::EAGAIN) => sock.check(b),
        r => r,
    }
}

fn refused(e: NftError, option: &'static str, what: &str) -> Unsupported {
    match e.errno() {
        Some(libc::EPERM) => Unsupported::CannotProbe(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "nf_tables refused the probe: it needs CAP_NET_ADMIN (run as root)",
        )),
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT) => {
            Unsupported::Missing {
                option,
                detail: format!("{what}: {e}"),
            }
        }
        _ => Unsupported::CannotProbe(e.source),
    }
}

fn missing_or(e: io::Error, option: &'static str) -> Unsupported {
    match e.raw_os_error() {
        Some(libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT) => Unsupported::Missing {
            option,
            detail: e.to_string(),
        },
        _ => Unsupported::CannotProbe(e),
    }
}

/// Whether `nfnetlink_log` answers: a config request for the IPv4 family (a no-op that the
/// kernel acknowledges), which binds no group.
fn nflog() -> Result<(), Unsupported> {
    const OPTION: &str = "CONFIG_NETFILTER_NETLINK_LOG";
    let sock = netlink::netfilter_socket().map_err(|e| missing_or(e, OPTION))?;
    netlink::set_recv_timeout(&sock, std::time::Duration::from_secs(5))
        .map_err(Unsupported::CannotProbe)?;
    let mut w = Writer::default();
    // NFULNL_MSG_CONFIG of subsystem ULOG, NFULA_CFG_CMD = NFULNL_CFG_CMD_PF_UNBIND (4).
    w.begin(
        (4 << 8) | 1,
        NLM_F_REQUEST | NLM_F_ACK,
        1,
        libc::AF_INET as u8,
        0,
    );
    w.put(1, &[4]);
    w.end();
    sock.send(w.bytes()).map_err(Unsupported::CannotProbe)?;
    let mut buf = [0u8; 512];
    let n = recv_into(&sock, &mut buf, 0).map_err(Unsupported::CannotProbe)?;
    match ack_of(&buf[..n], 1) {
        Some(0) => Ok(()),
        Some(libc::EPERM) => Err(Unsupported::CannotProbe(io::Error::from_raw_os_error(
            libc::EPERM,
        ))),
        Some(errno) => Err(Unsupported::Missing {
            option: OPTION,
            detail: format!(
                "nfnetlink_log does not answer: {}",
                io::Error::from_raw_os_error(errno)
            ),
        }),
        None => Err(Unsupported::CannotProbe(io::Error::other(
            "no answer from nfnetlink_log",
        ))),
    }
}
