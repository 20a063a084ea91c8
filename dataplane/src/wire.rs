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
