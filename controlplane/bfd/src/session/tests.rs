//! Two sessions wired back to back on a simulated clock: every packet one
//! sends reaches the other (unless the test drops it), and time advances
//! only when the test says so.

use super::*;

struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    /// Packets in flight, (to_b, bytes).
    wire: Vec<(bool, Vec<u8>)>,
    /// State changes seen, (on_a, change).
    changes: Vec<(bool, StateChange)>,
    /// Drop what B sends (B frozen, path cut one way).
    b_silent: bool,
}

impl Pair {
    fn new(ca: Config, cb: Config) -> Pair {
        let now = Instant::now();
        Pair {
            a: Session::new(ca, 0x1111, now, 1),
            b: Session::new(cb, 0x2222, now, 2),
            now,
            wire: Vec::new(),
            changes: Vec::new(),
            b_silent: false,
        }
    }

    fn take(&mut self, from_a: bool, out: Output) {
        if let Some(c) = out.change {
            self.changes.push((from_a, c));
        }
        for p in out.send {
            if from_a || !self.b_silent {
                self.wire.push((from_a, p));
            }
        }
    }

    /// Delivers everything in flight (and what the answers send), then runs
    /// both sessions' timers at `now`.
    fn settle(&mut self) {
        for _ in 0..8 {
            let out = self.a.poll(self.now);
            self.take(true, out);
            let out = self.b.poll(self.now);
            self.take(false, out);
            if self.wire.is_empty() {
                return;
            }
            for (to_b, raw) in std::mem::take(&mut self.wire) {
                let p = ControlPacket::decode(&raw).expect("own packets decode");
                let (s, from_a) = if to_b {
                    (&mut self.b, false)
                } else {
                    (&mut self.a, true)
                };
                if let Ok(out) = s.on_packet(&raw, &p, self.now) {
                    self.take(from_a, out);
                }
            }
        }
    }

    /// Advances the clock in steps of `step` for `total`, settling each time.
    fn run(&mut self, total: Duration, step: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.now += step;
            self.settle();
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn three_way_handshake_then_the_configured_interval() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.settle();
    // Down/Down -> Init -> Up on both sides within one exchange.
    assert_eq!(p.a.state(), State::Up);
    assert_eq!(p.b.state(), State::Up);
    let ups: Vec<_> = p
        .changes
        .iter()
        .filter(|(_, c)| c.to == State::Up)
        .collect();
    assert_eq!(ups.len(), 2, "{:?}", p.changes);
    // The poll sequence that leaves the 1 s slow start has completed:
    // both send every 300 ms (before jitter) and detect in 900 ms.
    p.run(ms(2000), ms(10));
    let v = p.a.view();
    assert_eq!(v.tx_interval, ms(300));
    assert_eq!(v.detection_time, ms(900));
    assert!(!p.a.polling && !p.b.polling);
    // ~2 s at 300 ms with 0-25 % jitter: 6 to 9 packets each.
    let tx = p.a.view().stats.tx;
    assert!((6..=12).contains(&tx), "{tx} packets");
}

#[test]
fn silence_is_detected_after_the_detection_time() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.run(ms(2000), ms(10));
    assert_eq!(p.a.state(), State::Up);
    p.changes.clear();
    // B freezes: nothing more from it.
    p.b_silent = true;
    let frozen_at = p.now;
    while p.a.state() == State::Up {
        p.now += ms(5);
        p.settle();
        assert!(p.now - frozen_at < ms(1000), "not detected within 1 s");
    }
    let waited = p.now - frozen_at;
    // The last packet from B arrived at most one interval before the
    // freeze: detection lands between 600 and 900 ms after it.
    assert!(waited <= ms(905), "detected after {waited:?}");
    // (B still hears A's Down and goes Down too: a one-way cut.)
    let on_a: Vec<_> = p
        .changes
        .iter()
        .filter(|(a, _)| *a)
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(
        on_a,
        vec![StateChange {
            from: State::Up,
            to: State::Down,
            diag: Diag::ControlDetectionTimeExpired,
            remote_state: State::Up,
        }]
    );
    assert_eq!(p.a.view().remote_disc, 0, "forgotten on expiry (6.8.1)");
    // A is back to slow packets.
    assert_eq!(p.a.view().tx_interval, SLOW_TX);
    // B's packets flow again: both come Up through the handshake.
    p.b_silent = false;
    p.run(ms(5000), ms(10));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
}

#[test]
fn admin_down_brings_the_peer_down_without_blaming_the_path() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.run(ms(1000), ms(10));
    p.changes.clear();
    let out = p.b.set_admin_down(true, p.now);
    p.take(false, out);
    p.settle();
    assert_eq!(p.b.state(), State::AdminDown);
    assert_eq!(p.a.state(), State::Down);
    assert!(p.changes.contains(&(
        true,
        StateChange {
            from: State::Up,
            to: State::Down,
            diag: Diag::NeighborSignaledSessionDown,
            remote_state: State::AdminDown,
        }
    )));
    // A session in AdminDown drops what it receives.
    p.run(ms(3000), ms(50));
    assert_eq!(p.a.state(), State::Down);
    assert!(p.b.view().stats.rx_dropped > 0);
    let out = p.b.set_admin_down(false, p.now);
    p.take(false, out);
    p.run(ms(3000), ms(10));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
}

#[test]
fn a_poll_is_answered_with_final_at_once() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.run(ms(2000), ms(10));
    let out = p.a.reconfigure(
        Config {
            desired_min_tx: ms(100),
            required_min_rx: ms(100),
            ..Config::default()
        },
        p.now,
    );
    assert_eq!(out.send.len(), 1);
    let sent = ControlPacket::decode(&out.send[0]).unwrap();
    assert!(sent.poll && !sent.final_);
    assert_eq!(sent.desired_min_tx_us, 100_000);
    let answer = p.b.on_packet(&out.send[0], &sent, p.now).unwrap();
    assert_eq!(answer.send.len(), 1, "Final goes out at once");
    let f = ControlPacket::decode(&answer.send[0]).unwrap();
    assert!(f.final_ && !f.poll);
    p.a.on_packet(&answer.send[0], &f, p.now).unwrap();
    assert!(!p.a.polling);
    // A now sends at max(its 100 ms, B's required 300 ms) = 300 ms, and B
    // detects A in 3 x max(300, 100) = 900 ms.
    assert_eq!(p.a.view().tx_interval, ms(300));
}

#[test]
fn an_interval_increase_waits_for_the_final() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.run(ms(2000), ms(10));
    let slower = Config {
        desired_min_tx: ms(600),
        ..Config::default()
    };
    p.b_silent = true;
    let out = p.a.reconfigure(slower, p.now);
    p.wire.clear();
    drop(out);
    // No Final yet: still 300 ms.
    assert_eq!(p.a.view().tx_interval, ms(300));
    assert!(p.a.polling);
    p.b_silent = false;
    p.run(ms(700), ms(10));
    assert!(!p.a.polling);
    assert_eq!(p.a.view().tx_interval, ms(600));
    assert_eq!(
        p.b.state(),
        State::Up,
        "never a false detection during the change"
    );
}

#[test]
fn a_peer_asking_for_no_packets_gets_none() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.run(ms(2000), ms(10));
    let mut silence = ControlPacket {
        diag: Diag::None,
        state: State::Up,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_disc: 0x2222,
        your_disc: 0x1111,
        desired_min_tx_us: 300_000,
        required_min_rx_us: 0,
        required_min_echo_rx_us: 0,
        auth: None,
    };
    let mut raw = [0u8; 64];
    let n = silence.encode(None, &mut raw);
    p.a.on_packet(&raw[..n], &silence, p.now).unwrap();
    let before = p.a.view().stats.tx;
    // 800 ms: under the 900 ms detection time (the peer sends nothing here).
    for _ in 0..8 {
        p.now += ms(100);
        assert!(p.a.poll(p.now).send.is_empty());
    }
    assert_eq!(p.a.view().stats.tx, before);
    assert_eq!(p.a.next_wakeup(), p.a.detect_at);
    silence.required_min_rx_us = 300_000;
    let n = silence.encode(None, &mut raw);
    p.a.on_packet(&raw[..n], &silence, p.now).unwrap();
    assert!(!p.a.poll(p.now).send.is_empty(), "resumes at once");
}

#[test]
fn jitter_stays_within_the_rfc_bounds() {
    for mult in [1u8, 3] {
        let cfg = Config {
            detect_mult: mult,
            ..Config::default()
        };
        let mut s = Session::new(cfg, 7, Instant::now(), 99);
        s.remote_min_rx = ms(1);
        let i = s.tx_interval().unwrap();
        let now = Instant::now();
        for _ in 0..2000 {
            s.schedule(now);
            let d = s.next_tx.unwrap() - now;
            let (lo, hi) = if mult == 1 { (75, 90) } else { (75, 100) };
            assert!(d >= i * lo / 100 && d <= i * hi / 100, "{d:?} of {i:?}");
        }
    }
}

#[test]
fn unknown_discriminators_are_dropped_and_counted() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.run(ms(1000), ms(10));
    let q = ControlPacket {
        diag: Diag::None,
        state: State::Up,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_disc: 0x2222,
        your_disc: 0xdead,
        desired_min_tx_us: 300_000,
        required_min_rx_us: 300_000,
        required_min_echo_rx_us: 0,
        auth: None,
    };
    let mut raw = [0u8; 64];
    let n = q.encode(None, &mut raw);
    assert_eq!(
        p.a.on_packet(&raw[..n], &q, p.now),
        Err(RxDrop::YourDiscriminatorUnknown(0xdead))
    );
    assert_eq!(p.a.view().stats.rx_dropped, 1);
}

fn keyed(key: &[u8], meticulous: bool) -> Config {
    Config {
        auth: Some(AuthConfig {
            key_id: 1,
            key: key.to_vec(),
            meticulous,
        }),
        ..Config::default()
    }
}

#[test]
fn keyed_sha1_sessions_come_up_and_refuse_the_wrong_key() {
    for meticulous in [false, true] {
        let mut p = Pair::new(keyed(b"k1", meticulous), keyed(b"k1", meticulous));
        p.run(ms(3000), ms(10));
        assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
        assert_eq!(p.a.view().stats.rx_dropped, 0);

        let mut p = Pair::new(keyed(b"k1", meticulous), keyed(b"k2", meticulous));
        p.run(ms(3000), ms(10));
        assert_eq!((p.a.state(), p.b.state()), (State::Down, State::Down));
        assert!(p.a.view().stats.rx_dropped > 0);

        let mut p = Pair::new(keyed(b"k1", meticulous), Config::default());
        p.run(ms(3000), ms(10));
        assert_eq!(p.a.state(), State::Down);
    }
}

#[test]
fn a_replayed_packet_is_refused_under_meticulous_sha1() {
    let mut p = Pair::new(keyed(b"k", true), keyed(b"k", true));
    p.run(ms(2000), ms(10));
    // Capture one packet from B, deliver it, then replay it.
    p.now += ms(400);
    let out = p.b.poll(p.now);
    let raw = out.send.into_iter().next().expect("B sends");
    let q = ControlPacket::decode(&raw).unwrap();
    p.a.on_packet(&raw, &q, p.now).unwrap();
    assert!(matches!(
        p.a.on_packet(&raw, &q, p.now),
        Err(RxDrop::Sequence { .. })
    ));
}

#[test]
fn a_peer_restarting_with_a_new_sequence_is_resynchronized() {
    // B's session restarts (a new random sequence, as after a peer's
    // restart or its session reset): A refuses the out-of-window numbers
    // first, then forgets the old sequence after twice the detection time
    // without an accepted packet (6.8.1), and both come Up again.
    let mut p = Pair::new(keyed(b"k", false), keyed(b"k", false));
    p.run(ms(3000), ms(10));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
    p.b = Session::new(keyed(b"k", false), 0x3333, p.now, 99);
    p.run(ms(20_000), ms(10));
    assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
}
