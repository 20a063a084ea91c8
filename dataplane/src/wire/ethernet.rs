//! Ethernet II frame view: destination, source, EtherType, payload. Frames
//! are untagged: a VLAN tag reads as an EtherType the pipeline does not
//! support.

use super::{be16, mac_at, put16, Error};

/// Field offsets.
mod field {
    pub type Field = core::ops::Range<usize>;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Bytes of an Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A zero-copy view of an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// A view without length checks: the accessors panic on a buffer
    /// shorter than the header.
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// A view of a buffer that holds at least a whole header.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Frame<T>, Error> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    #[inline(always)]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn dst_addr(&self) -> [u8; 6] {
        mac_at(self.buffer.as_ref(), field::DESTINATION.start)
    }

    #[inline(always)]
    pub fn src_addr(&self) -> [u8; 6] {
        mac_at(self.buffer.as_ref(), field::SOURCE.start)
    }

    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// The destination has the group bit set (multicast or broadcast).
    #[inline(always)]
    pub fn dst_is_group(&self) -> bool {
        self.buffer.as_ref()[field::DESTINATION.start] & 1 == 1
    }

    /// IPv6 over an IPv6 multicast MAC (33:33:xx:xx:xx:xx, RFC 2464).
    #[inline(always)]
    pub fn is_ipv6_multicast(&self) -> bool {
        let d = self.buffer.as_ref();
        d[0] == 0x33 && d[1] == 0x33 && self.ethertype() == super::ETHERTYPE_IPV6
    }

    /// Everything after the Ethernet header.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    #[inline(always)]
    pub fn set_dst_addr(&mut self, mac: &[u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(mac);
    }

    #[inline(always)]
    pub fn set_src_addr(&mut self, mac: &[u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(mac);
    }

    #[inline(always)]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        put16(self.buffer.as_mut(), field::ETHERTYPE.start, ethertype);
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// Writes an Ethernet header at the start of `frame`.
#[inline(always)]
pub fn write_eth(frame: &mut [u8], dst: &[u8; 6], src: &[u8; 6], ethertype: u16) {
    let mut f = Frame::new_unchecked(frame);
    f.set_dst_addr(dst);
    f.set_src_addr(src);
    f.set_ethertype(ethertype);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes() {
        let mut b = [0u8; 20];
        write_eth(
            &mut b,
            &[0x33, 0x33, 0, 0, 0, 1],
            &[2, 0, 0, 0, 0, 1],
            0x86dd,
        );
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.dst_addr(), [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), 0x86dd);
        assert!(f.dst_is_group() && f.is_ipv6_multicast());
        assert_eq!(f.payload().len(), 6);
        assert_eq!(Frame::new_checked(&b[..13]), Err(Error::Truncated));
    }
}
