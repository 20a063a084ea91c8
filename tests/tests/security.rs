//! Session security (issue 17 item 7) with the real peers: TCP-MD5
//! (RFC 2385) with FRR, BIRD 2 and gobgpd, GTSM (RFC 5082) with FRR, and
//! who may use cer-control's admin socket.
//!
//! ```text
//!                    lan (bridge, own netns)
//!      /             |              |              \
//!   cer-control     FRR            BIRD 2          gobgpd
//!   10.10.0.1       10.10.0.2      10.10.0.3       10.10.0.4
//! ```
//!
//! - The same key on both ends: every session Established (at cer-control
//!   and at the peer). A wrong key at FRR and BIRD: those two never come
//!   up, `show bgp summary` (text and JSON) names TCP-MD5 as the cause and
//!   the kernel's TCPMD5Failure moved, while the gobgpd session with the
//!   right key comes up beside them; then a wrong key for gobgpd (passive:
//!   only our connects, which time out), FRR and BIRD up beside it.
//! - GTSM with FRR (`ttl-security hops 1`, eBGP): Established; FRR without
//!   it (passive, eBGP TTL 1 / SYN-ACK TTL 64): no session, the cause named.
//! - The admin socket with `mode = 0o666` and a group: the file carries
//!   both; a process that drops to uid 65534 is refused by its credentials
//!   with an error line and counted, one in the group is served; with the
//!   default 0660 root the file system refuses it.
//! - The dataplane's admin and feed sockets with `socket_mode = 0o666` and
//!   a group: both files carry them, uid 65534 gets a refusal line on each,
//!   a group member is served, and `state` counts one refusal per socket.

use anyhow::Result;
use cer_e2e::peers::*;
use cer_e2e::*;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

const ASN: u32 = 65000;
const CER: &str = "10.10.0.1";
const FRR: &str = "10.10.0.2";
const BIRD: &str = "10.10.0.3";
const GOBGP: &str = "10.10.0.4";
const UP: Duration = Duration::from_secs(30);
const KEY_FRR: &str = "frr-md5-key";
const KEY_BIRD: &str = "bird md5 key";
const KEY_GOBGP: &str = "gobgp-md5-key";

fn neighbor(cer: &Control, peer: &str) -> Option<Value> {
    let v = cer.json(&["show", "bgp", "summary"]).ok()?;
    v["neighbors"]
        .as_array()?
        .iter()
        .find(|n| {
            n["address"]
                .as_str()
                .is_some_and(|a| a.starts_with(&format!("{peer}:")))
        })
        .cloned()
}

fn established(cer: &Control, peer: &str) -> bool {
    neighbor(cer, peer).is_some_and(|n| n["state"] == "Established")
}

fn frr_conf(password: Option<&str>) -> String {
    let mut c = frr_client_config(ASN, FRR, &[CER], &[]);
    if let Some(k) = password {
        c = c.replace(
            &format!(" neighbor {CER} timers connect 1\n"),
            &format!(" neighbor {CER} timers connect 1\n neighbor {CER} password {k}\n"),
        );
    }
    c
}

fn bird_conf(password: &str) -> String {
    bird_client_config(ASN, BIRD, BIRD, &[CER], &[]).replace(
        "connect retry time 1;\n",
        &format!("connect retry time 1;\n  error wait time 1, 2;\n  password \"{password}\";\n"),
    )
}

fn gobgp_conf(password: &str) -> String {
    let mut c = gobgp_config(&IbgpConf {
        asn: ASN,
        router_id: GOBGP,
        local_addr: GOBGP,
        neighbors: &[CER],
        rr_clients: false,
        passive: true,
        networks: &[],
    });
    c = c.replace(
        &format!("    peer-as = {ASN}\n"),
        &format!("    peer-as = {ASN}\n    auth-password = \"{password}\"\n"),
    );
    c
}

fn cer_body(scratch: &Scratch, frr_key: &str, bird_key: &str, gobgp_key: &str) -> String {
    ControlConfig::new("cer", CER, ASN)
        .listen(&[CER])
        .hold_time(90)
        .connect_retry_secs(1)
        .neighbor(Neighbor::internal(FRR).description("frr").password(frr_key))
        .neighbor(
            Neighbor::internal(BIRD)
                .description("bird")
                .password(bird_key),
        )
        .neighbor(
            Neighbor::internal(GOBGP)
                .description("gobgpd")
                .password(gobgp_key),
        )
        .sam(
            "65000:1001",
            "10.255.0.1/32",
            &scratch.file("endpoints.json"),
        )
        .to_string()
}

#[test]
fn md5_with_frr_bird_and_gobgpd_and_a_wrong_key_is_named() -> Result<()> {
    let _serial = serial();
    let scratch = Scratch::new("md5")?;
    let lan = Lan::new()?;
    let cer_ns = Netns::new("cer")?;
    let frr_ns = Netns::new("fr")?;
    let bird_ns = Netns::new("bd")?;
    let gobgp_ns = Netns::new("gb")?;
    lan.attach(&cer_ns, "eth0", &format!("{CER}/24"))?;
    lan.attach(&frr_ns, "eth0", &format!("{FRR}/24"))?;
    lan.attach(&bird_ns, "eth0", &format!("{BIRD}/24"))?;
    lan.attach(&gobgp_ns, "eth0", &format!("{GOBGP}/24"))?;
    let frr = Frr::start(&frr_ns, &scratch.path, &frr_conf(Some(KEY_FRR)))?;
    let bird = Bird::start(&bird_ns, &scratch.path, &bird_conf(KEY_BIRD))?;
    let gobgp = GoBgp::start(&gobgp_ns, &scratch.path, &gobgp_conf(KEY_GOBGP))?;

    // The same keys: every session up, on both ends.
    {
        let cer = Control::start(
            Some(&cer_ns),
            &scratch.path,
            "cer-right",
            &cer_body(&scratch, KEY_FRR, KEY_BIRD, KEY_GOBGP),
        )?;
        // The admin socket's defaults: 0660, group root.
        let md = std::fs::metadata(&cer.socket)?;
        assert_eq!((md.permissions().mode() & 0o777, md.gid()), (0o660, 0));
        let t = wait_until(
            "cer-control: FRR, BIRD and gobgpd Established with TCP-MD5",
            UP,
            || established(&cer, FRR) && established(&cer, BIRD) && established(&cer, GOBGP),
        )?;
        eprintln!("all three Established with TCP-MD5 after {t:?}");
        frr.wait_established(CER, UP)?;
        bird.wait_established(&bird_protocol_name(CER), UP)?;
        gobgp.wait_established(CER, UP)?;
        let n = neighbor(&cer, FRR).expect("FRR neighbor");
        assert_eq!(n["tcp_md5"], true, "{n}");
        assert!(n["diagnosis"].is_null(), "{n}");
    }

    // Wrong keys for FRR and BIRD, the right one for gobgpd.
    let cer = Control::start(
        Some(&cer_ns),
        &scratch.path,
        "cer-wrong",
        &cer_body(&scratch, "not-frr-key", "not-bird-key", KEY_GOBGP),
    )?;
    let drops_before = cer.json(&["show", "bgp", "summary"])?["kernel_tcp_drops"].clone();
    wait_until(
        "cer-control: gobgpd Established beside the wrong keys",
        UP,
        || established(&cer, GOBGP),
    )?;
    let named = |n: &Value| {
        n["diagnosis"]
            .as_str()
            .is_some_and(|d| d.contains("TCP-MD5 is configured: a key mismatch"))
    };
    let t = wait_until("cer-control names TCP-MD5 for FRR and BIRD", UP, || {
        neighbor(&cer, FRR).is_some_and(|n| named(&n))
            && neighbor(&cer, BIRD).is_some_and(|n| named(&n))
    })?;
    eprintln!("TCP-MD5 named as the cause after {t:?}");
    // A few more connect attempts: still nothing comes up.
    std::thread::sleep(Duration::from_secs(6));
    for peer in [FRR, BIRD] {
        let n = neighbor(&cer, peer).expect("neighbor");
        assert_ne!(n["state"], "Established", "{n}");
        assert!(named(&n), "{n}");
        eprintln!("{peer}: state {}, cause: {}", n["state"], n["diagnosis"]);
    }
    assert!(established(&cer, GOBGP), "the gobgpd session was disturbed");
    let drops = cer.json(&["show", "bgp", "summary"])?["kernel_tcp_drops"].clone();
    assert!(
        drops["md5_failure"].as_u64() > drops_before["md5_failure"].as_u64(),
        "the kernel counted no badly signed segment: {drops_before} -> {drops}"
    );
    let text = cer.ctl(&["show", "bgp", "summary"])?;
    assert!(
        text.contains("cause: ")
            && text.contains("TCP-MD5 is configured")
            && text.contains("TCPMD5Failure"),
        "{text}"
    );
    assert!(text.contains("security: TCP-MD5"), "{text}");
    let frr_state = frr.neighbors_json()?[CER]["bgpState"].clone();
    assert_ne!(frr_state, "Established");
    drop(cer);

    // gobgpd's turn: the wrong key for it, the right ones for FRR and BIRD.
    let cer = Control::start(
        Some(&cer_ns),
        &scratch.path,
        "cer-wrong-gobgp",
        &cer_body(&scratch, KEY_FRR, KEY_BIRD, "not-gobgp-key"),
    )?;
    wait_until(
        "cer-control: FRR and BIRD Established beside gobgpd's wrong key",
        UP,
        || established(&cer, FRR) && established(&cer, BIRD),
    )?;
    // gobgpd is passive: only our connects, which time out.
    let t = wait_until("cer-control names TCP-MD5 for gobgpd", UP, || {
        neighbor(&cer, GOBGP)
            .is_some_and(|n| named(&n) && n["connect_timeouts"].as_u64().is_some_and(|c| c >= 1))
    })?;
    eprintln!("gobgpd: TCP-MD5 named after {t:?}");
    let n = neighbor(&cer, GOBGP).expect("gobgpd");
    assert_ne!(n["state"], "Established", "{n}");
    assert!(
        gobgp.neighbors()?.iter().all(|g| g.state != "established"),
        "gobgpd established with a wrong key"
    );
    assert!(established(&cer, FRR) && established(&cer, BIRD));
    Ok(())
}

#[test]
fn gtsm_with_frr() -> Result<()> {
    let _serial = serial();
    let scratch = Scratch::new("gtsm")?;
    let lan = Lan::new()?;
    let cer_ns = Netns::new("cer")?;
    let frr_ns = Netns::new("fr")?;
    lan.attach(&cer_ns, "eth0", &format!("{CER}/24"))?;
    lan.attach(&frr_ns, "eth0", &format!("{FRR}/24"))?;
    // eBGP: without GTSM FRR sends with TTL 1.
    let frr_conf = |gtsm: bool| {
        let mut c = format!(
            "hostname bgpd-gtsm\nlog stdout informational\n!\nrouter bgp 65001\n bgp router-id {FRR}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n neighbor {CER} remote-as {ASN}\n neighbor {CER} timers connect 1\n"
        );
        if gtsm {
            c.push_str(&format!(" neighbor {CER} ttl-security hops 1\n"));
        } else {
            c.push_str(&format!(" neighbor {CER} passive\n"));
        }
        c.push_str(&format!(
            " address-family ipv4 unicast\n  neighbor {CER} activate\n exit-address-family\n!\n"
        ));
        c
    };
    let body = ControlConfig::new("cer", CER, ASN)
        .listen(&[CER])
        .hold_time(90)
        .connect_retry_secs(1)
        .neighbor(Neighbor::ebgp(FRR, 65001).ttl_security())
        .sam(
            "65000:1001",
            "10.255.0.1/32",
            &scratch.file("endpoints.json"),
        )
        .to_string();
    {
        let frr = Frr::start(&frr_ns, &scratch.path, &frr_conf(true))?;
        let cer = Control::start(Some(&cer_ns), &scratch.path, "cer-gtsm", &body)?;
        let t = wait_until("GTSM session with FRR Established", UP, || {
            established(&cer, FRR)
        })?;
        frr.wait_established(CER, UP)?;
        eprintln!("GTSM with FRR: Established after {t:?}");
        assert_eq!(neighbor(&cer, FRR).expect("FRR")["ttl_security"], true);
    }
    // FRR without GTSM (and passive: only our connect, with GTSM, tries).
    let frr = Frr::start(&frr_ns, &scratch.path, &frr_conf(false))?;
    let cer = Control::start(Some(&cer_ns), &scratch.path, "cer-nogtsm", &body)?;
    let t = wait_until("cer-control names GTSM for FRR", UP, || {
        neighbor(&cer, FRR).is_some_and(|n| {
            n["diagnosis"]
                .as_str()
                .is_some_and(|d| d.contains("GTSM (ttl_security) is configured"))
        })
    })?;
    eprintln!("GTSM named as the cause after {t:?}");
    // Without GTSM on our side FRR would be Established well within this.
    std::thread::sleep(Duration::from_secs(5));
    let n = neighbor(&cer, FRR).expect("FRR");
    assert_ne!(n["state"], "Established", "{n}");
    assert_ne!(frr.neighbors_json()?[CER]["bgpState"], "Established");
    eprintln!("FRR without GTSM: {}", n["diagnosis"]);
    Ok(())
}

/// Runs cerctl against `socket` as uid 65534 with group `gid` (setpriv
/// drops the ids before cerctl connects).
fn cerctl_as(socket: &std::path::Path, gid: u32) -> Result<(bool, String)> {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", &format!("--regid={gid}"), "--clear-groups"])
        .arg(bin("cerctl"))
        .args(["show", "bgp", "summary", "--json", "--socket"])
        .arg(socket)
        .output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn admin_socket_mode_group_and_peer_credentials() -> Result<()> {
    let _serial = serial();
    let scratch = Scratch::new("sockperm")?;
    // Others must reach the socket file to be refused by credentials.
    std::fs::set_permissions(&scratch.path, std::fs::Permissions::from_mode(0o755))?;
    let cer_ns = Netns::new("cer")?;
    let body = ControlConfig::new("cer", CER, ASN)
        .sam(
            "65000:1001",
            "10.255.0.1/32",
            &scratch.file("endpoints.json"),
        )
        .to_string();
    let cer = Control::start_with_admin(
        Some(&cer_ns),
        &scratch.path,
        "cer-open",
        &body,
        "mode = 0o666\ngroup = \"4242\"",
    )?;
    let md = std::fs::metadata(&cer.socket)?;
    assert_eq!((md.permissions().mode() & 0o777, md.gid()), (0o666, 4242));
    let (ok, out) = cerctl_as(&cer.socket, 65534)?;
    assert!(!ok, "uid 65534 outside the group was served: {out}");
    assert!(out.contains("refused: uid 65534"), "{out}");
    let (ok, out) = cerctl_as(&cer.socket, 4242)?;
    assert!(
        ok && out.contains("\"neighbors\""),
        "a member of the group was refused: {out}"
    );
    let status = cer.json(&["show", "status"])?;
    assert_eq!(status["admin_refused"], 1, "{status}");
    drop(cer);
    // The default 0660 root: the file system already keeps uid 65534 out.
    let cer = Control::start(Some(&cer_ns), &scratch.path, "cer-default", &body)?;
    let (ok, out) = cerctl_as(&cer.socket, 65534)?;
    assert!(!ok && out.contains("ermission denied"), "{out}");
    Ok(())
}

/// Sends one line to the Unix socket `socket` as uid 65534 with group
/// `gid` (setpriv drops the ids first) and returns the line it answers.
fn unix_line_as(socket: &std::path::Path, gid: u32, request: &str) -> Result<String> {
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            &format!("--regid={gid}"),
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(5)\ns.connect(sys.argv[1])\ns.sendall(sys.argv[2].encode() + b'\\n')\nprint(s.makefile().readline().strip())",
        ])
        .arg(socket)
        .arg(request)
        .output()?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[test]
fn dataplane_sockets_mode_group_and_peer_credentials() -> Result<()> {
    let _serial = serial();
    let scratch = Scratch::new("dpsockperm")?;
    std::fs::set_permissions(&scratch.path, std::fs::Permissions::from_mode(0o755))?;
    let ns = Netns::new("dp")?;
    ns.run(&[
        "ip", "link", "add", "dplan", "type", "veth", "peer", "name", "dphost",
    ])?;
    ns.run(&["ip", "link", "set", "dplan", "up"])?;
    ns.run(&["ip", "link", "set", "dphost", "up"])?;
    let admin_sock = scratch.file("dp-admin.sock");
    let feed_sock = scratch.file("dp-feed.sock");
    let cfg = DataplaneConfig::new("sockperm", "10.66.0.1")
        .admin_socket(&admin_sock)
        .feed_socket(&feed_sock)
        .file_prefix(&format!("sp{}", tag()))
        .port(Port::af_packet("lan", "dplan", "10.66.0.1/24"))
        .to_string()
        .replace(
            "[dataplane]\n",
            "[dataplane]\nsocket_mode = 0o666\nsocket_group = \"4242\"\n",
        );
    let path = scratch.file("dp.toml");
    std::fs::write(&path, cfg)?;
    let _dp = start_dataplane(&ns, &path, &scratch.file("dp.log"))?;
    for s in [&admin_sock, &feed_sock] {
        let md = std::fs::metadata(s)?;
        assert_eq!(
            (md.permissions().mode() & 0o777, md.gid()),
            (0o666, 4242),
            "{}",
            s.display()
        );
    }
    let out = unix_line_as(&admin_sock, 65534, "{\"cmd\":\"state\"}")?;
    assert!(
        out.contains("\"status\":\"error\"") && out.contains("refused: uid 65534"),
        "admin: {out}"
    );
    let out = unix_line_as(&feed_sock, 65534, "{}")?;
    assert!(out.contains("refused: uid 65534"), "feed: {out}");
    let out = unix_line_as(&admin_sock, 4242, "{\"cmd\":\"state\"}")?;
    assert!(
        out.contains("\"status\":\"ok\""),
        "a group member was refused: {out}"
    );
    let state = admin(&admin_sock, "state")?;
    assert_eq!(
        (
            &state["sockets_refused"]["admin"],
            &state["sockets_refused"]["feed"]
        ),
        (&Value::from(1), &Value::from(1)),
        "{}",
        state["sockets_refused"]
    );
    Ok(())
}
