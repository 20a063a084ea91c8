//! The traffic generator and sink of the kernel-free benchmark: a DPDK
//! process (its own EAL, one core) with two memif client ports, driven by
//! JSON lines on stdin (one request, one reply on stdout). It sends the
//! case's frame templates with a per-packet destination from a list, paced
//! to a rate by the TSC or as fast as it can, and counts what comes back.
//!
//! It also plays the far WireGuard peer (boringtun, as the dataplane uses):
//! it answers the engine's handshake initiations, starts a handshake itself
//! for the decap case, and encrypts each packet it sends in that case.

use super::frames::{self, Case, FrameMix, Template, GEN_WAN_ADDR, GEN_WAN_MAC, WAN_ADDR};
use anyhow::{bail, Context, Result};
use arrayvec::ArrayVec;
use cer_dataplane::tunnel::wireguard::{self as wg, WgOut, WgPeer};
use cer_dataplane::wire::{self, be16, ip, put16, put32};
use cer_dpdk::{free_bulk, Eal, Mbuf, Mempool, Port, PortSetup};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const BURST: usize = 32;
/// UDP port of the benchmark's WireGuard tunnel (both ends).
const WG_PORT: u16 = 51820;

/// How the generator process is set up (a JSON file, written by `run`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenSetup {
    /// Full EAL argument vector (program name first).
    pub eal: Vec<String>,
    /// Queue pairs per memif port (OVS's PMD transmits on queue 1: it needs 2).
    pub queues: u16,
    pub mbufs: u32,
}

/// The far WireGuard peer's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WgKeys {
    pub private_key: String,
    pub engine_public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "req", rename_all = "snake_case")]
pub enum Request {
    /// Switch to a case: templates for these engine MACs, destinations.
    Load {
        case: Case,
        mix: FrameMix,
        lan_mac: [u8; 6],
        wan_mac: [u8; 6],
        /// The engine's /32 table size; destinations are drawn from it.
        entries: usize,
        wg: Option<WgKeys>,
    },
    /// Sends at `rate_pps` (0: as fast as possible) for `secs`, then keeps
    /// receiving for `drain_ms`.
    Trial {
        rate_pps: f64,
        secs: f64,
        drain_ms: u64,
    },
    /// Sends a few packets (starting the WireGuard handshake first in the
    /// decap case) until some come back, for at most `timeout_ms`.
    Warm {
        timeout_ms: u64,
    },
    /// Port counters and link state.
    Ports,
    Quit,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrialResult {
    /// Packets the schedule called for (rate x time; max rate: attempted).
    pub attempted: u64,
    /// Accepted by the memif ring.
    pub sent: u64,
    /// Refused by a full ring (the engine did not keep up): counted as loss.
    pub refused: u64,
    /// Received on the case's egress link, as expected.
    pub received: u64,
    pub rx_bytes: u64,
    /// Sent bytes (frames without FCS).
    pub tx_bytes: u64,
    /// Frames that were not what the case sends back (wrong link, wrong
    /// MAC, not IPv4): should stay 0.
    pub unexpected: u64,
    /// The first unexpected frame (port and its first 64 bytes, hex).
    pub unexpected_sample: Option<String>,
    /// WireGuard handshake messages answered during the trial.
    pub wg_handshakes: u64,
    /// Seconds of sending.
    pub secs: f64,
    /// The generator could not keep its schedule (it, not the engine, was the bound).
    pub behind: bool,
    /// The longest the generator ran late on its schedule (a stall of its
    /// core), in microseconds; paced trials only.
    pub lag_max_us: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Ready {
        tsc_hz: u64,
    },
    Loaded {
        templates: usize,
        destinations: usize,
    },
    Trial(TrialResult),
    Warm {
        received: u64,
        ms: u64,
    },
    Ports {
        links: Vec<bool>,
        stats: Vec<[u64; 6]>,
    },
    Error {
        message: String,
    },
    Bye,
}

struct WgState {
    peer: WgPeer,
    /// Scratch for WireGuard output (handshakes, data).
    scratch: Vec<u8>,
}

struct Gen {
    ports: [Port; 2],
    queues: u16,
    pool: Mempool,
    hz: u64,
    case: Case,
    templates: Vec<Template>,
    dsts: Vec<u32>,
    next_tpl: usize,
    next_dst: usize,
    wg: Option<WgState>,
    /// The generator's MAC on each link (what the engine sends to).
    my_mac: [[u8; 6]; 2],
    /// The engine's WAN MAC (WireGuard frames are built here, not from a template).
    wan_mac: [u8; 6],
}

/// Runs the generator: EAL up, ports connected, then requests until `Quit`.
pub fn main(setup_path: &std::path::Path) -> Result<()> {
    let setup: GenSetup = serde_json::from_str(
        &std::fs::read_to_string(setup_path)
            .with_context(|| format!("reading {}", setup_path.display()))?,
    )
    .context("generator setup")?;
    let eal = Eal::init(&setup.eal).context("generator EAL")?;
    let pool = Mempool::new_pktmbuf(
        "gen",
        setup.mbufs,
        256,
        cer_dpdk::DEFAULT_DATA_ROOM,
        cer_dpdk::SOCKET_ANY,
    )
    .context("generator mbuf pool")?;
    let mut ports = Vec::new();
    for i in 0..2 {
        let p = Port::by_name(&format!("net_memif{i}")).context("generator memif port")?;
        p.configure(
            &PortSetup {
                rx_queues: setup.queues,
                tx_queues: setup.queues,
                rx_desc: 1024,
                tx_desc: 1024,
                mtu: None,
                rss: false,
                promiscuous: true,
                rx_interrupts: false,
            },
            &pool,
        )
        .context("generator port configure")?;
        p.start().context("generator port start")?;
        ports.push(p);
    }
    let mut g = Gen {
        ports: [ports[0], ports[1]],
        queues: setup.queues,
        pool,
        hz: cer_dpdk::tsc_hz().max(1),
        case: Case::Forward,
        templates: Vec::new(),
        dsts: Vec::new(),
        next_tpl: 0,
        next_dst: 0,
        wg: None,
        my_mac: [frames::GEN_LAN_MAC, GEN_WAN_MAC],
        wan_mac: frames::WAN_MAC,
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let reply = |out: &mut std::io::StdoutLock, r: &Reply| -> Result<()> {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    };
    // Wait for both memif links (the servers are the engine under test).
    let t0 = Instant::now();
    while !g.ports.iter().all(|p| p.link().up) {
        if t0.elapsed() > Duration::from_secs(20) {
            reply(
                &mut out,
                &Reply::Error {
                    message: "memif links did not come up within 20 s (is the engine listening on the sockets?)".into(),
                },
            )?;
            bail!("memif links down");
        }
        g.drain_for(Duration::from_millis(20));
    }
    reply(&mut out, &Reply::Ready { tsc_hz: g.hz })?;
    for line in stdin.lock().lines() {
        let line = line?;
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                reply(
                    &mut out,
                    &Reply::Error {
                        message: format!("bad request: {e}"),
                    },
                )?;
                continue;
            }
        };
        let r = match req {
            Request::Quit => {
                reply(&mut out, &Reply::Bye)?;
                break;
            }
            Request::Load {
                case,
                mix,
                lan_mac,
                wan_mac,
                entries,
                wg,
            } => match g.load(case, mix, lan_mac, wan_mac, entries, wg) {
                Ok(()) => Reply::Loaded {
                    templates: g.templates.len(),
                    destinations: g.dsts.len(),
                },
                Err(e) => Reply::Error {
                    message: format!("{e:#}"),
                },
            },
            Request::Trial {
                rate_pps,
                secs,
                drain_ms,
            } => Reply::Trial(g.trial(rate_pps, secs, Duration::from_millis(drain_ms))),
            Request::Warm { timeout_ms } => {
                let t = Instant::now();
                let received = g.warm(Duration::from_millis(timeout_ms));
                Reply::Warm {
                    received,
                    ms: t.elapsed().as_millis() as u64,
                }
            }
            Request::Ports => Reply::Ports {
                links: g.ports.iter().map(|p| p.link().up).collect(),
                stats: g
                    .ports
                    .iter()
                    .map(|p| {
                        let s = p.stats().unwrap_or_default();
                        [
                            s.ipackets,
                            s.opackets,
                            s.imissed,
                            s.ierrors,
                            s.oerrors,
                            s.rx_nombuf,
                        ]
                    })
                    .collect(),
            },
        };
        reply(&mut out, &r)?;
    }
    for p in &g.ports {
        let _ = p.stop();
        p.close();
    }
    drop(g);
    drop(eal);
    Ok(())
}

impl Gen {
    fn load(
        &mut self,
        case: Case,
        mix: FrameMix,
        lan_mac: [u8; 6],
        wan_mac: [u8; 6],
        entries: usize,
        keys: Option<WgKeys>,
    ) -> Result<()> {
        self.case = case;
        self.wan_mac = wan_mac;
        self.templates = frames::templates(case, mix, lan_mac, wan_mac);
        // A list long enough to visit the whole table, at most 1M (4 MB).
        self.dsts = frames::destinations(entries, entries.clamp(1, 1 << 20));
        self.next_tpl = 0;
        self.next_dst = 0;
        self.wg = match keys {
            Some(k) => Some(WgState {
                peer: WgPeer::new(&k.private_key, &k.engine_public_key, None, None, 4000)
                    .map_err(|e| anyhow::anyhow!("generator WireGuard peer: {e}"))?,
                scratch: vec![0u8; 2048],
            }),
            None => None,
        };
        Ok(())
    }

    /// Receives and frees everything for `d` (answering WireGuard handshakes).
    fn drain_for(&mut self, d: Duration) -> u64 {
        let end = Instant::now() + d;
        let mut r = TrialResult::default();
        while Instant::now() < end {
            self.receive(&mut r);
        }
        r.received
    }

    /// Fills one mbuf with the next template and destination.
    #[inline]
    fn build(&mut self, m: &mut Mbuf) -> bool {
        let t = &self.templates[self.next_tpl];
        self.next_tpl += 1;
        if self.next_tpl == self.templates.len() {
            self.next_tpl = 0;
        }
        let dst = self.dsts[self.next_dst];
        self.next_dst += 1;
        if self.next_dst == self.dsts.len() {
            self.next_dst = 0;
        }
        if t.wg_inner {
            let Some(w) = self.wg.as_mut() else {
                return false;
            };
            let mut inner = [0u8; 1600];
            let n = t.bytes.len();
            inner[..n].copy_from_slice(&t.bytes);
            frames::patch_dst(&mut inner[..n], 0, dst);
            let hdr = 14 + 20 + 8;
            let room = wg::encap_out_len(n);
            if !m.append(hdr + room) {
                return false;
            }
            let d = m.data_mut();
            match w.peer.encapsulate(&inner[..n], &mut d[hdr..]) {
                WgOut::Send(len) => {
                    write_udp_headers(d, len, (GEN_WAN_ADDR, WG_PORT), (WAN_ADDR, WG_PORT));
                    wire::write_eth(d, &self.wan_mac, &GEN_WAN_MAC, wire::ETHERTYPE_IPV4);
                    m.trim(room - len)
                }
                _ => false,
            }
        } else {
            if !m.append(t.bytes.len()) {
                return false;
            }
            let d = m.data_mut();
            d.copy_from_slice(&t.bytes);
            frames::patch_dst(d, t.patch_ip, dst);
            true
        }
    }

    /// Polls every queue of both links once: counts what the case expects
    /// on its egress link, answers WireGuard handshakes, frees the rest.
    #[inline]
    fn receive(&mut self, r: &mut TrialResult) {
        let (_, rx_port) = self.case.ports();
        for port in 0..2 {
            for q in 0..self.queues {
                let mut bufs: ArrayVec<Mbuf, BURST> = ArrayVec::new();
                let n = self.ports[port].rx_burst(q, &mut bufs);
                if n == 0 {
                    continue;
                }
                for m in bufs.iter() {
                    let d = m.data();
                    let ok = d.len() >= 34
                        && d[0..6] == self.my_mac[port]
                        && be16(d, 12) == wire::ETHERTYPE_IPV4;
                    if ok && port == 1 && self.wg.is_some() && is_wg_control(d) {
                        self.wg_control(d, r);
                        continue;
                    }
                    if ok && port == rx_port {
                        r.received += 1;
                        r.rx_bytes += d.len() as u64;
                    } else {
                        r.unexpected += 1;
                        if r.unexpected_sample.is_none() {
                            let hex: String =
                                d.iter().take(64).map(|b| format!("{b:02x}")).collect();
                            r.unexpected_sample = Some(format!("port {port}: {hex}"));
                        }
                    }
                }
                free_bulk(&mut bufs);
            }
        }
    }

    /// A handshake message from the engine: hand it to our peer and send
    /// what it answers.
    fn wg_control(&mut self, d: &[u8], r: &mut TrialResult) {
        let Some(w) = self.wg.as_mut() else { return };
        let ihl = usize::from(d[14] & 0x0f) * 4;
        let payload = &d[14 + ihl + 8..];
        let src = Ipv4Addr::from(wire::be32(d, 14 + ip::SRC));
        let out_len = match w.peer.decapsulate(src, payload, &mut w.scratch) {
            WgOut::Send(n) => n,
            _ => return,
        };
        r.wg_handshakes += 1;
        let Some(mut m) = self.pool.alloc() else {
            return;
        };
        let hdr = 14 + 20 + 8;
        if !m.append(hdr + out_len) {
            return;
        }
        let wan_mac = self.wan_mac;
        let dm = m.data_mut();
        dm[hdr..].copy_from_slice(&w.scratch[..out_len]);
        write_udp_headers(dm, out_len, (GEN_WAN_ADDR, WG_PORT), (WAN_ADDR, WG_PORT));
        wire::write_eth(dm, &wan_mac, &GEN_WAN_MAC, wire::ETHERTYPE_IPV4);
        let mut one: ArrayVec<Mbuf, 1> = ArrayVec::new();
        one.push(m);
        self.ports[1].tx_burst(0, &mut one);
    }

    /// Starts our own handshake (decap case: we are the sender).
    fn wg_initiate(&mut self) {
        let Some(w) = self.wg.as_mut() else { return };
        let n = match w.peer.initiate(false, &mut w.scratch) {
            WgOut::Send(n) => n,
            _ => return,
        };
        let Some(mut m) = self.pool.alloc() else {
            return;
        };
        let hdr = 14 + 20 + 8;
        if !m.append(hdr + n) {
            return;
        }
        let wan_mac = self.wan_mac;
        let dm = m.data_mut();
        dm[hdr..].copy_from_slice(&w.scratch[..n]);
        write_udp_headers(dm, n, (GEN_WAN_ADDR, WG_PORT), (WAN_ADDR, WG_PORT));
        wire::write_eth(dm, &wan_mac, &GEN_WAN_MAC, wire::ETHERTYPE_IPV4);
        let mut one: ArrayVec<Mbuf, 1> = ArrayVec::new();
        one.push(m);
        self.ports[1].tx_burst(0, &mut one);
    }

    fn warm(&mut self, timeout: Duration) -> u64 {
        let end = Instant::now() + timeout;
        let mut r = TrialResult::default();
        let mut last_init = Instant::now() - Duration::from_secs(10);
        while Instant::now() < end && r.received < 64 {
            if matches!(self.case, Case::Decap(frames::Transport::Wireguard))
                && !self.wg_ready()
                && last_init.elapsed() > Duration::from_millis(500)
            {
                self.wg_initiate();
                last_init = Instant::now();
            }
            self.send_burst(8, &mut r);
            let until = Instant::now() + Duration::from_millis(5);
            while Instant::now() < until {
                self.receive(&mut r);
            }
        }
        r.received
    }

    /// Has our WireGuard peer a session to send data on?
    fn wg_ready(&mut self) -> bool {
        let Some(w) = self.wg.as_mut() else {
            return true;
        };
        w.peer.stats().session_established
    }

    /// Sends up to `n` packets as one burst on the case's ingress link.
    #[inline]
    fn send_burst(&mut self, n: usize, r: &mut TrialResult) {
        let (tx_port, _) = self.case.ports();
        let mut bufs: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        if !self.pool.alloc_bulk(&mut bufs, n) {
            r.refused += n as u64;
            return;
        }
        let mut built: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        for mut m in bufs.drain(..) {
            if self.build(&mut m) {
                r.tx_bytes += m.len() as u64;
                built.push(m);
            } else {
                r.refused += 1;
            }
        }
        let want = built.len();
        let sent = self.ports[tx_port].tx_burst(0, &mut built);
        r.sent += sent as u64;
        if sent < want {
            r.refused += (want - sent) as u64;
            r.tx_bytes -= built.iter().map(|m| m.len() as u64).sum::<u64>();
            free_bulk(&mut built);
        }
    }

    /// One trial: `rate_pps` (0 = flat out) for `secs`, then `drain`.
    fn trial(&mut self, rate_pps: f64, secs: f64, drain: Duration) -> TrialResult {
        let mut r = TrialResult::default();
        let hz = self.hz as f64;
        let start = cer_dpdk::tsc();
        let end = start + (secs * hz) as u64;
        if rate_pps <= 0.0 {
            loop {
                let now = cer_dpdk::tsc();
                if now >= end {
                    break;
                }
                self.send_burst(BURST, &mut r);
                self.receive(&mut r);
            }
            r.attempted = r.sent + r.refused;
        } else {
            let total = (rate_pps * secs).round() as u64;
            let ticks_per_pkt = hz / rate_pps;
            let mut due: u64 = 0;
            let mut lag_max: u64 = 0;
            loop {
                let now = cer_dpdk::tsc();
                let should = ((((now - start) as f64) / ticks_per_pkt) as u64).min(total);
                if due < should {
                    lag_max = lag_max.max(should - due);
                    // Catch up after a stall in bursts, as a NIC's queue would.
                    let n = ((should - due) as usize).min(BURST);
                    self.send_burst(n, &mut r);
                    due += n as u64;
                }
                self.receive(&mut r);
                if due >= total {
                    break;
                }
                if now > end + (hz * 0.5) as u64 {
                    // Half a second past the schedule: give up sending.
                    break;
                }
            }
            // Behind: the schedule took over 2% (and 5 ms) longer than asked,
            // so the generator, not the engine, limited the offered rate.
            let took = (cer_dpdk::tsc() - start) as f64 / hz;
            r.behind = due < total || took > secs * 1.02 + 0.005;
            r.lag_max_us = lag_max as f64 * ticks_per_pkt / hz * 1e6;
            r.attempted = total;
        }
        r.secs = (cer_dpdk::tsc() - start) as f64 / hz;
        let until = Instant::now() + drain;
        while Instant::now() < until {
            self.receive(&mut r);
        }
        r
    }
}

/// Is this IPv4 frame a WireGuard handshake-family message to our port?
#[inline]
fn is_wg_control(d: &[u8]) -> bool {
    let ihl = usize::from(d[14] & 0x0f) * 4;
    d[14 + ip::PROTO] == wire::PROTO_UDP
        && d.len() > 14 + ihl + 8
        && be16(d, 14 + ihl + 2) == WG_PORT
        && matches!(
            d[14 + ihl + 8],
            wg::MSG_HANDSHAKE_INITIATION | wg::MSG_HANDSHAKE_RESPONSE | wg::MSG_COOKIE_REPLY
        )
}

/// IPv4 + UDP headers in front of a `payload`-byte UDP payload at offset 42.
fn write_udp_headers(d: &mut [u8], payload: usize, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) {
    let h = &mut d[14..];
    h[..20].fill(0);
    h[0] = 0x45;
    h[ip::TTL] = 64;
    h[ip::PROTO] = wire::PROTO_UDP;
    put16(h, ip::TOTAL_LEN, (20 + 8 + payload) as u16);
    put32(h, ip::SRC, u32::from(src.0));
    put32(h, ip::DST, u32::from(dst.0));
    wire::fill_ip_checksum(h, 20);
    put16(h, 20, src.1);
    put16(h, 22, dst.1);
    put16(h, 24, (8 + payload) as u16);
    put16(h, 26, 0);
}
