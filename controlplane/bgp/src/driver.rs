//! The IO side of the speaker: performs the sans-IO speaker's `Output`s on
//! tokio and hands it the sessions' events. It owns one `session::run_peer`
//! task per neighbor (its control channel) and the command queue of each
//! established connection; the speaker owns neither.
//!
//! An update group's `Output::SendMany` is encoded here once, with the
//! encoding context of its members (the speaker groups only peers that
//! encode alike), and the same bytes go to every member's session.
//!
//! A peer that does not keep up (more than `BEHIND_AT` commands waiting in
//! its queue) is sent nothing more: what it misses goes back to the speaker
//! as prefixes it is owed (`Speaker::missed`), a set bounded by the table,
//! not a queue that grows with the churn. Once its queue is down to
//! `CAUGHT_UP_AT`, the speaker sends it the current state of those prefixes
//! (`Speaker::caught_up`). Other peers never wait for it.
//!
//! Use: the caller's event loop feeds `event` (from the sessions' shared
//! `SessionEvent` channel) and `inbound` (accepted connections), changes the
//! speaker directly for everything else (neighbors, local routes, ticks),
//! and calls `flush` after every input (and on its ticks, which is when a
//! peer that fell behind is seen to have caught up) so the outputs are
//! performed in order.

use crate::events::{session_context, Output, PeerEvent, SessionCmd};
use crate::packet::{Codec, SessionContext};
use crate::route::{PeerId, Prefix};
use crate::session::{run_peer, Commands, PeerCtl, SessionEvent};
use crate::speaker::Speaker;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Commands waiting in a peer's queue past which it is sent nothing more.
pub const BEHIND_AT: usize = 1024;
/// Commands waiting at or below which a peer that fell behind is caught up.
pub const CAUGHT_UP_AT: usize = 64;

/// The IO state of one neighbor.
struct Handle {
    /// To the neighbor's session task (inbound connections, reset, stop).
    ctl: mpsc::Sender<PeerCtl>,
    /// To the established connection, from its `Established` event to its `Down`.
    commands: Option<Commands>,
    /// How the established connection encodes, and whether it withdraws
    /// IPv4 in MP_UNREACH (for group sends).
    encoding: Option<(SessionContext, bool)>,
    /// It fell behind: what it misses goes to the speaker as owed.
    behind: bool,
}

impl Handle {
    /// Whether a command for this peer is to be held back (and marks it
    /// behind when its queue is too long).
    fn holds_back(&mut self) -> bool {
        if !self.behind {
            self.behind = self
                .commands
                .as_ref()
                .is_some_and(|c| c.waiting() > BEHIND_AT);
        }
        self.behind
    }
}

pub struct SpeakerIo {
    events: mpsc::Sender<SessionEvent>,
    peers: BTreeMap<PeerId, Handle>,
}

impl SpeakerIo {
    /// `events` is the sender every session task reports on; its receiver is
    /// the caller's, which passes each event to `event`.
    pub fn new(events: mpsc::Sender<SessionEvent>) -> Self {
        SpeakerIo {
            events,
            peers: BTreeMap::new(),
        }
    }

    /// Hands a session event to the speaker (keeping the command queue of
    /// a connection that just got established); returns the prefixes whose
    /// candidates changed.
    pub fn event(&mut self, speaker: &mut Speaker, ev: SessionEvent) -> Vec<Prefix> {
        let peer = ev.event.peer();
        if let Some(h) = self.peers.get_mut(&peer) {
            match (&ev.event, ev.commands) {
                (PeerEvent::Down { .. }, _) => {
                    h.commands = None;
                    h.encoding = None;
                    h.behind = false;
                }
                (_, Some(tx)) => {
                    h.commands = Some(tx);
                    h.behind = false;
                }
                _ => {}
            }
            if let PeerEvent::Established {
                negotiated,
                local_addr,
                ..
            } = &ev.event
            {
                let ctx = session_context(negotiated, speaker.cfg.local_as, *local_addr);
                h.encoding = Some((ctx, !negotiated.ipv4_unicast));
            }
        }
        speaker.handle(ev.event)
    }

    /// Performs what the speaker asked for, in order, then catches up the
    /// peers that fell behind and have drained their queues. Needs a tokio
    /// runtime (it spawns the session tasks of new neighbors).
    pub fn flush(&mut self, speaker: &mut Speaker) {
        loop {
            for out in speaker.take_outputs() {
                self.perform(speaker, out);
            }
            let drained: Vec<PeerId> = self
                .peers
                .iter_mut()
                .filter(|(_, h)| {
                    h.behind
                        && h.commands
                            .as_ref()
                            .is_some_and(|c| c.waiting() <= CAUGHT_UP_AT)
                })
                .map(|(id, h)| {
                    h.behind = false;
                    *id
                })
                .collect();
            if drained.is_empty() {
                return;
            }
            for id in drained {
                speaker.caught_up(id);
            }
        }
    }

    fn perform(&mut self, speaker: &mut Speaker, out: Output) {
        match out {
            Output::Start(session) => {
                let (ctl, ctl_rx) = mpsc::channel(16);
                let id = session.peer;
                tokio::spawn(run_peer(session, ctl_rx, self.events.clone()));
                self.peers.insert(
                    id,
                    Handle {
                        ctl,
                        commands: None,
                        encoding: None,
                        behind: false,
                    },
                );
            }
            Output::Send(peer, cmd) => {
                let Some(h) = self.peers.get_mut(&peer) else {
                    return;
                };
                // A ROUTE-REFRESH announces nothing to owe: it always goes.
                if h.holds_back() && !matches!(cmd, SessionCmd::RouteRefresh(_)) {
                    speaker.missed(peer, &cmd);
                } else if let Some(tx) = h.commands.as_ref() {
                    tx.send(cmd);
                }
            }
            Output::SendMany(members, cmd) => self.send_many(speaker, &members, &cmd),
            Output::Reset(peer, n) => {
                if let Some(h) = self.peers.get(&peer) {
                    let _ = h.ctl.try_send(PeerCtl::Reset(n));
                }
            }
            Output::Stop(peer, n) => {
                if let Some(h) = self.peers.remove(&peer) {
                    let _ = h.ctl.try_send(PeerCtl::Shutdown(n));
                }
            }
        }
    }

    /// Encodes `cmd` once, as the first established member's session would,
    /// and queues the same bytes on every member's session that keeps up.
    fn send_many(&mut self, speaker: &mut Speaker, members: &[PeerId], cmd: &SessionCmd) {
        let mut live: Vec<(&Commands, &(SessionContext, bool))> = Vec::new();
        let mut held = Vec::new();
        for (id, h) in self.peers.iter_mut() {
            if members.binary_search(id).is_err() {
                continue;
            }
            if h.holds_back() {
                held.push(*id);
            } else if let (Some(c), Some(e)) = (h.commands.as_ref(), h.encoding.as_ref()) {
                live.push((c, e));
            }
        }
        if let Some((_, (ctx, mp_v4))) = live.first() {
            let mut codec = Codec::new();
            codec.set_session(*ctx);
            let bytes: Arc<[bytes::Bytes]> = cmd.encode(&mut codec, *mp_v4).into();
            for (tx, _) in live {
                tx.send(SessionCmd::Encoded(bytes.clone()));
            }
        }
        for id in held {
            speaker.missed(id, cmd);
        }
    }

    /// Hands an accepted connection to the session of the neighbor configured
    /// for its address. Returns false (the caller closes it) for unknown sources.
    pub fn inbound(&self, speaker: &Speaker, stream: TcpStream) -> bool {
        let Ok(remote) = stream.peer_addr() else {
            return false;
        };
        let Some(id) = speaker.neighbor_for(remote) else {
            return false;
        };
        let Some(h) = self.peers.get(&id) else {
            return false;
        };
        // GTSM from the first segment after the handshake on (the TCP-MD5
        // key is on the listening socket, so the SYN was already checked).
        if let Some(sec) = speaker.security(id) {
            if let Err(e) = sec.apply_accepted(std::os::fd::AsRawFd::as_raw_fd(&stream)) {
                log::warn!("GTSM on the connection from {remote}: {e}: refused");
                return false;
            }
        }
        h.ctl.try_send(PeerCtl::Inbound(stream)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::DecisionConfig;
    use crate::fsm::{Negotiated, PeerAs};
    use crate::packet::{AddPath, Message, Reach, Update};
    use crate::route::{NextHop, PathAttrs};
    use crate::session::{command_queue, CommandReceiver};
    use crate::speaker::{NeighborConfig, SpeakerConfig};
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;

    const AS: u32 = 65000;

    fn neighbor(last: u8) -> NeighborConfig {
        NeighborConfig {
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), 179),
            local: None,
            peer_as: PeerAs::Internal,
            passive: true,
            rr_client: true,
            next_hop_self: false,
            import: None,
            export: None,
            description: None,
            interface: None,
            add_path: AddPath::default(),
            security: Default::default(),
            keep_received: true,
        }
    }

    fn established(peer: PeerId, last: u8) -> (SessionEvent, CommandReceiver) {
        let (tx, rx) = command_queue();
        let negotiated = Box::new(Negotiated::ipv4(AS, Ipv4Addr::new(192, 0, 2, last)));
        let ev = SessionEvent {
            event: PeerEvent::Established {
                peer,
                negotiated,
                local_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            },
            commands: Some(tx),
        };
        (ev, rx)
    }

    fn announce(io: &mut SpeakerIo, s: &mut Speaker, from: PeerId, i: u32) {
        let prefix = Prefix::V4(crate::route::Ipv4Prefix::host(Ipv4Addr::from(
            0x0a4d_0000 + i,
        )));
        let a = PathAttrs::local(NextHop::V4 {
            addr: Ipv4Addr::new(192, 0, 2, 2),
        });
        let update = Update {
            announced: vec![Reach {
                prefixes: vec![prefix.into()],
                attrs: std::sync::Arc::new(a),
            }],
            ..Update::default()
        };
        io.event(
            s,
            SessionEvent::from(PeerEvent::Update { peer: from, update }),
        );
        io.flush(s);
    }

    /// The prefixes a peer was announced, from what reached its queue
    /// (group sends arrive encoded: decoded as the peer would).
    fn received(rx: &mut CommandReceiver, into: &mut BTreeSet<Prefix>) -> usize {
        let mut codec = Codec::new();
        let mut n = 0;
        while let Some(c) = rx.try_recv() {
            n += 1;
            let msgs = match c {
                SessionCmd::Encoded(b) => b.to_vec(),
                SessionCmd::EndOfRib(_) => continue,
                other => other.encode(&mut codec, false),
            };
            for m in msgs {
                if let Ok(Message::Update(u)) = codec.decode(&m) {
                    into.extend(
                        u.announced
                            .iter()
                            .flat_map(|r| r.prefixes.iter().map(|n| n.prefix)),
                    );
                }
            }
        }
        n
    }

    /// A member that stops taking commands gets no more than `BEHIND_AT`
    /// queued; the others keep getting every change; once its queue drains
    /// it is sent what it missed, and ends up with every route.
    #[tokio::test]
    async fn a_peer_that_falls_behind_is_held_back_then_caught_up() {
        let (events, _events_rx) = mpsc::channel(16);
        let mut io = SpeakerIo::new(events);
        let mut s = Speaker::new(SpeakerConfig {
            local_as: AS,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            cluster_id: Some(Ipv4Addr::new(192, 0, 2, 1)),
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            graceful_restart: None,
            restarting: false,
            forwarding_preserved: true,
            decision: DecisionConfig::default(),
        });
        let ids: Vec<PeerId> = (2..5).map(|i| s.add_neighbor(neighbor(i))).collect();
        io.flush(&mut s);
        let mut rxs = Vec::new();
        for (id, last) in ids.iter().zip(2..) {
            let (ev, rx) = established(*id, last);
            io.event(&mut s, ev);
            io.flush(&mut s);
            rxs.push(rx);
        }
        let (source, slow) = (ids[0], ids[2]);
        let (mut got_fast, mut got_slow) = (BTreeSet::new(), BTreeSet::new());
        let total = (BEHIND_AT + 500) as u32;
        for i in 0..total {
            announce(&mut io, &mut s, source, i);
            received(&mut rxs[1], &mut got_fast);
            assert!(
                rxs[2].waiting() <= BEHIND_AT + 1,
                "the slow peer's queue is bounded"
            );
        }
        assert_eq!(
            got_fast.len(),
            total as usize,
            "the fast peer got every change"
        );
        let owed = |s: &Speaker| {
            s.summary()
                .into_iter()
                .find(|n| n.peer == slow.0)
                .map_or(0, |n| n.prefixes_owed)
        };
        assert!(owed(&s) >= 400, "the rest is owed: {}", owed(&s));
        // The slow peer takes what was queued; the next flush catches it up.
        received(&mut rxs[2], &mut got_slow);
        io.flush(&mut s);
        received(&mut rxs[2], &mut got_slow);
        assert_eq!(got_slow.len(), total as usize, "caught up with every route");
        assert_eq!(owed(&s), 0);
    }
}
