//! ARP over Ethernet for IPv4 (RFC 826): the packet view, and `Repr`, the
//! parsed request or reply (`parse` accepts only Ethernet/IPv4 ARP, `emit`
//! writes one).

use super::{be16, be32, mac_at, put16, put32, Error, ETHERTYPE_IPV4};

/// Field offsets.
mod field {
    pub type Field = core::ops::Range<usize>;

    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Bytes of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;
/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// A zero-copy view of an ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without length checks: the accessors panic on a short buffer.
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a buffer that holds a whole Ethernet/IPv4 ARP packet.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline(always)]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < PACKET_LEN {
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
    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE.start)
    }

    #[inline(always)]
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PTYPE.start)
    }

    #[inline(always)]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline(always)]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline(always)]
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER.start)
    }

    #[inline(always)]
    pub fn sender_hw_addr(&self) -> [u8; 6] {
        mac_at(self.buffer.as_ref(), field::SHA.start)
    }

    #[inline(always)]
    pub fn sender_proto_addr(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SPA.start)
    }

    #[inline(always)]
    pub fn target_hw_addr(&self) -> [u8; 6] {
        mac_at(self.buffer.as_ref(), field::THA.start)
    }

    #[inline(always)]
    pub fn target_proto_addr(&self) -> u32 {
        be32(self.buffer.as_ref(), field::TPA.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline(always)]
    pub fn set_hardware_type(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::HTYPE.start, v);
    }

    #[inline(always)]
    pub fn set_protocol_type(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PTYPE.start, v);
    }

    #[inline(always)]
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    #[inline(always)]
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    #[inline(always)]
    pub fn set_operation(&mut self, op: u16) {
        put16(self.buffer.as_mut(), field::OPER.start, op);
    }

    #[inline(always)]
    pub fn set_sender_hw_addr(&mut self, mac: &[u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(mac);
    }

    #[inline(always)]
    pub fn set_sender_proto_addr(&mut self, ip: u32) {
        put32(self.buffer.as_mut(), field::SPA.start, ip);
    }

    #[inline(always)]
    pub fn set_target_hw_addr(&mut self, mac: &[u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(mac);
    }

    #[inline(always)]
    pub fn set_target_proto_addr(&mut self, ip: u32) {
        put32(self.buffer.as_mut(), field::TPA.start, ip);
    }
}

/// An Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// `OP_REQUEST` or `OP_REPLY`.
    pub operation: u16,
    pub sender_hw_addr: [u8; 6],
    pub sender_proto_addr: u32,
    pub target_hw_addr: [u8; 6],
    pub target_proto_addr: u32,
}

impl Repr {
    /// Ethernet hardware, IPv4 protocol, address lengths 6 and 4, and a
    /// request or a reply; anything else is `Err`.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, Error> {
        let op = p.operation();
        if p.hardware_type() != HTYPE_ETHERNET
            || p.protocol_type() != ETHERTYPE_IPV4
            || p.hardware_len() != 6
            || p.protocol_len() != 4
            || !(op == OP_REQUEST || op == OP_REPLY)
        {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            operation: op,
            sender_hw_addr: p.sender_hw_addr(),
            sender_proto_addr: p.sender_proto_addr(),
            target_hw_addr: p.target_hw_addr(),
            target_proto_addr: p.target_proto_addr(),
        })
    }

    /// Writes every field of the packet.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_hardware_type(HTYPE_ETHERNET);
        p.set_protocol_type(ETHERTYPE_IPV4);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(self.operation);
        p.set_sender_hw_addr(&self.sender_hw_addr);
        p.set_sender_proto_addr(self.sender_proto_addr);
        p.set_target_hw_addr(&self.target_hw_addr);
        p.set_target_proto_addr(self.target_proto_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse_round_trips_and_foreign_kinds_are_refused() {
        let r = Repr {
            operation: OP_REPLY,
            sender_hw_addr: [2, 0, 0, 0, 0, 1],
            sender_proto_addr: 0x0a00_0001,
            target_hw_addr: [2, 0, 0, 0, 0, 2],
            target_proto_addr: 0x0a00_0002,
        };
        let mut b = [0u8; PACKET_LEN];
        r.emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(&b[..8], &[0, 1, 8, 0, 6, 4, 0, 2]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(r));
        b[4] = 8;
        assert!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()).is_err());
        assert_eq!(
            Packet::new_checked(&b[..PACKET_LEN - 1]),
            Err(Error::Truncated)
        );
    }
}
