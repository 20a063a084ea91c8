//! One BFD session in asynchronous mode (RFC 5880 section 6), sans-IO: the
//! caller hands it received packets ([`Session::on_packet`]) and the time
//! ([`Session::poll`]), sends the bytes it returns and sleeps until
//! [`Session::next_wakeup`]. No sockets, no clock of its own: every rule is
//! unit-tested by feeding packets and instants.
//!
//! What it implements: the state machine of 6.8.6 (Down -> Init -> Up, the
//! three-way handshake, AdminDown), the detection time of 6.8.4, periodic
//! transmission with the 6.8.7 jitter and the rule that a remote
//! RequiredMinRxInterval of zero stops it, the one-second slow start while
//! not Up (6.8.3), Poll/Final sequences for interval changes (the new
//! DesiredMinTx is advertised with P set; an increase takes effect only
//! when F comes back), an immediate Final answer to a received Poll, and
//! keyed SHA1 authentication with sequence checks (6.7.4). Demand mode and
//! the echo function are not implemented (the issue does not need them):
//! the Demand bit is never set and a peer in demand mode is treated as
//! asynchronous.

use crate::packet::{self, ControlPacket, Diag, Sha1Auth, State};
use std::time::{Duration, Instant};

/// What the operator configures per neighbor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub detect_mult: u8,
    pub auth: Option<AuthConfig>,
}

impl Default for Config {
    /// 300 ms x 3 (the default).
    fn default() -> Self {
        Config {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            auth: None,
        }
    }
}

/// Keyed SHA1 (RFC 5880 6.7.4): one shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub key_id: u8,
    pub key: Vec<u8>,
    pub meticulous: bool,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("key_id", &self.key_id)
            .field("key", &"(not shown)")
            .field("meticulous", &self.meticulous)
            .finish()
    }
}

/// While not Up, the advertised DesiredMinTxInterval is at least this
/// (RFC 5880 6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// A change of the session state, for the caller to act on (BGP tears
/// its session down on Up -> Down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    pub from: State,
    pub to: State,
    /// The local diagnostic (why we left Up; None on the way up).
    pub diag: Diag,
    /// The peer's state as last heard. A client tears its session down on
    /// Up -> Down unless this is AdminDown (RFC 5882 3.2: the peer took BFD
    /// away, which says nothing about the path).
    pub remote_state: State,
}

/// Why a received packet was dropped by the session (after the
/// session-independent checks of [`ControlPacket::decode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RxDrop {
    #[error("your discriminator {0:#x} is not this session's")]
    YourDiscriminatorUnknown(u32),
    #[error("authentication present but not configured")]
    UnexpectedAuth,
    #[error("authentication configured but absent")]
    MissingAuth,
    #[error("authentication key id {0} is not the configured one")]
    KeyId(u8),
    #[error("authentication digest does not verify")]
    BadDigest,
    #[error("authentication sequence {got} out of window (last {last})")]
    Sequence { got: u32, last: u32 },
    #[error("session is administratively down")]
    AdminDown,
}

impl RxDrop {
    /// A stable name for counters.
    pub fn name(&self) -> &'static str {
        match self {
            RxDrop::YourDiscriminatorUnknown(_) => "your_disc_unknown",
            RxDrop::UnexpectedAuth | RxDrop::MissingAuth | RxDrop::KeyId(_) => "auth_mismatch",
            RxDrop::BadDigest => "auth_digest",
            RxDrop::Sequence { .. } => "auth_sequence",
            RxDrop::AdminDown => "admin_down",
        }
    }
}

/// What [`Session::on_packet`] and [`Session::poll`] ask of the caller.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    /// Encoded control packets to send, in order.
    pub send: Vec<Vec<u8>>,
    pub change: Option<StateChange>,
}

/// Counters of one session (for `cerctl show bfd`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub rx: u64,
    pub tx: u64,
    pub rx_dropped: u64,
    pub up_count: u64,
    pub down_count: u64,
}

#[derive(Debug)]
pub struct Session {
    cfg: Config,
    local_disc: u32,
    state: State,
    local_diag: Diag,
    remote_disc: u32,
    remote_state: State,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_detect_mult: u8,
    /// DesiredMinTx in our packets (the slow start while not Up).
    adv_tx: Duration,
    /// The transmit interval's own DesiredMinTx in force (an increase
    /// waits for the poll sequence's Final).
    eff_tx: Duration,
    /// A poll sequence is running (P set in every packet until F comes).
    polling: bool,
    /// A received Poll: the next packet carries F, sent at once.
    owe_final: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    xmit_seq: u32,
    rcv_seq: Option<u32>,
    /// When the last packet passed every check (6.8.1: the received
    /// sequence is forgotten after twice the detection time without one).
    last_accepted: Option<Instant>,
    rng: fastrand::Rng,
    stats: Stats,
}

/// What `show bfd` prints of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub state: State,
    pub remote_state: State,
    pub local_diag: Diag,
    pub local_disc: u32,
    pub remote_disc: u32,
    /// The interval we send at (before jitter).
    pub tx_interval: Duration,
    pub detection_time: Duration,
    pub stats: Stats,
}

impl Session {
    /// A session in Down, sending slow (1 s) packets from `now`.
    /// `local_disc` must be nonzero and unique among this system's
    /// sessions; `seed` seeds the transmit jitter.
    pub fn new(cfg: Config, local_disc: u32, now: Instant, seed: u64) -> Session {
        assert!(local_disc != 0, "BFD local discriminator 0");
        let adv = cfg.desired_min_tx.max(SLOW_TX);
        Session {
            local_disc,
            state: State::Down,
            local_diag: Diag::None,
            remote_disc: 0,
            remote_state: State::Down,
            // Until the peer says otherwise: 1 us (RFC 5880 6.8.1 initial).
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_detect_mult: 0,
            adv_tx: adv,
            eff_tx: adv,
            polling: false,
            owe_final: false,
            next_tx: Some(now),
            detect_at: None,
            xmit_seq: fastrand::Rng::with_seed(seed ^ 0x5eed).u32(..),
            rcv_seq: None,
            last_accepted: None,
            rng: fastrand::Rng::with_seed(seed),
            stats: Stats::default(),
            cfg,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local_disc(&self) -> u32 {
        self.local_disc
    }

    pub fn view(&self) -> View {
        View {
            state: self.state,
            remote_state: self.remote_state,
            local_diag: self.local_diag,
            local_disc: self.local_disc,
            remote_disc: self.remote_disc,
            tx_interval: self.tx_interval().unwrap_or(Duration::ZERO),
            detection_time: self.detection_time(),
            stats: self.stats,
        }
    }

    /// Our transmit interval before jitter: the larger of our DesiredMinTx
    /// in force and the peer's RequiredMinRx; `None` when the peer asked
    /// for no packets (RequiredMinRx 0).
    fn tx_interval(&self) -> Option<Duration> {
        if self.remote_min_rx.is_zero() {
            return None;
        }
        Some(self.eff_tx.max(self.remote_min_rx))
    }

    /// Asynchronous mode detection time (6.8.4): the peer's multiplier times
    /// the larger of our RequiredMinRx and its DesiredMinTx.
    fn detection_time(&self) -> Duration {
        self.cfg
            .required_min_rx
            .max(self.remote_desired_tx)
            .saturating_mul(u32::from(self.remote_detect_mult))
    }

    /// The next instant `poll` has something to do.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timers: detection expiry and periodic transmission.
    pub fn poll(&mut self, now: Instant) -> Output {
        let mut out = Output::default();
        if let Some(at) = self.detect_at {
            if now >= at && matches!(self.state, State::Init | State::Up) {
                out.change = self.go(State::Down, Diag::ControlDetectionTimeExpired);
                // 6.8.1: the remote discriminator is forgotten on expiry.
                self.remote_disc = 0;
                self.remote_state = State::Down;
                self.detect_at = None;
            } else if now >= at {
                self.detect_at = None;
            }
        }
        if out.change.is_some() || self.next_tx.is_some_and(|t| now >= t) {
            self.send_now(now, &mut out);
        }
        out
    }

    /// A received packet (already decoded and passed the session-independent
    /// checks); `raw` is the packet as received, for the digest.
    pub fn on_packet(
        &mut self,
        raw: &[u8],
        p: &ControlPacket,
        now: Instant,
    ) -> Result<Output, RxDrop> {
        if self.state == State::AdminDown {
            self.stats.rx_dropped += 1;
            return Err(RxDrop::AdminDown);
        }
        match self.check(raw, p, now) {
            Ok(()) => {
                self.stats.rx += 1;
                self.last_accepted = Some(now);
            }
            Err(e) => {
                self.stats.rx_dropped += 1;
                return Err(e);
            }
        }
        let mut out = Output::default();
        self.remote_disc = p.my_disc;
        self.remote_state = p.state;
        self.remote_desired_tx = Duration::from_micros(u64::from(p.desired_min_tx_us));
        self.remote_detect_mult = p.detect_mult;
        let min_rx = Duration::from_micros(u64::from(p.required_min_rx_us));
        let was_silenced = self.remote_min_rx.is_zero();
        self.remote_min_rx = min_rx;
        if p.final_ && self.polling {
            self.polling = false;
            self.eff_tx = self.adv_tx;
        }
        // The detection timer restarts on every packet accepted.
        self.detect_at = Some(now + self.detection_time());
        let change = match (self.state, p.state) {
            (s, State::AdminDown) if s != State::Down => {
                self.go(State::Down, Diag::NeighborSignaledSessionDown)
            }
            (State::Down, State::Down) => self.go(State::Init, Diag::None),
            (State::Down, State::Init) => self.go(State::Up, Diag::None),
            (State::Init, State::Init | State::Up) => self.go(State::Up, Diag::None),
            (State::Up, State::Down) => self.go(State::Down, Diag::NeighborSignaledSessionDown),
            _ => None,
        };
        out.change = change;
        if p.poll {
            self.owe_final = true;
        }
        if change.is_some() || self.owe_final {
            self.send_now(now, &mut out);
        } else if was_silenced && !min_rx.is_zero() {
            // The peer wants packets again: resume the periodic ones.
            self.next_tx = Some(now);
        } else if min_rx.is_zero() {
            self.next_tx = None;
        }
        Ok(out)
    }

    /// Administratively down (or back up): the peer hears AdminDown and its
    /// session goes Down without blaming the path.
    pub fn set_admin_down(&mut self, down: bool, now: Instant) -> Output {
        let mut out = Output::default();
        if down && self.state != State::AdminDown {
            out.change = self.go(State::AdminDown, Diag::AdministrativelyDown);
            self.detect_at = None;
            self.send_now(now, &mut out);
        } else if !down && self.state == State::AdminDown {
            out.change = self.go(State::Down, Diag::AdministrativelyDown);
            self.send_now(now, &mut out);
        }
        out
    }

    /// New intervals (a reload). While Up, the new DesiredMinTx goes out in
    /// a poll sequence; an increase takes effect when it completes.
    pub fn reconfigure(&mut self, cfg: Config, now: Instant) -> Output {
        let mut out = Output::default();
        let changed = cfg.desired_min_tx != self.cfg.desired_min_tx
            || cfg.required_min_rx != self.cfg.required_min_rx
            || cfg.detect_mult != self.cfg.detect_mult;
        self.cfg = cfg;
        if !changed {
            return out;
        }
        if self.state == State::Up {
            self.set_adv_tx(self.cfg.desired_min_tx);
            self.polling = true;
            self.send_now(now, &mut out);
        } else {
            let slow = self.cfg.desired_min_tx.max(SLOW_TX);
            self.adv_tx = slow;
            self.eff_tx = slow;
        }
        out
    }

    fn check(&mut self, raw: &[u8], p: &ControlPacket, now: Instant) -> Result<(), RxDrop> {
        if p.your_disc != 0 && p.your_disc != self.local_disc {
            return Err(RxDrop::YourDiscriminatorUnknown(p.your_disc));
        }
        match (&self.cfg.auth, p.auth) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(RxDrop::UnexpectedAuth),
            (Some(_), None) => Err(RxDrop::MissingAuth),
            (Some(cfg), Some(a)) => {
                if a.key_id != cfg.key_id {
                    return Err(RxDrop::KeyId(a.key_id));
                }
                if !packet::sha1_verifies(raw, &cfg.key) {
                    return Err(RxDrop::BadDigest);
                }
                // 6.8.1 bfd.AuthSeqKnown: forgotten after twice the
                // detection time without an accepted packet, so a peer that
                // restarted (a new sequence) is resynchronized.
                if self
                    .last_accepted
                    .is_some_and(|t| now.duration_since(t) >= 2 * self.detection_time())
                {
                    self.rcv_seq = None;
                }
                // 6.7.4: within 3 x Detect Mult of the last; strictly
                // greater for meticulous (serial arithmetic).
                if let Some(last) = self.rcv_seq {
                    let ahead = a.sequence.wrapping_sub(last);
                    let window = 3 * u32::from(self.remote_detect_mult.max(p.detect_mult));
                    let lo = u32::from(a.meticulous);
                    if ahead < lo || ahead > window {
                        return Err(RxDrop::Sequence {
                            got: a.sequence,
                            last,
                        });
                    }
                }
                self.rcv_seq = Some(a.sequence);
                Ok(())
            }
        }
    }

    fn go(&mut self, to: State, diag: Diag) -> Option<StateChange> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        if matches!(to, State::Down | State::AdminDown) {
            self.local_diag = diag;
        }
        if from == State::Up {
            self.stats.down_count += 1;
        }
        if to == State::Up {
            self.stats.up_count += 1;
            // Leave the slow start: advertise the configured interval in a
            // poll sequence (6.8.3).
            if self.cfg.desired_min_tx != self.adv_tx {
                self.set_adv_tx(self.cfg.desired_min_tx);
                self.polling = true;
            }
        } else {
            // Not Up: back to at least one second, no poll needed.
            let slow = self.cfg.desired_min_tx.max(SLOW_TX);
            self.adv_tx = slow;
            self.eff_tx = slow;
            self.polling = false;
        }
        Some(StateChange {
            from,
            to,
            diag: if to == State::Up { Diag::None } else { diag },
            remote_state: self.remote_state,
        })
    }

    /// Advertises `tx`; a decrease of the transmit interval applies at once,
    /// an increase when the poll sequence ends (6.8.3).
    fn set_adv_tx(&mut self, tx: Duration) {
        self.adv_tx = tx;
        if tx < self.eff_tx {
            self.eff_tx = tx;
        }
    }

    fn send_now(&mut self, now: Instant, out: &mut Output) {
        out.send.push(self.encode_next());
        self.schedule(now);
    }

    fn schedule(&mut self, now: Instant) {
        self.next_tx = self.tx_interval().map(|i| {
            // 6.8.7: 0-25% less (10-25% with a multiplier of 1).
            let pct = if self.cfg.detect_mult == 1 {
                self.rng.u32(75..=90)
            } else {
                self.rng.u32(75..=100)
            };
            now + i * pct / 100
        });
    }

    fn encode_next(&mut self) -> Vec<u8> {
        let final_ = std::mem::take(&mut self.owe_final);
        let auth = self.cfg.auth.as_ref().map(|a| {
            self.xmit_seq = self.xmit_seq.wrapping_add(1);
            Sha1Auth {
                meticulous: a.meticulous,
                key_id: a.key_id,
                sequence: self.xmit_seq,
                digest: [0; 20],
            }
        });
        let p = ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // P and F are never both set (6.8.7): a Final answer waits out the poll.
            poll: self.polling && !final_,
            final_,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_disc: self.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx_us: micros(self.adv_tx),
            required_min_rx_us: micros(self.cfg.required_min_rx),
            required_min_echo_rx_us: 0,
            auth,
        };
        let mut buf = vec![0u8; p.len()];
        let key = self.cfg.auth.as_ref().map(|a| a.key.as_slice());
        p.encode(key, &mut buf);
        self.stats.tx += 1;
        buf
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests;
