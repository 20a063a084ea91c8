//! cer-control end to end with real peers: gobgpd as the route reflector of
//! the original design and two cer-control clients (one feeding a real
//! cer-dataplane), in network namespaces on one L2 segment.
//!
//!   rr (gobgpd 10.10.0.1) -- lan bridge -- a (cer-control 10.10.0.2 + cer-dataplane)
//!                                       \-- b (cer-control 10.10.0.3)

use anyhow::{bail, Context, Result};
use cer_e2e::peers::{gobgp_rr_config, GoBgp, Lan};
use cer_e2e::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Control {
    proc: Proc,
    socket: PathBuf,
}

impl Control {
    fn start(
        ns: &Netns,
        dir: &Path,
        name: &str,
        ip: &str,
        identity: u16,
        extra: &str,
    ) -> Result<Control> {
        let socket = dir.join(format!("{name}.sock"));
        let cfg = format!(
            r#"
[node]
name = "{name}"
router_id = "{ip}"
asn = 65000
transport_address = "{ip}"

[bgp]
hold_time = 9
connect_retry_secs = 1
graceful_restart_secs = 0
[[bgp.neighbor]]
address = "10.10.0.1"
remote_as = "internal"

[sam]
identity = "65000:{identity}"
marker_community = "65000:999"
marker_prefix = "10.255.0.{last}/32"
pool = ["10.77.60.0/24"]
state_file = "{state}"

[[tunnel]]
id = 2
remote = "10.10.0.2"
[[tunnel]]
id = 3
remote = "10.10.0.3"

[admin]
socket = "{sock}"
{extra}
"#,
            last = ip.rsplit('.').next().unwrap(),
            state = dir.join(format!("{name}-endpoints.json")).display(),
            sock = socket.display(),
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, cfg)?;
        let mut proc = ns.spawn(
            &[
                bin("cer-control").to_str().unwrap(),
                "--config",
                path.to_str().unwrap(),
            ],
            &dir.join(format!("{name}.log")),
        )?;
        proc.wait_for_log("cer-control: ready", Duration::from_secs(10))?;
        Ok(Control { proc, socket })
    }

    fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut full = vec![bin("cerctl").to_str().unwrap().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        full.push("--socket".into());
        full.push(self.socket.display().to_string());
        let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
        Ok(String::from_utf8_lossy(&sh(&refs)?.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ctl(&a)?).context("cerctl --json output")
    }

    fn owner(&self, ip: &str) -> Result<Option<Value>> {
        let owners = self.json(&["show", "owners"])?;
        Ok(owners
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["prefix"] == format!("{ip}/32"))
            .cloned())
    }

    fn owner_identity(&self, ip: &str) -> Option<String> {
        self.owner(ip)
            .ok()
            .flatten()
            .and_then(|o| o["identity"].as_str().map(String::from))
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
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
    a_ns.run(&[
        "ip", "link", "add", "dplan", "type", "veth", "peer", "name", "dphost",
    ])?;
    a_ns.run(&["ip", "link", "set", "dplan", "up"])?;
    a_ns.run(&["ip", "link", "set", "dphost", "up"])?;
    let dp_admin = scratch.file("dp-admin.sock");
    let feed = scratch.file("feed.sock");
    let dp_cfg = scratch.file("dp.toml");
    std::fs::write(
        &dp_cfg,
        format!(
            "[node]\nname = \"a\"\nrouter_address = \"10.77.61.1\"\n[dataplane]\ncores = [1]\npoll_mode = \"adaptive\"\nadmin_socket = \"{}\"\nfeed_socket = \"{}\"\n[dataplane.memory]\nhugepages = false\nmemory_mb = 256\nmbufs = 4095\nfile_prefix = \"ctl{}\"\n[[port]]\nname = \"lan\"\ndriver = \"af_packet\"\niface = \"dplan\"\naddress = \"10.77.61.1/24\"\n",
            dp_admin.display(),
            feed.display(),
            tag()
        ),
    )?;
    let mut dp = a_ns.spawn(
        &[
            bin("cer-dataplane").to_str().unwrap(),
            "--config",
            dp_cfg.to_str().unwrap(),
        ],
        &scratch.file("dp.log"),
    )?;
    dp.wait_for_log("cer-dataplane: ready", Duration::from_secs(20))?;

    let a = Control::start(
        &a_ns,
        &scratch.path,
        "a",
        "10.10.0.2",
        1002,
        &format!(
            "[dataplane]\nfeed_socket = \"{}\"\nlan_port = \"lan\"\ninitial_sync_delay_secs = 2\n",
            feed.display()
        ),
    )?;
    let b = Control::start(&b_ns, &scratch.path, "b", "10.10.0.3", 1003, "")?;
    let up = rr.wait_established("10.10.0.2", Duration::from_secs(15))?;
    rr.wait_established("10.10.0.3", Duration::from_secs(15))?;
    eprintln!("sessions up after {up:?}");

    // Endpoints: .10 at a, .11 at b, .12 at both (b preferred).
    a.ctl(&["endpoint", "add", "10.77.60.10"])?;
    b.ctl(&["endpoint", "add", "10.77.60.11"])?;
    a.ctl(&["endpoint", "add", "10.77.60.12", "--local-pref", "100"])?;
    b.ctl(&["endpoint", "add", "10.77.60.12", "--local-pref", "200"])?;
    wait_until("owners converge", Duration::from_secs(10), || {
        a.owner_identity("10.77.60.11").as_deref() == Some("65000:1003")
            && b.owner_identity("10.77.60.10").as_deref() == Some("65000:1002")
            && a.owner_identity("10.77.60.12").as_deref() == Some("65000:1003")
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
        admin(&dp_admin, "fib").is_ok_and(|f| {
            let eps = f["endpoints"].as_array().cloned().unwrap_or_default();
            eps.iter()
                .any(|e| e["ip"] == "10.77.60.11" && e["action"] == "tunnel 3")
                && eps
                    .iter()
                    .any(|e| e["ip"] == "10.77.60.10" && e["action"] == "local lan")
                && eps
                    .iter()
                    .any(|e| e["ip"] == "10.77.60.12" && e["action"] == "tunnel 3")
        })
    })?;

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
        a.owner("10.77.60.13")?.is_none(),
        "a path without its marker owns nothing"
    );
    rr.add_route(
        "10.255.0.9/32",
        "10.10.0.9",
        &["65000:999", "65000:1009"],
        None,
    )?;
    wait_until("node 9 owns .13", Duration::from_secs(10), || {
        a.owner_identity("10.77.60.13").as_deref() == Some("65000:1009")
    })?;
    let t0 = Instant::now();
    rr.del_route("10.255.0.9/32")?;
    wait_until(
        "marker loss drops node 9's ownership",
        Duration::from_secs(10),
        || a.owner("10.77.60.13").is_ok_and(|o| o.is_none()),
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
        a.owner("10.77.60.11")
            .ok()
            .flatten()
            .is_some_and(|o| o["local"] == true)
            && b.owner_identity("10.77.60.11").as_deref() == Some("65000:1002")
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
    let text = a.ctl(&["explain", "10.77.60.12"])?;
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
        a.owner("10.77.60.12")
            .ok()
            .flatten()
            .is_some_and(|o| o["local"] == true)
    })?;
    eprintln!("ownership of .12 moved {t:?} after b was killed");
    assert!(a
        .owner("10.77.60.11")
        .ok()
        .flatten()
        .is_some_and(|o| o["local"] == true));
    wait_until(
        "dataplane delivers .12 locally",
        Duration::from_secs(10),
        || {
            admin(&dp_admin, "fib").is_ok_and(|f| {
                f["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["ip"] == "10.77.60.12" && e["action"] == "local lan")
            })
        },
    )?;

    // Endpoints persist: a restarted a re-advertises them.
    let sum = a.json(&["show", "bgp", "summary"])?;
    assert_eq!(sum["neighbors"][0]["state"], "Established");
    drop(a);
    let a2 = Control::start(&a_ns, &scratch.path, "a", "10.10.0.2", 1002, "")?;
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
    let _ = dp.terminate(Duration::from_secs(5));
    Ok(())
}

/// SIGKILL by PID: the process dies without sending NOTIFICATIONs.
fn unsafe_kill(p: &mut Proc) {
    let pid = p.pid() as i32;
    // SAFETY: kill(2) on the PID of a child this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
}
