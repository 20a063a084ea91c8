//! IPv4 header view (RFC 791): structural checks in `new_checked`, field
//! getters and setters, the header checksum (full and the incremental TTL
//! update), and the 5-tuple flow hash used for ECMP and tunnel entropy.

use super::{be16, be32, checksum, checksum_adjust, put16, put32, Error, PROTO_TCP, PROTO_UDP};

/// Field offsets (also exported flat as `wire::ip` for raw-slice code).
pub(super) mod field {
    pub type Field = core::ops::Range<usize>;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Bytes of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Don't Fragment, in the flags/fragment-offset word.
pub const DF: u16 = 0x4000;
/// More Fragments, in the flags/fragment-offset word.
pub const MF: u16 = 0x2000;
/// The fragment offset (8-byte units), in the flags/fragment-offset word.
pub const OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet (header, options, payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks: the accessors panic on a buffer shorter than
    /// what they read. For headers already checked, or written by us.
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a structurally sound IPv4 packet (see `check_len`). The
    /// header checksum is not verified (`verify_checksum`).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// In this order: a whole minimal header, version 4, an IHL of at least
    /// 20 bytes within the buffer, a total length of at least the header
    /// and within the buffer (the buffer may be longer: link padding).
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Version);
        }
        let ihl = self.header_len();
        if ihl < HEADER_LEN || ihl > len {
            return Err(Error::HeaderLen);
        }
        let total = usize::from(self.total_len());
        if total < ihl {
            return Err(Error::TotalLen);
        }
        if total > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline(always)]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length of the underlying buffer (the packet plus any padding).
    #[inline(always)]
    pub fn buffer_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline(always)]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    #[inline(always)]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// The raw flags/fragment-offset word (`DF`, `MF`, `OFFSET_MASK`).
    #[inline(always)]
    pub fn flags_frag(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    #[inline(always)]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & DF != 0
    }

    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & MF != 0
    }

    /// The fragment offset in bytes.
    #[inline(always)]
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_frag() & OFFSET_MASK) * 8
    }

    /// A fragment: more fragments follow, or the offset is not zero.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (MF | OFFSET_MASK) != 0
    }

    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline(always)]
    pub fn src_addr(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    #[inline(always)]
    pub fn dst_addr(&self) -> u32 {
        be32(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// The header checksum is valid.
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The header, options included.
    #[inline(always)]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The options (the header after its first 20 bytes).
    #[inline(always)]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Everything after the header, to the end of the buffer (the pipeline
    /// trims link padding before it reads past the header).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The flow hash of this packet (see `flow_hash`).
    #[inline(always)]
    pub fn flow_hash(&self) -> u32 {
        flow_hash(self.buffer.as_ref(), self.header_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length `len` (bytes, a multiple of 4).
    #[inline(always)]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | (len / 4) as u8;
    }

    #[inline(always)]
    pub fn set_total_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    #[inline(always)]
    pub fn set_ident(&mut self, ident: u16) {
        put16(self.buffer.as_mut(), field::IDENT.start, ident);
    }

    /// Sets the raw flags/fragment-offset word.
    #[inline(always)]
    pub fn set_flags_frag(&mut self, word: u16) {
        put16(self.buffer.as_mut(), field::FLG_OFF.start, word);
    }

    #[inline(always)]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, c);
    }

    #[inline(always)]
    pub fn set_src_addr(&mut self, addr: u32) {
        put32(self.buffer.as_mut(), field::SRC_ADDR.start, addr);
    }

    #[inline(always)]
    pub fn set_dst_addr(&mut self, addr: u32) {
        put32(self.buffer.as_mut(), field::DST_ADDR.start, addr);
    }

    /// Recomputes the header checksum over the header length the header states.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let ihl = self.header_len();
        fill_ip_checksum(self.buffer.as_mut(), ihl);
    }

    /// Decrements TTL with an incremental header checksum update.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) {
        decrement_ttl(self.buffer.as_mut());
    }

    #[inline(always)]
    pub fn header_mut(&mut self) -> &mut [u8] {
        let ihl = self.header_len();
        &mut self.buffer.as_mut()[..ihl]
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let ihl = self.header_len();
        &mut self.buffer.as_mut()[ihl..]
    }

    /// The whole buffer, for code that rewrites the packet beyond one field.
    #[inline(always)]
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// Decrements TTL with an incremental header checksum update.
#[inline(always)]
pub fn decrement_ttl(iph: &mut [u8]) {
    let old = be16(iph, field::TTL);
    let new = old - 0x0100;
    iph[field::TTL] -= 1;
    let c = checksum_adjust(be16(iph, field::CHECKSUM.start), old, new);
    put16(iph, field::CHECKSUM.start, c);
}

/// Recomputes the IPv4 header checksum over `ihl` bytes.
#[inline]
pub fn fill_ip_checksum(iph: &mut [u8], ihl: usize) {
    put16(iph, field::CHECKSUM.start, 0);
    let c = checksum(&iph[..ihl]);
    put16(iph, field::CHECKSUM.start, c);
}

/// Flow hash over the IPv4 5-tuple (ports only for unfragmented TCP/UDP).
#[inline]
pub fn flow_hash(iph: &[u8], ihl: usize) -> u32 {
    let src = be32(iph, field::SRC_ADDR.start);
    let dst = be32(iph, field::DST_ADDR.start);
    let proto = iph[field::PROTOCOL];
    let frag = be16(iph, field::FLG_OFF.start) & (MF | OFFSET_MASK);
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

    #[test]
    fn view_reads_the_fields_and_checks_in_order() {
        let mut h = [
            0x46, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x20, 0x03, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            0x94, 4, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        ];
        fill_ip_checksum(&mut h, 24);
        let p = Packet::new_checked(&h[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 24, 28));
        assert_eq!((p.ident(), p.ttl(), p.protocol()), (0x1234, 64, 17));
        assert_eq!((p.src_addr(), p.dst_addr()), (0x0a00_0001, 0x0a00_0002));
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 24);
        assert_eq!(p.options(), &[0x94, 4, 0, 0]);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&h[..19]), Err(Error::Truncated));
        let mut bad = h;
        bad[0] = 0x66;
        assert_eq!(check(&bad), Err(Error::Version));
        bad[0] = 0x44;
        assert_eq!(check(&bad), Err(Error::HeaderLen));
        bad[0] = 0x4f;
        assert_eq!(check(&bad), Err(Error::HeaderLen));
        bad = h;
        bad[3] = 20;
        assert_eq!(check(&bad), Err(Error::TotalLen));
        bad[3] = 30;
        assert_eq!(check(&bad), Err(Error::Truncated));
    }

    #[test]
    fn setters_write_what_the_getters_read() {
        let mut h = [0u8; 20];
        let mut p = Packet::new_unchecked(&mut h[..]);
        p.set_header_len(20);
        p.set_total_len(20);
        p.set_ident(7);
        p.set_flags_frag(DF);
        p.set_ttl(9);
        p.set_src_addr(1);
        p.set_dst_addr(2);
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.decrement_ttl();
        assert!(p.verify_checksum());
        assert_eq!((p.ttl(), p.ident(), p.dont_frag()), (8, 7, true));
        assert_eq!((p.src_addr(), p.dst_addr()), (1, 2));
    }
}
