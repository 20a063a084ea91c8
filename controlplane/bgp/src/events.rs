//! What crosses between the sans-IO speaker (`speaker`) and the tokio
//! layer that owns sockets and timers (`session`, `driver`): plain data, no
//! channels, no sockets.
//!
//! - `PeerEvent`: what a session reports to the speaker (state changes,
//!   establishment with the negotiated capabilities, UPDATEs, ROUTE-REFRESH,
//!   the end of a session).
//! - `Output`: what the speaker asks the IO layer to do (start a neighbor's
//!   session, send to an established session, reset or stop one).
//! - `SessionCmd`: one thing to send on an established session (what to
//!   say, or UPDATEs already encoded once for a whole update group).
//! - `PeerSession`: how a neighbor's connections are made.

use crate::fsm::{FsmConfig, Negotiated, State};
use crate::packet::{self, Codec, Family, Notification, SessionContext, UpdateError};
use crate::route::{Nlri, PathAttrs, PeerId};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// From a session to the speaker.
#[derive(Debug)]
pub enum PeerEvent {
    State {
        peer: PeerId,
        state: State,
    },
    /// The session is established; `local_addr` is our address on it (the
    /// next hop we announce when it is ours to set).
    Established {
        peer: PeerId,
        negotiated: Box<Negotiated>,
        local_addr: IpAddr,
    },
    Update {
        peer: PeerId,
        update: packet::Update,
    },
    /// An UPDATE so malformed that RFC 7606 resets the session (a `Down` follows).
    UpdateReset {
        peer: PeerId,
        error: UpdateError,
    },
    RouteRefresh {
        peer: PeerId,
        family: Family,
    },
    /// The session ended; `was_established` tells the speaker to clean up routes.
    /// `tcp_failure`: no NOTIFICATION was exchanged (graceful restart applies).
    Down {
        peer: PeerId,
        reason: String,
        was_established: bool,
        tcp_failure: bool,
    },
}

impl PeerEvent {
    pub fn peer(&self) -> PeerId {
        match self {
            PeerEvent::State { peer, .. }
            | PeerEvent::Established { peer, .. }
            | PeerEvent::Update { peer, .. }
            | PeerEvent::UpdateReset { peer, .. }
            | PeerEvent::RouteRefresh { peer, .. }
            | PeerEvent::Down { peer, .. } => *peer,
        }
    }
}

/// From the speaker to an established session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionCmd {
    /// Prefixes with one attribute set; the path ids go on the wire on an
    /// ADD-PATH session (and are 0 on others).
    Announce(Vec<Nlri>, Arc<PathAttrs>),
    Withdraw(Vec<Nlri>),
    EndOfRib(Family),
    /// Ask the peer to resend a family (RFC 2918), e.g. after an import
    /// policy change when its received routes are not kept.
    RouteRefresh(Family),
    /// Messages encoded once for every member of an update group
    /// (`Output::SendMany`), written as they are.
    Encoded(Arc<[Bytes]>),
}

impl SessionCmd {
    /// The messages this command puts on the wire of a session encoded by
    /// `codec`; `mp_v4` withdraws IPv4 in MP_UNREACH (a session that carries
    /// IPv4 only over MP-BGP).
    pub fn encode(&self, codec: &mut Codec, mp_v4: bool) -> Vec<Bytes> {
        match self {
            SessionCmd::Announce(prefixes, attrs) => codec.encode_announce(prefixes, attrs),
            SessionCmd::Withdraw(prefixes) => codec.encode_withdraw(prefixes, mp_v4),
            SessionCmd::EndOfRib(f) => vec![packet::end_of_rib(*f)],
            SessionCmd::RouteRefresh(f) => vec![packet::route_refresh(*f)],
            SessionCmd::Encoded(b) => b.to_vec(),
        }
    }
}

/// How an established session encodes: the AS width, ADD-PATH and the
/// rest of what both OPENs agreed on, with our address on the session.
pub fn session_context(n: &Negotiated, local_as: u32, local_addr: IpAddr) -> SessionContext {
    let ibgp = n.peer_as == local_as;
    SessionContext {
        asn4: n.asn4,
        ibgp,
        peer_as: (!ibgp).then_some(n.peer_as),
        local_addr: Some(local_addr),
        add_path_rx: n.add_path_rx,
        add_path_tx: n.add_path_tx,
        extended_message: n.extended_message,
    }
}

/// How a peer's connections are made.
#[derive(Debug, Clone)]
pub struct PeerSession {
    pub peer: PeerId,
    pub remote: SocketAddr,
    /// Source address (and, for IPv6 link-local, the scope) to connect from.
    pub local: Option<IpAddr>,
    pub passive: bool,
    /// TCP-MD5 and GTSM on its sockets.
    pub security: crate::sockopt::SessionSecurity,
    pub connect_retry: Duration,
    pub fsm: FsmConfig,
}

/// What the speaker asks of the IO layer, in order.
#[derive(Debug, Clone)]
pub enum Output {
    /// A neighbor was added: run its session (connect-retry, or wait for the
    /// peer when passive).
    Start(PeerSession),
    /// Send to the peer's established session. Dropped by the IO layer when
    /// the session it was meant for is gone (a `Down` is on its way).
    Send(PeerId, SessionCmd),
    /// Send the same command to every member of an update group (sorted):
    /// the speaker guarantees they encode it the same way (AS width,
    /// ADD-PATH, address families), so the IO layer encodes it once.
    SendMany(Arc<[PeerId]>, SessionCmd),
    /// Close the session with this NOTIFICATION, then reconnect as configured
    /// (admin reset).
    Reset(PeerId, Notification),
    /// Close the session with this NOTIFICATION and end it for good
    /// (neighbor removed, shutdown).
    Stop(PeerId, Notification),
}
