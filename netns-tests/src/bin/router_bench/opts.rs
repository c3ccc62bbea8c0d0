// ---------------------------------------------------------------------------------------
// Options

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Mode {
    Kernel,
    Nft,
    Ra,
    KernelJoin,
    KernelNft,
}

impl Mode {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "kernel" => Self::Kernel,
            "nft" | "nftables" => Self::Nft,
            "ra" | "router-alert" => Self::Ra,
            "kjoin" => Self::KernelJoin,
            "knft" => Self::KernelNft,
            x => bail!("unknown mode {x:?} (kernel, nft, ra, kjoin, knft)"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel-only (smcroute)",
            Self::Nft => "pgm-routerd full, nftables",
            Self::Ra => "pgm-routerd full, router-alert",
            Self::KernelJoin => "kernel-only + intercept socket joined (no daemon)",
            Self::KernelNft => "kernel-only + nftables table (no daemon)",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Kernel => "rbkern",
            Self::Nft => "rbnft",
            Self::Ra => "rbra",
            Self::KernelJoin => "rbkjoin",
            Self::KernelNft => "rbknft",
        }
    }

    /// The daemon's `intercept` setting, `None` without the daemon.
    fn intercept(self) -> Option<&'static str> {
        match self {
            Self::Kernel | Self::KernelJoin | Self::KernelNft => None,
            Self::Nft => Some("nftables"),
            Self::Ra => Some("router-alert"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum SenderKind {
    Udp,
    Pgm,
}

impl SenderKind {
    fn name(self) -> &'static str {
        match self {
            Self::Udp => "UDP multicast",
            Self::Pgm => "PGM/IP ODATA",
        }
    }
}

struct Opts {
    count: u64,
    sizes: Vec<usize>,
    repeat: usize,
    modes: Vec<Mode>,
    senders: Vec<SenderKind>,
    naks: usize,
    nak_rate: f64,
    nak_modes: Vec<Mode>,
    nak_repeat: usize,
    src_rate: u64,
    throughput: bool,
    latency: bool,
    build: bool,
    sysctl: bool,
    verbose: bool,
    /// The receiver polls with `MSG_DONTWAIT` instead of sleeping in `recvmmsg`.
    recv_busy: bool,
}

const USAGE: &str = "\
usage: router_bench [--count N] [--sizes 64,1400] [--repeat K] [--modes kernel,nft,ra]
                    [--senders udp,pgm] [--naks N] [--nak-rate PER_SEC] [--nak-modes nft,ra]
                    [--nak-repeat K] [--src-rate BYTES_PER_SEC] [--no-throughput]
                    [--no-latency] [--no-build]
                    [--no-sysctl] [--verbose] [--recv busy|block]
Needs root. Progress on stderr, the report (markdown) on stdout.";

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        count: 300_000,
        sizes: vec![64, 1400],
        repeat: 5,
        modes: vec![Mode::Kernel, Mode::Nft, Mode::Ra],
        senders: vec![SenderKind::Udp, SenderKind::Pgm],
        naks: 5000,
        nak_rate: 500.0,
        nak_modes: vec![Mode::Nft, Mode::Ra],
        nak_repeat: 3,
        src_rate: 500_000,
        throughput: true,
        latency: true,
        build: true,
        sysctl: true,
        verbose: false,
        recv_busy: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--count" => o.count = v()?.parse()?,
            "--sizes" | "--size" => o.sizes = parse_list(v()?, "size")?,
            "--repeat" => o.repeat = v()?.parse()?,
            "--modes" => {
                o.modes = v()?.split(',').map(Mode::parse).collect::<Result<_>>()?;
            }
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
            "--nak-modes" => {
                o.nak_modes = v()?.split(',').map(Mode::parse).collect::<Result<_>>()?;
            }
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
        o.nak_modes.iter().all(|m| m.intercept().is_some()),
        "--nak-modes: the latency benchmark needs the daemon (nft, ra)"
    );
    o.modes.dedup();
    o.senders.dedup();
    Ok(o)
}

