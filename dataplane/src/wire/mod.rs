//! Packet formats: typed zero-copy views of the headers the pipeline reads
//! and rewrites in place (Ethernet, ARP, IPv4, ICMPv4, UDP, TCP), in
//! smoltcp's `Packet<T>` shape, and the byte-level helpers they share: big-endian
//! fields, the Internet checksum and its incremental update (RFC 1624).
//!
//! A view checks lengths once (`new_checked`); its accessors then index the
//! known-good buffer. Validation that names a drop reason lives in the
//! pipeline. The flat offsets (`ip`) and free functions here serve code that
//! works on raw slices (`tunnel`, `reassembly`, benchmarks).

pub mod arp;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use ethernet::write_eth;
pub use ipv4::{decrement_ttl, fill_ip_checksum, flow_hash};
pub use tcp::clamp_mss;

pub const ETH_LEN: usize = ethernet::HEADER_LEN;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ARP_LEN: usize = arp::PACKET_LEN;
pub const IPV4_MIN: usize = ipv4::HEADER_LEN;
pub const MIN_FRAME: usize = 60;
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Why a buffer is not a header of the kind a view expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header, or than the length the header declares.
    Truncated,
    /// A version the view does not read (IPv4: not 4).
    Version,
    /// The header length field is below the minimum or beyond the buffer.
    HeaderLen,
    /// The total length field is smaller than the header.
    TotalLen,
    /// A kind the view does not read (ARP for other hardware or protocols,
    /// or an operation other than request and reply).
    Unsupported,
}

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

/// The six bytes of a MAC address at `at`.
#[inline(always)]
fn mac_at(b: &[u8], at: usize) -> [u8; 6] {
    [b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]]
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

/// IPv4 header field offsets (relative to the IP header), for code that
/// works on raw slices; the pipeline reads them through `ipv4::Packet`.
pub mod ip {
    use super::ipv4::field;

    pub const VER_IHL: usize = field::VER_IHL;
    pub const TOS: usize = field::DSCP_ECN;
    pub const TOTAL_LEN: usize = field::LENGTH.start;
    pub const IDENT: usize = field::IDENT.start;
    pub const FLAGS_FRAG: usize = field::FLG_OFF.start;
    pub const TTL: usize = field::TTL;
    pub const PROTO: usize = field::PROTOCOL;
    pub const CSUM: usize = field::CHECKSUM.start;
    pub const SRC: usize = field::SRC_ADDR.start;
    pub const DST: usize = field::DST_ADDR.start;
    pub const DF: u16 = super::ipv4::DF;
    pub const MF: u16 = super::ipv4::MF;
    pub const OFFSET_MASK: u16 = super::ipv4::OFFSET_MASK;
}
