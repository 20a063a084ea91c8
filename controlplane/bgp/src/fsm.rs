//! The RFC 4271 session state machine for one connection, without sockets:
//! events in, actions out. The session runner (`session`) performs the
//! actions (send, close, arm timers) and feeds back events, so every
//! transition is unit-testable.
//!
//! Connect/Active (connect-retry with jitter, passive or active) are handled
//! by the runner per peer; this machine starts when a TCP connection exists.

use crate::packet::{notify, Capabilities, Family, GracefulRestart, Notification, Open};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Which peer AS a neighbor may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAs {
    /// Exactly this AS.
    Is(u32),
    /// Same as ours (iBGP).
    Internal,
    /// Anything but ours (eBGP).
    External,
    /// Accept what the peer says.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// What a session agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_router_id: Ipv4Addr,
    pub hold_time: Duration,
    pub keepalive: Duration,
    pub asn4: bool,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    /// IPv4 NLRI may carry IPv6 next hops both ways (RFC 8950).
    pub extended_next_hop: bool,
    pub route_refresh: bool,
    /// IPv4 unicast paths from the peer carry path identifiers (RFC 7911:
    /// we offered receive, it offered send).
    pub add_path_rx: bool,
    /// We send every path with its identifier (we offered send, it offered receive).
    pub add_path_tx: bool,
    /// Both offered Extended Messages (RFC 8654).
    pub extended_message: bool,
    /// The peer's graceful-restart capability, when both sides advertised one.
    pub peer_graceful_restart: Option<GracefulRestart>,
    pub peer_caps: Capabilities,
}

impl Negotiated {
    /// An IPv4 unicast session with 4-octet AS and route refresh, nothing
    /// else (unit tests of the speaker and its driver).
    #[cfg(test)]
    pub(crate) fn ipv4(peer_as: u32, peer_router_id: Ipv4Addr) -> Self {
        Negotiated {
            peer_as,
            peer_router_id,
            hold_time: Duration::from_secs(90),
            keepalive: Duration::from_secs(30),
            asn4: true,
            ipv4_unicast: true,
            ipv6_unicast: false,
            extended_next_hop: false,
            route_refresh: true,
            add_path_rx: false,
            add_path_tx: false,
            extended_message: false,
            peer_graceful_restart: None,
            peer_caps: Capabilities::default(),
        }
    }

    pub fn families(&self) -> Vec<Family> {
        let mut f = Vec::new();
        if self.ipv4_unicast {
            f.push(Family::Ipv4Unicast);
        }
        if self.ipv6_unicast {
            f.push(Family::Ipv6Unicast);
        }
        f
    }
}

#[derive(Debug, Clone)]
pub struct FsmConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub peer_as: PeerAs,
    /// Hold time we offer (0 disables keepalives, else >= 3 s).
    pub hold_time: u16,
    pub caps: Capabilities,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The TCP connection is up (either direction): send our OPEN.
    Connected,
    Open(Open),
    Keepalive,
    /// An UPDATE or ROUTE-REFRESH arrived (content goes to the RIB).
    Update,
    Notification(Notification),
    /// Bad input from the peer: send this NOTIFICATION and close.
    Malformed(Notification, String),
    HoldTimerExpired,
    KeepaliveTimerExpired,
    /// Local shutdown (admin or de-configuration).
    Stop(Notification),
    /// The TCP connection failed or closed.
    TcpClosed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendOpen,
    SendKeepalive,
    SendNotification(Notification),
    /// (Re)arm the hold timer; zero disables it.
    ArmHold(Duration),
    ArmKeepalive(Duration),
    Established(Box<Negotiated>),
    /// Close the connection; the reason is for logs and `show bgp summary`.
    Close(String),
}

/// Hold time while waiting for the peer's OPEN (RFC 4271 8: large, 4 minutes).
pub const OPEN_HOLD: Duration = Duration::from_secs(240);

#[derive(Debug, Clone)]
pub struct Fsm {
    pub state: State,
    cfg: FsmConfig,
    pub negotiated: Option<Negotiated>,
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        Fsm {
            state: State::Connect,
            cfg,
            negotiated: None,
        }
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    pub fn handle(&mut self, ev: Event) -> Vec<Action> {
        use Action::*;
        match (self.state, ev) {
            (_, Event::TcpClosed(why)) => self.down(None, format!("connection closed: {why}")),
            (_, Event::Stop(n)) => {
                let why = n.describe();
                self.down(Some(n), format!("stopped: {why}"))
            }
            (State::Idle, _) => vec![],
            (_, Event::Malformed(n, why)) => self.down(Some(n), why),
            (_, Event::Notification(n)) => {
                self.down(None, format!("peer sent NOTIFICATION: {}", n.describe()))
            }
            (_, Event::HoldTimerExpired) => self.down(
                Some(Notification::new(notify::HOLD_EXPIRED, 0)),
                "hold timer expired".into(),
            ),
            (State::Connect | State::Active, Event::Connected) => {
                self.state = State::OpenSent;
                vec![SendOpen, ArmHold(OPEN_HOLD)]
            }
            (State::OpenSent, Event::Open(open)) => match self.negotiate(&open) {
                Ok(n) => {
                    let hold = n.hold_time;
                    let ka = n.keepalive;
                    self.negotiated = Some(n);
                    self.state = State::OpenConfirm;
                    vec![SendKeepalive, ArmHold(hold), ArmKeepalive(ka)]
                }
                Err((n, why)) => self.down(Some(n), why),
            },
            (State::OpenConfirm, Event::Keepalive) => {
                let n = self.negotiated.clone().expect("negotiated in OpenConfirm");
                self.state = State::Established;
                vec![ArmHold(n.hold_time), Established(Box::new(n))]
            }
            (State::OpenConfirm | State::Established, Event::KeepaliveTimerExpired) => {
                let ka = self
                    .negotiated
                    .as_ref()
                    .map(|n| n.keepalive)
                    .unwrap_or_default();
                vec![SendKeepalive, ArmKeepalive(ka)]
            }
            (State::Established, Event::Keepalive | Event::Update) => {
                let hold = self
                    .negotiated
                    .as_ref()
                    .map(|n| n.hold_time)
                    .unwrap_or_default();
                vec![ArmHold(hold)]
            }
            (state, ev) => self.down(
                Some(Notification::new(notify::FSM, fsm_subcode(state))),
                format!("unexpected {} in {}", event_name(&ev), state.name()),
            ),
        }
    }

    fn down(&mut self, notify: Option<Notification>, why: String) -> Vec<Action> {
        let was = self.state;
        self.state = State::Idle;
        let mut v = Vec::new();
        if let Some(n) = notify {
            if was != State::Idle {
                v.push(Action::SendNotification(n));
            }
        }
        v.push(Action::Close(why));
        v
    }

    /// Validates the peer's OPEN against our config and computes the session parameters.
    pub fn negotiate(&self, o: &Open) -> Result<Negotiated, (Notification, String)> {
        let c = &self.cfg;
        if o.version != 4 {
            let mut n = Notification::new(notify::OPEN, notify::OPEN_UNSUPPORTED_VERSION);
            n.data = vec![0, 4];
            return Err((n, format!("peer speaks BGP version {}", o.version)));
        }
        let as_ok = match c.peer_as {
            PeerAs::Is(a) => o.asn == a,
            PeerAs::Internal => o.asn == c.local_as,
            PeerAs::External => o.asn != c.local_as,
            PeerAs::Any => true,
        };
        if !as_ok {
            return Err((
                Notification::new(notify::OPEN, notify::OPEN_BAD_PEER_AS),
                format!(
                    "peer AS {} does not match {:?} (local AS {})",
                    o.asn, c.peer_as, c.local_as
                ),
            ));
        }
        if o.router_id.is_unspecified() || o.router_id.is_broadcast() || o.router_id.is_multicast()
        {
            return Err((
                Notification::new(notify::OPEN, notify::OPEN_BAD_BGP_ID),
                format!("bad BGP identifier {}", o.router_id),
            ));
        }
        if o.asn == c.local_as && o.router_id == c.router_id {
            return Err((
                Notification::new(notify::OPEN, notify::OPEN_BAD_BGP_ID),
                format!("iBGP peer has our own router id {}", o.router_id),
            ));
        }
        if o.hold_time == 1 || o.hold_time == 2 {
            return Err((
                Notification::new(notify::OPEN, notify::OPEN_UNACCEPTABLE_HOLD),
                format!("unacceptable hold time {}", o.hold_time),
            ));
        }
        let hold = c.hold_time.min(o.hold_time);
        let ours = &c.caps;
        let theirs = &o.caps;
        Ok(Negotiated {
            peer_as: o.asn,
            peer_router_id: o.router_id,
            hold_time: Duration::from_secs(u64::from(hold)),
            keepalive: Duration::from_secs(u64::from(hold / 3)),
            asn4: theirs.four_octet_as.is_some() && ours.four_octet_as.is_some(),
            ipv4_unicast: ours.ipv4_unicast && theirs.ipv4_unicast,
            ipv6_unicast: ours.ipv6_unicast && theirs.ipv6_unicast,
            extended_next_hop: ours.extended_next_hop_v4 && theirs.extended_next_hop_v4,
            route_refresh: ours.route_refresh && theirs.route_refresh,
            add_path_rx: ours.add_path_v4.receive && theirs.add_path_v4.send,
            add_path_tx: ours.add_path_v4.send && theirs.add_path_v4.receive,
            extended_message: ours.extended_message && theirs.extended_message,
            peer_graceful_restart: if ours.graceful_restart.is_some() {
                theirs.graceful_restart.clone()
            } else {
                None
            },
            peer_caps: theirs.clone(),
        })
    }
}

fn fsm_subcode(s: State) -> u8 {
    // RFC 6608 subcodes: unexpected message in OpenSent (1), OpenConfirm (2), Established (3).
    match s {
        State::OpenSent => 1,
        State::OpenConfirm => 2,
        State::Established => 3,
        _ => 0,
    }
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Connected => "connection",
        Event::Open(_) => "OPEN",
        Event::Keepalive => "KEEPALIVE",
        Event::Update => "UPDATE",
        Event::Notification(_) => "NOTIFICATION",
        Event::Malformed(..) => "malformed message",
        Event::HoldTimerExpired => "hold timer expiry",
        Event::KeepaliveTimerExpired => "keepalive timer expiry",
        Event::Stop(_) => "stop",
        Event::TcpClosed(_) => "close",
    }
}

/// RFC 4271 6.8 connection collision: of two connections with the same
/// peer, keep the one initiated by the side with the higher BGP identifier.
/// Returns true if the connection we initiated (outbound) survives.
pub fn keep_outbound(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> bool {
    u32::from(local_id) > u32::from(remote_id)
}

/// The collision decision `session` applies when a second connection's OPEN
/// (`remote_id`) arrives while the current connection is in `state`: true
/// keeps the current one (the newcomer gets Cease/collision), false closes
/// the current one with Cease/collision and continues on the newcomer. An
/// established session always stays (RFC 4271 6.8: a collision with an
/// Established connection is resolved in its favour); otherwise the current
/// connection stays only if we initiated it and our identifier is higher.
pub fn collision_keeps_current(
    state: State,
    current_outbound: bool,
    local_id: Ipv4Addr,
    remote_id: Ipv4Addr,
) -> bool {
    state == State::Established || (current_outbound && keep_outbound(local_id, remote_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Capabilities {
        Capabilities {
            ipv4_unicast: true,
            ipv6_unicast: true,
            four_octet_as: Some(65000),
            route_refresh: true,
            extended_next_hop_v4: true,
            graceful_restart: Some(GracefulRestart {
                restart_time: 120,
                restarting: false,
                families: vec![(Family::Ipv4Unicast, true)],
            }),
            add_path_v4: Default::default(),
            extended_message: true,
        }
    }

    fn fsm(peer_as: PeerAs) -> Fsm {
        Fsm::new(FsmConfig {
            local_as: 65000,
            router_id: "10.0.0.1".parse().unwrap(),
            peer_as,
            hold_time: 90,
            caps: caps(),
        })
    }

    fn open(asn: u32, id: &str, hold: u16) -> Open {
        let mut c = caps();
        c.four_octet_as = Some(asn);
        c.ipv6_unicast = false;
        Open {
            version: 4,
            asn,
            hold_time: hold,
            router_id: id.parse().unwrap(),
            caps: c,
        }
    }

    #[test]
    fn happy_path_to_established() {
        let mut f = fsm(PeerAs::Internal);
        assert_eq!(
            f.handle(Event::Connected),
            vec![Action::SendOpen, Action::ArmHold(OPEN_HOLD)]
        );
        assert_eq!(f.state, State::OpenSent);
        let a = f.handle(Event::Open(open(65000, "10.0.0.2", 30)));
        assert_eq!(
            a,
            vec![
                Action::SendKeepalive,
                Action::ArmHold(Duration::from_secs(30)),
                Action::ArmKeepalive(Duration::from_secs(10))
            ]
        );
        assert_eq!(f.state, State::OpenConfirm);
        let a = f.handle(Event::Keepalive);
        assert_eq!(f.state, State::Established);
        let Action::Established(n) = &a[1] else {
            panic!("{a:?}")
        };
        assert!(
            n.ipv4_unicast && !n.ipv6_unicast && n.extended_next_hop && n.asn4 && n.route_refresh
        );
        assert!(n.peer_graceful_restart.is_some());
        assert_eq!(
            f.handle(Event::Update),
            vec![Action::ArmHold(Duration::from_secs(30))]
        );
        assert_eq!(
            f.handle(Event::KeepaliveTimerExpired),
            vec![
                Action::SendKeepalive,
                Action::ArmKeepalive(Duration::from_secs(10))
            ]
        );
    }

    #[test]
    fn open_validation_sends_the_right_notification() {
        let cases = [
            (PeerAs::Is(65001), open(65002, "10.0.0.2", 90), (2, 2)),
            (PeerAs::Internal, open(65001, "10.0.0.2", 90), (2, 2)),
            (PeerAs::External, open(65000, "10.0.0.2", 90), (2, 2)),
            (PeerAs::Any, open(65000, "10.0.0.1", 90), (2, 3)),
            (PeerAs::Any, open(65001, "0.0.0.0", 90), (2, 3)),
            (PeerAs::Any, open(65001, "10.0.0.2", 2), (2, 6)),
        ];
        for (peer_as, o, (code, sub)) in cases {
            let mut f = fsm(peer_as);
            f.handle(Event::Connected);
            let a = f.handle(Event::Open(o.clone()));
            assert!(
                matches!(&a[0], Action::SendNotification(n) if n.code == code && n.subcode == sub),
                "{o:?}: {a:?}"
            );
            assert!(matches!(a.last(), Some(Action::Close(_))));
            assert_eq!(f.state, State::Idle);
        }
        let mut f = fsm(PeerAs::Any);
        f.handle(Event::Connected);
        let mut o = open(65001, "10.0.0.2", 90);
        o.version = 3;
        assert!(
            matches!(&f.handle(Event::Open(o))[0], Action::SendNotification(n) if n.code == 2 && n.subcode == 1 && n.data == vec![0, 4])
        );
    }

    #[test]
    fn zero_hold_time_disables_timers_and_min_is_taken() {
        let mut f = fsm(PeerAs::Any);
        f.handle(Event::Connected);
        let a = f.handle(Event::Open(open(65001, "10.0.0.2", 0)));
        assert_eq!(a[1], Action::ArmHold(Duration::ZERO));
        let mut f = fsm(PeerAs::Any);
        f.handle(Event::Connected);
        let a = f.handle(Event::Open(open(65001, "10.0.0.2", 240)));
        assert_eq!(a[1], Action::ArmHold(Duration::from_secs(90)));
    }

    #[test]
    fn unexpected_messages_are_fsm_errors() {
        let mut f = fsm(PeerAs::Any);
        f.handle(Event::Connected);
        let a = f.handle(Event::Update);
        assert!(
            matches!(&a[0], Action::SendNotification(n) if n.code == 5 && n.subcode == 1),
            "{a:?}"
        );
        let mut f = fsm(PeerAs::Any);
        f.handle(Event::Connected);
        f.handle(Event::Open(open(65001, "10.0.0.2", 90)));
        let a = f.handle(Event::Open(open(65001, "10.0.0.2", 90)));
        assert!(
            matches!(&a[0], Action::SendNotification(n) if n.code == 5 && n.subcode == 2),
            "{a:?}"
        );
    }

    #[test]
    fn hold_expiry_notification_and_peer_notification() {
        let mut f = fsm(PeerAs::Any);
        f.handle(Event::Connected);
        f.handle(Event::Open(open(65001, "10.0.0.2", 9)));
        f.handle(Event::Keepalive);
        let a = f.handle(Event::HoldTimerExpired);
        assert!(matches!(&a[0], Action::SendNotification(n) if n.code == 4));
        assert_eq!(f.state, State::Idle);
        let mut f = fsm(PeerAs::Any);
        f.handle(Event::Connected);
        let a = f.handle(Event::Notification(Notification::new(6, 2)));
        assert_eq!(a.len(), 1, "no NOTIFICATION in reply to a NOTIFICATION");
        assert!(matches!(&a[0], Action::Close(why) if why.contains("administrative shutdown")));
    }

    #[test]
    fn collision_decision_by_state_direction_and_identifier() {
        let (low, high) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        // Established always wins, whoever initiated it.
        assert!(collision_keeps_current(
            State::Established,
            false,
            low,
            high
        ));
        assert!(collision_keeps_current(State::Established, true, low, high));
        // Our outbound connection stays only if our identifier is higher.
        assert!(collision_keeps_current(State::OpenConfirm, true, high, low));
        assert!(!collision_keeps_current(
            State::OpenConfirm,
            true,
            low,
            high
        ));
        assert!(!collision_keeps_current(State::OpenSent, true, low, high));
        // The peer initiated the current one and it is not established: the
        // newcomer (its OPEN already read) replaces it.
        assert!(!collision_keeps_current(
            State::OpenConfirm,
            false,
            high,
            low
        ));
    }

    #[test]
    fn collision_keeps_higher_id_initiator() {
        assert!(keep_outbound(
            "10.0.0.2".parse().unwrap(),
            "10.0.0.1".parse().unwrap()
        ));
        assert!(!keep_outbound(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap()
        ));
    }
}
