//! Byte-level helpers for the headers the pipeline rewrites in place:
//! Ethernet, ARP and IPv4 offsets, the Internet checksum and its incremental
//! update (RFC 1624). Parsing that needs validation lives in the pipeline,
//! which names a drop reason for every failure.

pub const ETH_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ARP_LEN: usize = 28;
pub const IPV4_MIN: usize = 20;
pub const MIN_FRAME: usize = 60;
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

#[inline(always)]
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Ones-complement sum of `data` (not yet folded or inverted).
#[inline]
pub fn sum16(data: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data` (RFC 1071).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum16(data))
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changed from `old` to `new`.
#[inline(always)]
pub fn checksum_adjust(hc: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// IPv4 header field offsets (relative to the IP header).
pub mod ip {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const DF: u16 = 0x4000;
    pub const MF: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;
}

/// Decrements TTL with an incremental header checksum update.
#[inline(always)]
pub fn decrement_ttl(iph: &mut [u8]) {
    let old = be16(iph, ip::TTL);
    let new = old - 0x0100;
    iph[ip::TTL] -= 1;
    let c = checksum_adjust(be16(iph, ip::CSUM), old, new);
    put16(iph, ip::CSUM, c);
}

/// Recomputes the IPv4 header checksum over `ihl` bytes.
#[inline]
pub fn fill_ip_checksum(iph: &mut [u8], ihl: usize) {
    put16(iph, ip::CSUM, 0);
    let c = checksum(&iph[..ihl]);
    put16(iph, ip::CSUM, c);
}

/// Writes an Ethernet header at the start of `frame`.
#[inline(always)]
pub fn write_eth(frame: &mut [u8], dst: &[u8; 6], src: &[u8; 6], ethertype: u16) {
    frame[0..6].copy_from_slice(dst);
    frame[6..12].copy_from_slice(src);
    put16(frame, 12, ethertype);
}

/// Flow hash over the IPv4 5-tuple (ports only for unfragmented TCP/UDP).
#[inline]
pub fn flow_hash(iph: &[u8], ihl: usize) -> u32 {
    let src = be32(iph, ip::SRC);
    let dst = be32(iph, ip::DST);
    let proto = iph[ip::PROTO];
    let frag = be16(iph, ip::FLAGS_FRAG) & (ip::MF | ip::OFFSET_MASK);
    let ports = if frag == 0 && (proto == PROTO_TCP || proto == PROTO_UDP) && iph.len() >= ihl + 4 {
        be32(iph, ihl)
    } else {
        0
    };
    let mut h = u64::from(src) << 32 | u64::from(dst);
    h ^= u64::from(ports).rotate_left(17) ^ u64::from(proto) << 7;
    h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as u32 ^ h as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_known_header() {
        // Example header from RFC 1071 discussions / common captures.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        fill_ip_checksum(&mut h, 20);
        assert_eq!(be16(&h, 10), 0xb861);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn incremental_ttl_matches_full() {
        for ttl in 2..=255u8 {
            for proto in [1u8, 6, 17, 47] {
                let mut h = [
                    0x45, 0x00, 0x05, 0xdc, 0x12, 0x34, 0x40, 0x00, ttl, proto, 0, 0, 10, 0, 0, 1,
                    10, 0, 0, 2,
                ];
                fill_ip_checksum(&mut h, 20);
                let mut inc = h;
                decrement_ttl(&mut inc);
                let mut full = h;
                full[8] -= 1;
                fill_ip_checksum(&mut full, 20);
                assert_eq!(checksum(&inc), 0, "ttl {ttl}");
                assert_eq!(be16(&inc, 10), be16(&full, 10), "ttl {ttl} proto {proto}");
            }
        }
    }
}

/// TCP MSS clamping (on SYN and SYN-ACK): lowers an MSS option above
/// `max_mss` to `max_mss`, updating the TCP checksum incrementally (RFC 1624).
/// `iph` is the whole IPv4 packet. Returns true if it changed the packet.
#[inline]
pub fn clamp_mss(iph: &mut [u8], ihl: usize, max_mss: u16) -> bool {
    if iph[ip::PROTO] != PROTO_TCP || be16(iph, ip::FLAGS_FRAG) & ip::OFFSET_MASK != 0 {
        return false;
    }
    let Some(tcp) = iph.get_mut(ihl..) else {
        return false;
    };
    if tcp.len() < 20 || tcp[13] & 0x02 == 0 {
        return false;
    }
    let data_off = usize::from(tcp[12] >> 4) * 4;
    if data_off < 20 || data_off > tcp.len() {
        return false;
    }
    let mut i = 20;
    while i < data_off {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > data_off {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let mss = be16(tcp, i + 2);
                    if mss <= max_mss {
                        return false;
                    }
                    put16(tcp, i + 2, max_mss);
                    // The MSS sits at an even offset (i + 2, i even or odd): adjust
                    // the 16-bit word as it is aligned in the header.
                    let c = if (i + 2) % 2 == 0 {
                        checksum_adjust(be16(tcp, 16), mss, max_mss)
                    } else {
                        let old = u16::from_be_bytes([0, (mss >> 8) as u8]) | ((mss & 0xff) << 8);
                        let new =
                            u16::from_be_bytes([0, (max_mss >> 8) as u8]) | ((max_mss & 0xff) << 8);
                        checksum_adjust(be16(tcp, 16), old, new)
                    };
                    put16(tcp, 16, c);
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

#[cfg(test)]
mod mss_tests {
    use super::*;

    fn tcp_checksum(iph: &[u8], ihl: usize) -> u16 {
        let tcp = &iph[ihl..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&iph[ip::SRC..ip::SRC + 8]);
        pseudo.extend_from_slice(&[0, PROTO_TCP]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        let sum = sum16(&pseudo) + sum16(tcp);
        !fold(sum)
    }

    fn syn(options: &[u8], flags: u8) -> Vec<u8> {
        let tcp_len = 20 + options.len();
        let mut p = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, PROTO_TCP, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let mut t = vec![
            0x9c,
            0x40,
            0x00,
            0x50,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            ((tcp_len / 4) as u8) << 4,
            flags,
            0xfa,
            0xf0,
            0,
            0,
            0,
            0,
        ];
        t.extend_from_slice(options);
        p.extend_from_slice(&t);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        fill_ip_checksum(&mut p, 20);
        let c = tcp_checksum(&p, 20);
        put16(&mut p[20..], 16, c);
        assert_eq!(tcp_checksum(&p, 20), 0);
        p
    }

    #[test]
    fn clamps_syn_and_synack_keeping_the_checksum_valid() {
        for flags in [0x02u8, 0x12] {
            // MSS at an aligned offset, and after a NOP (unaligned).
            for opts in [
                vec![2, 4, 0x05, 0xb4, 1, 1, 4, 2],
                vec![1, 2, 4, 0x05, 0xb4, 1, 4, 2],
            ] {
                let mut p = syn(&opts, flags);
                assert!(clamp_mss(&mut p, 20, 1360), "{opts:?}");
                let at = 20 + 20 + opts.iter().position(|&b| b == 2).unwrap() + 2;
                assert_eq!(be16(&p, at), 1360);
                assert_eq!(tcp_checksum(&p, 20), 0, "checksum still valid ({opts:?})");
            }
        }
    }

    #[test]
    fn leaves_small_mss_non_syn_and_garbage_alone() {
        let mut small = syn(&[2, 4, 0x04, 0x00], 0x02);
        assert!(!clamp_mss(&mut small, 20, 1360));
        let mut ack = syn(&[2, 4, 0x05, 0xb4], 0x10);
        assert!(!clamp_mss(&mut ack, 20, 1360));
        let mut bad = syn(&[2, 9, 0x05, 0xb4], 0x02);
        assert!(!clamp_mss(&mut bad, 20, 1360));
        let mut trunc = syn(&[2, 4, 0x05, 0xb4], 0x02);
        trunc.truncate(30);
        assert!(!clamp_mss(&mut trunc, 20, 1360));
    }
}
