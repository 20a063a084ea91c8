//! ICMPv4 header view (RFC 792): type, code, checksum and the four bytes
//! after it (echo identifier and sequence, or the next-hop MTU of a
//! fragmentation-needed error, RFC 1191). The rest is the message body.

use super::{be16, checksum, put16, put32, Error};

/// Field offsets.
mod field {
    pub type Field = core::ops::Range<usize>;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST_OF_HEADER: Field = 4..8;
}

/// Bytes of an ICMPv4 header.
pub const HEADER_LEN: usize = field::REST_OF_HEADER.end;

pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;
pub const TYPE_TIMESTAMP: u8 = 13;
pub const TYPE_TIMESTAMP_REPLY: u8 = 14;

/// A zero-copy view of an ICMPv4 message.
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

    /// A view of a buffer that holds at least a whole header.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
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
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline(always)]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The message is an ICMP error (not echo or timestamp, request or
    /// reply): the router never sends an error about one (RFC 1812 4.3.2.7).
    #[inline(always)]
    pub fn is_error(&self) -> bool {
        !matches!(
            self.msg_type(),
            TYPE_ECHO_REPLY | TYPE_ECHO_REQUEST | TYPE_TIMESTAMP | TYPE_TIMESTAMP_REPLY
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline(always)]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    #[inline(always)]
    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, c);
    }

    /// The four bytes after the checksum: zero for Time Exceeded, the
    /// next-hop MTU in the low 16 bits for fragmentation needed (RFC 1191).
    #[inline(always)]
    pub fn set_rest_of_header(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::REST_OF_HEADER.start, v);
    }

    /// Computes the checksum over the whole buffer (header and body).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_message_checks_out() {
        let mut b = [0u8; 12];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(TYPE_DEST_UNREACHABLE);
        p.set_msg_code(4);
        p.set_rest_of_header(1400);
        p.fill_checksum();
        assert_eq!(checksum(&b), 0);
        assert_eq!(&b[4..8], &[0, 0, 0x05, 0x78]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_error() && p.msg_code() == 4);
        assert_eq!(Packet::new_checked(&b[..7]), Err(Error::Truncated));
    }
}
