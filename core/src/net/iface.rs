//! Interface discovery: IPv4 interfaces of this host, and resolution of an interface given
//! by name (`eth0`) or by address (`10.0.0.2`).
//!
//! Implemented with libc's `getifaddrs(3)`, the one kernel-backed source of every address
//! of every interface (netlink underneath), instead of parsing `ip -j addr` (a subprocess and
//! a JSON parser) or `/proc` (which lists IPv6 addresses only), and instead of adding the
//! `nix` or `if-addrs` crates for one function: the unsafe code is one list walk below.

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;

/// One IPv4 address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The interface name, e.g. `eth0`.
    pub name: String,
    /// The interface index (0 if the kernel did not give one).
    pub index: u32,
    /// The address.
    pub addr: Ipv4Addr,
    /// Whether the interface is up.
    pub up: bool,
    /// Whether the interface is the loopback.
    pub loopback: bool,
    /// Whether the interface supports multicast.
    pub multicast: bool,
}

/// Runs the interface ioctl `request` (`SIOCGIF*`) for interface `name` and returns the
/// filled `ifreq`.
#[allow(unsafe_code)]
fn ifreq_ioctl(name: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: `ifreq` is a plain C struct (a name and a union of integers and addresses)
    // for which all-zero bytes are valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &b) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = b as libc::c_char;
    }
    // SAFETY: the SIOCGIF* requests read the NUL-terminated name (the array is zeroed past
    // it) and write into the union of `req`, which lives across the call.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            request as _,
            &mut req,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// The MTU of interface `name` (`SIOCGIFMTU`), in bytes.
#[allow(unsafe_code)]
pub fn mtu(name: &str) -> io::Result<u32> {
    let req = ifreq_ioctl(name, libc::SIOCGIFMTU)?;
    // SAFETY: after a successful SIOCGIFMTU the union holds `ifru_mtu`.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::other(format!("negative MTU on {name}")))
}

/// `ARPHRD_ETHER`: an Ethernet-like interface (veth, NICs, bridges, VLANs, macvlan, vxlan).
pub const ARPHRD_ETHER: u16 = 1;

/// The link-layer type (`ARPHRD_*`) and address of interface `name` (`SIOCGIFHWADDR`); the
/// address is the first 6 bytes (an Ethernet MAC address for [`ARPHRD_ETHER`]).
#[allow(unsafe_code)]
pub fn hardware_address(name: &str) -> io::Result<(u16, [u8; 6])> {
    let req = ifreq_ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: after a successful SIOCGIFHWADDR the union holds `ifru_hwaddr`.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = b as u8;
    }
    Ok((sa.sa_family, mac))
}

/// Every IPv4 address of every interface, in the kernel's order.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut out = Vec::new();
    for_each_ifaddr(|name, addr, flags| {
        out.push(Interface {
            index: index_of(name),
            name: name.to_string_lossy().into_owned(),
            addr,
            up: flags & libc::IFF_UP as u32 != 0,
            loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
            multicast: flags & libc::IFF_MULTICAST as u32 != 0,
        });
    })?;
    Ok(out)
}

/// Resolves `spec`, an interface name or one of this host's IPv4 addresses, to an
/// [`Interface`]. A name with several addresses resolves to its first. `0.0.0.0` resolves to
/// a pseudo-interface "any" (let the kernel choose by route).
pub fn resolve(spec: &str) -> io::Result<Interface> {
    let spec = spec.trim();
    if let Ok(addr) = spec.parse::<Ipv4Addr>() {
        if addr.is_unspecified() {
            return Ok(Interface {
                name: "any".into(),
                index: 0,
                addr,
                up: true,
                loopback: false,
                multicast: true,
            });
        }
        return interfaces()?
            .into_iter()
            .find(|i| i.addr == addr)
            .ok_or_else(|| not_found(format!("no interface has the address {addr}")));
    }
    interfaces()?
        .into_iter()
        .find(|i| i.name == spec)
        .ok_or_else(|| not_found(format!("no interface named {spec:?} with an IPv4 address")))
}

fn not_found(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, msg)
}

/// Whether a network interface named `name` exists in this network namespace (with or
/// without an address).
pub fn exists(name: &str) -> bool {
    std::ffi::CString::new(name).is_ok_and(|c| index_of(&c) != 0)
}

#[allow(unsafe_code)]
fn index_of(name: &CStr) -> u32 {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// Calls `f(name, address, flags)` for every IPv4 address `getifaddrs` reports.
#[allow(unsafe_code)]
fn for_each_ifaddr(mut f: impl FnMut(&CStr, Ipv4Addr, u32)) -> io::Result<()> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success it holds a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr of at least its family's size.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: the family is AF_INET, so the sockaddr is a sockaddr_in; read_unaligned
        // makes no alignment assumption.
        let sin = unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>()) };
        let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        f(name, addr, ifa.ifa_flags);
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once; no reference into
    // the list outlives this point (`f` received borrows only for its calls).
    unsafe { libc::freeifaddrs(head) };
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_exists_and_nonsense_does_not() {
        assert!(exists("lo"));
        assert!(!exists("no-such-if0"));
        assert!(!exists("bad\0name"));
    }

    #[test]
    fn mtu_of_loopback_and_of_no_interface() {
        assert!(mtu("lo").unwrap() >= 1280);
        assert!(mtu("no-such-if0").is_err());
        assert!(mtu("").is_err());
        assert!(mtu("a-name-longer-than-ifnamsiz").is_err());
    }

    use super::*;

    #[test]
    fn loopback_resolves_by_name_and_address() {
        let by_name = resolve("lo").expect("lo has 127.0.0.1");
        assert_eq!(by_name.addr, Ipv4Addr::LOCALHOST);
        assert!(by_name.loopback);
        assert!(by_name.index > 0);
        let by_addr = resolve("127.0.0.1").expect("127.0.0.1 is lo's");
        assert_eq!(by_addr.name, "lo");
        assert!(resolve("no-such-if0").is_err());
        assert!(resolve("192.0.2.123").is_err());
        assert!(resolve("0.0.0.0").unwrap().addr.is_unspecified());
    }
}
