//! The traffic of the kernel-free benchmark: which case (forward, encap,
//! decap per transport), which frame sizes (64 B, IMIX, 1400 B), the fixed
//! addressing of the two benchmark links, and the frame templates the
//! generator sends (a destination patched per packet from a list).
//!
//! Encapsulated input for the decap cases is built with the dataplane's own
//! `tunnel::encap` (the formats themselves are checked against tshark and
//! scapy by the end-to-end tests; here they are only load).

use cer_dataplane::packet::{MemBuf, PacketBuf};
use cer_dataplane::tunnel::{self, TunnelInfo};
use cer_dataplane::wire::{self, ip, put16, put32};
use cer_shared::config::TunnelKind;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

/// Port 0 of every engine: the LAN side (workloads).
pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// The generator on the LAN link.
pub const GEN_LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
pub const GEN_LAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
/// Port 1: the WAN side (the underlay towards the tunnel peer).
pub const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
/// The generator on the WAN link: the far tunnel endpoint and next hop.
pub const GEN_WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0x10];
pub const GEN_WAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
/// Source of the inner packets the far side sends (decap cases).
pub const FAR_WORKLOAD: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 10);
/// First /32 of the benchmark's exact-match table.
pub const ENDPOINT_BASE: u32 = 0x0a80_0000;
/// GRE key of the benchmark's GRE tunnel (RFC 2890).
pub const GRE_KEY: u32 = 77;

/// One transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ipip,
    Gre,
    Fou,
    Gue,
    Wireguard,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::Ipip,
        Transport::Gre,
        Transport::Fou,
        Transport::Gue,
        Transport::Wireguard,
    ];

    pub fn kind(self) -> TunnelKind {
        match self {
            Transport::Ipip => TunnelKind::Ipip,
            Transport::Gre => TunnelKind::Gre,
            Transport::Fou => TunnelKind::Fou,
            Transport::Gue => TunnelKind::Gue,
            Transport::Wireguard => TunnelKind::Wireguard,
        }
    }

    /// The benchmark's tunnel id for this transport (ids 1..=5).
    pub fn tunnel_id(self) -> u32 {
        self as u32 + 1
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Ipip => "ipip",
            Transport::Gre => "gre",
            Transport::Fou => "fou",
            Transport::Gue => "gue",
            Transport::Wireguard => "wireguard",
        }
    }

    /// The tunnel as the dataplane's pipeline sees it, for building input.
    pub fn tunnel_info(self, local: Ipv4Addr, remote: Ipv4Addr) -> TunnelInfo {
        let kind = self.kind();
        TunnelInfo {
            id: self.tunnel_id(),
            kind,
            local: u32::from(local),
            remote: u32::from(remote),
            mtu: 1600 - kind.overhead(self == Transport::Gre),
            gre_key: (self == Transport::Gre).then_some(GRE_KEY),
            port: kind.default_port().unwrap_or(0),
            force_fragment: false,
        }
    }

    /// Outer bytes in front of the inner packet.
    pub fn overhead(self) -> usize {
        usize::from(self.kind().overhead(self == Transport::Gre))
    }
}

/// What the engine under test does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase", tag = "op", content = "transport")]
pub enum Case {
    /// /32 exact match, neighbor, TTL, Ethernet rewrite: LAN -> WAN.
    Forward,
    /// Into a tunnel: LAN -> WAN (outer packets come out).
    Encap(Transport),
    /// Out of a tunnel: WAN (outer packets in) -> LAN.
    Decap(Transport),
}

impl Case {
    /// The report's name: `forward`, `gre-encap`, `fou-decap`, ...
    pub fn name(self) -> String {
        match self {
            Case::Forward => "forward".into(),
            Case::Encap(t) => format!("{}-encap", t.name()),
            Case::Decap(t) => format!("{}-decap", t.name()),
        }
    }

    pub fn parse(s: &str) -> Option<Case> {
        if s == "forward" {
            return Some(Case::Forward);
        }
        let (t, op) = s.split_once('-')?;
        let t = Transport::ALL.into_iter().find(|x| x.name() == t)?;
        match op {
            "encap" => Some(Case::Encap(t)),
            "decap" => Some(Case::Decap(t)),
            _ => None,
        }
    }

    /// Every case, in report order.
    pub fn all() -> Vec<Case> {
        let mut v = vec![Case::Forward];
        v.extend(Transport::ALL.map(Case::Encap));
        v.extend(Transport::ALL.map(Case::Decap));
        v
    }

    /// (generator tx port, generator rx port): 0 = LAN link, 1 = WAN link.
    pub fn ports(self) -> (usize, usize) {
        match self {
            Case::Forward | Case::Encap(_) => (0, 1),
            Case::Decap(_) => (1, 0),
        }
    }

    pub fn transport(self) -> Option<Transport> {
        match self {
            Case::Forward => None,
            Case::Encap(t) | Case::Decap(t) => Some(t),
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Frame sizes (Ethernet frame with FCS, as RFC 2544 counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum FrameMix {
    #[serde(rename = "64")]
    F64,
    /// 7:4:1 of 64, 570 and 1518 bytes (simple IMIX).
    Imix,
    #[serde(rename = "1400")]
    F1400,
}

/// The IMIX sequence the generator cycles through (7 x 64, 4 x 570, 1 x 1518,
/// interleaved so a burst carries a mix).
const IMIX: [u16; 12] = [64, 570, 64, 64, 1518, 64, 570, 64, 64, 570, 64, 570];

impl FrameMix {
    pub const ALL: [FrameMix; 3] = [FrameMix::F64, FrameMix::Imix, FrameMix::F1400];

    pub fn name(self) -> &'static str {
        match self {
            FrameMix::F64 => "64",
            FrameMix::Imix => "imix",
            FrameMix::F1400 => "1400",
        }
    }

    pub fn parse(s: &str) -> Option<FrameMix> {
        FrameMix::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Frame sizes with FCS, in sending order.
    pub fn sizes(self) -> &'static [u16] {
        match self {
            FrameMix::F64 => &[64],
            FrameMix::Imix => &IMIX,
            FrameMix::F1400 => &[1400],
        }
    }

    /// Mean frame size with FCS (bytes).
    pub fn mean_bytes(self) -> f64 {
        let s = self.sizes();
        s.iter().map(|&b| f64::from(b)).sum::<f64>() / s.len() as f64
    }
}

/// One frame template: the bytes (without FCS) and where the per-packet
/// destination goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Template {
    pub bytes: Vec<u8>,
    /// Offset of the IPv4 header whose destination is patched per packet
    /// (its header checksum is recomputed).
    pub patch_ip: usize,
    /// The frame is an inner packet for the generator to encrypt
    /// (WireGuard decap): `bytes` is the inner IPv4 packet only.
    pub wg_inner: bool,
}

/// A UDP/IPv4 packet of `ip_len` bytes from `src` to `dst` (checksums done,
/// UDP checksum zero).
pub fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, ip_len: usize, sport: u16) -> Vec<u8> {
    let len = ip_len.max(28);
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    put16(&mut p, ip::TOTAL_LEN, len as u16);
    put16(&mut p, ip::IDENT, 1);
    p[ip::TTL] = 64;
    p[ip::PROTO] = wire::PROTO_UDP;
    put32(&mut p, ip::SRC, u32::from(src));
    put32(&mut p, ip::DST, u32::from(dst));
    wire::fill_ip_checksum(&mut p, 20);
    put16(&mut p, 20, sport);
    put16(&mut p, 22, 9);
    put16(&mut p, 24, (len - 20) as u16);
    p
}

fn eth(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + payload.len()];
    wire::write_eth(&mut f, &dst, &src, wire::ETHERTYPE_IPV4);
    f[14..].copy_from_slice(payload);
    f
}

/// The templates of `case` at `mix`, addressed to an engine whose ports
/// have MACs `lan_mac` / `wan_mac` (for the case's ingress port). Sizes
/// are inner Ethernet frames with FCS: what a workload sends. Decap input
/// is that inner packet behind the transport's outer headers.
pub fn templates(case: Case, mix: FrameMix, lan_mac: [u8; 6], wan_mac: [u8; 6]) -> Vec<Template> {
    let first_dst = Ipv4Addr::from(ENDPOINT_BASE);
    mix.sizes()
        .iter()
        .enumerate()
        .map(|(i, &frame)| {
            let ip_len = usize::from(frame) - 18;
            let sport = 1024 + i as u16;
            match case {
                Case::Forward | Case::Encap(_) => Template {
                    bytes: eth(
                        lan_mac,
                        GEN_LAN_MAC,
                        &udp_packet(GEN_LAN_ADDR, first_dst, ip_len, sport),
                    ),
                    patch_ip: 14,
                    wg_inner: false,
                },
                Case::Decap(Transport::Wireguard) => Template {
                    bytes: udp_packet(FAR_WORKLOAD, first_dst, ip_len, sport),
                    patch_ip: 0,
                    wg_inner: true,
                },
                Case::Decap(t) => {
                    let inner = udp_packet(FAR_WORKLOAD, first_dst, ip_len, sport);
                    let info = t.tunnel_info(GEN_WAN_ADDR, WAN_ADDR);
                    let mut b = MemBuf::from_frame(&inner);
                    let hash = wire::flow_hash(&inner, 20);
                    assert!(tunnel::encap(&mut b, &info, i as u16, hash));
                    let mut bytes = b.data().to_vec();
                    wire::write_eth(&mut bytes, &wan_mac, &GEN_WAN_MAC, wire::ETHERTYPE_IPV4);
                    Template {
                        patch_ip: 14 + t.overhead(),
                        bytes,
                        wg_inner: false,
                    }
                }
            }
        })
        .collect()
}

/// Writes `dst` into the IPv4 header at `at` and refreshes its checksum.
#[inline(always)]
pub fn patch_dst(frame: &mut [u8], at: usize, dst: u32) {
    let h = &mut frame[at..at + 20];
    let old_hi = wire::be16(h, ip::DST);
    let old_lo = wire::be16(h, ip::DST + 2);
    put32(h, ip::DST, dst);
    let c = wire::checksum_adjust(wire::be16(h, ip::CSUM), old_hi, (dst >> 16) as u16);
    let c = wire::checksum_adjust(c, old_lo, dst as u16);
    put16(h, ip::CSUM, c);
}

/// `n` destinations from the benchmark table of `entries` /32s, in a fixed
/// pseudo-random order (every entry once when `n == entries`), so the
/// engine's table is hit all over instead of in a cached corner.
pub fn destinations(entries: usize, n: usize) -> Vec<u32> {
    let entries = entries.max(1);
    // A full-period LCG over the next power of two, skipping values >= entries.
    // (a = 1 mod 4 and c odd give the full period for a power-of-two modulus.)
    let m = entries.next_power_of_two() as u64;
    let (a, c) = (6_364_136_223_846_793_005u64, 1_442_695_040_888_963_407u64);
    let mut x: u64 = 12345 % m;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x = x.wrapping_mul(a).wrapping_add(c) % m;
        if (x as usize) < entries {
            out.push(ENDPOINT_BASE + x as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn case_names_round_trip() {
        for c in Case::all() {
            assert_eq!(Case::parse(&c.name()), Some(c), "{c}");
        }
        assert_eq!(Case::parse("gre-sideways"), None);
        for m in FrameMix::ALL {
            assert_eq!(FrameMix::parse(m.name()), Some(m));
        }
    }

    #[test]
    fn imix_is_seven_four_one() {
        let s = FrameMix::Imix.sizes();
        assert_eq!(s.iter().filter(|&&b| b == 64).count(), 7);
        assert_eq!(s.iter().filter(|&&b| b == 570).count(), 4);
        assert_eq!(s.iter().filter(|&&b| b == 1518).count(), 1);
    }

    #[test]
    fn templates_have_the_sizes_and_valid_checksums() {
        for case in Case::all() {
            for mix in FrameMix::ALL {
                let ts = templates(case, mix, LAN_MAC, WAN_MAC);
                for (t, &size) in ts.iter().zip(mix.sizes()) {
                    let inner_ip = usize::from(size) - 18;
                    let expect = match case {
                        Case::Decap(Transport::Wireguard) => inner_ip,
                        Case::Decap(tr) => 14 + tr.overhead() + inner_ip,
                        _ => 14 + inner_ip,
                    };
                    assert_eq!(t.bytes.len(), expect, "{case} {}", mix.name());
                    let mut b = t.bytes.clone();
                    patch_dst(&mut b, t.patch_ip, ENDPOINT_BASE + 77);
                    let h = &b[t.patch_ip..t.patch_ip + 20];
                    assert_eq!(wire::checksum(h), 0, "{case}");
                    assert_eq!(wire::be32(h, ip::DST), ENDPOINT_BASE + 77);
                }
            }
        }
    }

    #[test]
    fn destinations_cover_the_table_once() {
        let d = destinations(1000, 1000);
        let set: HashSet<u32> = d.iter().copied().collect();
        assert_eq!(set.len(), 1000);
        assert!(d
            .iter()
            .all(|&x| (ENDPOINT_BASE..ENDPOINT_BASE + 1000).contains(&x)));
        // Not in table order.
        assert!(d.windows(2).filter(|w| w[1] == w[0] + 1).count() < 100);
    }
}
