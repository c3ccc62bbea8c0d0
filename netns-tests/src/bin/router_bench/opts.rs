//! The command line: router configurations, senders and the options of both benchmarks.

use anyhow::{Context, Result, bail, ensure};

use crate::util::parse_list;

/// A router configuration on r1 (or none, `Direct`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Mode {
    /// No router: src and rcv on the two ends of one veth.
    Direct,
    /// The netdev plane's forwarding rules (`Lab::start_forwarding`), no intercept, no daemon.
    NetdevFwd,
    /// `pgm-routerd`, full mode, `dataplane = "netdev"`.
    Netdev,
    /// smcroute, no daemon.
    Kernel,
    /// `pgm-routerd`, full mode, `dataplane = "mroute"`, `intercept = "nftables"`.
    Nft,
    /// `pgm-routerd`, full mode, `dataplane = "mroute"`, `intercept = "router-alert"`.
    Ra,
    /// smcroute plus the daemon's intercept socket joined to the group, no daemon.
    KernelJoin,
    /// smcroute plus the daemon's mroute-plane nftables table, no daemon.
    KernelNft,
}

/// What `pgm-routerd` runs with: `router.dataplane` and `router.intercept` (`None`: the
/// default, which the netdev plane does not use).
pub(crate) struct DaemonPlane {
    pub(crate) dataplane: &'static str,
    pub(crate) intercept: Option<&'static str>,
}

impl Mode {
    /// Every mode, in the order of `--modes`' help.
    const ALL: [Self; 8] = [
        Self::Direct,
        Self::NetdevFwd,
        Self::Netdev,
        Self::Kernel,
        Self::Nft,
        Self::Ra,
        Self::KernelJoin,
        Self::KernelNft,
    ];

    fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        Ok(match s {
            "nftables" => Self::Nft,
            "router-alert" => Self::Ra,
            _ => match Self::ALL.into_iter().find(|m| m.key() == s) {
                Some(m) => m,
                None => {
                    let keys: Vec<&str> = Self::ALL.iter().map(|m| m.key()).collect();
                    bail!("unknown mode {s:?} ({})", keys.join(", "))
                }
            },
        })
    }

    fn parse_list(s: &str) -> Result<Vec<Self>> {
        s.split(',')
            .filter(|x| !x.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    /// The name on the command line.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::NetdevFwd => "nfwd",
            Self::Netdev => "netdev",
            Self::Kernel => "kernel",
            Self::Nft => "nft",
            Self::Ra => "ra",
            Self::KernelJoin => "kjoin",
            Self::KernelNft => "knft",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct veth, no router",
            Self::NetdevFwd => "netdev rules only, no intercept, no daemon",
            Self::Netdev => "pgm-routerd full, netdev plane",
            Self::Kernel => "kernel-only, smcroute",
            Self::Nft => "pgm-routerd full, mroute plane, nftables",
            Self::Ra => "pgm-routerd full, mroute plane, router-alert",
            Self::KernelJoin => "kernel-only + intercept socket joined, no daemon",
            Self::KernelNft => "kernel-only + nftables table, no daemon",
        }
    }

    /// The lab's tag.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Self::Direct => "rbdirect",
            Self::NetdevFwd => "rbnfwd",
            Self::Netdev => "rbnetdev",
            Self::Kernel => "rbkern",
            Self::Nft => "rbnft",
            Self::Ra => "rbra",
            Self::KernelJoin => "rbkjoin",
            Self::KernelNft => "rbknft",
        }
    }

    /// Whether the configuration needs the kernel's multicast routing (`CONFIG_IP_MROUTE`).
    pub(crate) fn needs_mroute(self) -> bool {
        !matches!(self, Self::Direct | Self::NetdevFwd | Self::Netdev)
    }

    /// How `pgm-routerd` runs; `None` without the daemon.
    pub(crate) fn daemon(self) -> Option<DaemonPlane> {
        let (dataplane, intercept) = match self {
            Self::Netdev => ("netdev", None),
            Self::Nft => ("mroute", Some("nftables")),
            Self::Ra => ("mroute", Some("router-alert")),
            _ => return None,
        };
        Some(DaemonPlane {
            dataplane,
            intercept,
        })
    }

    /// The configuration this one is compared with: the same forwarding without the daemon
    /// (or without what the diagnostics add).
    pub(crate) fn baseline(self) -> Option<Self> {
        match self {
            Self::Netdev => Some(Self::NetdevFwd),
            Self::Nft | Self::Ra | Self::KernelJoin | Self::KernelNft => Some(Self::Kernel),
            Self::Direct | Self::NetdevFwd | Self::Kernel => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum SenderKind {
    Udp,
    Pgm,
}

impl SenderKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Udp => "UDP multicast",
            Self::Pgm => "PGM/IP ODATA",
        }
    }
}

pub(crate) struct Opts {
    pub(crate) count: u64,
    pub(crate) sizes: Vec<usize>,
    pub(crate) repeat: usize,
    pub(crate) modes: Vec<Mode>,
    pub(crate) senders: Vec<SenderKind>,
    pub(crate) naks: usize,
    pub(crate) nak_rate: f64,
    pub(crate) nak_modes: Vec<Mode>,
    pub(crate) nak_repeat: usize,
    pub(crate) src_rate: u64,
    pub(crate) throughput: bool,
    pub(crate) latency: bool,
    pub(crate) build: bool,
    pub(crate) sysctl: bool,
    pub(crate) verbose: bool,
    /// The receiver polls with `MSG_DONTWAIT` instead of sleeping in `recvmmsg`.
    pub(crate) recv_busy: bool,
    /// Configurations asked for (or by default) that this kernel cannot run, left out of
    /// `modes` and `nak_modes` by [`Opts::fit_kernel`].
    pub(crate) skipped_modes: Vec<Mode>,
    pub(crate) skipped_nak_modes: Vec<Mode>,
}

pub(crate) const USAGE: &str = "\
usage: router_bench [--count N] [--sizes 64,1400] [--repeat K]
                    [--modes direct,nfwd,netdev,kernel,nft,ra[,kjoin,knft]]
                    [--senders udp,pgm] [--naks N] [--nak-rate PER_SEC]
                    [--nak-modes netdev,nft,ra] [--nak-repeat K] [--src-rate BYTES_PER_SEC]
                    [--recv busy|block] [--no-throughput] [--no-latency] [--no-build]
                    [--no-sysctl] [--verbose]
The mroute modes (kernel, nft, ra, kjoin, knft) need CONFIG_IP_MROUTE and are skipped on a
kernel without it. Needs root. Progress on stderr, the report (markdown) on stdout.";

/// `v` without repeats, first occurrences kept in order.
fn dedup<T: PartialEq + Copy>(v: &mut Vec<T>) {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for &x in v.iter() {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    *v = out;
}

pub(crate) fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        count: 300_000,
        sizes: vec![64, 1400],
        repeat: 5,
        modes: vec![
            Mode::Direct,
            Mode::NetdevFwd,
            Mode::Netdev,
            Mode::Kernel,
            Mode::Nft,
            Mode::Ra,
        ],
        senders: vec![SenderKind::Udp, SenderKind::Pgm],
        naks: 5000,
        nak_rate: 500.0,
        nak_modes: vec![Mode::Netdev, Mode::Nft, Mode::Ra],
        nak_repeat: 3,
        src_rate: 500_000,
        throughput: true,
        latency: true,
        build: true,
        sysctl: true,
        verbose: false,
        recv_busy: true,
        skipped_modes: Vec::new(),
        skipped_nak_modes: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--count" => o.count = v()?.parse()?,
            "--sizes" | "--size" => o.sizes = parse_list(v()?, "size")?,
            "--repeat" => o.repeat = v()?.parse()?,
            "--modes" => o.modes = Mode::parse_list(v()?)?,
            "--senders" => {
                o.senders = v()?
                    .split(',')
                    .map(|s| match s.trim() {
                        "udp" => Ok(SenderKind::Udp),
                        "pgm" => Ok(SenderKind::Pgm),
                        x => bail!("unknown sender {x:?} (udp, pgm)"),
                    })
                    .collect::<Result<_>>()?;
            }
            "--naks" => o.naks = v()?.parse()?,
            "--nak-rate" => o.nak_rate = v()?.parse()?,
            "--nak-modes" => o.nak_modes = Mode::parse_list(v()?)?,
            "--nak-repeat" => o.nak_repeat = v()?.parse()?,
            "--src-rate" => o.src_rate = v()?.parse()?,
            "--no-throughput" => o.throughput = false,
            "--no-latency" => o.latency = false,
            "--no-build" => o.build = false,
            "--no-sysctl" => o.sysctl = false,
            "--verbose" => o.verbose = true,
            "--recv" => {
                o.recv_busy = match v()?.as_str() {
                    "busy" => true,
                    "block" => false,
                    x => bail!("unknown --recv {x:?} (busy, block)"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown option {a}\n{USAGE}"),
        }
    }
    ensure!(
        o.count > 0 && o.repeat > 0,
        "--count and --repeat must be > 0"
    );
    ensure!(
        o.sizes.iter().all(|s| (8..=1400).contains(s)),
        "sizes must be 8..=1400 (one unfragmented datagram)"
    );
    ensure!(
        o.naks > 0 && o.nak_rate > 0.0 && o.nak_rate <= 20_000.0,
        "--naks must be > 0 and --nak-rate in (0, 20000]"
    );
    ensure!(
        o.nak_modes.iter().all(|m| m.daemon().is_some()),
        "--nak-modes: the latency benchmark needs the daemon (netdev, nft, ra)"
    );
    dedup(&mut o.modes);
    dedup(&mut o.nak_modes);
    dedup(&mut o.senders);
    dedup(&mut o.sizes);
    Ok(o)
}

impl Opts {
    /// Leaves out the configurations that need kernel multicast routing when the kernel has
    /// none (`has_mroute` false), into `skipped_modes` and `skipped_nak_modes`. Returns the
    /// line that says so, if any configuration of a benchmark that runs was left out.
    pub(crate) fn fit_kernel(&mut self, has_mroute: bool) -> Option<String> {
        if has_mroute {
            return None;
        }
        let split = |modes: &mut Vec<Mode>| -> Vec<Mode> {
            let (skip, keep) = modes.iter().partition(|m| m.needs_mroute());
            *modes = keep;
            skip
        };
        self.skipped_modes = split(&mut self.modes);
        self.skipped_nak_modes = split(&mut self.nak_modes);
        let keys = |v: &[Mode]| v.iter().map(|m| m.key()).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if self.throughput && !self.skipped_modes.is_empty() {
            parts.push(format!("throughput modes {}", keys(&self.skipped_modes)));
        }
        if self.latency && !self.skipped_nak_modes.is_empty() {
            parts.push(format!("NAK modes {}", keys(&self.skipped_nak_modes)));
        }
        if parts.is_empty() {
            return None;
        }
        Some(format!(
            "router_bench: skipping the mroute {}: this kernel has no multicast routing \
             (CONFIG_IP_MROUTE; /proc/net/ip_mr_vif is missing)",
            parts.join(" and ")
        ))
    }
}
