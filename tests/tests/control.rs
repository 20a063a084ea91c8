//! cer-control end to end with real peers: gobgpd as the route reflector of
//! the original design and two cer-control clients (one feeding a real
//! cer-dataplane), in network namespaces on one L2 segment.
//!
//!   rr (gobgpd 10.10.0.1) -- lan bridge -- a (cer-control 10.10.0.2 + cer-dataplane)
//!                                       \-- b (cer-control 10.10.0.3)

use anyhow::{Context, Result};
use cer_e2e::peers::{gobgp_rr_config, GoBgp, Lan};
use cer_e2e::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The standard client config: node `name` at `ip`, one iBGP session to
/// the reflector 10.10.0.1, identity 65000:`identity`, tunnels 2 and 3 to a
/// and b.
fn client_config(dir: &Path, name: &str, ip: &str, identity: u16) -> ControlConfig {
    let last = ip.rsplit('.').next().unwrap();
    ControlConfig::new(name, ip, 65000)
        .fast_timers()
        .graceful_restart_secs(0)
        .neighbor(Neighbor::internal("10.10.0.1"))
        .sam(
            &format!("65000:{identity}"),
            &format!("10.255.0.{last}/32"),
            &dir.join(format!("{name}-endpoints.json")),
        )
        .tunnel(2, "10.10.0.2")
        .tunnel(3, "10.10.0.3")
}

fn owner(c: &Control, ip: &str) -> Result<Option<Value>> {
    let owners = c.json(&["show", "owners"])?;
    Ok(owners
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["prefix"] == format!("{ip}/32"))
        .cloned())
}

fn owner_identity(c: &Control, ip: &str) -> Option<String> {
    owner(c, ip)
        .ok()
        .flatten()
        .and_then(|o| o["identity"].as_str().map(String::from))
}

#[test]
fn cer_control_with_gobgpd_route_reflector() -> Result<()> {
    let _g = serial();
    require_root();
    let scratch = Scratch::new("ctl")?;
    let lan = Lan::new()?;
    let rr_ns = Netns::new("rr")?;
    let a_ns = Netns::new("a")?;
    let b_ns = Netns::new("b")?;
    lan.attach(&rr_ns, "eth0", "10.10.0.1/24")?;
    lan.attach(&a_ns, "eth0", "10.10.0.2/24")?;
    lan.attach(&b_ns, "eth0", "10.10.0.3/24")?;
    let rr = GoBgp::start(
        &rr_ns,
        &scratch.path,
        &gobgp_rr_config(65000, "10.10.0.1", "10.10.0.1", &["10.10.0.2", "10.10.0.3"]),
    )?;

    // Node a also runs a dataplane, fed by cer-control (a LAN port on a veth pair in a's namespace).
    // Its tunnels 2 and 3 (IPIP) lead nowhere: explain shows them as the
    // dataplane runs them, and its capture command sees what enters them.
    let mut ft = FeedTarget::start_with_tunnels(
        &a_ns,
        &scratch.path,
        "10.77.61.1/24",
        vec![
            Tunnel::new(2, "ipip", "10.77.61.1", "10.10.0.2"),
            Tunnel::new(3, "ipip", "10.77.61.1", "10.10.0.3"),
        ],
    )?;

    let dir = &scratch.path;
    let a_config = client_config(dir, "a", "10.10.0.2", 1002)
        .feed_socket(&ft.feed)
        .lan_port("lan")
        .initial_sync_delay_secs(2)
        .capture_mode("onprem")
        .single_router();
    let a = Control::start(Some(&a_ns), dir, "a", &a_config.to_string())?;
    let b = Control::start(
        Some(&b_ns),
        dir,
        "b",
        &client_config(dir, "b", "10.10.0.3", 1003).to_string(),
    )?;
    let up = rr.wait_established("10.10.0.2", Duration::from_secs(15))?;
    rr.wait_established("10.10.0.3", Duration::from_secs(15))?;
    eprintln!("sessions up after {up:?}");

    // Endpoints: .10 at a, .11 at b, .12 at both (b preferred).
    a.ctl(&["endpoint", "add", "10.77.60.10"])?;
    b.ctl(&["endpoint", "add", "10.77.60.11"])?;
    a.ctl(&["endpoint", "add", "10.77.60.12", "--local-pref", "100"])?;
    b.ctl(&["endpoint", "add", "10.77.60.12", "--local-pref", "200"])?;
    wait_until("owners converge", Duration::from_secs(10), || {
        owner_identity(&a, "10.77.60.11").as_deref() == Some("65000:1003")
            && owner_identity(&b, "10.77.60.10").as_deref() == Some("65000:1002")
            && owner_identity(&a, "10.77.60.12").as_deref() == Some("65000:1003")
    })?;

    // The reflector carries communities, and a sees what gobgpd reflected.
    let rib = rr.rib()?;
    let r11 = rib
        .iter()
        .find(|r| r.prefix == "10.77.60.11/32")
        .context("gobgpd has .11")?;
    assert!(r11.has_community("65000:1003"), "{r11:?}");
    assert!(rib.iter().any(|r| r.prefix == "10.255.0.2/32"
        && r.has_community("65000:999")
        && r.has_community("65000:1002")));
    let a_rib = a.json(&["show", "bgp", "rib", "10.77.60.11/32"])?;
    let p = &a_rib[0];
    assert_eq!(p["next_hop"], "10.10.0.3");
    assert_eq!(
        p["originator_id"], "10.10.0.3",
        "ORIGINATOR_ID set by the reflector: {p}"
    );
    assert_eq!(p["cluster_list"], serde_json::json!(["10.10.0.1"]));
    assert_eq!(p["marker"], "present");

    // The dataplane of a got the FIB: .11 into tunnel 3 (b), .10 local.
    wait_until("dataplane FIB", Duration::from_secs(10), || {
        let eps = ft.endpoints();
        let has = |ip: &str, action: &str| eps.iter().any(|(i, a)| i == ip && a == action);
        has("10.77.60.11", "tunnel 3")
            && has("10.77.60.10", "local lan")
            && has("10.77.60.12", "tunnel 3")
    })?;
    // On-prem capture (single_router): a's dataplane answers ARP for the /32s
    // owned at b, not for its own.
    wait_until(
        "proxy-ARP set = remote-owned /32s",
        Duration::from_secs(10),
        || {
            admin(&ft.admin, "proxy_arp").is_ok_and(|p| {
                let has = |ip: &str| {
                    p["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|a| a == ip)
                };
                p["active"] == true
                    && has("10.77.60.11")
                    && has("10.77.60.12")
                    && !has("10.77.60.10")
            })
        },
    )?;
    let ex = a.json(&["explain", "10.77.60.11"])?;
    assert!(
        ex["capture"]["this_ip"]
            .as_str()
            .is_some_and(|t| t.starts_with("captured here")),
        "explain capture: {}",
        ex["capture"]
    );

    // Marker liveness: node 9's endpoint, injected at the RR, counts only while
    // node 9's marker is in the Loc-RIB. (gobgpd reflects only its best path, so
    // no other candidate for .13 reaches a: ownership goes away, it cannot move.)
    rr.add_route("10.77.60.13/32", "10.10.0.9", &["65000:1009"], Some(300))?;
    wait_until(
        "a has node 9's path for .13",
        Duration::from_secs(10),
        || {
            a.json(&["show", "bgp", "rib", "10.77.60.13/32"])
                .is_ok_and(|r| r.as_array().is_some_and(|v| !v.is_empty()))
        },
    )?;
    assert!(
        owner(&a, "10.77.60.13")?.is_none(),
        "a path without its marker owns nothing"
    );
    rr.add_route(
        "10.255.0.9/32",
        "10.10.0.9",
        &["65000:999", "65000:1009"],
        None,
    )?;
    wait_until("node 9 owns .13", Duration::from_secs(10), || {
        owner_identity(&a, "10.77.60.13").as_deref() == Some("65000:1009")
    })?;
    let t0 = Instant::now();
    rr.del_route("10.255.0.9/32")?;
    wait_until(
        "marker loss drops node 9's ownership",
        Duration::from_secs(10),
        || owner(&a, "10.77.60.13").is_ok_and(|o| o.is_none()),
    )?;
    eprintln!(
        "ownership dropped {:?} after the marker withdrawal at the RR",
        t0.elapsed()
    );
    let ex = a.json(&["explain", "10.77.60.13"])?;
    assert_eq!(ex["candidates"][0]["marker_present"], false, "{ex}");
    let trap = a.json(&["show", "trap"])?;
    assert!(
        trap.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["prefix"] == "10.77.60.13/32")
            .count()
            >= 2,
        "{trap}"
    );
    rr.del_route("10.77.60.13/32")?;

    // Endpoint move: a takes .11 over.
    a.ctl(&["endpoint", "move", "10.77.60.11"])?;
    wait_until("a owns .11 everywhere", Duration::from_secs(10), || {
        owner(&a, "10.77.60.11")
            .ok()
            .flatten()
            .is_some_and(|o| o["local"] == true)
            && owner_identity(&b, "10.77.60.11").as_deref() == Some("65000:1002")
    })?;

    // explain answers from live state.
    let ex = a.json(&["explain", "10.77.60.12"])?;
    assert_eq!(ex["owner"]["identity"], "65000:1003");
    assert!(
        ex["owner"]["why"].as_str().unwrap().contains("local-pref"),
        "{ex}"
    );
    assert_eq!(ex["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(ex["fib"]["imported"]["kind"], "tunnel");
    // Q2 from the dataplane: the tunnel's kind, endpoints and MTU.
    let dp_sock = ft.admin.display().to_string();
    let ex = a.json(&["explain", "10.77.60.12", "--dataplane-socket", &dp_sock])?;
    let tun = &ex["transport"]["tunnel"]["dataplane"];
    assert_eq!(ex["transport"]["tunnel"]["id"], 3, "{ex}");
    assert_eq!(tun["kind"], "ipip", "{ex}");
    assert_eq!(tun["local"], "10.77.61.1", "{ex}");
    assert_eq!(tun["remote"], "10.10.0.3", "{ex}");
    assert_eq!(tun["mtu"], 1480, "{ex}");
    // Q3: the printed capture command, run as printed, captures the /32's
    // traffic (pings from the dataplane's LAN peer into tunnel 3).
    let cmd = ex["capture_points"]["inner"]["command"]
        .as_str()
        .context("explain has an inner capture command")?
        .to_string();
    assert!(
        cmd.contains("--point tunnel:3:inner") && cmd.contains("--filter 'host 10.77.60.12'"),
        "{cmd}"
    );
    let cmd = cmd
        .replacen("cerctl", &bin("cerctl").display().to_string(), 1)
        .replace("--count 20", "--count 6");
    let file = cmd
        .rsplit(' ')
        .next()
        .context("the command names its file")?
        .to_string();
    let _ = std::fs::remove_file(&file);
    a_ns.run(&["ip", "addr", "add", "10.77.61.2/24", "dev", "dphost"])?;
    a_ns.run(&["ip", "route", "add", "10.77.60.12/32", "via", "10.77.61.1"])?;
    let capture = std::process::Command::new("bash")
        .args(["-c", &cmd])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    let _ = a_ns.try_run(&["ping", "-c", "8", "-i", "0.2", "-W", "1", "10.77.60.12"]);
    let out = capture.wait_with_output()?;
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = sh(&[
        "tshark",
        "-r",
        &file,
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
        "-e",
        "ip.dst",
    ])?;
    let seen = String::from_utf8_lossy(&seen.stdout).into_owned();
    let _ = std::fs::remove_file(&file);
    assert_eq!(seen.lines().count(), 6, "{seen}");
    assert!(seen.lines().all(|l| l.ends_with("10.77.60.12")), "{seen}");
    assert!(seen.contains("tunnel 3 inner"), "{seen}");
    let text = a.ctl(&["explain", "10.77.60.12", "--dataplane-socket", &dp_sock])?;
    eprintln!("{text}");
    assert!(
        text.contains("tunnel 3: ipip 10.77.61.1 -> 10.10.0.3, inner MTU 1480"),
        "{text}"
    );
    for needle in [
        "1. Owner",
        "2. Transport",
        "3. Capture points",
        "4. Local FIB",
        "5. Capture",
        "6. Fencing",
        "7. Prove no NAT",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }

    // Owner dies (no NOTIFICATION): its marker disappears, a owns .12 now.
    let mut b = b;
    unsafe_kill(&mut b.proc);
    let t = wait_until("a owns .12 after b died", Duration::from_secs(20), || {
        owner(&a, "10.77.60.12")
            .ok()
            .flatten()
            .is_some_and(|o| o["local"] == true)
    })?;
    eprintln!("ownership of .12 moved {t:?} after b was killed");
    assert!(owner(&a, "10.77.60.11")
        .ok()
        .flatten()
        .is_some_and(|o| o["local"] == true));
    wait_until(
        "dataplane delivers .12 locally",
        Duration::from_secs(10),
        || ft.has("10.77.60.12", "local lan"),
    )?;

    // Endpoints persist: a restarted a re-advertises them.
    let sum = a.json(&["show", "bgp", "summary"])?;
    assert_eq!(sum["neighbors"][0]["state"], "Established");
    drop(a);
    // Same name: same config file, state file, socket and log as the first a.
    let a2 = Control::start(
        Some(&a_ns),
        dir,
        "a",
        &client_config(dir, "a", "10.10.0.2", 1002).to_string(),
    )?;
    wait_until(
        "a's endpoints back at the RR",
        Duration::from_secs(15),
        || {
            rr.rib().is_ok_and(|r| {
                r.iter()
                    .any(|x| x.prefix == "10.77.60.10/32" && x.has_community("65000:1002"))
            })
        },
    )?;
    drop(a2);
    let _ = ft.proc.terminate(Duration::from_secs(5));
    Ok(())
}

/// SIGKILL by PID: the process dies without sending NOTIFICATIONs.
fn unsafe_kill(p: &mut Proc) {
    let pid = p.pid() as i32;
    // SAFETY: kill(2) on the PID of a child this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
}

/// A hand-rolled BGP peer on a raw socket, for sending crafted bytes.
struct RawPeer {
    s: std::net::TcpStream,
}

impl RawPeer {
    fn connect(from: &str, to: &str) -> Result<RawPeer> {
        let sock = socket2_connect(from, to)?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut p = RawPeer { s: sock };
        // OPEN: version 4, AS 65000, hold 30, id 10.9.9.9, caps: MP ipv4/unicast, 4-octet AS 65000.
        let caps = [2u8, 12, 1, 4, 0, 1, 0, 1, 65, 4, 0, 0, 0xfd, 0xe8];
        let mut body = vec![4u8, 0xfd, 0xe8, 0, 30, 10, 9, 9, 9, caps.len() as u8];
        body.extend_from_slice(&caps);
        p.send(1, &body)?;
        let (t, _) = p.recv()?;
        assert_eq!(t, 1, "OPEN from cer-control");
        p.send(4, &[])?;
        loop {
            let (t, _) = p.recv()?;
            if t == 4 {
                return Ok(p);
            }
        }
    }

    fn send(&mut self, typ: u8, body: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut m = vec![0xffu8; 16];
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(typ);
        m.extend_from_slice(body);
        self.s.write_all(&m)?;
        Ok(())
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        self.s.write_all(bytes)?;
        Ok(())
    }

    fn recv(&mut self) -> Result<(u8, Vec<u8>)> {
        use std::io::Read;
        let mut h = [0u8; 19];
        self.s.read_exact(&mut h)?;
        let len = u16::from_be_bytes([h[16], h[17]]) as usize;
        let mut body = vec![0u8; len - 19];
        self.s.read_exact(&mut body)?;
        Ok((h[18], body))
    }

    /// UPDATE body from attributes and NLRI.
    fn update(&mut self, withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Result<()> {
        let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(withdrawn);
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(attrs);
        b.extend_from_slice(nlri);
        self.send(2, &b)
    }
}

fn socket2_connect(from: &str, to: &str) -> Result<std::net::TcpStream> {
    // Bind the source address (the configured neighbor) with plain libc-free std:
    // connect from a listener-less bound socket via TcpStream::connect is not
    // possible in std, so use a tiny helper process-free trick: bind through
    // tokio's TcpSocket in a throwaway runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (from, to): (std::net::SocketAddr, std::net::SocketAddr) =
        (format!("{from}:0").parse()?, to.parse()?);
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(from)?;
        sock.connect(to).await
    })?;
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(s)
}

const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH: [u8; 3] = [0x40, 2, 0];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 10, 9, 9, 9];
const LOCAL_PREF: [u8; 7] = [0x40, 5, 4, 0, 0, 0, 100];
const COMMUNITY: [u8; 7] = [0xc0, 8, 4, 0xfd, 0xe8, 0x03, 0xf1];

fn good_attrs() -> Vec<u8> {
    [&ORIGIN[..], &AS_PATH, &NEXT_HOP, &LOCAL_PREF, &COMMUNITY].concat()
}

/// Crafted malformed UPDATEs against the real cer-control (RFC 7606, RFC 4271
/// 6.3): treat-as-withdraw keeps the session up and withdraws the route;
/// attribute discard keeps the route; a following valid UPDATE is always
/// installed (no error outlives its message); an attribute overrunning the
/// attribute field is treat-as-withdraw since the Total Attribute Length still
/// locates the NLRI (RFC 7606 4); only errors that leave the NLRI unusable
/// reset, with the right NOTIFICATION, and the peer's old routes go with the
/// session. Every action is counted under its cause. Nothing panics.
#[test]
fn malformed_updates_are_treat_as_withdraw() -> Result<()> {
    let _g = serial();
    let scratch = Scratch::new("malformed")?;
    let cfg = ControlConfig::new("m", "127.0.0.61", 65000)
        .listen(&["127.0.0.61:11180"])
        .hold_time(30)
        .graceful_restart_secs(0)
        .neighbor(Neighbor::internal("127.0.0.62").passive())
        .sam("65000:1010", "10.255.0.61/32", &scratch.file("ep.json"))
        .to_string();
    let ctl = Control::start(None, &scratch.path, "m", &cfg)?;
    let mut peer = RawPeer::connect("127.0.0.62", "127.0.0.61:11180")?;
    let nlri = [32u8, 10, 77, 60, 20];
    let nlri_21 = [32u8, 10, 77, 60, 21];
    let has = |c: &Control, prefix: &str| {
        c.json(&["show", "bgp", "rib", prefix])
            .is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    };
    let has_20 = |c: &Control| has(c, "10.77.60.20/32");
    let summary =
        |c: &Control| c.json(&["show", "bgp", "summary"]).unwrap()["neighbors"][0].clone();
    let caused = |c: &Control, cause: &str| {
        summary(c)["update_errors"][cause]
            .as_u64()
            .is_some_and(|n| n > 0)
    };
    let notification = |peer: &mut RawPeer| {
        while let Ok((t, body)) = peer.recv() {
            if t == 3 {
                return Some((body[0], body[1]));
            }
        }
        None
    };

    peer.update(&[], &good_attrs(), &nlri)?;
    wait_until("valid route learned", Duration::from_secs(5), || {
        has_20(&ctl)
    })?;

    // Each of these is treat-as-withdraw: route gone, session up, counted by cause.
    let with = |extra: &[u8]| [&ORIGIN[..], &AS_PATH, &NEXT_HOP, extra].concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "ORIGIN value 9",
            [&[0x40u8, 1, 1, 9][..], &AS_PATH, &NEXT_HOP].concat(),
            "treat-as-withdraw: ORIGIN value",
        ),
        (
            "LOCAL_PREF of 2 bytes",
            with(&[0x40, 5, 2, 0, 1]),
            "treat-as-withdraw: LOCAL_PREF length",
        ),
        (
            "COMMUNITIES of 3 bytes",
            with(&[0xc0, 8, 3, 1, 2, 3]),
            "treat-as-withdraw: COMMUNITIES length",
        ),
        (
            "no NEXT_HOP",
            [&ORIGIN[..], &AS_PATH].concat(),
            "treat-as-withdraw: NEXT_HOP missing",
        ),
        (
            "ORIGINATOR_ID of 2 bytes",
            with(&[0x80, 9, 2, 1, 2]),
            "treat-as-withdraw: ORIGINATOR_ID length",
        ),
        (
            "NEXT_HOP of 5 bytes",
            [&ORIGIN[..], &AS_PATH, &[0x40, 3, 5, 10, 9, 9, 9, 0]].concat(),
            "treat-as-withdraw: NEXT_HOP length",
        ),
        (
            "NEXT_HOP 0.0.0.0",
            [&ORIGIN[..], &AS_PATH, &[0x40, 3, 4, 0, 0, 0, 0]].concat(),
            "treat-as-withdraw: NEXT_HOP value",
        ),
        (
            "NEXT_HOP 224.0.0.9 (multicast)",
            [&ORIGIN[..], &AS_PATH, &[0x40, 3, 4, 224, 0, 0, 9]].concat(),
            "treat-as-withdraw: NEXT_HOP value",
        ),
        (
            "attribute length past the attribute field (RFC 7606 4)",
            with(&[0x40, 5, 200, 0, 0, 0, 100]),
            "treat-as-withdraw: LOCAL_PREF framing",
        ),
        (
            "2 trailing octets in the attribute field (RFC 7606 4)",
            with(&[0x40, 5]),
            "treat-as-withdraw: path attributes framing",
        ),
    ];
    for (i, (what, attrs, cause)) in cases.iter().enumerate() {
        peer.update(&[], &good_attrs(), &nlri)?;
        wait_until("re-learned", Duration::from_secs(5), || has_20(&ctl))?;
        peer.update(&[], attrs, &nlri)?;
        wait_until(what, Duration::from_secs(5), || !has_20(&ctl))?;
        let s = summary(&ctl);
        assert_eq!(s["state"], "Established", "{what}: {s}");
        assert_eq!(
            s["treat_as_withdraw"].as_u64(),
            Some(i as u64 + 1),
            "{what}: {s}"
        );
        assert!(caused(&ctl, cause), "{what}: {cause} not counted: {s}");
        // The next valid UPDATE (another prefix) is installed: no error outlives its message.
        peer.update(&[], &good_attrs(), &nlri_21)?;
        wait_until(
            "valid UPDATE after the bad one",
            Duration::from_secs(5),
            || has(&ctl, "10.77.60.21/32"),
        )?;
        peer.update(&nlri_21, &[], &[])?;
    }

    // Attribute discard (RFC 7606 7.6): ATOMIC_AGGREGATE of 1 octet is dropped, the route stays.
    peer.update(&[], &good_attrs(), &nlri)?;
    wait_until("re-learned", Duration::from_secs(5), || has_20(&ctl))?;
    peer.update(&[], &[&good_attrs()[..], &[0x40, 6, 1, 0]].concat(), &nlri)?;
    wait_until("ATOMIC_AGGREGATE discarded", Duration::from_secs(5), || {
        caused(&ctl, "attribute-discard: ATOMIC_AGGREGATE length")
    })?;
    let s = summary(&ctl);
    assert!(has_20(&ctl), "route kept: {s}");
    assert_eq!(s["attribute_discard"].as_u64(), Some(1), "{s}");
    assert_eq!(
        s["treat_as_withdraw"].as_u64(),
        Some(cases.len() as u64),
        "{s}"
    );
    // KEEPALIVEs still flow both ways.
    peer.send(4, &[])?;

    // NLRI prefix length 40 (the attribute field also overruns, which alone would be
    // treat-as-withdraw): the NLRI is syntactically incorrect, so the session is reset
    // with Invalid Network Field (RFC 4271 6.3, RFC 7606 5.3). The peer's route goes
    // with the session. (This case expected any UPDATE error before; 3/10 is the code.)
    let mut b = 0u16.to_be_bytes().to_vec();
    b.extend_from_slice(&4u16.to_be_bytes());
    b.extend_from_slice(&[0x40, 1, 200, 0]);
    b.extend_from_slice(&[40, 1, 2, 3]);
    peer.send(2, &b)?;
    assert_eq!(
        notification(&mut peer),
        Some((3, 10)),
        "Invalid Network Field"
    );
    wait_until("session down", Duration::from_secs(5), || {
        summary(&ctl)["state"] != "Established"
    })?;
    assert!(!has_20(&ctl), "the old route went with the session");

    // Errors that reset, each on a new session.
    let mp_reach_nh7 = [
        0x80u8, 14, 17, 0, 1, 1, 7, 10, 9, 9, 9, 0, 0, 0, 0, 32, 10, 77, 60, 20,
    ];
    let mp_reach = [
        0x80u8, 14, 14, 0, 1, 1, 4, 10, 9, 9, 9, 0, 32, 10, 77, 60, 20,
    ];
    // (what, attributes, NLRI field, NOTIFICATION, counter); every UPDATE is about 10.77.60.20.
    type ResetCase<'a> = (&'a str, Vec<u8>, &'a [u8], (u8, u8), &'a str);
    let resets: Vec<ResetCase> = vec![
        (
            "unrecognized attribute flagged well-known",
            [&good_attrs()[..], &[0x40, 99, 1, 0]].concat(),
            &nlri,
            (3, 2),
            "session-reset: attribute 99 unrecognized",
        ),
        (
            "two MP_REACH_NLRI",
            [&ORIGIN[..], &AS_PATH, &LOCAL_PREF, &mp_reach, &mp_reach].concat(),
            &[],
            (3, 1),
            "session-reset: MP_REACH_NLRI duplicate",
        ),
        (
            "MP_REACH_NLRI next-hop length 7",
            [&ORIGIN[..], &AS_PATH, &LOCAL_PREF, &mp_reach_nh7].concat(),
            &[],
            (3, 9),
            "session-reset: MP_REACH_NLRI length",
        ),
    ];
    for (what, attrs, bad_nlri, code, cause) in &resets {
        let mut peer = RawPeer::connect("127.0.0.62", "127.0.0.61:11180")?;
        peer.update(&[], &good_attrs(), &nlri)?;
        wait_until("learned on the new session", Duration::from_secs(5), || {
            has_20(&ctl)
        })?;
        peer.update(&[], attrs, bad_nlri)?;
        assert_eq!(notification(&mut peer), Some(*code), "{what}");
        wait_until(what, Duration::from_secs(5), || {
            summary(&ctl)["state"] != "Established"
        })?;
        assert!(!has_20(&ctl), "{what}: the old route survived the reset");
        assert!(
            caused(&ctl, cause),
            "{what}: {cause} not counted: {}",
            summary(&ctl)
        );
    }

    // Garbage header on a new session: NOTIFICATION 1/1, and cer-control lives on.
    let mut peer = RawPeer::connect("127.0.0.62", "127.0.0.61:11180")?;
    peer.raw(&[0u8; 19])?;
    assert_eq!(
        notification(&mut peer),
        Some((1, 1)),
        "connection not synchronized"
    );
    let mut peer = RawPeer::connect("127.0.0.62", "127.0.0.61:11180")?;
    wait_until("established again", Duration::from_secs(5), || {
        summary(&ctl)["state"] == "Established"
    })?;
    peer.update(&[], &good_attrs(), &nlri)?;
    wait_until(
        "a valid route after all of it",
        Duration::from_secs(5),
        || has_20(&ctl),
    )?;
    let log = ctl.proc.log_text();
    for needle in [
        "treating",
        "treat-as-withdraw: NEXT_HOP value",
        "attribute-discard: ATOMIC_AGGREGATE length",
        "session-reset: MP_REACH_NLRI length",
    ] {
        assert!(log.contains(needle), "{needle} not logged: {log}");
    }
    Ok(())
}

/// cer-control as a route reflector (RFC 4456) between an FRR client and a
/// BIRD client: sessions establish, routes and communities pass both ways,
/// reflected routes carry ORIGINATOR_ID and our CLUSTER_LIST, and our own
/// endpoint reaches both with its identity community.
#[test]
fn cer_control_reflects_between_frr_and_bird() -> Result<()> {
    use cer_e2e::peers::{bird_config, bird_protocol_name, frr_config, Bird, Frr, IbgpConf};
    let _g = serial();
    require_root();
    let scratch = Scratch::new("rr")?;
    let lan = Lan::new()?;
    let rr_ns = Netns::new("crr")?;
    let f_ns = Netns::new("frr")?;
    let w_ns = Netns::new("bird")?;
    lan.attach(&rr_ns, "eth0", "10.10.0.1/24")?;
    lan.attach(&f_ns, "eth0", "10.10.0.5/24")?;
    lan.attach(&w_ns, "eth0", "10.10.0.6/24")?;

    let frr_conf = frr_config(&IbgpConf {
        asn: 65000,
        router_id: "10.10.0.5",
        local_addr: "10.10.0.5",
        neighbors: &["10.10.0.1"],
        rr_clients: false,
        passive: false,
        networks: &[],
    })
    .replace(
        " exit-address-family",
        "  network 10.77.70.1/32 route-map SETC\n exit-address-family",
    ) + "route-map SETC permit 10\n set community 65000:701\n!\n";
    let frr = Frr::start(&f_ns, &scratch.path, &frr_conf)?;
    let bird_conf = bird_config(&IbgpConf {
        asn: 65000,
        router_id: "10.10.0.6",
        local_addr: "10.10.0.6",
        neighbors: &["10.10.0.1"],
        rr_clients: false,
        passive: false,
        networks: &[],
    })
    .replace("protocol static local_nets {\n  ipv4;\n", "protocol static local_nets {\n  ipv4;\n  route 10.77.70.2/32 blackhole { bgp_community.add((65000,702)); };\n");
    let bird = Bird::start(&w_ns, &scratch.path, &bird_conf)?;

    let cfg = ControlConfig::new("rr", "10.10.0.1", 65000)
        .listen(&["10.10.0.1"])
        .fast_timers()
        .graceful_restart_secs(0)
        .route_reflector()
        .neighbor(Neighbor::internal("10.10.0.5").rr_client())
        .neighbor(Neighbor::internal("10.10.0.6").rr_client())
        .sam("65000:1050", "10.255.0.1/32", &scratch.file("rr2-ep.json"))
        .endpoints(&["10.77.60.50"])
        .to_string();
    let rr = Control::start(Some(&rr_ns), &scratch.path, "rr2", &cfg)?;

    frr.wait_established("10.10.0.1", Duration::from_secs(20))?;
    bird.wait_established(&bird_protocol_name("10.10.0.1"), Duration::from_secs(20))?;
    let sum = rr.json(&["show", "bgp", "summary"])?;
    assert!(
        sum["neighbors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "Established"),
        "{sum}"
    );

    // cer-control learned both clients' routes with their communities.
    wait_until(
        "both client routes at the RR",
        Duration::from_secs(10),
        || {
            let r = rr.json(&["show", "bgp", "rib"]).unwrap_or_default();
            let a = r.as_array().cloned().unwrap_or_default();
            a.iter().any(|x| {
                x["prefix"] == "10.77.70.1/32"
                    && x["communities"]
                        .as_array()
                        .is_some_and(|c| c.contains(&"65000:701".into()))
            }) && a.iter().any(|x| {
                x["prefix"] == "10.77.70.2/32"
                    && x["communities"]
                        .as_array()
                        .is_some_and(|c| c.contains(&"65000:702".into()))
            })
        },
    )?;

    // BIRD got FRR's route, reflected by us.
    wait_until("FRR's route at BIRD", Duration::from_secs(10), || {
        bird.routes()
            .is_ok_and(|r| r.iter().any(|x| x.prefix == "10.77.70.1/32"))
    })?;
    let br = bird.routes()?;
    let r = br.iter().find(|x| x.prefix == "10.77.70.1/32").unwrap();
    assert!(r.has_community("65000:701"), "{r:?}");
    assert_eq!(r.originator_id.as_deref(), Some("10.10.0.5"), "{r:?}");
    assert_eq!(r.cluster_list, vec!["10.10.0.1".to_string()], "{r:?}");
    assert_eq!(
        r.next_hop, "10.10.0.5",
        "next hop unchanged by the reflector"
    );
    // FRR got BIRD's route, reflected by us.
    wait_until("BIRD's route at FRR", Duration::from_secs(10), || {
        frr.routes_json()
            .is_ok_and(|r| r.iter().any(|x| x.prefix == "10.77.70.2/32"))
    })?;
    let fr = frr.routes_json()?;
    let r = fr.iter().find(|x| x.prefix == "10.77.70.2/32").unwrap();
    assert!(r.has_community("65000:702"), "{r:?}");
    assert_eq!(r.originator_id.as_deref(), Some("10.10.0.6"), "{r:?}");
    assert_eq!(r.cluster_list, vec!["10.10.0.1".to_string()], "{r:?}");
    // Our own endpoint and marker reach both, with our identity community.
    for routes in [frr.routes_json()?, bird.routes()?] {
        let ep = routes
            .iter()
            .find(|x| x.prefix == "10.77.60.50/32")
            .context("our endpoint")?;
        assert!(ep.has_community("65000:1050"), "{ep:?}");
        assert_eq!(ep.local_pref, Some(100));
        let m = routes
            .iter()
            .find(|x| x.prefix == "10.255.0.1/32")
            .context("our marker")?;
        assert!(
            m.has_community("65000:999") && m.has_community("65000:1050"),
            "{m:?}"
        );
    }
    // A withdrawal at FRR is reflected to BIRD.
    frr.configure(&[
        "router bgp 65000",
        "address-family ipv4 unicast",
        "no network 10.77.70.1/32 route-map SETC",
    ])?;
    wait_until(
        "withdrawal reflected to BIRD",
        Duration::from_secs(10),
        || {
            bird.routes()
                .is_ok_and(|r| !r.iter().any(|x| x.prefix == "10.77.70.1/32"))
        },
    )?;
    Ok(())
}

/// Graceful restart across a cer-control crash: FRR (GR helper) keeps our
/// routes, the dataplane keeps forwarding on its FIB, and after the restart
/// the resync restores everything without wiping the FIB first.
#[test]
fn cer_control_restart_is_graceful() -> Result<()> {
    use cer_e2e::peers::{frr_config, Frr, IbgpConf};
    let _g = serial();
    require_root();
    let scratch = Scratch::new("gr")?;
    let lan = Lan::new()?;
    let c_ns = Netns::new("grc")?;
    let f_ns = Netns::new("grf")?;
    lan.attach(&c_ns, "eth0", "10.10.0.1/24")?;
    lan.attach(&f_ns, "eth0", "10.10.0.5/24")?;
    let frr_conf = frr_config(&IbgpConf {
        asn: 65000,
        router_id: "10.10.0.5",
        local_addr: "10.10.0.5",
        neighbors: &["10.10.0.1"],
        rr_clients: false,
        passive: false,
        networks: &[],
    })
    .replace(" bgp log-neighbor-changes\n", " bgp log-neighbor-changes\n bgp graceful-restart\n")
    .replace(
        " exit-address-family",
        "  network 10.77.60.60/32 route-map EP\n  network 10.255.0.5/32 route-map MARK\n exit-address-family",
    )
        + "route-map EP permit 10\n set community 65000:1060\n!\nroute-map MARK permit 10\n set community 65000:999 65000:1060\n!\n";
    let frr = Frr::start(&f_ns, &scratch.path, &frr_conf)?;

    let mut ft = FeedTarget::start(&c_ns, &scratch.path, "10.77.61.1/24")?;
    let cfg = ControlConfig::new("c", "10.10.0.1", 65000)
        .listen(&["10.10.0.1"])
        .fast_timers()
        .graceful_restart_secs(60)
        .neighbor(Neighbor::internal("10.10.0.5"))
        .sam("65000:1001", "10.255.0.1/32", &scratch.file("c-ep.json"))
        .endpoints(&["10.77.60.50"])
        .tunnel(5, "10.10.0.5")
        .feed_socket(&ft.feed)
        .initial_sync_delay_secs(10)
        .to_string();
    // Both starts use name "c": the same config, state file and admin socket.
    let start = || Control::start(Some(&c_ns), &scratch.path, "c", &cfg);
    let has = |routes: &[cer_e2e::peers::RibEntry], p: &str| routes.iter().any(|r| r.prefix == p);
    let fib_has_60 = || ft.has("10.77.60.60", "tunnel 5");
    let mut c = start()?;
    frr.wait_established("10.10.0.1", Duration::from_secs(20))?;
    wait_until("FRR has our endpoint", Duration::from_secs(10), || {
        frr.routes_json().is_ok_and(|r| has(&r, "10.77.60.50/32"))
    })?;
    wait_until(
        "the dataplane has FRR's endpoint in tunnel 5",
        Duration::from_secs(15),
        fib_has_60,
    )?;
    let caps = c.json(&["show", "bgp", "summary"])?;
    assert!(
        caps["neighbors"][0]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"graceful-restart".into()),
        "{caps}"
    );
    let snap_before = admin(&ft.admin, "snapshot")?["version"].as_u64().unwrap();

    // Crash: no NOTIFICATION.
    unsafe_kill(&mut c.proc);
    drop(c);
    std::thread::sleep(Duration::from_secs(4));
    let routes = frr.routes_json()?;
    assert!(
        has(&routes, "10.77.60.50/32"),
        "FRR (GR helper) keeps our route across the restart: {routes:?}"
    );
    assert!(fib_has_60(), "the dataplane keeps forwarding on its FIB");
    assert_eq!(
        admin(&ft.admin, "snapshot")?["version"].as_u64().unwrap(),
        snap_before,
        "FIB untouched while cer-control is down"
    );

    // Restart: peers resync, the FIB is replaced only after convergence, never emptied.
    let c2 = start()?;
    wait_until("FRR re-established", Duration::from_secs(20), || {
        frr.wait_established("10.10.0.1", Duration::from_millis(100))
            .is_ok()
    })?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut synced = false;
    while Instant::now() < deadline {
        assert!(
            fib_has_60(),
            "the resync must not drop FRR's endpoint even briefly"
        );
        if c2
            .json(&["show", "status"])
            .is_ok_and(|s| s["feed"]["full_syncs"].as_u64() >= Some(1))
        {
            synced = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        synced,
        "cer-control resynced the dataplane after restarting"
    );
    assert!(fib_has_60());
    assert!(frr.routes_json().is_ok_and(|r| has(&r, "10.77.60.50/32")));
    drop(c2);
    let _ = ft.proc.terminate(Duration::from_secs(5));
    Ok(())
}

/// eBGP with FRR (AS 65001): routes pass both ways; what we send carries our
/// AS first in the path and our address as next hop, without LOCAL_PREF.
#[test]
fn cer_control_ebgp_with_frr() -> Result<()> {
    use cer_e2e::peers::Frr;
    let _g = serial();
    require_root();
    let scratch = Scratch::new("ebgp")?;
    let lan = Lan::new()?;
    let c_ns = Netns::new("ebc")?;
    let f_ns = Netns::new("ebf")?;
    lan.attach(&c_ns, "eth0", "10.10.0.1/24")?;
    lan.attach(&f_ns, "eth0", "10.10.0.7/24")?;
    let frr = Frr::start(
        &f_ns,
        &scratch.path,
        "hostname ebgp\nlog stdout informational\n!\nrouter bgp 65001\n bgp router-id 10.10.0.7\n no bgp ebgp-requires-policy\n no bgp network import-check\n neighbor 10.10.0.1 remote-as 65000\n neighbor 10.10.0.1 timers connect 1\n address-family ipv4 unicast\n  network 10.88.0.0/16 route-map C\n exit-address-family\n!\nroute-map C permit 10\n set community 65001:5\n!\n",
    )?;
    let cfg = ControlConfig::new("c", "10.10.0.1", 65000)
        .listen(&["10.10.0.1"])
        .fast_timers()
        .graceful_restart_secs(0)
        .neighbor(Neighbor::ebgp("10.10.0.7", 65001))
        .sam("65000:1001", "10.255.0.1/32", &scratch.file("ep.json"))
        .endpoints(&["10.77.60.70"])
        .to_string();
    let c = Control::start(Some(&c_ns), &scratch.path, "c", &cfg)?;
    frr.wait_established("10.10.0.1", Duration::from_secs(20))?;
    wait_until("our endpoint at FRR", Duration::from_secs(10), || {
        frr.routes_json()
            .is_ok_and(|r| r.iter().any(|x| x.prefix == "10.77.60.70/32"))
    })?;
    let routes = frr.routes_json()?;
    let ep = routes
        .iter()
        .find(|x| x.prefix == "10.77.60.70/32")
        .unwrap();
    assert_eq!(ep.as_path, vec![65000], "{ep:?}");
    assert_eq!(ep.next_hop, "10.10.0.1", "{ep:?}");
    assert!(ep.has_community("65000:1001"), "{ep:?}");
    wait_until(
        "FRR's route at cer-control",
        Duration::from_secs(10),
        || {
            c.json(&["show", "bgp", "rib", "10.88.0.0/16"])
                .is_ok_and(|r| r.as_array().is_some_and(|a| !a.is_empty()))
        },
    )?;
    let r = &c.json(&["show", "bgp", "rib", "10.88.0.0/16"])?[0];
    assert_eq!(r["as_path"], serde_json::json!([65001]), "{r}");
    assert_eq!(r["next_hop"], "10.10.0.7");
    assert_eq!(r["communities"], serde_json::json!(["65001:5"]));
    let s = c.json(&["show", "bgp", "summary"])?;
    assert_eq!(s["neighbors"][0]["remote_as"], 65001);
    Ok(())
}

/// RFC 8654 with FRR on both sides of cer-control: FRR A originates 2000
/// /32s with one attribute set, cer-control passes them on to FRR B. Both
/// sessions negotiate Extended Messages, and UPDATEs over 4096 octets go
/// both ways on the wire (tshark, from a full capture): cer-control takes
/// A's (its reader accepts them after an OPEN that offers them) and sends
/// B its own, and every prefix arrives.
#[test]
fn extended_messages_with_frr() -> Result<()> {
    use cer_e2e::peers::Frr;
    let _g = serial();
    require_root();
    let scratch = Scratch::new("extmsg")?;
    let lan = Lan::new()?;
    let c_ns = Netns::new("xmc")?;
    let a_ns = Netns::new("xma")?;
    let b_ns = Netns::new("xmb")?;
    lan.attach(&c_ns, "eth0", "10.10.0.1/24")?;
    lan.attach(&a_ns, "eth0", "10.10.0.7/24")?;
    lan.attach(&b_ns, "eth0", "10.10.0.8/24")?;
    let n = 2000u32;
    let networks: String = (0..n)
        .map(|i| format!("  network 10.90.{}.{}/32\n", i / 250, i % 250 + 1))
        .collect();
    let frr_conf = |name: &str, asn: u32, id: &str, nets: &str| {
        format!(
            "hostname {name}\nlog stdout informational\n!\nrouter bgp {asn}\n bgp router-id {id}\n no bgp ebgp-requires-policy\n no bgp network import-check\n neighbor 10.10.0.1 remote-as 65000\n neighbor 10.10.0.1 timers connect 1\n address-family ipv4 unicast\n{nets} exit-address-family\n!\n"
        )
    };
    let a = Frr::start(
        &a_ns,
        &scratch.path,
        &frr_conf("xa", 65001, "10.10.0.7", &networks),
    )?;
    let b = Frr::start(
        &b_ns,
        &scratch.path,
        &frr_conf("xb", 65002, "10.10.0.8", ""),
    )?;
    let cfg = ControlConfig::new("c", "10.10.0.1", 65000)
        .listen(&["10.10.0.1"])
        .fast_timers()
        .graceful_restart_secs(0)
        .neighbor(Neighbor::ebgp("10.10.0.7", 65001))
        .neighbor(Neighbor::ebgp("10.10.0.8", 65002))
        .sam("65000:1001", "10.255.0.1/32", &scratch.file("ep.json"))
        .to_string();
    let mut capture = cer_e2e::apps::Capture::start_snap(
        &c_ns.name,
        "eth0",
        "tcp port 179",
        &scratch.path,
        "bgp",
        0,
    )?;
    let c = Control::start(Some(&c_ns), &scratch.path, "c", &cfg)?;
    a.wait_established("10.10.0.1", Duration::from_secs(20))?;
    b.wait_established("10.10.0.1", Duration::from_secs(20))?;
    wait_until("every /32 at FRR B", Duration::from_secs(30), || {
        b.routes_json().is_ok_and(|r| {
            r.iter().filter(|x| x.prefix.starts_with("10.90.")).count() == n as usize
        })
    })?;
    let s = c.json(&["show", "bgp", "summary"])?;
    for nb in s["neighbors"].as_array().into_iter().flatten() {
        let caps = nb["capabilities"].to_string();
        assert!(caps.contains("extended-message"), "{nb}");
    }
    let from_a = s["neighbors"]
        .as_array()
        .and_then(|v| {
            v.iter().find(|x| {
                x["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("10.10.0.7"))
            })
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(from_a["prefixes_received"], n, "{from_a}");
    assert_eq!(from_a["update_errors"], serde_json::json!({}), "{from_a}");
    let nb = b.vtysh_json("show bgp neighbors 10.10.0.1 json")?;
    let peer = &nb["10.10.0.1"];
    let cap = peer["neighborCapabilities"]["extendedMessage"]
        .as_str()
        .unwrap_or("");
    assert_eq!(cap, "advertisedAndReceived", "FRR B: {peer}");
    let updates = peer["messageStats"]["updatesRecv"].as_u64().unwrap_or(0);
    let pcap = capture.stop();
    // Only UPDATEs may pass 4096 octets (OPEN and KEEPALIVE may not, and
    // no NOTIFICATION is sent); the length field is read, as tshark 4.0
    // marks some BGP messages over 4096 octets "malformed" and stops there.
    let large =
        cer_e2e::apps::tshark_fields(&pcap, &[], "bgp.length > 4096", &["ip.src", "bgp.length"])?;
    for from in ["10.10.0.7", "10.10.0.1"] {
        assert!(
            large
                .iter()
                .any(|r| r.first().is_some_and(|s| s.contains(from))),
            "no UPDATE over 4096 octets from {from}: {large:?}"
        );
    }
    eprintln!(
        "UPDATEs over 4096 octets: {large:?}; FRR B took the {n} /32s in {updates} UPDATEs; cer-control counted {} from A",
        from_a["updates_received"]
    );
    Ok(())
}
