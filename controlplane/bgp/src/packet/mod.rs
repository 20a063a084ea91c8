//! The BGP wire format: message framing and header checks, the constants and
//! NOTIFICATION codes of RFC 4271 4, and the per-session `Codec` that turns
//! frames into `Message`s. OPEN decoding lives in `open`, UPDATE decoding in
//! `update` (message level) and `attribute` (per attribute, RFC 7606 7),
//! prefixes in `nlri`, everything we send in `encode`, errors in `error`,
//! and the 2-octet-AS translation both ways (RFC 6793) in `as4`.
//!
//! OPEN decoding and all encoding go through the netgauze-bgp-pkt codec.
//! UPDATEs are decoded here: RFC 7606 prescribes a different action per
//! attribute and per error, which needs the attribute, the error and the
//! session (eBGP or iBGP, 2- or 4-octet AS) at hand, and a decoder that keeps
//! no state from one message to the next.

mod as4;
pub mod attribute;
mod encode;
mod error;
pub mod nlri;
mod open;
mod update;

pub use encode::{end_of_rib, keepalive, notification, route_refresh};
use error::wire_err;
pub use error::{ErrorAction, ErrorKind, Subject, UpdateError, WireError};
pub use open::{open_offers_extended_message, AddPath, Capabilities, GracefulRestart, Open};
pub use update::{Reach, Update};

use netgauze_bgp_pkt::codec::BgpCodec;
use std::net::IpAddr;

pub const HEADER_LEN: usize = 19;
pub const MAX_LEN: usize = 4096;
/// Largest message once both sides offered Extended Messages (RFC 8654);
/// OPEN and KEEPALIVE stay within `MAX_LEN`.
pub const MAX_EXTENDED_LEN: usize = 65535;
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
    pub const UPDATE_UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const UPDATE_MISSING_WELL_KNOWN: u8 = 3;
    pub const UPDATE_ATTR_FLAGS: u8 = 4;
    pub const UPDATE_ATTR_LENGTH: u8 = 5;
    pub const UPDATE_INVALID_ORIGIN: u8 = 6;
    pub const UPDATE_INVALID_NEXT_HOP: u8 = 8;
    pub const UPDATE_OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const UPDATE_INVALID_NETWORK: u8 = 10;
    pub const UPDATE_MALFORMED_AS_PATH: u8 = 11;
    pub const HOLD_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMIN_RESET: u8 = 4;
    pub const CEASE_COLLISION: u8 = 7;
    /// RFC 9384: the session ends because BFD saw the path fail.
    pub const CEASE_BFD_DOWN: u8 = 10;
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
            (3, 1) => "UPDATE: malformed attribute list",
            (3, 2) => "UPDATE: unrecognized well-known attribute",
            (3, 3) => "UPDATE: missing well-known attribute",
            (3, 4) => "UPDATE: attribute flags error",
            (3, 5) => "UPDATE: attribute length error",
            (3, 6) => "UPDATE: invalid ORIGIN attribute",
            (3, 8) => "UPDATE: invalid NEXT_HOP attribute",
            (3, 9) => "UPDATE: optional attribute error",
            (3, 10) => "UPDATE: invalid network field",
            (3, 11) => "UPDATE: malformed AS_PATH",
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

#[derive(Debug, Clone)]
pub enum Message {
    Open(Open),
    Update(Update),
    Keepalive,
    Notification(Notification),
    RouteRefresh(Family),
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
        // RFC 8654: OPEN stays within 4096 octets whatever was negotiated.
        MSG_OPEN => (29..=MAX_LEN).contains(&len),
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

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The facts of an established session that decoding and encoding depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionContext {
    /// Both sides advertised 4-octet AS numbers (RFC 6793): AS_PATH and
    /// AGGREGATOR carry 4-octet ASNs, AS4_PATH/AS4_AGGREGATOR are discarded.
    pub asn4: bool,
    /// The peer is in our AS. From an external peer LOCAL_PREF, ORIGINATOR_ID
    /// and CLUSTER_LIST are discarded (RFC 7606 7.5, 7.9, 7.10).
    pub ibgp: bool,
    /// The external peer's AS: the leftmost AS of its AS_PATH (RFC 4271 6.3).
    pub peer_as: Option<u32>,
    /// Our address on the session: a next hop equal to it is ignored (RFC 4271 6.3).
    pub local_addr: Option<IpAddr>,
    /// IPv4 unicast NLRI from the peer carry path identifiers (RFC 7911:
    /// we offered to receive them, it offered to send).
    pub add_path_rx: bool,
    /// IPv4 unicast NLRI we send carry path identifiers.
    pub add_path_tx: bool,
    /// Both sides offered Extended Messages (RFC 8654): UPDATEs we send may
    /// be up to 65535 octets.
    pub extended_message: bool,
}

impl Default for SessionContext {
    /// Before a session is established: 4-octet AS, iBGP, no address checks.
    fn default() -> Self {
        SessionContext {
            asn4: true,
            ibgp: true,
            peer_as: None,
            local_addr: None,
            add_path_rx: false,
            add_path_tx: false,
            extended_message: false,
        }
    }
}

/// Per-session codec: decodes frames and encodes messages.
pub struct Codec {
    /// netgauze's codec, for encoding (its AS width follows `session.asn4`).
    pub(super) inner: BgpCodec,
    pub session: SessionContext,
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
            session: SessionContext::default(),
        }
    }

    /// The largest message this session may send.
    pub fn max_len(&self) -> usize {
        if self.session.extended_message {
            MAX_EXTENDED_LEN
        } else {
            MAX_LEN
        }
    }

    /// Sets what was negotiated (after both OPENs).
    pub fn set_session(&mut self, session: SessionContext) {
        self.session = session;
        self.inner = BgpCodec::new(session.asn4);
    }

    /// Decodes one complete frame (header included, checked by `check_header`).
    pub fn decode(&mut self, frame: &[u8]) -> Result<Message, WireError> {
        let min = match frame.get(18) {
            Some(&MSG_NOTIFICATION) => 21,
            Some(&MSG_ROUTE_REFRESH) => 23,
            _ => HEADER_LEN,
        };
        if frame.len() < min {
            return Err(wire_err(
                notify::HEADER,
                notify::HEADER_BAD_LENGTH,
                format!("message of {} octets is too short", frame.len()),
            ));
        }
        match frame[18] {
            MSG_KEEPALIVE => Ok(Message::Keepalive),
            MSG_NOTIFICATION => Ok(Message::Notification(Notification {
                code: frame[19],
                subcode: frame[20],
                data: frame[21..].to_vec(),
            })),
            MSG_ROUTE_REFRESH => {
                let afi = u16::from_be_bytes([frame[19], frame[20]]);
                let safi = frame[22];
                match (afi, safi) {
                    (1, 1) => Ok(Message::RouteRefresh(Family::Ipv4Unicast)),
                    (2, 1) => Ok(Message::RouteRefresh(Family::Ipv6Unicast)),
                    // RFC 2918: ignore a refresh for a family we did not negotiate.
                    _ => Ok(Message::Keepalive),
                }
            }
            MSG_OPEN => open::decode(frame).map(Message::Open),
            MSG_UPDATE => update::decode(frame, &self.session)
                .map(Message::Update)
                .map_err(WireError::from),
            typ => Err(wire_err(
                notify::HEADER,
                notify::HEADER_BAD_TYPE,
                format!("unknown message type {typ}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn notification_and_keepalive_bytes() {
        let n = Notification {
            code: 6,
            subcode: 2,
            data: b"bye".to_vec(),
        };
        let b = notification(&n);
        let Message::Notification(got) = Codec::new().decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(got, n);
        assert!(matches!(
            Codec::new().decode(&keepalive()).unwrap(),
            Message::Keepalive
        ));
        assert!(matches!(
            Codec::new()
                .decode(&route_refresh(Family::Ipv4Unicast))
                .unwrap(),
            Message::RouteRefresh(Family::Ipv4Unicast)
        ));
    }
}
