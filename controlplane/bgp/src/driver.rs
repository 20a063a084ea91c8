//! The IO side of the speaker: performs the sans-IO speaker's `Output`s on
//! tokio and hands it the sessions' events. It owns one `session::run_peer`
//! task per neighbor (its control channel) and the command channel of each
//! established connection; the speaker owns neither.
//!
//! An update group's `Output::SendMany` is encoded here once, with the
//! encoding context of its members (the speaker groups only peers that
//! encode alike), and the same bytes go to every member's session.
//!
//! Use: the caller's event loop feeds `event` (from the sessions' shared
//! `SessionEvent` channel) and `inbound` (accepted connections), changes the
//! speaker directly for everything else (neighbors, local routes, ticks),
//! and calls `flush` after every input so the outputs are performed in order.

use crate::events::{session_context, Output, PeerEvent, SessionCmd};
use crate::packet::{Codec, SessionContext};
use crate::route::{PeerId, Prefix};
use crate::session::{run_peer, PeerCtl, SessionEvent};
use crate::speaker::Speaker;
use std::collections::BTreeMap;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The IO state of one neighbor.
struct Handle {
    /// To the neighbor's session task (inbound connections, reset, stop).
    ctl: mpsc::Sender<PeerCtl>,
    /// To the established connection, from its `Established` event to its `Down`.
    commands: Option<mpsc::UnboundedSender<SessionCmd>>,
    /// How the established connection encodes, and whether it withdraws
    /// IPv4 in MP_UNREACH (for group sends).
    encoding: Option<(SessionContext, bool)>,
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

    /// Hands a session event to the speaker (keeping the command channel of
    /// a connection that just got established); returns the prefixes whose
    /// candidates changed.
    pub fn event(&mut self, speaker: &mut Speaker, ev: SessionEvent) -> Vec<Prefix> {
        let peer = ev.event.peer();
        if let Some(h) = self.peers.get_mut(&peer) {
            match (&ev.event, ev.commands) {
                (PeerEvent::Down { .. }, _) => {
                    h.commands = None;
                    h.encoding = None;
                }
                (_, Some(tx)) => h.commands = Some(tx),
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

    /// Performs what the speaker asked for, in order. Needs a tokio runtime
    /// (it spawns the session tasks of new neighbors).
    pub fn flush(&mut self, speaker: &mut Speaker) {
        for out in speaker.take_outputs() {
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
                        },
                    );
                }
                Output::Send(peer, cmd) => {
                    if let Some(tx) = self.peers.get(&peer).and_then(|h| h.commands.as_ref()) {
                        let _ = tx.send(cmd);
                    }
                }
                Output::SendMany(members, cmd) => self.send_many(&members, &cmd),
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
    }

    /// Encodes `cmd` once, as the first established member's session would,
    /// and queues the same bytes on every member's session.
    fn send_many(&self, members: &[PeerId], cmd: &SessionCmd) {
        let live = || {
            members.iter().filter_map(|m| {
                let h = self.peers.get(m)?;
                Some((h.commands.as_ref()?, h.encoding.as_ref()?))
            })
        };
        let Some((_, (ctx, mp_v4))) = live().next() else {
            return;
        };
        let mut codec = Codec::new();
        codec.set_session(*ctx);
        let bytes: std::sync::Arc<[bytes::Bytes]> = cmd.encode(&mut codec, *mp_v4).into();
        for (tx, _) in live() {
            let _ = tx.send(SessionCmd::Encoded(bytes.clone()));
        }
    }

    /// Hands an accepted connection to the session of the neighbor configured
    /// for its address. Returns false (the caller closes it) for unknown sources.
    pub fn inbound(&self, speaker: &Speaker, stream: TcpStream) -> bool {
        let Ok(remote) = stream.peer_addr() else {
            return false;
        };
        match speaker
            .neighbor_for(remote)
            .and_then(|id| self.peers.get(&id))
        {
            Some(h) => h.ctl.try_send(PeerCtl::Inbound(stream)).is_ok(),
            None => false,
        }
    }
}
