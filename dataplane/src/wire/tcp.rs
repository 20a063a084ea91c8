//! TCP, as far as a router touches it: MSS clamping on SYN and SYN-ACK
//! (the option rewrite and its incremental checksum update, RFC 1624).

use super::{be16, checksum_adjust, ipv4, put16, PROTO_TCP};

/// Field offsets.
mod field {
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
    pub const OPTIONS: usize = 20;
}

/// Bytes of a TCP header without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// The SYN flag, in the flags byte.
const FLAG_SYN: u8 = 0x02;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// TCP MSS clamping (on SYN and SYN-ACK): lowers an MSS option above
/// `max_mss` to `max_mss`, updating the TCP checksum incrementally (RFC 1624).
/// `iph` is the whole IPv4 packet. Returns true if it changed the packet.
#[inline]
pub fn clamp_mss(iph: &mut [u8], ihl: usize, max_mss: u16) -> bool {
    let ip = ipv4::Packet::new_unchecked(&*iph);
    if ip.protocol() != PROTO_TCP || ip.flags_frag() & ipv4::OFFSET_MASK != 0 {
        return false;
    }
    let Some(tcp) = iph.get_mut(ihl..) else {
        return false;
    };
    if tcp.len() < HEADER_LEN || tcp[field::FLAGS] & FLAG_SYN == 0 {
        return false;
    }
    let data_off = usize::from(tcp[field::DATA_OFF] >> 4) * 4;
    if data_off < HEADER_LEN || data_off > tcp.len() {
        return false;
    }
    let mut i = field::OPTIONS;
    while i < data_off {
        match tcp[i] {
            OPT_END => break,
            OPT_NOP => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > data_off {
                    return false;
                }
                if kind == OPT_MSS && len == 4 {
                    let mss = be16(tcp, i + 2);
                    if mss <= max_mss {
                        return false;
                    }
                    put16(tcp, i + 2, max_mss);
                    // The MSS sits at an even offset (i + 2, i even or odd): adjust
                    // the 16-bit word as it is aligned in the header.
                    let c = if (i + 2).is_multiple_of(2) {
                        checksum_adjust(be16(tcp, field::CHECKSUM), mss, max_mss)
                    } else {
                        let old = u16::from_be_bytes([0, (mss >> 8) as u8]) | ((mss & 0xff) << 8);
                        let new =
                            u16::from_be_bytes([0, (max_mss >> 8) as u8]) | ((max_mss & 0xff) << 8);
                        checksum_adjust(be16(tcp, field::CHECKSUM), old, new)
                    };
                    put16(tcp, field::CHECKSUM, c);
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{fill_ip_checksum, fold, ip, sum16};

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
