//! The few system calls socket2 has no safe wrapper for.

use std::io;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// `setsockopt(level, name)` with `value`'s bytes (the kernel copies them).
#[allow(unsafe_code)]
pub(crate) fn setsockopt_bytes(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the descriptor is open for the life of `socket`; the pointer and length describe
    // `value`, which outlives the call, and the kernel only reads them.
    let r =
        unsafe { libc::setsockopt(socket.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setsockopt` of an `int`.
pub(crate) fn setsockopt_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt_bytes(socket, level, name, &value.to_ne_bytes())
}

/// Size of the ancillary-data buffer, in 8-byte words (room for `IP_PKTINFO` and more).
const CONTROL_WORDS: usize = 16;

/// `recvmsg(2)` into `buf`, returning the length of the datagram and the ancillary data as
/// bytes (at most `8 * CONTROL_WORDS`).
#[allow(unsafe_code)]
pub(crate) fn recvmsg_with_control(
    socket: &Socket,
    buf: &mut [u8],
) -> io::Result<(usize, [u8; 8 * CONTROL_WORDS], usize)> {
    // u64 words: the control buffer must be aligned for `cmsghdr`.
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (describing `buf`) and `control`, all live and exclusively
    // borrowed for the duration of the call; the kernel writes at most their lengths.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut bytes = [0u8; 8 * CONTROL_WORDS];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(control) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    let clen = (msg.msg_controllen as usize).min(bytes.len());
    Ok((n as usize, bytes, clen))
}

/// The interface index of an `IP_PKTINFO` control message in `control` (Linux `cmsghdr`
/// layout: `size_t` length, `int` level, `int` type, data aligned to `size_t`).
pub(crate) fn pktinfo_ifindex(control: &[u8]) -> Option<u32> {
    let word = size_of::<usize>();
    let align = |n: usize| n.div_ceil(word) * word;
    let hdr = align(word + 8);
    let mut off = 0;
    while off + hdr <= control.len() {
        let mut len_bytes = [0u8; 8];
        len_bytes[..word].copy_from_slice(&control[off..off + word]);
        let len = if word == 8 {
            u64::from_ne_bytes(len_bytes) as usize
        } else {
            u32::from_ne_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize
        };
        if len < hdr || off + len > control.len() {
            return None;
        }
        let int = |o: usize| {
            i32::from_ne_bytes([control[o], control[o + 1], control[o + 2], control[o + 3]])
        };
        let (level, ty) = (int(off + word), int(off + word + 4));
        if level == libc::IPPROTO_IP && ty == libc::IP_PKTINFO && len >= hdr + 4 {
            return u32::try_from(int(off + hdr)).ok();
        }
        off += align(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pktinfo_is_found_among_control_messages() {
        let word = size_of::<usize>();
        let hdr = (word + 8).div_ceil(word) * word;
        let mut c = Vec::new();
        // A TTL message first (int), then IP_PKTINFO with ifindex 7.
        let push = |c: &mut Vec<u8>, ty: i32, data: &[u8]| {
            let len = hdr + data.len();
            c.extend_from_slice(&len.to_ne_bytes()[..word]);
            c.extend_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
            c.extend_from_slice(&ty.to_ne_bytes());
            c.resize(c.len() + (hdr - word - 8), 0);
            c.extend_from_slice(data);
            while c.len() % word != 0 {
                c.push(0);
            }
        };
        push(&mut c, libc::IP_TTL, &5i32.to_ne_bytes());
        let mut info = 7i32.to_ne_bytes().to_vec();
        info.extend_from_slice(&[0; 8]);
        push(&mut c, libc::IP_PKTINFO, &info);
        assert_eq!(pktinfo_ifindex(&c), Some(7));
        assert_eq!(pktinfo_ifindex(&c[..hdr + 4]), None);
        assert_eq!(pktinfo_ifindex(&[]), None);
    }
}
