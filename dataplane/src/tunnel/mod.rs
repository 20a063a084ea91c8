//! Overlay tunnels: the tunnel set carried by each snapshot, building the
//! outer headers of IPIP, GRE (RFC 2784/2890), FOU and GUE (version 0)
//! in front of an inner IPv4 packet, and classifying received outer packets
//! for decapsulation. Outer headers are written in the buffer's headroom and
//! read in place: no copies of the inner packet. Only configured peers are
//! decapsulated (no open relay).

use crate::counters::DropReason;
use crate::packet::PacketBuf;
use crate::snapshot::ExactTable;
use crate::wire::{self, be16, be32, ip, put16, put32};
use cer_shared::config::{NodeConfig, TunnelKind};

pub mod wireguard;

pub const PROTO_IPIP: u8 = 4;
pub const PROTO_GRE: u8 = 47;
pub const GRE_C: u16 = 0x8000;
pub const GRE_R: u16 = 0x4000;
pub const GRE_K: u16 = 0x2000;
pub const GRE_S: u16 = 0x1000;
/// Recursion control, strict source route and the other reserved flags (RFC 2784 reserved0).
pub const GRE_RESERVED: u16 = 0x0ff8;
pub const GRE_VERSION: u16 = 0x0007;
pub const UDP_LEN: usize = 8;
pub const GUE_LEN: usize = 4;

/// One tunnel as the pipeline uses it (addresses as host-order u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelInfo {
    pub id: u32,
    pub kind: TunnelKind,
    pub local: u32,
    pub remote: u32,
    /// Inner MTU.
    pub mtu: u16,
    pub gre_key: Option<u32>,
    /// UDP destination port (FOU, GUE, WireGuard).
    pub port: u16,
    pub force_fragment: bool,
}

impl TunnelInfo {
    /// Bytes of outer headers after the Ethernet header.
    pub fn overhead(&self) -> usize {
        usize::from(self.kind.overhead(self.gre_key.is_some()))
    }
}

/// Peers reachable from one remote address (a few kinds at most).
#[derive(Debug, Clone, Copy, Default)]
struct PeerSlot {
    first: u32,
    count: u32,
}

/// The tunnel set of a snapshot: by id (encap) and by remote address (decap).
#[derive(Debug, Clone)]
pub struct TunnelTable {
    by_id: Vec<Option<TunnelInfo>>,
    by_remote: ExactTable<PeerSlot>,
    /// Tunnel ids grouped by remote address (`PeerSlot` ranges index it).
    grouped: Vec<u32>,
    /// UDP ports that carry tunnels to us.
    pub fou_ports: arrayvec::ArrayVec<u16, 8>,
    pub gue_ports: arrayvec::ArrayVec<u16, 8>,
    pub wg_ports: arrayvec::ArrayVec<u16, 8>,
}

impl Default for TunnelTable {
    fn default() -> Self {
        TunnelTable::build(Vec::new())
    }
}

impl TunnelTable {
    pub fn build(mut tunnels: Vec<TunnelInfo>) -> Self {
        tunnels.sort_by_key(|t| (t.remote, t.id));
        let max = tunnels.iter().map(|t| t.id).max().unwrap_or(0) as usize;
        let mut by_id = vec![None; max + 1];
        let mut fou = arrayvec::ArrayVec::new();
        let mut gue = arrayvec::ArrayVec::new();
        let mut wg = arrayvec::ArrayVec::new();
        let mut slots: Vec<(u32, PeerSlot)> = Vec::new();
        let mut grouped = Vec::with_capacity(tunnels.len());
        for t in &tunnels {
            by_id[t.id as usize] = Some(*t);
            let list = match t.kind {
                TunnelKind::Fou => Some(&mut fou),
                TunnelKind::Gue => Some(&mut gue),
                TunnelKind::Wireguard => Some(&mut wg),
                _ => None,
            };
            if let Some(list) = list {
                if !list.contains(&t.port) && !list.is_full() {
                    list.push(t.port);
                }
            }
            match slots.last_mut() {
                Some((remote, slot)) if *remote == t.remote => slot.count += 1,
                _ => slots.push((
                    t.remote,
                    PeerSlot {
                        first: grouped.len() as u32,
                        count: 1,
                    },
                )),
            }
            grouped.push(t.id);
        }
        TunnelTable {
            by_id,
            by_remote: ExactTable::build(slots.iter().copied(), slots.len()),
            grouped,
            fou_ports: fou,
            gue_ports: gue,
            wg_ports: wg,
        }
    }

    /// From the node config (inner MTUs derived from the underlay).
    pub fn from_config(cfg: &NodeConfig) -> Self {
        TunnelTable::build(
            cfg.tunnels
                .iter()
                .map(|t| TunnelInfo {
                    id: t.id,
                    kind: t.kind,
                    local: u32::from(t.local),
                    remote: u32::from(t.remote),
                    mtu: cfg.tunnel_mtu(t),
                    gre_key: t.gre_key,
                    port: t.port.or(t.kind.default_port()).unwrap_or(0),
                    force_fragment: t.force_fragment,
                })
                .collect(),
        )
    }

    #[inline]
    pub fn get(&self, id: u32) -> Option<&TunnelInfo> {
        self.by_id.get(id as usize)?.as_ref()
    }

    pub fn len(&self) -> usize {
        self.grouped.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grouped.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &TunnelInfo> {
        self.by_id.iter().flatten()
    }

    /// The configured tunnel of `kind` from `remote` to `local` (and GRE key).
    #[inline]
    pub fn find(
        &self,
        kind: TunnelKind,
        remote: u32,
        local: u32,
        key: Option<u32>,
        port: u16,
    ) -> Option<&TunnelInfo> {
        let slot = self.by_remote.get(remote)?;
        self.grouped[slot.first as usize..(slot.first + slot.count) as usize]
            .iter()
            .filter_map(|id| self.get(*id))
            .find(|t| {
                t.kind == kind
                    && t.local == local
                    && t.gre_key == key
                    && (t.port == port || port == 0)
            })
    }

    /// Is `ip` the transport address of a tunnel peer?
    #[inline]
    pub fn is_remote(&self, ip: u32) -> bool {
        self.by_remote.get(ip).is_some()
    }

    #[inline]
    pub fn is_tunnel_port(&self, port: u16) -> bool {
        self.fou_ports.contains(&port)
            || self.gue_ports.contains(&port)
            || self.wg_ports.contains(&port)
    }
}

/// UDP source port from the inner flow hash (ECMP entropy), in 49152..=65535.
#[inline]
pub fn entropy_port(flow_hash: u32) -> u16 {
    49152 | (flow_hash as u16 & 0x3fff)
}

/// Turns `buf` (holding an inner IPv4 packet at its start, no Ethernet
/// header) into an outer packet for `t`, leaving 14 bytes of Ethernet header
/// in front for the caller to fill. The outer header has DF clear, so the
/// underlay may fragment it (the far end reassembles). False if headroom is short.
pub fn encap<B: PacketBuf>(buf: &mut B, t: &TunnelInfo, ident: u16, flow_hash: u32) -> bool {
    let inner_len = buf.len();
    let inner_tos = buf.data().get(ip::TOS).copied().unwrap_or(0);
    let extra = t.overhead() - wire::IPV4_MIN;
    if !buf.prepend(wire::ETH_LEN + wire::IPV4_MIN + extra) {
        return false;
    }
    let d = buf.data_mut();
    let total = wire::IPV4_MIN + extra + inner_len;
    let proto = match t.kind {
        TunnelKind::Ipip => PROTO_IPIP,
        TunnelKind::Gre => PROTO_GRE,
        TunnelKind::Fou | TunnelKind::Gue | TunnelKind::Wireguard => wire::PROTO_UDP,
    };
    let h = &mut d[wire::ETH_LEN..];
    // DSCP is copied from the inner header (ECN bits cleared).
    h[..20].copy_from_slice(&[
        0x45,
        inner_tos & 0xfc,
        0,
        0,
        0,
        0,
        0,
        0,
        64,
        proto,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    put16(h, ip::TOTAL_LEN, total as u16);
    put16(h, ip::IDENT, ident);
    put32(h, ip::SRC, t.local);
    put32(h, ip::DST, t.remote);
    wire::fill_ip_checksum(h, 20);
    let o = &mut h[20..];
    match t.kind {
        TunnelKind::Ipip => {}
        TunnelKind::Gre => match t.gre_key {
            Some(k) => {
                put16(o, 0, GRE_K);
                put16(o, 2, wire::ETHERTYPE_IPV4);
                put32(o, 4, k);
            }
            None => {
                put16(o, 0, 0);
                put16(o, 2, wire::ETHERTYPE_IPV4);
            }
        },
        TunnelKind::Fou | TunnelKind::Gue | TunnelKind::Wireguard => {
            put16(o, 0, entropy_port(flow_hash));
            put16(o, 2, t.port);
            put16(o, 4, (total - wire::IPV4_MIN) as u16);
            // Zero UDP checksum: allowed for IPv4 (RFC 768), usual for FOU/GUE.
            put16(o, 6, 0);
            if t.kind == TunnelKind::Gue {
                // GUE version 0, C = 0, Hlen = 0, proto/ctype = IPv4, flags 0.
                o[8] = 0;
                o[9] = PROTO_IPIP;
                put16(o, 10, 0);
            }
        }
    }
    true
}

/// What a received outer packet (to one of our addresses) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decap {
    /// Strip `offset` bytes after the Ethernet header to reach the inner packet.
    Inner {
        offset: usize,
        tunnel: u32,
    },
    /// A WireGuard datagram from a configured peer: UDP payload at `offset`.
    Wireguard {
        offset: usize,
        tunnel: u32,
    },
    /// Not tunnel traffic (TCP to the router, ICMP, ...): the exception path.
    NotTunnel,
    Drop(DropReason),
}

/// Classifies a validated, unfragmented outer IPv4 packet `h` (IP header
/// first, header length `ihl`) addressed to us.
pub fn classify(h: &[u8], ihl: usize, table: &TunnelTable) -> Decap {
    let src = be32(h, ip::SRC);
    let dst = be32(h, ip::DST);
    let proto = h[ip::PROTO];
    let find = |kind, key, port| table.find(kind, src, dst, key, port).map(|t| t.id);
    match proto {
        PROTO_IPIP => match find(TunnelKind::Ipip, None, 0) {
            Some(tunnel) => Decap::Inner {
                offset: ihl,
                tunnel,
            },
            None => Decap::Drop(DropReason::TunnelUnknownPeer),
        },
        PROTO_GRE => {
            let g = &h[ihl..];
            if g.len() < 4 {
                return Decap::Drop(DropReason::TunnelMalformed);
            }
            let flags = be16(g, 0);
            if flags & GRE_VERSION != 0 || flags & (GRE_RESERVED | GRE_R) != 0 {
                return Decap::Drop(DropReason::GreUnsupported);
            }
            if be16(g, 2) != wire::ETHERTYPE_IPV4 {
                return Decap::Drop(DropReason::GreUnsupported);
            }
            let mut off = 4;
            if flags & GRE_C != 0 {
                if g.len() < off + 4 || wire::checksum(g) != 0 {
                    return Decap::Drop(DropReason::TunnelMalformed);
                }
                off += 4;
            }
            let key = if flags & GRE_K != 0 {
                if g.len() < off + 4 {
                    return Decap::Drop(DropReason::TunnelMalformed);
                }
                off += 4;
                Some(be32(g, off - 4))
            } else {
                None
            };
            if flags & GRE_S != 0 {
                off += 4;
            }
            if g.len() < off {
                return Decap::Drop(DropReason::TunnelMalformed);
            }
            match find(TunnelKind::Gre, key, 0) {
                Some(tunnel) => Decap::Inner {
                    offset: ihl + off,
                    tunnel,
                },
                None => Decap::Drop(DropReason::TunnelUnknownPeer),
            }
        }
        wire::PROTO_UDP => {
            let u = &h[ihl..];
            if u.len() < UDP_LEN {
                return Decap::Drop(DropReason::TunnelMalformed);
            }
            let dport = be16(u, 2);
            if !table.is_tunnel_port(dport) {
                return Decap::NotTunnel;
            }
            // The UDP length must be the IP payload exactly, and the
            // datagram must carry something: bytes past a shorter UDP
            // length are not part of it, whatever they look like.
            let ulen = usize::from(be16(u, 4));
            if ulen <= UDP_LEN || ulen != u.len() {
                return Decap::Drop(DropReason::TunnelUdpBadLength);
            }
            if table.wg_ports.contains(&dport) {
                return match find(TunnelKind::Wireguard, None, dport) {
                    Some(tunnel) => Decap::Wireguard {
                        offset: ihl + UDP_LEN,
                        tunnel,
                    },
                    None => Decap::Drop(DropReason::TunnelUnknownPeer),
                };
            }
            if table.fou_ports.contains(&dport) {
                return match find(TunnelKind::Fou, None, dport) {
                    Some(tunnel) => Decap::Inner {
                        offset: ihl + UDP_LEN,
                        tunnel,
                    },
                    None => Decap::Drop(DropReason::TunnelUnknownPeer),
                };
            }
            // GUE (draft-ietf-intarea-gue): version 0, no control messages, IPv4 payload.
            let g = &u[UDP_LEN..];
            if g.len() < GUE_LEN {
                return Decap::Drop(DropReason::TunnelMalformed);
            }
            let version = g[0] >> 6;
            let control = g[0] & 0x20 != 0;
            let hlen = usize::from(g[0] & 0x1f) * 4;
            if version != 0 || control || g[1] != PROTO_IPIP || g.len() < GUE_LEN + hlen {
                return Decap::Drop(DropReason::GueUnsupported);
            }
            match find(TunnelKind::Gue, None, dport) {
                Some(tunnel) => Decap::Inner {
                    offset: ihl + UDP_LEN + GUE_LEN + hlen,
                    tunnel,
                },
                None => Decap::Drop(DropReason::TunnelUnknownPeer),
            }
        }
        _ => Decap::NotTunnel,
    }
}

/// Puts IPv4 + UDP headers (and room for Ethernet) in front of a UDP payload
/// already in `buf` (a WireGuard message): `local:sport -> remote:dport`.
pub fn encap_udp<B: PacketBuf>(
    buf: &mut B,
    local: u32,
    remote: u32,
    sport: u16,
    dport: u16,
    ident: u16,
) -> bool {
    let payload = buf.len();
    if !buf.prepend(wire::ETH_LEN + wire::IPV4_MIN + UDP_LEN) {
        return false;
    }
    let h = &mut buf.data_mut()[wire::ETH_LEN..];
    let total = wire::IPV4_MIN + UDP_LEN + payload;
    h[..20].fill(0);
    h[0] = 0x45; // version 4, IHL 5
    h[8] = 64; // TTL
    h[9] = wire::PROTO_UDP;
    put16(h, ip::TOTAL_LEN, total as u16);
    put16(h, ip::IDENT, ident);
    put32(h, ip::SRC, local);
    put32(h, ip::DST, remote);
    wire::fill_ip_checksum(h, 20);
    let u = &mut h[20..];
    put16(u, 0, sport);
    put16(u, 2, dport);
    put16(u, 4, (UDP_LEN + payload) as u16);
    put16(u, 6, 0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::MemBuf;

    fn t(kind: TunnelKind, key: Option<u32>) -> TunnelInfo {
        TunnelInfo {
            id: 7,
            kind,
            local: 0x0a0a_0001,
            remote: 0x0a0a_0002,
            mtu: 1400,
            gre_key: key,
            port: kind.default_port().unwrap_or(0),
            force_fragment: false,
        }
    }

    fn inner() -> Vec<u8> {
        let mut p = vec![
            0x45, 0xb8, 0, 28, 0, 1, 0x40, 0, 63, 1, 0, 0, 10, 77, 60, 1, 10, 77, 60, 2, 8, 0, 0,
            0, 0, 0, 0, 0,
        ];
        wire::fill_ip_checksum(&mut p, 20);
        p
    }

    #[test]
    fn encap_then_classify_roundtrip_for_every_kind() {
        for (kind, key) in [
            (TunnelKind::Ipip, None),
            (TunnelKind::Gre, None),
            (TunnelKind::Gre, Some(42)),
            (TunnelKind::Fou, None),
            (TunnelKind::Gue, None),
        ] {
            let ti = t(kind, key);
            let mut b = MemBuf::from_frame(&inner());
            assert!(encap(&mut b, &ti, 9, 0x1234_5678));
            let d = b.data();
            let h = &d[wire::ETH_LEN..];
            assert_eq!(wire::checksum(&h[..20]), 0);
            assert_eq!(
                usize::from(be16(h, ip::TOTAL_LEN)),
                20 + ti.overhead() - 20 + inner().len()
            );
            assert_eq!(h[ip::TOS], 0xb8, "DSCP copied");
            assert_eq!(be16(h, ip::FLAGS_FRAG) & ip::DF, 0, "outer DF clear");
            // Seen from the other end: swap the table's view (remote/local).
            let mut peer = ti;
            peer.local = ti.remote;
            peer.remote = ti.local;
            let table = TunnelTable::build(vec![peer]);
            let mut rx = h.to_vec();
            rx[12..16].copy_from_slice(&ti.local.to_be_bytes());
            rx[16..20].copy_from_slice(&ti.remote.to_be_bytes());
            match classify(&rx, 20, &table) {
                Decap::Inner { offset, tunnel } => {
                    assert_eq!(tunnel, 7);
                    assert_eq!(&rx[offset..], &inner()[..], "{kind:?}: inner untouched");
                }
                other => panic!("{kind:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn udp_source_port_carries_flow_entropy() {
        let ti = t(TunnelKind::Fou, None);
        let mut ports = std::collections::HashSet::new();
        for h in 0..64u32 {
            let mut b = MemBuf::from_frame(&inner());
            encap(&mut b, &ti, 1, h.wrapping_mul(0x9E37_79B9));
            let p = be16(b.data(), wire::ETH_LEN + 20);
            assert!(p >= 49152);
            ports.insert(p);
        }
        assert!(ports.len() > 32);
    }

    fn outer(proto: u8, payload: &[u8], src: u32) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        h.extend_from_slice(&src.to_be_bytes());
        h.extend_from_slice(&0x0a0a_0001u32.to_be_bytes());
        h.extend_from_slice(payload);
        let len = h.len() as u16;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        wire::fill_ip_checksum(&mut h, 20);
        h
    }

    #[test]
    fn bad_outer_headers_have_named_drops() {
        let mut ti = t(TunnelKind::Gre, Some(5));
        ti.local = 0x0a0a_0001;
        ti.remote = 0x0a0a_0002;
        let mut gue = t(TunnelKind::Gue, None);
        gue.id = 8;
        let mut ipip = t(TunnelKind::Ipip, None);
        ipip.id = 9;
        let table = TunnelTable::build(vec![ti, gue, ipip]);
        let peer = 0x0a0a_0002;
        let cases: Vec<(Vec<u8>, Decap)> = vec![
            (
                outer(47, &[0x00, 0x01, 0x08, 0x00], peer),
                Decap::Drop(DropReason::GreUnsupported),
            ), // version 1
            (
                outer(47, &[0x40, 0x00, 0x08, 0x00], peer),
                Decap::Drop(DropReason::GreUnsupported),
            ), // routing bit
            (
                outer(47, &[0x00, 0x00, 0x86, 0xdd], peer),
                Decap::Drop(DropReason::GreUnsupported),
            ), // IPv6 payload
            (
                outer(47, &[0x20, 0x00, 0x08, 0x00, 0, 0], peer),
                Decap::Drop(DropReason::TunnelMalformed),
            ), // key truncated
            (
                outer(47, &[0x20, 0x00, 0x08, 0x00, 0, 0, 0, 6], peer),
                Decap::Drop(DropReason::TunnelUnknownPeer),
            ), // wrong key
            (
                outer(47, &[0x00, 0x00], peer),
                Decap::Drop(DropReason::TunnelMalformed),
            ),
            (
                outer(17, &[0, 1, 0x17, 0xc0, 0, 12, 0, 0, 0x40, 4, 0, 0], peer),
                Decap::Drop(DropReason::GueUnsupported),
            ), // GUE version 1
            (
                outer(17, &[0, 1, 0x17, 0xc0, 0, 12, 0, 0, 0x20, 4, 0, 0], peer),
                Decap::Drop(DropReason::GueUnsupported),
            ), // control
            (
                outer(17, &[0, 1, 0x17, 0xc0, 0, 12, 0, 0, 0x03, 4, 0, 0], peer),
                Decap::Drop(DropReason::GueUnsupported),
            ), // hlen past end
            (
                outer(17, &[0, 1, 0x17, 0xc0, 0, 12, 0, 0, 0x00, 41, 0, 0], peer),
                Decap::Drop(DropReason::GueUnsupported),
            ), // IPv6 proto
            (
                outer(17, &[0, 1, 0x17, 0xc0, 0, 99, 0, 0], peer),
                Decap::Drop(DropReason::TunnelUdpBadLength),
            ), // UDP length past the IP payload
            (
                outer(17, &[0, 1, 0x17, 0xc0, 0, 8, 0, 0, 0, 4, 0, 0], peer),
                Decap::Drop(DropReason::TunnelUdpBadLength),
            ), // UDP length 8: no payload, the GUE header after it is not in the datagram
            (
                outer(17, &[0, 1, 0x17, 0xc0, 0, 10, 0, 0, 0, 4, 0, 0], peer),
                Decap::Drop(DropReason::TunnelUdpBadLength),
            ), // UDP length short of the IP payload
            (
                outer(17, &[0, 1, 0x17], peer),
                Decap::Drop(DropReason::TunnelMalformed),
            ),
            (
                outer(4, &inner(), 0x0a0a_0099),
                Decap::Drop(DropReason::TunnelUnknownPeer),
            ), // no open relay
            (
                outer(17, &[0, 1, 0, 53, 0, 8, 0, 0], peer),
                Decap::NotTunnel,
            ), // DNS to the router
            (outer(6, &[0; 20], peer), Decap::NotTunnel),
        ];
        for (pkt, want) in cases {
            assert_eq!(classify(&pkt, 20, &table), want, "{pkt:02x?}");
        }
    }

    #[test]
    fn table_lookup_by_remote_kind_and_key() {
        let a = t(TunnelKind::Gre, Some(1));
        let mut b = t(TunnelKind::Gre, Some(2));
        b.id = 8;
        let mut c = t(TunnelKind::Fou, None);
        c.id = 9;
        c.remote = 0x0a0a_0003;
        let table = TunnelTable::build(vec![c, b, a]);
        assert_eq!(
            table
                .find(TunnelKind::Gre, a.remote, a.local, Some(2), 0)
                .map(|t| t.id),
            Some(8)
        );
        assert_eq!(
            table
                .find(TunnelKind::Gre, a.remote, a.local, Some(1), 0)
                .map(|t| t.id),
            Some(7)
        );
        assert!(table
            .find(TunnelKind::Gre, a.remote, a.local, None, 0)
            .is_none());
        assert!(table
            .find(TunnelKind::Fou, a.remote, a.local, None, 5555)
            .is_none());
        assert_eq!(
            table
                .find(TunnelKind::Fou, c.remote, c.local, None, 5555)
                .map(|t| t.id),
            Some(9)
        );
        assert_eq!(table.get(9).unwrap().kind, TunnelKind::Fou);
        assert!(table.is_tunnel_port(5555));
        assert!(!table.is_tunnel_port(6080));
    }
}
