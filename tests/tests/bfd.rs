//! BFD interop, both directions, with the real peers: cer-control as route
//! reflector, FRR (bgpd + bfdd) and BIRD 2 as its clients on one LAN, BFD on
//! both sessions (300 ms x 3, single hop; BIRD's with keyed SHA1). The BGP
//! hold time is 90 s, so every withdrawal inside the waits below is BFD's.
//!
//! ```text
//!               lan (bridge, own netns)
//!        /               |               \
//!   cer: cer-control   frr: FRR bfdd     bird: BIRD 2
//!   10.10.0.1 (RR)     10.10.0.2         10.10.0.3
//!                      10.98.2.0/24      10.98.3.0/24
//! ```
//!
//! - Sessions come Up on all three sides (cer's `show bfd`, FRR's `show bfd
//!   peers json`, BIRD's `show bfd sessions`), and the routes are reflected.
//! - Malformed and stray BFD packets are counted drops, by name, and the
//!   sessions stay Up.
//! - FRR frozen (SIGSTOP of zebra, bfdd and bgpd: no FIN, no NOTIFICATION):
//!   cer-control's BFD goes Down, the BGP session is reset with Cease/BFD
//!   Down and FRR's route leaves cer and BIRD. Thawed, everything returns.
//! - cer-control frozen: FRR's bfdd and BIRD's BFD go Down, both drop the
//!   BGP session and the routes cer reflected.

use anyhow::Result;
use cer_e2e::peers::*;
use cer_e2e::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const ASN: u32 = 65000;
const CER: &str = "10.10.0.1";
const FRR: &str = "10.10.0.2";
const BIRD: &str = "10.10.0.3";
const FRR_NET: &str = "10.98.2.0/24";
const BIRD_NET: &str = "10.98.3.0/24";
const KEY: &str = "s3cret-bfd";
const UP: Duration = Duration::from_secs(30);
/// Far above 300 ms x 3 and far below the 90 s hold time.
const DETECT: Duration = Duration::from_secs(10);
const BAD_PACKETS: &str = include_str!("../scripts/bfd_bad_packets.py");

/// Field order is drop order: daemons stop before their namespaces go.
struct Topo {
    cer: Control,
    frr: Frr,
    bird: Bird,
    _cer_ns: Netns,
    _frr_ns: Netns,
    bird_ns: Netns,
    _lan: Lan,
    scratch: Scratch,
}

fn frr_bgpd_conf() -> String {
    // FRR decides single hop itself: an iBGP peer on a shared network.
    frr_client_config(ASN, FRR, &[CER], &[FRR_NET]).replace(
        &format!(" neighbor {CER} timers connect 1\n"),
        &format!(" neighbor {CER} timers connect 1\n neighbor {CER} bfd\n"),
    )
}

fn bird_conf() -> String {
    // BIRD waits `error wait time` (60-300 s by default) after a session
    // error, BFD down included, before it talks BGP again.
    let mut c = bird_client_config(ASN, BIRD, BIRD, &[CER], &[BIRD_NET]).replace(
        "connect retry time 1;\n",
        "connect retry time 1;\n  error wait time 1, 2;\n  bfd on;\n",
    );
    c.push_str(&format!(
        "protocol bfd {{\n  interface \"*\" {{\n    min rx interval 300 ms;\n    min tx interval 300 ms;\n    multiplier 3;\n    authentication keyed sha1;\n    password \"{KEY}\" {{ id 1; }};\n  }};\n}}\n"
    ));
    c
}

impl Topo {
    fn new() -> Result<Topo> {
        let scratch = Scratch::new("bfd")?;
        let lan = Lan::new()?;
        let cer_ns = Netns::new("cer")?;
        let frr_ns = Netns::new("fr")?;
        let bird_ns = Netns::new("bd")?;
        lan.attach(&cer_ns, "eth0", &format!("{CER}/24"))?;
        lan.attach(&frr_ns, "eth0", &format!("{FRR}/24"))?;
        lan.attach(&bird_ns, "eth0", &format!("{BIRD}/24"))?;
        let body = ControlConfig::new("rr", CER, ASN)
            .listen(&[CER])
            .hold_time(90)
            .connect_retry_secs(1)
            .route_reflector()
            .neighbor(
                Neighbor::internal(FRR)
                    .rr_client()
                    .description("frr")
                    .bfd(300, 300, 3),
            )
            .neighbor(
                Neighbor::internal(BIRD)
                    .rr_client()
                    .description("bird")
                    .bfd(300, 300, 3)
                    .bfd_key(KEY),
            )
            .sam(
                "65000:1001",
                "10.255.0.1/32",
                &scratch.file("endpoints.json"),
            )
            .to_string();
        let cer = Control::start(Some(&cer_ns), &scratch.path, "cer", &body)?;
        let frr = Frr::start_with_bfdd(
            &frr_ns,
            &scratch.path,
            &frr_bgpd_conf(),
            "hostname bfdd\nlog stdout informational\n!\n",
        )?;
        let bird = Bird::start(&bird_ns, &scratch.path, &bird_conf())?;
        Ok(Topo {
            cer,
            frr,
            bird,
            _cer_ns: cer_ns,
            _frr_ns: frr_ns,
            bird_ns,
            _lan: lan,
            scratch,
        })
    }

    /// cer-control's BFD session to `peer` (`cerctl show bfd --json`).
    fn cer_bfd(&self, peer: &str) -> Option<Value> {
        let v = self.cer.json(&["show", "bfd"]).ok()?;
        v["sessions"]
            .as_array()?
            .iter()
            .find(|s| s["peer"] == peer)
            .cloned()
    }

    fn cer_neighbor(&self, peer: &str) -> Option<Value> {
        let v = self.cer.json(&["show", "bgp", "summary"]).ok()?;
        v["neighbors"]
            .as_array()?
            .iter()
            .find(|n| n["address"].as_str().is_some_and(|a| a.starts_with(peer)))
            .cloned()
    }

    fn cer_has(&self, prefix: &str) -> bool {
        self.cer
            .json(&["show", "bgp", "rib", prefix])
            .ok()
            .and_then(|v| v.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false)
    }

    /// FRR bfdd's status of its session to cer (`up`, `down`, `init`).
    fn frr_bfd_status(&self) -> Option<String> {
        self.frr
            .bfd_peers_json()
            .ok()?
            .iter()
            .find(|p| p["peer"] == CER)
            .and_then(|p| p["status"].as_str().map(String::from))
    }

    /// BIRD's BFD session state towards cer (`show bfd sessions`).
    fn bird_bfd_state(&self) -> Option<String> {
        let out = self.bird.birdc("show bfd sessions").ok()?;
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(CER))
            .and_then(|l| l.split_whitespace().nth(2).map(String::from))
    }

    fn bird_has(&self, prefix: &str) -> bool {
        self.bird
            .routes()
            .map(|r| best_for(&r, prefix).is_some())
            .unwrap_or(false)
    }

    fn frr_has(&self, prefix: &str) -> bool {
        self.frr
            .routes_json()
            .map(|r| best_for(&r, prefix).is_some())
            .unwrap_or(false)
    }

    /// Everything up: both BGP sessions, BFD Up on all four ends, both
    /// routes reflected.
    fn wait_all_up(&self, what: &str) -> Result<Duration> {
        wait_until(what, UP, || {
            self.cer_bfd(FRR).is_some_and(|s| s["state"] == "Up")
                && self.cer_bfd(BIRD).is_some_and(|s| s["state"] == "Up")
                && self.frr_bfd_status().as_deref() == Some("up")
                && self.bird_bfd_state().as_deref() == Some("Up")
                && self
                    .cer_neighbor(FRR)
                    .is_some_and(|n| n["state"] == "Established")
                && self
                    .cer_neighbor(BIRD)
                    .is_some_and(|n| n["state"] == "Established")
                && self.bird_has(FRR_NET)
                && self.frr_has(BIRD_NET)
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e:#}\ncer show bfd: {}\nFRR bfd: {:?}\nBIRD bfd: {:?}\ncer show bgp summary: {}\nBIRD has {FRR_NET}: {}, FRR has {BIRD_NET}: {}\ncer log tail:\n{}",
                self.cer.ctl(&["show", "bfd"]).unwrap_or_default(),
                self.frr_bfd_status(),
                self.bird_bfd_state(),
                self.cer.ctl(&["show", "bgp", "summary"]).unwrap_or_default(),
                self.bird_has(FRR_NET),
                self.frr_has(BIRD_NET),
                tail(&self.cer.proc.log_text(), 30)
            )
        })
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Stops (SIGSTOP) or resumes (SIGCONT) every PID: a frozen router says
/// nothing, neither FIN nor NOTIFICATION.
fn signal_all(pids: &[u32], sig: i32) {
    for p in pids {
        send_signal(*p, sig);
    }
}

#[test]
fn bfd_with_frr_and_bird_detects_frozen_routers_both_ways() -> Result<()> {
    require_root();
    let _g = serial();
    let topo = Topo::new()?;
    let t = topo.wait_all_up("BGP and BFD up with FRR and BIRD, routes reflected")?;
    eprintln!("BGP + BFD up on every side, routes reflected, after {t:?}");
    let s = topo.cer_bfd(BIRD).unwrap();
    assert_eq!(s["kind"], "single hop", "{s}");
    assert_eq!(s["authentication"], "keyed SHA1, key id 1", "{s}");
    assert_eq!(s["multiplier"], 3, "{s}");
    // The negotiated interval: 300 ms both ways once out of the 1 s slow start.
    wait_until("cer's BFD to FRR at 300 ms", UP, || {
        topo.cer_bfd(FRR)
            .is_some_and(|s| s["tx_interval_ms"].as_f64() == Some(300.0))
    })?;

    // Bad input: each packet a named drop; the sessions stay Up.
    let py = topo.scratch.file("bfd_bad_packets.py");
    std::fs::write(&py, BAD_PACKETS)?;
    topo.bird_ns
        .run(&["/usr/bin/python3", py.to_str().unwrap(), CER])?;
    wait_until("the bad packets counted", Duration::from_secs(5), || {
        let Ok(v) = topo.cer.json(&["show", "bfd"]) else {
            return false;
        };
        ["ttl", "version", "detect_mult_zero", "no_session", "short"]
            .iter()
            .all(|k| v["drops"][k].as_u64().unwrap_or(0) >= 1)
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e:#}: {}",
            topo.cer.ctl(&["show", "bfd"]).unwrap_or_default()
        )
    })?;
    for peer in [FRR, BIRD] {
        let s = topo.cer_bfd(peer).unwrap();
        assert_eq!(s["state"], "Up", "{s}");
        assert_eq!(s["down_count"], 0, "{s}");
    }
    eprintln!("{}", topo.cer.ctl(&["show", "bfd"])?);

    // FRR freezes: cer-control's BFD detects it, resets the BGP session
    // and withdraws FRR's route (from itself and from BIRD).
    let frr_pids = topo.frr.pids();
    signal_all(&frr_pids, libc::SIGSTOP);
    let t0 = Instant::now();
    let detect = wait_until("cer's BFD to frozen FRR Down", DETECT, || {
        topo.cer_bfd(FRR).is_some_and(|s| s["state"] == "Down")
    })
    .map(|_| t0.elapsed());
    let gone_at_cer = wait_until("FRR's route gone at cer", DETECT, || !topo.cer_has(FRR_NET))
        .map(|_| t0.elapsed());
    let gone_at_bird = wait_until("FRR's route gone at BIRD", DETECT, || {
        !topo.bird_has(FRR_NET)
    })
    .map(|_| t0.elapsed());
    let n = topo.cer_neighbor(FRR);
    let s = topo.cer_bfd(FRR);
    let bird_bfd = topo.bird_bfd_state();
    signal_all(&frr_pids, libc::SIGCONT);
    let (detect, gone_at_cer, gone_at_bird) = (detect?, gone_at_cer?, gone_at_bird?);
    eprintln!(
        "FRR frozen: cer's BFD Down after {detect:?}, FRR's route gone at cer by {gone_at_cer:?}, at BIRD by {gone_at_bird:?} (BGP hold time 90 s)"
    );
    let n = n.expect("FRR in cer's summary");
    assert_ne!(n["state"], "Established", "{n}");
    assert!(
        n["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("BFD down")),
        "{n}"
    );
    let s = s.unwrap();
    assert_eq!(s["bgp_teardowns"], 1, "{s}");
    assert_eq!(s["local_diag"], "ControlDetectionTimeExpired", "{s}");
    // The other session never blinked.
    assert_eq!(bird_bfd.as_deref(), Some("Up"));
    assert_eq!(topo.cer_bfd(BIRD).unwrap()["down_count"], 0);

    // Thawed: BFD and BGP come back, the route is reflected again.
    let t = topo.wait_all_up("FRR back after the thaw")?;
    eprintln!("FRR thawed: all back after {t:?}");

    // cer-control freezes: FRR's bfdd and BIRD detect it and drop the
    // routes cer reflected to them.
    let cer_pid = topo.cer.proc.pid();
    send_signal(cer_pid, libc::SIGSTOP);
    let t0 = Instant::now();
    let frr_down = wait_until("FRR's bfdd: cer down", DETECT, || {
        topo.frr_bfd_status().as_deref() == Some("down")
    })
    .map(|_| t0.elapsed());
    let bird_down = wait_until("BIRD's BFD: cer down", DETECT, || {
        topo.bird_bfd_state().as_deref() == Some("Down")
    })
    .map(|_| t0.elapsed());
    let frr_gone = wait_until("BIRD's route gone at FRR", DETECT, || {
        !topo.frr_has(BIRD_NET)
    })
    .map(|_| t0.elapsed());
    let bird_gone = wait_until("FRR's route gone at BIRD", DETECT, || {
        !topo.bird_has(FRR_NET)
    })
    .map(|_| t0.elapsed());
    let frr_state = topo.frr.neighbors_json().ok().map(|v| v[CER].clone());
    send_signal(cer_pid, libc::SIGCONT);
    let (frr_down, bird_down, frr_gone, bird_gone) = (frr_down?, bird_down?, frr_gone?, bird_gone?);
    eprintln!(
        "cer-control frozen: FRR's bfdd down by {frr_down:?}, BIRD's by {bird_down:?}; reflected routes gone at FRR by {frr_gone:?}, at BIRD by {bird_gone:?} (BGP hold time 90 s)"
    );
    let frr_state = frr_state.expect("FRR's neighbor view");
    assert_ne!(frr_state["bgpState"], "Established", "{frr_state}");
    let t = topo.wait_all_up("cer back after the thaw")?;
    eprintln!("cer-control thawed: all back after {t:?}");
    Ok(())
}
