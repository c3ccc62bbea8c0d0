//! The PGM checksum (§8): the 16-bit one's complement of the one's complement sum of the whole
//! PGM packet, header included, with no pseudo-header.
//!
//! A computed checksum of zero is transmitted as 0xFFFF; a zero in the field means the sender
//! computed none. The sum is order-independent in the sense of RFC 1071 §2(B): it is computed
//! here over native-endian 64-bit words with four independent accumulators (so the CPU can
//! overlap the additions) and byte-swapped once at the end.

/// Adds `data` to a one's complement sum of 16-bit big-endian words, returning the sum folded
/// to 16 bits (not complemented). `data` is taken to start at an even offset of the packet.
pub(crate) fn sum(data: &[u8]) -> u16 {
    let mut acc = [0u64; 4];
    let mut carry = [0u64; 4];
    let mut chunks = data.chunks_exact(32);
    for chunk in &mut chunks {
        for (i, word) in chunk.chunks_exact(8).enumerate() {
            // `chunks_exact(8)` yields exactly 8 bytes, so the conversion cannot fail.
            let w = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8]));
            let (s, c) = acc[i].overflowing_add(w);
            acc[i] = s;
            carry[i] += u64::from(c);
        }
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 32];
    tail[..rest.len()].copy_from_slice(rest);
    for (i, word) in tail.chunks_exact(8).enumerate() {
        let w = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8]));
        let (s, c) = acc[i].overflowing_add(w);
        acc[i] = s;
        carry[i] += u64::from(c);
    }
    // Fold the four accumulators and their carries into one 128-bit total, then to 16 bits
    // with end-around carry.
    let total: u128 = acc.iter().map(|&a| u128::from(a)).sum::<u128>()
        + carry.iter().map(|&c| u128::from(c) << 64).sum::<u128>();
    let mut s = (total as u64 as u128) + (total >> 64);
    s = (s & 0xFFFF_FFFF_FFFF_FFFF) + (s >> 64);
    let mut s = s as u64;
    s = (s & 0xFFFF_FFFF) + (s >> 32);
    s = (s & 0xFFFF_FFFF) + (s >> 32);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    let folded = s as u16;
    // Native-endian words: on a little-endian machine the folded sum is byte-swapped.
    u16::from_be_bytes(folded.to_ne_bytes())
}

/// Computes the checksum of a whole PGM packet whose checksum field (bytes 6..8) holds zero,
/// ready to be written into the field: the complement of the sum, with 0 mapped to 0xFFFF.
///
/// ```
/// use pgm_core::wire::checksum;
/// // Two 16-bit words, 0x0001 and 0xF203: sum 0xF204, complement 0x0DFB.
/// assert_eq!(checksum(&[0x00, 0x01, 0xF2, 0x03]), 0x0DFB);
/// ```
pub fn checksum(packet: &[u8]) -> u16 {
    match !sum(packet) {
        0 => 0xFFFF,
        c => c,
    }
}

/// Combines two partial one's complement sums (RFC 1071 §2(C)). Both must cover regions that
/// start at even offsets. Useful to checksum a header and a payload held in separate buffers:
/// `!checksum_combine(sum_a, sum_b)` is the checksum of the concatenation. The partial sums
/// are the complements of [`checksum`] of each part.
pub fn combine(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xFFFF) + (s >> 16)) as u16
}

/// Updates a checksum for a field rewritten in place, without re-summing the packet
/// (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
///
/// `old` and `new` are the field's bytes before and after; they must have the same length and
/// the field must start at an even offset of the packet (every NLA in PGM does). A checksum of
/// zero means "none" (§8) and stays zero. The result follows the transmit rule: never zero.
pub fn update(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    if checksum == 0 {
        return 0;
    }
    let hc = u32::from(!checksum);
    let m = u32::from(!sum(old));
    let m2 = u32::from(sum(new));
    let mut s = hc + m + m2;
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    match !(s as u16) {
        0 => 0xFFFF,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain reference: RFC 1071's loop over big-endian 16-bit words.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u32::from(b));
            s += hi | lo;
            s = (s & 0xFFFF) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn known_answers() {
        // RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
        // Odd length: the last byte is padded with a zero on its right.
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[]), 0);
        // A sum of 0xFFFF complements to 0, which is sent as 0xFFFF.
        assert_eq!(checksum(&[0xFF, 0xFF]), 0xFFFF);
        // All-zero data sums to 0 and complements to 0xFFFF.
        assert_eq!(checksum(&[0u8; 64]), 0xFFFF);
    }

    #[test]
    fn matches_reference_on_every_length() {
        let mut data = Vec::new();
        let mut x: u32 = 0x1234_5678;
        for len in 0..300 {
            assert_eq!(sum(&data), reference_sum(&data), "length {len}");
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.push((x >> 16) as u8);
        }
        // Carry-heavy input: all 0xFF bytes, long enough to overflow 64-bit accumulators' carry
        // paths many times.
        let ff = vec![0xFFu8; 9001];
        assert_eq!(sum(&ff), reference_sum(&ff));
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut pkt: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        pkt[6] = 0;
        pkt[7] = 0;
        let c = checksum(&pkt);
        let old = pkt[36..40].to_vec();
        let new = [10, 0, 3, 1];
        pkt[36..40].copy_from_slice(&new);
        let updated = update(c, &old, &new);
        assert_eq!(updated, checksum(&pkt));
        // "No checksum" stays "no checksum".
        assert_eq!(update(0, &old, &new), 0);
    }

    #[test]
    fn combine_two_halves() {
        let data: Vec<u8> = (0..100u8).collect();
        let (a, b) = data.split_at(40);
        assert_eq!(!combine(sum(a), sum(b)), !sum(&data));
    }
}
