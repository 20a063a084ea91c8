//! Prometheus metrics end to end: a real Prometheus 2.42 scrapes a running
//! cer-dataplane and cer-control, and its HTTP API is asked what it saw.
//!
//!   rr (gobgpd 10.10.71.1) -- veth -- a (cer-control 10.10.71.2, metrics 127.0.0.1:9462
//!                                        + cer-dataplane, metrics 127.0.0.1:9461,
//!                                          LAN port on dplan <-> dphost 10.77.71.2
//!                                        + prometheus 127.0.0.1:9090)
//!
//! Checked: `up == 1` for both, the BGP session's `cer_bgp_peer_state` is
//! Established (6), the LAN port's rx counter grows with traffic, the
//! `no_route` drop counter grows after packets the dataplane cannot route, a
//! silent client and a garbage request do not stop a scrape (400 for the
//! garbage), a bad `metrics.listen` is a config error naming the field,
//! every metric the Grafana dashboard uses is exported, and after the
//! dataplane is killed Prometheus says `up == 0`.

use anyhow::{bail, Context, Result};
use cer_e2e::peers::{gobgp_rr_config, GoBgp};
use cer_e2e::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const DP_METRICS: &str = "127.0.0.1:9461";
const CTL_METRICS: &str = "127.0.0.1:9462";
const PROM: &str = "127.0.0.1:9090";

/// One instant query through Prometheus' HTTP API: the first series' value.
fn query(ns: &Netns, promql: &str) -> Result<Option<f64>> {
    let out = ns.try_run(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-G",
        &format!("http://{PROM}/api/v1/query"),
        "--data-urlencode",
        &format!("query={promql}"),
    ]);
    if !out.status.success() {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("prometheus answer to {promql}: {}", text(&out)))?;
    if v["status"] != "success" {
        bail!("prometheus refused {promql}: {v}");
    }
    Ok(v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok()))
}

/// Waits until `promql` has a value for which `ok` holds; returns it.
fn wait_value(ns: &Netns, promql: &str, ok: impl Fn(f64) -> bool) -> Result<f64> {
    let mut last = None;
    wait_until(promql, Duration::from_secs(30), || {
        last = query(ns, promql).ok().flatten();
        last.is_some_and(&ok)
    })
    .with_context(|| format!("last value {last:?}"))?;
    Ok(last.unwrap_or_default())
}

/// `GET /metrics` with curl inside `ns`: the exposition text.
fn scrape(ns: &Netns, addr: &str) -> Result<String> {
    let out = ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        &format!("http://{addr}/metrics"),
    ])?;
    Ok(text(&out))
}

/// Every metric family named in `# TYPE` lines.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect()
}

/// Every `cer_*` metric the dashboard's queries use, histogram series
/// (`_bucket`, `_sum`, `_count`) named by their family.
fn dashboard_metrics(path: &Path) -> Result<BTreeSet<String>> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let mut exprs = Vec::new();
    let mut queries = Vec::new();
    for p in v["panels"].as_array().context("no panels")? {
        for t in p["targets"].as_array().context("panel without targets")? {
            exprs.push(
                t["expr"]
                    .as_str()
                    .context("target without expr")?
                    .to_string(),
            );
        }
    }
    for t in v["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = t["query"].as_str() {
            queries.push(q.to_string());
        }
    }
    let mut names = BTreeSet::new();
    for e in exprs.iter().chain(&queries) {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("cer_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_string());
            rest = &tail[end..];
        }
    }
    if exprs.is_empty() || names.is_empty() {
        bail!("{}: no queries found", path.display());
    }
    Ok(names)
}

#[test]
fn prometheus_scrapes_the_dataplane_and_cer_control() -> Result<()> {
    let _g = serial();
    require_root();
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("prometheus is not installed: run scripts/bootstrap (Debian package prometheus)");
    }
    let scratch = Scratch::new("metrics")?;
    let dir = &scratch.path;
    let rr_ns = Netns::new("mrr")?;
    let a_ns = Netns::new("ma")?;
    veth("eth0", &rr_ns, "eth0", &a_ns)?;
    rr_ns.addr("eth0", "10.10.71.1/24")?;
    a_ns.addr("eth0", "10.10.71.2/24")?;
    let rr = GoBgp::start(
        &rr_ns,
        dir,
        &gobgp_rr_config(65000, "10.10.71.1", "10.10.71.1", &["10.10.71.2"]),
    )?;

    // A bad listen address is a config error naming the field, in both processes.
    let bad_dp = DataplaneConfig::new("bad", "10.77.71.1")
        .port(Port::af_packet("lan", "dplan", "10.77.71.1/24"))
        .metrics_listen("127.0.0.1")
        .write(&dir.join("bad-dp.toml"))?;
    let out = sh(&[
        bin("cer-dataplane").to_str().unwrap(),
        "--check",
        "--config",
        bad_dp.to_str().unwrap(),
    ]);
    let msg = out.as_ref().map(text).unwrap_or_else(|e| format!("{e:#}"));
    assert!(
        msg.contains("metrics.listen: \"127.0.0.1\" is not an IP address and port"),
        "{msg}"
    );
    let bad_ctl = dir.join("bad-ctl.toml");
    let ctl_body = |metrics: &str| {
        ControlConfig::new("a", "10.10.71.2", 65000)
            .fast_timers()
            .graceful_restart_secs(0)
            .neighbor(Neighbor::internal("10.10.71.1"))
            .sam("65000:1002", "10.255.0.2/32", &dir.join("a-endpoints.json"))
            .metrics_listen(metrics)
    };
    std::fs::write(&bad_ctl, ctl_body("localhost:9462").to_string())?;
    let out = sh(&[
        bin("cer-control").to_str().unwrap(),
        "--check",
        "--config",
        bad_ctl.to_str().unwrap(),
    ]);
    let msg = out.as_ref().map(text).unwrap_or_else(|e| format!("{e:#}"));
    assert!(msg.contains("metrics.listen: \"localhost:9462\""), "{msg}");

    // The dataplane (LAN port on a veth pair inside a) and cer-control feeding it.
    a_ns.run(&[
        "ip", "link", "add", "dplan", "type", "veth", "peer", "name", "dphost",
    ])?;
    a_ns.run(&["ip", "link", "set", "dplan", "up"])?;
    a_ns.addr("dphost", "10.77.71.2/24")?;
    let feed = dir.join("dp-feed.sock");
    let prefix = format!("mt{}", tag());
    let dp_cfg = DataplaneConfig::new("metrics", "10.77.71.1")
        .admin_socket(&dir.join("dp-admin.sock"))
        .feed_socket(&feed)
        .file_prefix(&prefix)
        .port(Port::af_packet("lan", "dplan", "10.77.71.1/24"))
        .metrics_listen(DP_METRICS)
        .write(&dir.join("dp.toml"))?;
    let mut dp = start_dataplane(&a_ns, &dp_cfg, &dir.join("dp.log"))?;
    let ctl_cfg = ctl_body(CTL_METRICS).feed_socket(&feed).lan_port("lan");
    let _ctl = Control::start(Some(&a_ns), dir, "a", &ctl_cfg.to_string())?;
    rr.wait_established("10.10.71.2", Duration::from_secs(15))?;

    // Prometheus in a, scraping both every second.
    let prom_yml = dir.join("prometheus.yml");
    std::fs::write(
        &prom_yml,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             - job_name: dataplane\n  static_configs:\n  - targets: ['{DP_METRICS}']\n\
             - job_name: control\n  static_configs:\n  - targets: ['{CTL_METRICS}']\n"
        ),
    )?;
    let tsdb = dir.join("tsdb");
    let _prom = a_ns.spawn(
        &[
            "prometheus",
            &format!("--config.file={}", prom_yml.display()),
            &format!("--storage.tsdb.path={}", tsdb.display()),
            &format!("--web.listen-address={PROM}"),
        ],
        &dir.join("prometheus.log"),
    )?;

    wait_value(&a_ns, "up{job=\"dataplane\"}", |v| v == 1.0)?;
    wait_value(&a_ns, "up{job=\"control\"}", |v| v == 1.0)?;
    wait_value(&a_ns, "cer_bgp_peer_state{peer=\"10.10.71.1\"}", |v| {
        v == 6.0
    })?;

    // Traffic to the dataplane: its LAN port's rx counter grows.
    let rx = "cer_dataplane_port_rx_packets_total{port=\"lan\"}";
    let before = wait_value(&a_ns, rx, |_| true)?;
    assert!(
        a_ns.ping("10.77.71.1", 5),
        "the dataplane does not answer pings"
    );
    let after = wait_value(&a_ns, rx, |v| v >= before + 5.0)?;
    eprintln!("{rx}: {before} -> {after}");

    // Packets it has no route for: the no_route drop counter grows.
    let drops = "cer_dataplane_drops_total{reason=\"no_route\"}";
    let before = wait_value(&a_ns, drops, |_| true)?;
    a_ns.run(&[
        "ip",
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        "10.77.71.1",
        "dev",
        "dphost",
    ])?;
    assert!(!a_ns.ping("198.51.100.7", 3), "198.51.100.7 answered");
    let after = wait_value(&a_ns, drops, |v| v >= before + 3.0)?;
    eprintln!("{drops}: {before} -> {after}");

    // A silent client, a slow one and a garbage request do not stop a scrape.
    let probe = r#"
import socket, sys, time
a = sys.argv[1].split(':'); addr = (a[0], int(a[1]))
silent = [socket.create_connection(addr) for _ in range(3)]
slow = socket.create_connection(addr); slow.sendall(b'GET /met')
g = socket.create_connection(addr); g.sendall(b'\x16\x03\x01garbage\r\n\r\n')
g.settimeout(5); answer = g.recv(100)
t = time.time()
s = socket.create_connection(addr); s.settimeout(5)
s.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
ok = s.recv(100)
print(answer[:24].decode(), '|', ok[:15].decode(), '|', round(time.time() - t, 3))
"#;
    for addr in [DP_METRICS, CTL_METRICS] {
        let out = a_ns.run(&["python3", "-c", probe, addr])?;
        let line = text(&out);
        eprintln!("{addr}: {line}");
        let parts: Vec<&str> = line.trim().split(" | ").collect();
        assert_eq!(
            parts.first().copied(),
            Some("HTTP/1.1 400 Bad Request"),
            "{line}"
        );
        assert_eq!(parts.get(1).copied(), Some("HTTP/1.1 200 OK"), "{line}");
        let secs: f64 = parts.get(2).and_then(|s| s.parse().ok()).unwrap_or(99.0);
        assert!(secs < 1.0, "a scrape beside silent clients took {secs} s");
    }

    // Every metric the Grafana dashboard uses is one the processes export.
    let mut exported = families(&scrape(&a_ns, DP_METRICS)?);
    exported.extend(families(&scrape(&a_ns, CTL_METRICS)?));
    let dashboard = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/grafana/cer.json");
    let used = dashboard_metrics(&dashboard)?;
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses metrics nobody exports: {missing:?}"
    );
    eprintln!("dashboard: {} metrics, all exported", used.len());

    // The dataplane killed: Prometheus sees it down.
    send_signal(dp.pid(), libc::SIGKILL);
    let _ = dp.terminate(Duration::from_secs(5));
    wait_value(&a_ns, "up{job=\"dataplane\"}", |v| v == 0.0)?;
    wait_value(&a_ns, "up{job=\"control\"}", |v| v == 1.0)?;
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    Ok(())
}
