//! The BGP wire format, through the netgauze-bgp-pkt codec: framing checks,
//! OPEN and UPDATE decoding into our route types, encoding of everything we
//! send, and RFC 7606 revised error handling. A malformed path attribute
//! makes the UPDATE's prefixes withdrawn (treat-as-withdraw) instead of
//! resetting the session; only an UPDATE whose NLRI cannot be located resets it.

use crate::route::{
    AsSegment, AsSegmentKind, Community, Ipv4Prefix, Ipv6Prefix, NextHop, Origin, PathAttrs,
    Prefix, RawAttr,
};
use bytes::{BufMut, Bytes, BytesMut};
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, ExtendedNextHopEncoding, ExtendedNextHopEncodingCapability,
    FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::codec::BgpCodec;
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::path_attribute as pa;
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::{AddressFamily, AddressType};
use netgauze_parse_utils::WritablePdu;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use tokio_util::codec::{Decoder, Encoder};

pub const HEADER_LEN: usize = 19;
pub const MAX_LEN: usize = 4096;
pub const AS_TRANS: u32 = 23456;

pub const MSG_OPEN: u8 = 1;
pub const MSG_UPDATE: u8 = 2;
pub const MSG_NOTIFICATION: u8 = 3;
pub const MSG_KEEPALIVE: u8 = 4;
pub const MSG_ROUTE_REFRESH: u8 = 5;

/// NOTIFICATION error codes (RFC 4271 4.5) and the subcodes we send.
pub mod notify {
    pub const HEADER: u8 = 1;
    pub const HEADER_NOT_SYNC: u8 = 1;
    pub const HEADER_BAD_LENGTH: u8 = 2;
    pub const HEADER_BAD_TYPE: u8 = 3;
    pub const OPEN: u8 = 2;
    pub const OPEN_UNSUPPORTED_VERSION: u8 = 1;
    pub const OPEN_BAD_PEER_AS: u8 = 2;
    pub const OPEN_BAD_BGP_ID: u8 = 3;
    pub const OPEN_UNACCEPTABLE_HOLD: u8 = 6;
    pub const UPDATE: u8 = 3;
    pub const UPDATE_MALFORMED_ATTR_LIST: u8 = 1;
    pub const HOLD_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMIN_RESET: u8 = 4;
    pub const CEASE_COLLISION: u8 = 7;
}

/// A NOTIFICATION to send (or received).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8) -> Self {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    pub fn describe(&self) -> String {
        let what = match (self.code, self.subcode) {
            (1, 1) => "message header: connection not synchronized",
            (1, 2) => "message header: bad message length",
            (1, 3) => "message header: bad message type",
            (1, _) => "message header error",
            (2, 1) => "OPEN: unsupported version number",
            (2, 2) => "OPEN: bad peer AS",
            (2, 3) => "OPEN: bad BGP identifier",
            (2, 6) => "OPEN: unacceptable hold time",
            (2, _) => "OPEN message error",
            (3, _) => "UPDATE message error",
            (4, _) => "hold timer expired",
            (5, _) => "finite state machine error",
            (6, 2) => "cease: administrative shutdown",
            (6, 3) => "cease: peer de-configured",
            (6, 4) => "cease: administrative reset",
            (6, 7) => "cease: connection collision resolution",
            (6, _) => "cease",
            _ => "unknown error code",
        };
        format!("{what} ({}/{})", self.code, self.subcode)
    }
}

/// Address families we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

/// Graceful restart as advertised by a speaker (RFC 4724).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    pub restart_time: u16,
    /// The R bit: the sender has restarted.
    pub restarting: bool,
    /// Families with the forwarding state preserved (F bit).
    pub families: Vec<(Family, bool)>,
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

/// A received UPDATE in our terms.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub withdrawn: Vec<Prefix>,
    pub announced: Vec<Prefix>,
    /// Attributes of `announced` (None only when nothing is announced).
    pub attrs: Option<Arc<PathAttrs>>,
    /// Set when RFC 7606 turned the announcements into withdrawals.
    pub treat_as_withdraw: Option<String>,
    /// The UPDATE was an End-of-RIB marker for this family.
    pub end_of_rib: Option<Family>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Open(Open),
    Update(Update),
    Keepalive,
    Notification(Notification),
    RouteRefresh(Family),
}

/// A message that could not be accepted: what to send before closing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct WireError {
    pub notification: Notification,
    pub reason: String,
}

fn wire_err(code: u8, subcode: u8, reason: impl Into<String>) -> WireError {
    WireError {
        notification: Notification::new(code, subcode),
        reason: reason.into(),
    }
}

/// Checks a message header: marker, length, type. Returns (length, type).
pub fn check_header(h: &[u8; HEADER_LEN], max_len: usize) -> Result<(usize, u8), WireError> {
    if h[..16].iter().any(|b| *b != 0xff) {
        return Err(wire_err(
            notify::HEADER,
            notify::HEADER_NOT_SYNC,
            "message marker is not all ones",
        ));
    }
    let len = usize::from(u16::from_be_bytes([h[16], h[17]]));
    let typ = h[18];
    let bad_len = || {
        let mut e = wire_err(
            notify::HEADER,
            notify::HEADER_BAD_LENGTH,
            format!("bad message length {len} for type {typ}"),
        );
        e.notification.data = (len as u16).to_be_bytes().to_vec();
        e
    };
    if !(HEADER_LEN..=max_len).contains(&len) {
        return Err(bad_len());
    }
    let ok = match typ {
        MSG_OPEN => len >= 29,
        MSG_UPDATE => len >= 23,
        MSG_NOTIFICATION => len >= 21,
        MSG_KEEPALIVE => len == 19,
        MSG_ROUTE_REFRESH => len == 23,
        _ => {
            let mut e = wire_err(
                notify::HEADER,
                notify::HEADER_BAD_TYPE,
                format!("unknown message type {typ}"),
            );
            e.notification.data = vec![typ];
            return Err(e);
        }
    };
    if !ok {
        return Err(bad_len());
    }
    Ok((len, typ))
}

/// Per-session codec: decodes frames and encodes messages.
pub struct Codec {
    inner: BgpCodec,
    /// Both sides advertised 4-octet AS.
    pub asn4: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    pub fn new() -> Self {
        Codec {
            inner: BgpCodec::new(true),
            asn4: true,
        }
    }

    /// Sets what was negotiated (after both OPENs).
    pub fn set_asn4(&mut self, asn4: bool) {
        self.asn4 = asn4;
        self.inner = BgpCodec::new(asn4);
    }

    /// Decodes one complete frame (header included, already checked).
    pub fn decode(&mut self, frame: &[u8]) -> Result<Message, WireError> {
        let typ = frame[18];
        match typ {
            MSG_KEEPALIVE => return Ok(Message::Keepalive),
            MSG_NOTIFICATION => {
                return Ok(Message::Notification(Notification {
                    code: frame[19],
                    subcode: frame[20],
                    data: frame[21..].to_vec(),
                }))
            }
            MSG_ROUTE_REFRESH => {
                let afi = u16::from_be_bytes([frame[19], frame[20]]);
                let safi = frame[22];
                return match (afi, safi) {
                    (1, 1) => Ok(Message::RouteRefresh(Family::Ipv4Unicast)),
                    (2, 1) => Ok(Message::RouteRefresh(Family::Ipv6Unicast)),
                    // RFC 2918: ignore a refresh for a family we did not negotiate.
                    _ => Ok(Message::Keepalive),
                };
            }
            _ => {}
        }
        let mut buf = BytesMut::from(frame);
        match self.inner.decode(&mut buf) {
            Ok(Some((BgpMessage::Open(o), _))) => Ok(Message::Open(open_from(&o))),
            Ok(Some((BgpMessage::Update(u), ignored))) => {
                let (mut update, seen) = update_from(&u);
                if !ignored.path_attr_errors().is_empty() {
                    let reason = format!(
                        "malformed path attribute: {:?}",
                        ignored.path_attr_errors()[0]
                    );
                    treat_as_withdraw(&mut update, reason);
                } else if let Some(missing) = seen.missing(&update) {
                    treat_as_withdraw(
                        &mut update,
                        format!("missing well-known attribute {missing}"),
                    );
                }
                Ok(Message::Update(update))
            }
            Ok(Some((other, _))) => Err(wire_err(
                notify::HEADER,
                notify::HEADER_BAD_TYPE,
                format!("unexpected {:?}", other.get_type()),
            )),
            Ok(None) => Err(wire_err(
                notify::HEADER,
                notify::HEADER_BAD_LENGTH,
                "incomplete message",
            )),
            Err(e) if typ == MSG_UPDATE => {
                // RFC 7606: if the NLRI can still be located, withdraw them and keep the session.
                match locate_nlri(frame) {
                    Some(mut update) => {
                        treat_as_withdraw(&mut update, format!("unparsable UPDATE: {e}"));
                        Ok(Message::Update(update))
                    }
                    None => Err(wire_err(
                        notify::UPDATE,
                        notify::UPDATE_MALFORMED_ATTR_LIST,
                        format!("malformed UPDATE: {e}"),
                    )),
                }
            }
            Err(e) => Err(wire_err(notify::OPEN, 0, format!("malformed OPEN: {e}"))),
        }
    }

    pub fn encode_open(
        &mut self,
        asn: u32,
        hold_time: u16,
        router_id: Ipv4Addr,
        caps: &Capabilities,
    ) -> Bytes {
        let mut list: Vec<BgpCapability> = Vec::new();
        if caps.ipv4_unicast {
            list.push(BgpCapability::MultiProtocolExtensions(
                MultiProtocolExtensionsCapability::new(AddressType::Ipv4Unicast),
            ));
        }
        if caps.ipv6_unicast {
            list.push(BgpCapability::MultiProtocolExtensions(
                MultiProtocolExtensionsCapability::new(AddressType::Ipv6Unicast),
            ));
        }
        if caps.route_refresh {
            list.push(BgpCapability::RouteRefresh);
        }
        if caps.extended_next_hop_v4 {
            list.push(BgpCapability::ExtendedNextHopEncoding(
                ExtendedNextHopEncodingCapability::new(vec![ExtendedNextHopEncoding::new(
                    AddressType::Ipv4Unicast,
                    AddressFamily::IPv6,
                )]),
            ));
        }
        if let Some(gr) = &caps.graceful_restart {
            let fams: Vec<GracefulRestartAddressFamily> = gr
                .families
                .iter()
                .map(|(f, fwd)| GracefulRestartAddressFamily::new(*fwd, address_type(*f)))
                .collect();
            list.push(BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    gr.restarting,
                    false,
                    gr.restart_time.min(4095),
                    fams,
                ),
            ));
        }
        list.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)));
        let my_as = if asn > 65535 {
            AS_TRANS as u16
        } else {
            asn as u16
        };
        let open = BgpOpenMessage::new(
            my_as,
            hold_time,
            router_id,
            vec![BgpOpenMessageParameter::new_capabilities(list)],
        );
        self.encode(BgpMessage::Open(open))
    }

    fn encode(&mut self, msg: BgpMessage) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        // Our own messages are built from validated values; a failure here is a bug
        // we report by sending nothing rather than a corrupt frame.
        if let Err(e) = self.inner.encode(msg, &mut out) {
            log::error!("BGP encode failed: {e:?}");
            return Bytes::new();
        }
        out.freeze()
    }

    /// UPDATEs announcing `prefixes` (all one family) with `attrs`, split to fit
    /// the message size. IPv4 with an IPv6 next hop goes in MP_REACH (RFC 8950).
    pub fn encode_announce(&mut self, prefixes: &[Prefix], attrs: &PathAttrs) -> Vec<Bytes> {
        let mut out = Vec::new();
        let v4: Vec<Ipv4Prefix> = prefixes
            .iter()
            .filter_map(|p| {
                if let Prefix::V4(p) = p {
                    Some(*p)
                } else {
                    None
                }
            })
            .collect();
        let v6: Vec<Ipv6Prefix> = prefixes
            .iter()
            .filter_map(|p| {
                if let Prefix::V6(p) = p {
                    Some(*p)
                } else {
                    None
                }
            })
            .collect();
        for chunk in v4.chunks(500) {
            let nlri: Vec<Ipv4UnicastAddress> = chunk.iter().filter_map(|p| v4_nlri(*p)).collect();
            let mut list = self.common_attrs(attrs);
            match attrs.next_hop {
                NextHop::V4 { addr } => {
                    list.push(attr(
                        false,
                        true,
                        pa::PathAttributeValue::NextHop(pa::NextHop::new(addr)),
                    ));
                    let u = BgpUpdateMessage::new(Vec::<Ipv4UnicastAddress>::new(), list, nlri);
                    out.push(self.encode(BgpMessage::Update(u)));
                }
                NextHop::V6 { global, link_local } => {
                    list.insert(
                        0,
                        attr(
                            true,
                            false,
                            pa::PathAttributeValue::MpReach(pa::MpReach::Ipv4Unicast {
                                next_hop: IpAddr::V6(global),
                                next_hop_local: link_local,
                                nlri: nlri.into(),
                            }),
                        ),
                    );
                    let u = BgpUpdateMessage::new(
                        Vec::<Ipv4UnicastAddress>::new(),
                        list,
                        Vec::<Ipv4UnicastAddress>::new(),
                    );
                    out.push(self.encode(BgpMessage::Update(u)));
                }
            }
        }
        for chunk in v6.chunks(150) {
            let nlri: Vec<Ipv6UnicastAddress> = chunk.iter().filter_map(|p| v6_nlri(*p)).collect();
            let (global, link_local) = match attrs.next_hop {
                NextHop::V6 { global, link_local } => (global, link_local),
                NextHop::V4 { addr } => (addr.to_ipv6_mapped(), None),
            };
            let mut list = self.common_attrs(attrs);
            list.insert(
                0,
                attr(
                    true,
                    false,
                    pa::PathAttributeValue::MpReach(pa::MpReach::Ipv6Unicast {
                        next_hop_global: global,
                        next_hop_local: link_local,
                        nlri: nlri.into(),
                    }),
                ),
            );
            let u = BgpUpdateMessage::new(
                Vec::<Ipv4UnicastAddress>::new(),
                list,
                Vec::<Ipv4UnicastAddress>::new(),
            );
            out.push(self.encode(BgpMessage::Update(u)));
        }
        out
    }

    /// UPDATEs withdrawing `prefixes`. With `mp_v4`, IPv4 goes in MP_UNREACH
    /// (used on sessions where IPv4 is carried only by MP-BGP).
    pub fn encode_withdraw(&mut self, prefixes: &[Prefix], mp_v4: bool) -> Vec<Bytes> {
        let mut out = Vec::new();
        let v4: Vec<Ipv4UnicastAddress> = prefixes
            .iter()
            .filter_map(|p| {
                if let Prefix::V4(p) = p {
                    v4_nlri(*p)
                } else {
                    None
                }
            })
            .collect();
        let v6: Vec<Ipv6UnicastAddress> = prefixes
            .iter()
            .filter_map(|p| {
                if let Prefix::V6(p) = p {
                    v6_nlri(*p)
                } else {
                    None
                }
            })
            .collect();
        for chunk in v4.chunks(800) {
            let u = if mp_v4 {
                BgpUpdateMessage::new(
                    Vec::<Ipv4UnicastAddress>::new(),
                    vec![attr(
                        true,
                        false,
                        pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv4Unicast {
                            nlri: chunk.to_vec().into(),
                        }),
                    )],
                    Vec::<Ipv4UnicastAddress>::new(),
                )
            } else {
                BgpUpdateMessage::new(
                    chunk.to_vec(),
                    Vec::<pa::PathAttribute>::new(),
                    Vec::<Ipv4UnicastAddress>::new(),
                )
            };
            out.push(self.encode(BgpMessage::Update(u)));
        }
        for chunk in v6.chunks(200) {
            let u = BgpUpdateMessage::new(
                Vec::<Ipv4UnicastAddress>::new(),
                vec![attr(
                    true,
                    false,
                    pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv6Unicast {
                        nlri: chunk.to_vec().into(),
                    }),
                )],
                Vec::<Ipv4UnicastAddress>::new(),
            );
            out.push(self.encode(BgpMessage::Update(u)));
        }
        out
    }

    fn common_attrs(&self, a: &PathAttrs) -> Vec<pa::PathAttribute> {
        let mut list = Vec::new();
        let origin = match a.origin {
            Origin::Igp => pa::Origin::IGP,
            Origin::Egp => pa::Origin::EGP,
            Origin::Incomplete => pa::Origin::Incomplete,
        };
        list.push(attr(false, true, pa::PathAttributeValue::Origin(origin)));
        let as_path = if self.asn4 {
            pa::AsPath::As4PathSegments(
                a.as_path
                    .iter()
                    .map(|s| pa::As4PathSegment::new(seg_type(s.kind), s.asns.clone()))
                    .collect::<Vec<_>>()
                    .into(),
            )
        } else {
            pa::AsPath::As2PathSegments(
                a.as_path
                    .iter()
                    .map(|s| {
                        let asns: Vec<u16> = s
                            .asns
                            .iter()
                            .map(|a| {
                                if *a > 65535 {
                                    AS_TRANS as u16
                                } else {
                                    *a as u16
                                }
                            })
                            .collect();
                        pa::As2PathSegment::new(seg_type(s.kind), asns)
                    })
                    .collect::<Vec<_>>()
                    .into(),
            )
        };
        list.push(attr(false, true, pa::PathAttributeValue::AsPath(as_path)));
        if let Some(med) = a.med {
            list.push(attr(
                true,
                false,
                pa::PathAttributeValue::MultiExitDiscriminator(pa::MultiExitDiscriminator::new(
                    med,
                )),
            ));
        }
        if let Some(lp) = a.local_pref {
            list.push(attr(
                false,
                true,
                pa::PathAttributeValue::LocalPreference(pa::LocalPreference::new(lp)),
            ));
        }
        if a.atomic_aggregate {
            list.push(attr(
                false,
                true,
                pa::PathAttributeValue::AtomicAggregate(pa::AtomicAggregate),
            ));
        }
        if let Some((asn, ip)) = a.aggregator {
            let v = if self.asn4 {
                pa::Aggregator::As4Aggregator(pa::As4Aggregator::new(asn, ip))
            } else {
                pa::Aggregator::As2Aggregator(pa::As2Aggregator::new(
                    if asn > 65535 {
                        AS_TRANS as u16
                    } else {
                        asn as u16
                    },
                    ip,
                ))
            };
            list.push(attr(true, true, pa::PathAttributeValue::Aggregator(v)));
        }
        if !a.communities.is_empty() {
            let cs: Vec<netgauze_bgp_pkt::community::Community> = a
                .communities
                .iter()
                .map(|c| netgauze_bgp_pkt::community::Community::new(c.0))
                .collect();
            list.push(attr(
                true,
                true,
                pa::PathAttributeValue::Communities(pa::Communities::new(cs)),
            ));
        }
        if let Some(o) = a.originator_id {
            list.push(attr(
                true,
                false,
                pa::PathAttributeValue::Originator(pa::Originator::new(o)),
            ));
        }
        if !a.cluster_list.is_empty() {
            let ids: Vec<pa::ClusterId> = a
                .cluster_list
                .iter()
                .map(|c| pa::ClusterId::new(*c))
                .collect();
            list.push(attr(
                true,
                false,
                pa::PathAttributeValue::ClusterList(pa::ClusterList::new(ids)),
            ));
        }
        for raw in &a.unknown {
            let value = pa::PathAttributeValue::UnknownAttribute(pa::UnknownAttribute::new(
                raw.code,
                raw.value.clone(),
            ));
            let extended = raw.value.len() > 255;
            if let Ok(at) = pa::PathAttribute::from(
                raw.flags & 0x80 != 0,
                raw.flags & 0x40 != 0,
                raw.flags & 0x20 != 0,
                extended,
                value,
            ) {
                list.push(at);
            }
        }
        list
    }
}

fn attr(optional: bool, transitive: bool, value: pa::PathAttributeValue) -> pa::PathAttribute {
    let extended = value_len(&value) > 255;
    match pa::PathAttribute::from(optional, transitive, false, extended, value) {
        Ok(a) => a,
        // The flags we pass are the attribute's own; keep what netgauze says is valid.
        Err((value, _)) => pa::PathAttribute::from(!optional, transitive, false, true, value)
            .unwrap_or_else(|(v, _)| {
                pa::PathAttribute::from(true, true, false, true, v).expect("attribute flags")
            }),
    }
}

fn value_len(v: &pa::PathAttributeValue) -> usize {
    match v {
        pa::PathAttributeValue::MpReach(pa::MpReach::Ipv4Unicast { nlri, .. }) => {
            nlri.len() * 5 + 40
        }
        pa::PathAttributeValue::MpReach(pa::MpReach::Ipv6Unicast { nlri, .. }) => {
            nlri.len() * 17 + 40
        }
        pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv4Unicast { nlri }) => {
            nlri.len() * 5 + 3
        }
        pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv6Unicast { nlri }) => {
            nlri.len() * 17 + 3
        }
        pa::PathAttributeValue::Communities(c) => c.communities().len() * 4,
        pa::PathAttributeValue::ClusterList(c) => c.cluster_list().len() * 4,
        pa::PathAttributeValue::AsPath(pa::AsPath::As4PathSegments(s)) => {
            s.iter().map(|s| 2 + 4 * s.as_numbers().len()).sum()
        }
        pa::PathAttributeValue::AsPath(pa::AsPath::As2PathSegments(s)) => {
            s.iter().map(|s| 2 + 2 * s.as_numbers().len()).sum()
        }
        pa::PathAttributeValue::UnknownAttribute(u) => u.value().len(),
        _ => 8,
    }
}

fn seg_type(k: AsSegmentKind) -> pa::AsPathSegmentType {
    match k {
        AsSegmentKind::Set => pa::AsPathSegmentType::AsSet,
        AsSegmentKind::Sequence => pa::AsPathSegmentType::AsSequence,
    }
}

fn address_type(f: Family) -> AddressType {
    match f {
        Family::Ipv4Unicast => AddressType::Ipv4Unicast,
        Family::Ipv6Unicast => AddressType::Ipv6Unicast,
    }
}

fn v4_nlri(p: Ipv4Prefix) -> Option<Ipv4UnicastAddress> {
    let net = ipnet::Ipv4Net::new(p.addr(), p.len()).ok()?;
    Some(Ipv4UnicastAddress::new_no_path_id(
        Ipv4Unicast::from_net(net).ok()?,
    ))
}

fn v6_nlri(p: Ipv6Prefix) -> Option<Ipv6UnicastAddress> {
    let net = ipnet::Ipv6Net::new(p.addr, p.len).ok()?;
    Some(Ipv6UnicastAddress::new(
        None,
        Ipv6Unicast::from_net(net).ok()?,
    ))
}

fn prefix_v4(a: &Ipv4UnicastAddress) -> Prefix {
    let n = a.network().address();
    Prefix::V4(Ipv4Prefix::containing(n.addr(), n.prefix_len()))
}

fn prefix_v6(a: &Ipv6UnicastAddress) -> Prefix {
    let n = a.network().address();
    Prefix::V6(Ipv6Prefix::new(n.addr(), n.prefix_len()))
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
            BgpCapability::ExtendedNextHopEncoding(e)
                if e.encodings().iter().any(|x| {
                    x.address_type() == AddressType::Ipv4Unicast
                        && x.next_hop_afi() == AddressFamily::IPv6
                }) =>
            {
                caps.extended_next_hop_v4 = true;
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

fn update_from(u: &BgpUpdateMessage) -> (Update, SeenAttrs) {
    let mut up = Update::default();
    up.withdrawn
        .extend(u.withdraw_routes().iter().map(prefix_v4));
    up.announced.extend(u.nlri().iter().map(prefix_v4));
    let mut a = PathAttrs::local(NextHop::V4 {
        addr: Ipv4Addr::UNSPECIFIED,
    });
    let mut have_next_hop = false;
    let mut seen = SeenAttrs::default();
    for at in u.path_attributes() {
        match at.value() {
            pa::PathAttributeValue::Origin(o) => {
                seen.origin = true;
                a.origin = match o {
                    pa::Origin::IGP => Origin::Igp,
                    pa::Origin::EGP => Origin::Egp,
                    pa::Origin::Incomplete => Origin::Incomplete,
                }
            }
            pa::PathAttributeValue::AsPath(p) => {
                seen.as_path = true;
                a.as_path = match p {
                    pa::AsPath::As2PathSegments(s) => s
                        .iter()
                        .map(|s| AsSegment {
                            kind: kind(s.segment_type()),
                            asns: s.as_numbers().iter().map(|x| u32::from(*x)).collect(),
                        })
                        .collect(),
                    pa::AsPath::As4PathSegments(s) => s
                        .iter()
                        .map(|s| AsSegment {
                            kind: kind(s.segment_type()),
                            asns: s.as_numbers().to_vec(),
                        })
                        .collect(),
                }
            }
            pa::PathAttributeValue::NextHop(n) => {
                have_next_hop = true;
                a.next_hop = NextHop::V4 { addr: n.next_hop() };
            }
            pa::PathAttributeValue::MultiExitDiscriminator(m) => a.med = Some(m.metric()),
            pa::PathAttributeValue::LocalPreference(l) => a.local_pref = Some(l.metric()),
            pa::PathAttributeValue::AtomicAggregate(_) => a.atomic_aggregate = true,
            pa::PathAttributeValue::Aggregator(pa::Aggregator::As4Aggregator(g)) => {
                a.aggregator = Some((*g.asn(), g.origin()))
            }
            pa::PathAttributeValue::Aggregator(pa::Aggregator::As2Aggregator(g)) => {
                a.aggregator = Some((u32::from(*g.asn()), g.origin()))
            }
            pa::PathAttributeValue::Communities(c) => {
                a.communities = c
                    .communities()
                    .iter()
                    .map(|c| Community(c.value()))
                    .collect()
            }
            pa::PathAttributeValue::Originator(o) => a.originator_id = Some(o.id()),
            pa::PathAttributeValue::ClusterList(c) => {
                a.cluster_list = c.cluster_list().iter().map(|c| c.id()).collect()
            }
            pa::PathAttributeValue::MpReach(pa::MpReach::Ipv4Unicast {
                next_hop,
                next_hop_local,
                nlri,
            }) => {
                have_next_hop = true;
                a.next_hop = match next_hop {
                    IpAddr::V4(v4) => NextHop::V4 { addr: *v4 },
                    IpAddr::V6(v6) => NextHop::V6 {
                        global: *v6,
                        link_local: *next_hop_local,
                    },
                };
                up.announced.extend(nlri.iter().map(prefix_v4));
            }
            pa::PathAttributeValue::MpReach(pa::MpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                nlri,
            }) => {
                have_next_hop = true;
                a.next_hop = NextHop::V6 {
                    global: *next_hop_global,
                    link_local: *next_hop_local,
                };
                up.announced.extend(nlri.iter().map(prefix_v6));
            }
            pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv4Unicast { nlri }) => {
                if nlri.is_empty()
                    && u.nlri().is_empty()
                    && u.withdraw_routes().is_empty()
                    && u.path_attributes().len() == 1
                {
                    up.end_of_rib = Some(Family::Ipv4Unicast);
                }
                up.withdrawn.extend(nlri.iter().map(prefix_v4))
            }
            pa::PathAttributeValue::MpUnreach(pa::MpUnreach::Ipv6Unicast { nlri }) => {
                if nlri.is_empty() && u.path_attributes().len() == 1 {
                    up.end_of_rib = Some(Family::Ipv6Unicast);
                }
                up.withdrawn.extend(nlri.iter().map(prefix_v6))
            }
            // Other families we did not negotiate: ignore.
            pa::PathAttributeValue::MpReach(_) | pa::PathAttributeValue::MpUnreach(_) => {}
            pa::PathAttributeValue::As4Path(_) => {}
            _ => {
                // Keep transitive attributes we do not model, byte for byte.
                if at.transitive() {
                    if let Some(raw) = raw_attr(at) {
                        a.unknown.push(raw);
                    }
                }
            }
        }
    }
    if u.withdraw_routes().is_empty() && u.nlri().is_empty() && u.path_attributes().is_empty() {
        up.end_of_rib = Some(Family::Ipv4Unicast);
    }
    seen.next_hop = have_next_hop;
    if !up.announced.is_empty() {
        up.attrs = Some(Arc::new(a));
    }
    (up, seen)
}

#[derive(Default, Clone, Copy)]
struct SeenAttrs {
    origin: bool,
    as_path: bool,
    next_hop: bool,
}

impl SeenAttrs {
    /// RFC 7606 3.d: a missing well-known mandatory attribute is treat-as-withdraw.
    fn missing(&self, u: &Update) -> Option<&'static str> {
        if u.announced.is_empty() {
            None
        } else if !self.origin {
            Some("ORIGIN")
        } else if !self.as_path {
            Some("AS_PATH")
        } else if !self.next_hop {
            Some("NEXT_HOP")
        } else {
            None
        }
    }
}

fn kind(t: pa::AsPathSegmentType) -> AsSegmentKind {
    match t {
        pa::AsPathSegmentType::AsSet => AsSegmentKind::Set,
        pa::AsPathSegmentType::AsSequence => AsSegmentKind::Sequence,
    }
}

fn raw_attr(at: &pa::PathAttribute) -> Option<RawAttr> {
    let mut bytes = Vec::new();
    at.write(&mut bytes).ok()?;
    let flags = bytes.first().copied()?;
    let code = bytes.get(1).copied()?;
    let hdr = if flags & 0x10 != 0 { 4 } else { 3 };
    Some(RawAttr {
        flags: flags & 0xe0,
        code,
        value: bytes.get(hdr..)?.to_vec(),
    })
}

fn treat_as_withdraw(u: &mut Update, reason: String) {
    let announced = std::mem::take(&mut u.announced);
    u.withdrawn.extend(announced);
    u.attrs = None;
    u.end_of_rib = None;
    u.treat_as_withdraw = Some(reason);
}

/// Walks an UPDATE structurally (RFC 7606 5) to find its NLRI when the
/// attributes cannot be parsed: withdrawn routes, the NLRI field, and the
/// NLRI inside MP_REACH / MP_UNREACH for IPv4/IPv6 unicast. None when even
/// the framing is broken (the session must then be reset).
pub fn locate_nlri(frame: &[u8]) -> Option<Update> {
    let body = frame.get(HEADER_LEN..)?;
    let wlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let withdrawn = body.get(2..2 + wlen)?;
    let alen_at = 2 + wlen;
    let alen = usize::from(u16::from_be_bytes([
        *body.get(alen_at)?,
        *body.get(alen_at + 1)?,
    ]));
    let attrs = body.get(alen_at + 2..alen_at + 2 + alen)?;
    let nlri = body.get(alen_at + 2 + alen..)?;
    let mut u = Update {
        withdrawn: parse_prefixes_v4(withdrawn)?,
        announced: parse_prefixes_v4(nlri)?,
        ..Default::default()
    };
    let mut i = 0;
    while i < attrs.len() {
        let flags = *attrs.get(i)?;
        let code = *attrs.get(i + 1)?;
        let (len, hdr) = if flags & 0x10 != 0 {
            (
                usize::from(u16::from_be_bytes([*attrs.get(i + 2)?, *attrs.get(i + 3)?])),
                4,
            )
        } else {
            (usize::from(*attrs.get(i + 2)?), 3)
        };
        let v = attrs.get(i + hdr..i + hdr + len)?;
        match code {
            14 => {
                // MP_REACH: AFI(2) SAFI(1) NH len(1) NH reserved(1) NLRI
                let afi = u16::from_be_bytes([*v.first()?, *v.get(1)?]);
                let nhl = usize::from(*v.get(3)?);
                let nl = v.get(5 + nhl..)?;
                match (afi, *v.get(2)?) {
                    (1, 1) => u.announced.extend(parse_prefixes_v4(nl)?),
                    (2, 1) => u.announced.extend(parse_prefixes_v6(nl)?),
                    _ => {}
                }
            }
            15 => {
                let afi = u16::from_be_bytes([*v.first()?, *v.get(1)?]);
                let nl = v.get(3..)?;
                match (afi, *v.get(2)?) {
                    (1, 1) => u.withdrawn.extend(parse_prefixes_v4(nl)?),
                    (2, 1) => u.withdrawn.extend(parse_prefixes_v6(nl)?),
                    _ => {}
                }
            }
            _ => {}
        }
        i += hdr + len;
    }
    Some(u)
}

fn parse_prefixes_v4(mut b: &[u8]) -> Option<Vec<Prefix>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len > 32 {
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = rest.get(..n)?;
        let mut a = [0u8; 4];
        a[..n].copy_from_slice(bytes);
        out.push(Prefix::V4(Ipv4Prefix::containing(Ipv4Addr::from(a), len)));
        b = &rest[n..];
    }
    Some(out)
}

fn parse_prefixes_v6(mut b: &[u8]) -> Option<Vec<Prefix>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len > 128 {
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = rest.get(..n)?;
        let mut a = [0u8; 16];
        a[..n].copy_from_slice(bytes);
        out.push(Prefix::V6(Ipv6Prefix::new(Ipv6Addr::from(a), len)));
        b = &rest[n..];
    }
    Some(out)
}

/// A KEEPALIVE.
pub fn keepalive() -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN);
    b.put_slice(&[0xff; 16]);
    b.put_u16(HEADER_LEN as u16);
    b.put_u8(MSG_KEEPALIVE);
    b.freeze()
}

/// A NOTIFICATION.
pub fn notification(n: &Notification) -> Bytes {
    let len = HEADER_LEN + 2 + n.data.len().min(MAX_LEN - HEADER_LEN - 2);
    let mut b = BytesMut::with_capacity(len);
    b.put_slice(&[0xff; 16]);
    b.put_u16(len as u16);
    b.put_u8(MSG_NOTIFICATION);
    b.put_u8(n.code);
    b.put_u8(n.subcode);
    b.put_slice(&n.data[..len - HEADER_LEN - 2]);
    b.freeze()
}

/// A ROUTE-REFRESH request (RFC 2918).
pub fn route_refresh(f: Family) -> Bytes {
    let mut b = BytesMut::with_capacity(23);
    b.put_slice(&[0xff; 16]);
    b.put_u16(23);
    b.put_u8(MSG_ROUTE_REFRESH);
    b.put_u16(match f {
        Family::Ipv4Unicast => 1,
        Family::Ipv6Unicast => 2,
    });
    b.put_u8(0);
    b.put_u8(1);
    b.freeze()
}

/// An End-of-RIB marker (RFC 4724 2).
pub fn end_of_rib(f: Family) -> Bytes {
    match f {
        Family::Ipv4Unicast => {
            let mut b = BytesMut::with_capacity(23);
            b.put_slice(&[0xff; 16]);
            b.put_u16(23);
            b.put_u8(MSG_UPDATE);
            b.put_u16(0);
            b.put_u16(0);
            b.freeze()
        }
        Family::Ipv6Unicast => {
            let mut b = BytesMut::with_capacity(29);
            b.put_slice(&[0xff; 16]);
            b.put_u16(29);
            b.put_u8(MSG_UPDATE);
            b.put_u16(0);
            b.put_u16(6);
            b.put_slice(&[0x80, 15, 3, 0, 2, 1]);
            b.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(b: &Bytes) -> Vec<u8> {
        let h: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
        let (len, _) = check_header(&h, MAX_LEN).unwrap();
        assert_eq!(len, b.len());
        b.to_vec()
    }

    fn p4(s: &str) -> Prefix {
        Prefix::V4(s.parse().unwrap())
    }

    fn attrs() -> PathAttrs {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: "10.0.0.1".parse().unwrap(),
        });
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![65001, 4_200_000_000],
        }];
        a.local_pref = Some(200);
        a.med = Some(5);
        a.communities = vec![Community::new(65000, 100), Community::new(65000, 1)];
        a.originator_id = Some("10.0.0.9".parse().unwrap());
        a.cluster_list = vec!["10.0.0.100".parse().unwrap()];
        a.unknown = vec![RawAttr {
            flags: 0xc0,
            code: 99,
            value: vec![1, 2, 3],
        }];
        a
    }

    #[test]
    fn open_roundtrip_with_capabilities() {
        let mut c = Codec::new();
        let caps = Capabilities {
            ipv4_unicast: true,
            ipv6_unicast: true,
            four_octet_as: Some(4_200_000_001),
            route_refresh: true,
            extended_next_hop_v4: true,
            graceful_restart: Some(GracefulRestart {
                restart_time: 120,
                restarting: true,
                families: vec![(Family::Ipv4Unicast, true)],
            }),
        };
        let b = c.encode_open(4_200_000_001, 90, "10.0.0.1".parse().unwrap(), &caps);
        let Message::Open(o) = Codec::new().decode(&frame_of(&b)).unwrap() else {
            panic!()
        };
        assert_eq!(o.asn, 4_200_000_001);
        assert_eq!(o.hold_time, 90);
        assert_eq!(o.caps, caps);
        assert_eq!(
            u16::from_be_bytes([b[20], b[21]]),
            AS_TRANS as u16,
            "2-octet My AS is AS_TRANS"
        );
    }

    #[test]
    fn update_roundtrip_v4_next_hop() {
        let mut c = Codec::new();
        let a = attrs();
        let msgs = c.encode_announce(&[p4("10.77.60.10/32"), p4("10.77.60.11/32")], &a);
        assert_eq!(msgs.len(), 1);
        let Message::Update(u) = Codec::new().decode(&frame_of(&msgs[0])).unwrap() else {
            panic!()
        };
        assert_eq!(
            u.announced,
            vec![p4("10.77.60.10/32"), p4("10.77.60.11/32")]
        );
        let got = u.attrs.unwrap();
        assert_eq!(*got, a);
        assert!(u.treat_as_withdraw.is_none());
    }

    #[test]
    fn ipv4_with_ipv6_next_hop_uses_mp_reach() {
        let mut c = Codec::new();
        let mut a = attrs();
        a.next_hop = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        };
        let msgs = c.encode_announce(&[p4("10.77.60.10/32")], &a);
        let Message::Update(u) = Codec::new().decode(&frame_of(&msgs[0])).unwrap() else {
            panic!()
        };
        assert_eq!(u.announced, vec![p4("10.77.60.10/32")]);
        assert_eq!(u.attrs.unwrap().next_hop, a.next_hop);
    }

    #[test]
    fn ipv6_prefixes_and_withdrawals() {
        let mut c = Codec::new();
        let mut a = attrs();
        a.next_hop = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        };
        let p6 = Prefix::V6(Ipv6Prefix::new("2001:db8:77::".parse().unwrap(), 48));
        let msgs = c.encode_announce(&[p6], &a);
        let Message::Update(u) = Codec::new().decode(&frame_of(&msgs[0])).unwrap() else {
            panic!()
        };
        assert_eq!(u.announced, vec![p6]);
        for mp in [false, true] {
            let w = c.encode_withdraw(&[p4("10.77.60.10/32"), p6], mp);
            let mut got = Vec::new();
            for m in &w {
                let Message::Update(u) = Codec::new().decode(&frame_of(m)).unwrap() else {
                    panic!()
                };
                got.extend(u.withdrawn);
            }
            assert_eq!(got, vec![p4("10.77.60.10/32"), p6]);
        }
    }

    #[test]
    fn large_announcements_are_split_under_4096() {
        let mut c = Codec::new();
        let prefixes: Vec<Prefix> = (0..2000u32)
            .map(|i| Prefix::V4(Ipv4Prefix::host(Ipv4Addr::from(0x0a00_0000 + i))))
            .collect();
        let msgs = c.encode_announce(&prefixes, &attrs());
        assert!(msgs.len() >= 4);
        let mut n = 0;
        for m in &msgs {
            assert!(m.len() <= MAX_LEN);
            let Message::Update(u) = Codec::new().decode(&frame_of(m)).unwrap() else {
                panic!()
            };
            n += u.announced.len();
        }
        assert_eq!(n, 2000);
    }

    #[test]
    fn end_of_rib_markers() {
        for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let Message::Update(u) = Codec::new().decode(&frame_of(&end_of_rib(f))).unwrap() else {
                panic!()
            };
            assert_eq!(u.end_of_rib, Some(f));
        }
    }

    #[test]
    fn header_errors() {
        let mut h = [0xffu8; HEADER_LEN];
        h[16] = 0;
        h[17] = 19;
        h[18] = 4;
        assert!(check_header(&h, MAX_LEN).is_ok());
        h[0] = 0;
        assert_eq!(
            check_header(&h, MAX_LEN).unwrap_err().notification,
            Notification::new(1, 1)
        );
        h[0] = 0xff;
        h[17] = 18;
        assert_eq!(
            check_header(&h, MAX_LEN).unwrap_err().notification.subcode,
            2
        );
        h[17] = 20;
        assert_eq!(
            check_header(&h, MAX_LEN).unwrap_err().notification.subcode,
            2,
            "KEEPALIVE must be 19"
        );
        h[17] = 19;
        h[18] = 9;
        assert_eq!(
            check_header(&h, MAX_LEN).unwrap_err().notification.subcode,
            3
        );
        h[16] = 0x20;
        h[17] = 0;
        h[18] = 2;
        assert_eq!(
            check_header(&h, MAX_LEN).unwrap_err().notification.subcode,
            2,
            "over 4096"
        );
    }

    /// Builds an UPDATE frame from raw parts.
    fn raw_update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
        let mut b = vec![0xff; 16];
        let len = HEADER_LEN + 4 + withdrawn.len() + attrs.len() + nlri.len();
        b.extend_from_slice(&(len as u16).to_be_bytes());
        b.push(MSG_UPDATE);
        b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        b.extend_from_slice(withdrawn);
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(attrs);
        b.extend_from_slice(nlri);
        b
    }

    const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
    const AS_PATH_EMPTY: [u8; 3] = [0x40, 2, 0];
    const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 10, 0, 0, 1];
    const NLRI: [u8; 5] = [32, 10, 77, 60, 10];

    #[test]
    fn malformed_attribute_is_treat_as_withdraw() {
        // ORIGIN with value 7 (invalid) and a LOCAL_PREF of the wrong length.
        for bad in [vec![0x40, 1, 1, 7], vec![0x40, 5, 2, 0, 1]] {
            let mut attrs = Vec::new();
            attrs.extend_from_slice(&AS_PATH_EMPTY);
            attrs.extend_from_slice(&NEXT_HOP);
            attrs.extend_from_slice(&bad);
            if bad[1] != 1 {
                attrs.extend_from_slice(&ORIGIN);
            }
            let f = raw_update(&[], &attrs, &NLRI);
            let Message::Update(u) = Codec::new().decode(&f).unwrap() else {
                panic!()
            };
            assert!(u.treat_as_withdraw.is_some(), "{bad:?}");
            assert_eq!(u.withdrawn, vec![p4("10.77.60.10/32")]);
            assert!(u.announced.is_empty() && u.attrs.is_none());
        }
    }

    #[test]
    fn missing_mandatory_attribute_is_treat_as_withdraw() {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ORIGIN);
        attrs.extend_from_slice(&AS_PATH_EMPTY);
        let f = raw_update(&[], &attrs, &NLRI);
        let Message::Update(u) = Codec::new().decode(&f).unwrap() else {
            panic!()
        };
        assert_eq!(
            u.treat_as_withdraw.as_deref(),
            Some("missing well-known attribute NEXT_HOP")
        );
        assert_eq!(u.withdrawn, vec![p4("10.77.60.10/32")]);
    }

    #[test]
    fn broken_framing_resets_and_locate_nlri_is_bounded() {
        // Attribute length runs past the attribute block: NLRI cannot be located.
        let f = raw_update(&[], &[0x40, 1, 9, 0], &NLRI);
        match Codec::new().decode(&f) {
            Err(e) => assert_eq!(e.notification.code, 3),
            Ok(Message::Update(u)) => assert!(u.treat_as_withdraw.is_some()),
            Ok(m) => panic!("{m:?}"),
        }
        // Every truncation of a valid UPDATE is handled without panicking.
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ORIGIN);
        attrs.extend_from_slice(&AS_PATH_EMPTY);
        attrs.extend_from_slice(&NEXT_HOP);
        let f = raw_update(&[24, 10, 1, 2], &attrs, &NLRI);
        for cut in 0..f.len() {
            let _ = locate_nlri(&f[..cut]);
        }
        let u = locate_nlri(&f).unwrap();
        assert_eq!(u.withdrawn, vec![p4("10.1.2.0/24")]);
        assert_eq!(u.announced, vec![p4("10.77.60.10/32")]);
    }

    #[test]
    fn notification_and_keepalive_bytes() {
        let n = Notification {
            code: 6,
            subcode: 2,
            data: b"bye".to_vec(),
        };
        let b = notification(&n);
        let Message::Notification(got) = Codec::new().decode(&frame_of(&b)).unwrap() else {
            panic!()
        };
        assert_eq!(got, n);
        assert!(matches!(
            Codec::new().decode(&frame_of(&keepalive())).unwrap(),
            Message::Keepalive
        ));
        assert!(matches!(
            Codec::new()
                .decode(&frame_of(&route_refresh(Family::Ipv4Unicast)))
                .unwrap(),
            Message::RouteRefresh(Family::Ipv4Unicast)
        ));
    }
}

/// Randomised robustness: mutated and truncated messages never panic, and
/// whatever decodes re-encodes. (The cargo-fuzz targets in `fuzz/` explore
/// the same code coverage-guided; this runs in every `cargo test`.)
#[cfg(test)]
mod robustness {
    use super::*;

    #[test]
    fn mutated_messages_never_panic() {
        let mut c = Codec::new();
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: "10.0.0.1".parse().unwrap(),
        });
        a.communities = vec![Community::new(65000, 1)];
        a.cluster_list = vec!["10.0.0.9".parse().unwrap()];
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![65001, 65002],
        }];
        let mut seeds: Vec<Vec<u8>> = c
            .encode_announce(
                &[
                    Prefix::V4("10.77.60.10/32".parse().unwrap()),
                    Prefix::V4("10.1.0.0/16".parse().unwrap()),
                ],
                &a,
            )
            .into_iter()
            .map(|b| b.to_vec())
            .collect();
        let mut v6 = a.clone();
        v6.next_hop = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        };
        seeds.extend(
            c.encode_announce(&[Prefix::V4("10.77.60.11/32".parse().unwrap())], &v6)
                .into_iter()
                .map(|b| b.to_vec()),
        );
        seeds.push(
            c.encode_open(
                65000,
                90,
                "10.0.0.1".parse().unwrap(),
                &Capabilities {
                    ipv4_unicast: true,
                    four_octet_as: Some(65000),
                    ..Default::default()
                },
            )
            .to_vec(),
        );
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut decoded = 0;
        for i in 0..60_000 {
            let mut m = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rnd() % 4 {
                let at = HEADER_LEN + (rnd() as usize) % (m.len() - HEADER_LEN);
                m[at] = rnd() as u8;
            }
            if rnd() % 4 == 0 {
                let cut = HEADER_LEN + (rnd() as usize) % (m.len() - HEADER_LEN + 1);
                m.truncate(cut);
                let len = m.len() as u16;
                m[16..18].copy_from_slice(&len.to_be_bytes());
            }
            let _ = locate_nlri(&m);
            let h: [u8; HEADER_LEN] = m[..HEADER_LEN].try_into().unwrap();
            if check_header(&h, MAX_LEN).is_err() {
                continue;
            }
            if let Ok(Message::Update(u)) = Codec::new().decode(&m) {
                decoded += 1;
                if let Some(attrs) = &u.attrs {
                    for b in Codec::new().encode_announce(&u.announced, attrs) {
                        assert!(b.len() <= MAX_LEN);
                    }
                }
            }
        }
        assert!(
            decoded > 1000,
            "mutations should often still decode ({decoded})"
        );
    }
}
