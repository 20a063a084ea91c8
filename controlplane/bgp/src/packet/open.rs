//! OPEN messages (RFC 4271 4.2, RFC 5492 capabilities): what a speaker
//! advertises (`Capabilities`, `GracefulRestart`) and the decoding of a
//! received OPEN through netgauze into those terms.

use super::error::{wire_err, WireError};
use super::{notify, Family};
use bytes::BytesMut;
use netgauze_bgp_pkt::capabilities::BgpCapability;
use netgauze_bgp_pkt::codec::BgpCodec;
use netgauze_bgp_pkt::open::BgpOpenMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::{AddressFamily, AddressType};
use std::net::Ipv4Addr;
use tokio_util::codec::Decoder;

/// Graceful restart as advertised by a speaker (RFC 4724).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    pub restart_time: u16,
    /// The R bit: the sender has restarted.
    pub restarting: bool,
    /// Families with the forwarding state preserved (F bit).
    pub families: Vec<(Family, bool)>,
}

/// ADD-PATH for IPv4 unicast as one side offers it (RFC 7911 4): it can
/// receive several paths per prefix, send them, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddPath {
    pub receive: bool,
    pub send: bool,
}

impl AddPath {
    pub fn any(&self) -> bool {
        self.receive || self.send
    }
}

/// Capabilities of one side of a session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    pub four_octet_as: Option<u32>,
    pub route_refresh: bool,
    /// IPv4 unicast NLRI with an IPv6 next hop (RFC 8950).
    pub extended_next_hop_v4: bool,
    pub graceful_restart: Option<GracefulRestart>,
    /// ADD-PATH for IPv4 unicast (capability 69).
    pub add_path_v4: AddPath,
    /// Messages other than OPEN and KEEPALIVE up to 65535 octets (RFC 8654,
    /// capability 6).
    pub extended_message: bool,
}

/// A received OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub caps: Capabilities,
}

fn open_from(o: &BgpOpenMessage) -> Open {
    let mut caps = Capabilities::default();
    for c in o.capabilities() {
        match c {
            BgpCapability::MultiProtocolExtensions(m) => match m.address_type() {
                AddressType::Ipv4Unicast => caps.ipv4_unicast = true,
                AddressType::Ipv6Unicast => caps.ipv6_unicast = true,
                _ => {}
            },
            BgpCapability::RouteRefresh
            | BgpCapability::EnhancedRouteRefresh
            | BgpCapability::CiscoRouteRefresh => caps.route_refresh = true,
            BgpCapability::FourOctetAs(a) => caps.four_octet_as = Some(a.asn4()),
            BgpCapability::ExtendedMessage => caps.extended_message = true,
            BgpCapability::ExtendedNextHopEncoding(e)
                if e.encodings().iter().any(|x| {
                    x.address_type() == AddressType::Ipv4Unicast
                        && x.next_hop_afi() == AddressFamily::IPv6
                }) =>
            {
                caps.extended_next_hop_v4 = true;
            }
            BgpCapability::AddPath(a) => {
                for f in a.address_families() {
                    if f.address_type() == AddressType::Ipv4Unicast {
                        caps.add_path_v4 = AddPath {
                            receive: f.receive(),
                            send: f.send(),
                        };
                    }
                }
            }
            BgpCapability::GracefulRestartCapability(g) => {
                caps.graceful_restart = Some(GracefulRestart {
                    restart_time: g.time(),
                    restarting: g.restart(),
                    families: g
                        .address_families()
                        .iter()
                        .filter_map(|f| match f.address_type() {
                            AddressType::Ipv4Unicast => {
                                Some((Family::Ipv4Unicast, f.forwarding_state()))
                            }
                            AddressType::Ipv6Unicast => {
                                Some((Family::Ipv6Unicast, f.forwarding_state()))
                            }
                            _ => None,
                        })
                        .collect(),
                })
            }
            _ => {}
        }
    }
    // No MP capability at all means IPv4 unicast only (RFC 4760 6).
    if !o
        .capabilities()
        .iter()
        .any(|c| matches!(c, BgpCapability::MultiProtocolExtensions(_)))
    {
        caps.ipv4_unicast = true;
    }
    Open {
        version: o.version(),
        asn: o.my_asn4(),
        hold_time: o.hold_time(),
        router_id: o.bgp_id(),
        caps,
    }
}

/// Decodes an OPEN frame (header included) with a fresh netgauze codec, so
/// nothing of one message's parse is left for the next.
pub(super) fn decode(frame: &[u8]) -> Result<Open, WireError> {
    let mut buf = BytesMut::from(frame);
    match BgpCodec::new(true).decode(&mut buf) {
        Ok(Some((BgpMessage::Open(o), _))) => Ok(open_from(&o)),
        Ok(_) => Err(wire_err(
            notify::HEADER,
            notify::HEADER_BAD_LENGTH,
            "incomplete OPEN message",
        )),
        Err(e) => Err(wire_err(notify::OPEN, 0, format!("malformed OPEN: {e}"))),
    }
}

/// Whether a received OPEN frame (header included, already length-checked)
/// carries the Extended Message capability (RFC 8654): a raw scan of its
/// optional parameters, in the classic form and in RFC 9072's extended
/// one, for the reader task, which must know the largest frame it may
/// take next before the OPEN is decoded. A malformed frame says no (the
/// decoder reports it).
pub fn open_offers_extended_message(frame: &[u8]) -> bool {
    const PARAMS: usize = 29;
    let Some(&len) = frame.get(PARAMS - 1) else {
        return false;
    };
    // RFC 9072: length 255 and type 255 mark 2-octet lengths.
    let extended = len == 255 && frame.get(PARAMS) == Some(&255);
    let (mut at, end, wide) = if extended {
        let Some(l) = frame.get(PARAMS + 1..PARAMS + 3) else {
            return false;
        };
        let l = usize::from(u16::from_be_bytes([l[0], l[1]]));
        (PARAMS + 3, PARAMS + 3 + l, true)
    } else {
        (PARAMS, PARAMS + usize::from(len), false)
    };
    let end = end.min(frame.len());
    while at < end {
        let ptype = frame[at];
        let (plen, head) = if wide {
            match frame.get(at + 1..at + 3) {
                Some(l) => (usize::from(u16::from_be_bytes([l[0], l[1]])), 3),
                None => return false,
            }
        } else {
            match frame.get(at + 1) {
                Some(&l) => (usize::from(l), 2),
                None => return false,
            }
        };
        let body = at + head..(at + head + plen).min(end);
        if ptype == 2 {
            let mut c = body.start;
            while c + 2 <= body.end {
                if frame[c] == 6 {
                    return true;
                }
                c += 2 + usize::from(frame[c + 1]);
            }
        }
        at = body.end.max(at + head);
    }
    false
}
