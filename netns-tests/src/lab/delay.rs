//! Fixed one-way delay on an interface, without netem: NFQUEUE and a userspace delayer.
//!
//! The kernels of this lab have no `sch_netem`, and nftables' own `queue` statement needs
//! `CONFIG_NFT_QUEUE`, which they lack too; the xtables `NFQUEUE` target
//! (`CONFIG_NETFILTER_XT_TARGET_NFQUEUE`) and the queue itself
//! (`CONFIG_NETFILTER_NETLINK_QUEUE`) are built in. So [`Lab::add_delay`]:
//!
//! 1. starts a thread inside the namespace that binds a netfilter queue (a netlink socket,
//!    through the `nfq` crate; the queue number is unique within the lab), asking for packet
//!    metadata only, never the payload;
//! 2. once it is bound, adds `iptables -t mangle -A POSTROUTING -o <iface> -j NFQUEUE
//!    --queue-num N --queue-bypass` in the namespace: every IPv4 packet leaving the interface,
//!    sent locally or forwarded (multicast routed by the kernel included), is handed to the
//!    thread;
//! 3. the thread gives each packet its verdict (accept) `delay` after it read it, in arrival
//!    order, so the link keeps its order. It wakes at least every [`TICK`], so a packet leaves
//!    up to one tick late.
//!
//! [`Delay::stop`] (or dropping the [`Delay`]) deletes the rule, releases what is held and ends
//! the thread. `--queue-bypass` lets packets through undelayed whenever no thread is bound,
//! so a crashed delayer never blackholes the link; the mangle table also goes when the lab
//! drops. The kernel queue holds at most `max_held` packets (default 65536); beyond that the
//! kernel drops, which [`DelayStats::queued`] vs. the traffic would show.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};

use super::util::{SETUP_TIMEOUT, run_checked};
use super::{Lab, Ns};

/// The delayer's longest sleep between two looks at the queue.
pub const TICK: Duration = Duration::from_micros(500);

/// Default bound of the kernel queue (packets held at once).
const DEFAULT_MAX_HELD: u32 = 65_536;

/// Counters of a [`Delay`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayStats {
    /// Packets read from the queue.
    pub queued: u64,
    /// Packets given their verdict (accepted).
    pub released: u64,
    /// Most packets held at once.
    pub max_held: u64,
    /// Netlink errors (receive or verdict) other than "nothing to read".
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    released: AtomicU64,
    max_held: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DelayStats {
        DelayStats {
            queued: self.queued.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            max_held: self.max_held.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// An installed delay (see the [module docs](self)).
#[derive(Debug)]
pub struct Delay {
    ns: Ns,
    iface: String,
    queue: u16,
    delay: Duration,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<Result<()>>>,
    rule_installed: bool,
}

impl Delay {
    /// The namespace it lives in.
    pub fn ns(&self) -> &Ns {
        &self.ns
    }

    /// The interface whose egress it delays.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The delay given to every packet.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The counters so far.
    pub fn stats(&self) -> DelayStats {
        self.counters.snapshot()
    }

    /// Removes the rule, releases every held packet and ends the thread; returns the final
    /// counters, or the thread's error.
    pub fn stop(mut self) -> Result<DelayStats> {
        self.shutdown()?;
        Ok(self.counters.snapshot())
    }

    fn rule_args(&self, op: &str) -> Vec<String> {
        #[rustfmt::skip]
        let args = ["iptables", "-w", "-t", "mangle", op, "POSTROUTING", "-o", &self.iface,
                    "-j", "NFQUEUE", "--queue-num", &self.queue.to_string(), "--queue-bypass"];
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    fn shutdown(&mut self) -> Result<()> {
        let mut result = Ok(());
        if self.rule_installed {
            self.rule_installed = false;
            result = run_checked(ns_cmd(&self.ns, &self.rule_args("-D")), SETUP_TIMEOUT)
                .map(|_| ())
                .context("deleting the NFQUEUE rule");
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t
                .join()
                .map_err(|_| anyhow!("the delayer thread panicked"))
                .and_then(|r| r);
            result = result.and(r);
        }
        result
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl Lab {
    /// Delays every IPv4 packet leaving `iface` in `ns` by `delay` (see the
    /// [module docs](self)). The delay lasts until the [`Delay`] is stopped or dropped.
    pub fn add_delay(&self, ns: &Ns, iface: &str, delay: Duration) -> Result<Delay> {
        self.add_delay_bounded(ns, iface, delay, DEFAULT_MAX_HELD)
    }

    /// [`Lab::add_delay`] with the kernel queue bounded to `max_held` packets.
    pub fn add_delay_bounded(
        &self,
        ns: &Ns,
        iface: &str,
        delay: Duration,
        max_held: u32,
    ) -> Result<Delay> {
        super::check_ifname(iface)?;
        ensure!(max_held > 0, "max_held must be positive");
        let queue = u16::try_from(self.next_seq()).context("too many queues in one lab")?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let (stop, counters, ns) = (Arc::clone(&stop), Arc::clone(&counters), ns.clone());
            thread::Builder::new()
                .name(format!("delay-{iface}"))
                .spawn(move || {
                    ns.enter()?;
                    run(queue, delay, max_held, &stop, &counters, ready_tx)
                })
                .context("cannot start the delayer thread")?
        };
        let mut d = Delay {
            ns: ns.clone(),
            iface: iface.to_owned(),
            queue,
            delay,
            stop,
            counters,
            thread: Some(thread),
            rule_installed: false,
        };
        match ready_rx.recv_timeout(SETUP_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = d.shutdown();
                return Err(anyhow!(e)).context("binding the netfilter queue");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The thread ended before it could say why (it could not enter the namespace).
                let err = d
                    .thread
                    .take()
                    .and_then(|t| t.join().ok())
                    .and_then(Result::err)
                    .unwrap_or_else(|| anyhow!("the delayer thread ended"));
                return Err(err).context("starting the delayer");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Stuck in netlink: leave the thread behind (no rule points at its queue).
                d.stop.store(true, Ordering::Relaxed);
                drop(d.thread.take());
                return Err(anyhow!(
                    "the delayer did not bind its queue within {SETUP_TIMEOUT:?}"
                ));
            }
        }
        run_checked(ns_cmd(ns, &d.rule_args("-A")), SETUP_TIMEOUT)
            .with_context(|| format!("adding the NFQUEUE rule on {iface} in {ns}"))?;
        d.rule_installed = true;
        // iptables-nft keeps the rule in the nftables table `ip mangle`: the lab deletes it on
        // drop like its own tables.
        self.record_table(ns, "ip", "mangle");
        Ok(d)
    }
}

fn ns_cmd(ns: &Ns, args: &[String]) -> std::process::Command {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", ns.name()]).args(args);
    cmd
}

#[expect(
    clippy::disallowed_methods,
    reason = "the delayer holds packets on the wall clock"
)]
fn now() -> Instant {
    Instant::now()
}

/// The delayer thread (inside the namespace): binds `queue`, reports on `ready`, then holds
/// and releases packets until `stop`.
fn run(
    queue: u16,
    delay: Duration,
    max_held: u32,
    stop: &AtomicBool,
    counters: &Counters,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<()> {
    let setup = || -> std::io::Result<nfq::Queue> {
        let mut q = nfq::Queue::open()?;
        q.bind(queue)?;
        // Metadata only: the verdict needs the packet id, never the bytes.
        q.set_copy_range(queue, 0)?;
        q.set_queue_max_len(queue, max_held)?;
        q.set_nonblocking(true);
        Ok(q)
    };
    let mut q = match setup() {
        Ok(q) => {
            let _ = ready.send(Ok(()));
            q
        }
        Err(e) => {
            let msg = format!("netfilter queue {queue}: {e}");
            let _ = ready.send(Err(msg.clone()));
            return Err(anyhow!(msg));
        }
    };
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        loop {
            match q.recv() {
                Ok(mut m) => {
                    m.set_verdict(nfq::Verdict::Accept);
                    held.push_back((now() + delay, m));
                    counters.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        counters
            .max_held
            .fetch_max(held.len() as u64, Ordering::Relaxed);
        let t = now();
        while held.front().is_some_and(|(due, _)| stopping || *due <= t) {
            let Some((_, m)) = held.pop_front() else {
                break;
            };
            if q.verdict(m).is_ok() {
                counters.released.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if stopping {
            let _ = q.unbind(queue);
            return Ok(());
        }
        let nap = held.front().map_or(TICK, |(due, _)| {
            due.saturating_duration_since(now()).min(TICK)
        });
        thread::sleep(nap);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddrV4, UdpSocket};

    use super::*;

    /// Datagrams across a delayed veth arrive all, in order, and none earlier than the delay
    /// after it was sent (a lower bound: a loaded machine only adds to it).
    #[test]
    fn delays_every_packet_and_keeps_order() {
        if super::super::skip_without_root("delays_every_packet_and_keeps_order") {
            return;
        }
        let lab = Lab::new("delayself").unwrap();
        let b = lab.block();
        let (x, y) = (lab.add_ns("x").unwrap(), lab.add_ns("y").unwrap());
        lab.add_veth(&x, "eth0", &y, "eth0").unwrap();
        let (ax, ay) = (b.addr(1, 1), b.addr(1, 2));
        lab.add_addr(&x, "eth0", ax, 24).unwrap();
        lab.add_addr(&y, "eth0", ay, 24).unwrap();
        // Resolve the neighbour before delaying, so ARP plays no part.
        lab.ping(&x, ay, Duration::from_secs(5)).unwrap();
        let delay = Duration::from_millis(40);
        let d = lab.add_delay(&x, "eth0", delay).unwrap();
        let rx = y
            .run(|| UdpSocket::bind(SocketAddrV4::new(ay, 40_000)).unwrap())
            .unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let receiver = thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            while got.len() < 100 {
                let Ok(n) = rx.recv(&mut buf) else { break };
                let seq = u32::from_be_bytes(buf[..n.min(4)].try_into().unwrap_or([0; 4]));
                got.push((seq, now()));
            }
            got
        });
        let sent: Vec<Instant> = x
            .run(|| {
                let tx = UdpSocket::bind(SocketAddrV4::new(ax, 0)).unwrap();
                (0u32..100)
                    .map(|i| {
                        let t = now();
                        tx.send_to(&i.to_be_bytes(), SocketAddrV4::new(ay, 40_000))
                            .unwrap();
                        thread::sleep(Duration::from_millis(1));
                        t
                    })
                    .collect()
            })
            .unwrap();
        let got = receiver.join().unwrap();
        let stats = d.stop().unwrap();
        let order: Vec<u32> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>(), "lost or reordered");
        for (seq, at) in &got {
            let took = at.saturating_duration_since(sent[*seq as usize]);
            assert!(took >= delay, "datagram {seq} took {took:?} < {delay:?}");
        }
        assert!(stats.queued >= 100, "{stats:?}");
        assert_eq!(stats.released, stats.queued, "{stats:?}");
        assert_eq!(stats.errors, 0, "{stats:?}");
        assert!(
            stats.max_held > 1,
            "packets were not held together: {stats:?}"
        );
        // Once stopped, the rule is gone and the link still carries traffic.
        let rules = lab
            .exec(&x, &["iptables", "-w", "-t", "mangle", "-S"])
            .unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(!rules.contains("NFQUEUE"), "{rules}");
        lab.ping(&x, ay, Duration::from_secs(5)).unwrap();
    }
}
