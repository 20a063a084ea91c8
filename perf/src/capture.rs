//! `cer-bench-capture`: time from an ownership change to the provider
//! confirming the capture (or release), per provider, through the real
//! reconciler and the real clients (aws-sdk-ec2, the Azure and OCI REST
//! clients) against `cer-cloud-emulator` at its default latency (moves become
//! visible 500 ms after they are accepted). The clock starts when the
//! ownership change reaches the reconciler (`Reconciler::set`, which
//! cer-control calls synchronously on the RIB trap event) and stops when the
//! reconciler has observed the provider report the new state.
//!
//!   cer-bench-capture --emulator PATH --fixtures DIR [--moves N] [--json OUT]

use anyhow::{bail, Context, Result};
use cer_capture::reconciler::Phase;
use cer_capture::{CaptureProvider, Desired, Intent, Reconciler, ReconcilerConfig};
use clap::Parser;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The cer-cloud-emulator binary.
    #[arg(long)]
    emulator: PathBuf,
    /// Directory with the OCI API key pair (api_key.pem, api_key_public.pem).
    #[arg(long)]
    fixtures: PathBuf,
    /// Ownership changes per provider (alternately capture and release).
    #[arg(long, default_value_t = 20)]
    moves: usize,
    /// Providers to measure.
    #[arg(long, value_delimiter = ',', default_value = "aws,azure,oci")]
    providers: Vec<String>,
    #[arg(long)]
    json: Option<PathBuf>,
    /// Mass moves instead: N /32s change owner at once, for each N given
    /// (comma separated), per provider, at the emulator's default quotas and
    /// API limits.
    #[arg(long, value_delimiter = ',')]
    mass: Vec<usize>,
}

#[path = "capture_mass.rs"]
mod mass;

const POOL_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 60, 11);

struct Emulator {
    child: Child,
    url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    fn start(bin: &Path, seed: &Value, dir: &Path) -> Result<Emulator> {
        let path = dir.join("seed.json");
        std::fs::write(&path, seed.to_string())?;
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--state"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let out = child.stdout.take().context("emulator stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("cer-cloud-emulator listening on ") else {
            let _ = child.kill();
            bail!("unexpected emulator output: {line:?}");
        };
        Ok(Emulator {
            url: format!("http://{addr}"),
            child,
        })
    }
}

fn seed(provider: &str, fixtures: &Path) -> Result<Value> {
    Ok(match provider {
        "aws" => json!({
            "region": "eu-west-1",
            "imds_instance": "i-cer",
            "subnets": [{"id": "subnet-0lab", "cidr": "10.77.0.0/16", "vpc": "vpc-0lab"}],
            "nics": [
                {"id": "eni-0cer", "instance": "i-cer", "subnet": "subnet-0lab", "primary_ip": "10.77.1.10"},
                {"id": "eni-0wl", "instance": "i-wl", "subnet": "subnet-0lab", "primary_ip": "10.77.1.20",
                 "secondary_ips": [POOL_IP.to_string()]}
            ]
        }),
        "azure" => {
            let rg = "/subscriptions/sub-lab/resourceGroups/rg-lab/providers/Microsoft.Network";
            let subnet = format!("{rg}/virtualNetworks/vnet-lab/subnets/default");
            json!({
                "subnets": [{"id": subnet, "cidr": "10.77.0.0/16", "vpc": "vnet-lab"}],
                "nics": [
                    {"id": format!("{rg}/networkInterfaces/nic-cer"), "provider": "azure", "subnet": subnet, "primary_ip": "10.77.2.10"},
                    {"id": format!("{rg}/networkInterfaces/nic-wl"), "provider": "azure", "subnet": subnet, "primary_ip": "10.77.2.20",
                     "secondary_ips": [POOL_IP.to_string()]}
                ]
            })
        }
        "oci" => json!({
            "subnets": [{"id": "ocid1.subnet.oc1..lab", "cidr": "10.77.0.0/16", "vpc": "ocid1.vcn.oc1..lab"}],
            "nics": [
                {"id": "ocid1.vnic.oc1..cer", "provider": "oci", "subnet": "ocid1.subnet.oc1..lab", "primary_ip": "10.77.3.10"},
                {"id": "ocid1.vnic.oc1..wl", "provider": "oci", "subnet": "ocid1.subnet.oc1..lab", "primary_ip": "10.77.3.20",
                 "secondary_ips": [POOL_IP.to_string()]}
            ],
            "oci_api_keys": {
                "ocid1.tenancy.oc1..bench/ocid1.user.oc1..bench/11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00":
                    std::fs::read_to_string(fixtures.join("api_key_public.pem")).context("api_key_public.pem")?
            }
        }),
        other => bail!("unknown provider '{other}' (aws, azure, oci)"),
    })
}

/// The provider client; `extra`: more NICs of the router (Azure NIC ids, OCI VNIC OCIDs; AWS
/// finds the instance's ENIs itself).
async fn client(
    provider: &str,
    url: &str,
    fixtures: &Path,
    extra: &[String],
) -> Result<Arc<dyn CaptureProvider>> {
    let extra = (!extra.is_empty()).then(|| extra.to_vec());
    Ok(match provider {
        "aws" => Arc::new(
            cer_capture_aws::AwsProvider::new(&cer_capture_aws::AwsConfig {
                region: Some("eu-west-1".into()),
                endpoint_url: Some(url.into()),
                imds_endpoint: Some(url.into()),
                ..Default::default()
            })
            .await?,
        ),
        "azure" => Arc::new(cer_capture::azure::AzureProvider::new(
            &cer_capture::azure::AzureConfig {
                nic_id: "/subscriptions/sub-lab/resourceGroups/rg-lab/providers/Microsoft.Network/networkInterfaces/nic-cer".into(),
                arm_endpoint: Some(url.into()),
                imds_endpoint: Some(url.into()),
                client_id: None,
                api_version: None,
                max_ip_configs: None,
                extra_nic_ids: extra,
                write_budget: None,
                read_budget: None,
            },
        )?),
        _ => Arc::new(cer_capture::oci::OciProvider::new(&cer_capture::oci::OciConfig {
            vnic_id: "ocid1.vnic.oc1..cer".into(),
            subnet_id: "ocid1.subnet.oc1..lab".into(),
            endpoint: Some(url.into()),
            region: Some("eu-frankfurt-1".into()),
            write_budget: None,
            read_budget: None,
            max_secondary_ips: None,
            extra_vnic_ids: extra,
            auth: cer_capture::oci::OciAuth::ApiKey {
                tenancy: "ocid1.tenancy.oc1..bench".into(),
                user: "ocid1.user.oc1..bench".into(),
                fingerprint: "11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00".into(),
                key_file: fixtures.join("api_key.pem"),
            },
        })?),
    })
}

/// One control-API request to the emulator (`/_emulator/...`): its JSON answer; a status other
/// than 200 is an error naming the request.
fn http(url: &str, method: &str, path: &str) -> Result<Value> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        bail!("emulator {method} {path}: {status}");
    }
    let body = text.split("\r\n\r\n").nth(1).context("emulator reply")?;
    Ok(serde_json::from_str(body)?)
}

/// Back to the seed: the workload NIC holds the /32 again, so the next
/// capture is a real move from another NIC.
fn reset(url: &str) -> Result<()> {
    http(url, "POST", "/_emulator/reset").map(|_| ())
}

/// The NIC the emulator's fabric (holder view) delivers `ip` to now.
fn fabric_holder(url: &str, ip: Ipv4Addr) -> Result<Option<String>> {
    let v = http(url, "GET", &format!("/_emulator/holders?ip={ip}"))?;
    Ok(v["holders"]
        .as_array()
        .and_then(|h| h.first())
        .and_then(|h| h["nic"].as_str())
        .map(String::from))
}

fn our_nic(provider: &str) -> &'static str {
    match provider {
        "aws" => "eni-0cer",
        "azure" => "/subscriptions/sub-lab/resourceGroups/rg-lab/providers/Microsoft.Network/networkInterfaces/nic-cer",
        _ => "ocid1.vnic.oc1..cer",
    }
}

fn stats(mut v: Vec<u64>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_unstable();
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    json!({"n": v.len(), "min_ms": v[0], "median_ms": pct(0.5), "p90_ms": pct(0.9), "max_ms": v[v.len() - 1]})
}

async fn measure(provider: &str, args: &Args) -> Result<Value> {
    let dir = std::env::temp_dir().join(format!(
        "cer-bench-capture-{}-{provider}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let emu = Emulator::start(&args.emulator, &seed(provider, &args.fixtures)?, &dir)?;
    let p = client(provider, &emu.url, &args.fixtures, &[]).await?;
    let r = Reconciler::new(ReconcilerConfig {
        pool: vec![(Ipv4Addr::new(10, 77, 60, 0), 24)],
        ..ReconcilerConfig::default()
    });
    r.start(p);
    r.activate();
    let (mut capture, mut release) = (Vec::new(), Vec::new());
    let (mut fabric_capture, mut fabric_release) = (Vec::new(), Vec::new());
    for i in 0..args.moves {
        let desired = if i % 2 == 0 {
            Desired::Capture
        } else {
            Desired::Release
        };
        let signature = 0x1000 + i as u64;
        if desired == Desired::Capture {
            let u = emu.url.clone();
            tokio::task::spawn_blocking(move || reset(&u)).await??;
        }
        let t0 = Instant::now();
        r.set(POOL_IP, Intent { desired, signature });
        let sig = format!("{signature:016x}");
        let ms = loop {
            if let Some(s) = r.ip_status(POOL_IP) {
                if s.phase == Phase::Confirmed && s.signature == sig {
                    break s.confirm_ms.unwrap_or(0);
                }
                if let Some(e) = s.last_error {
                    eprintln!("{provider}: move {i}: {e}");
                }
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{provider}: move {i} not confirmed within 60 s: {:?}",
                    r.ip_status(POOL_IP)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        // When the fabric really delivers to (or stops delivering to) our NIC.
        let url = emu.url.clone();
        let fabric_ms = loop {
            let u = url.clone();
            let h = tokio::task::spawn_blocking(move || fabric_holder(&u, POOL_IP)).await??;
            if (h.as_deref() == Some(our_nic(provider))) == (desired == Desired::Capture) {
                break t0.elapsed().as_millis() as u64;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("{provider}: move {i}: the fabric never followed");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        match desired {
            Desired::Capture => {
                capture.push(ms);
                fabric_capture.push(fabric_ms);
            }
            Desired::Release => {
                release.push(ms);
                fabric_release.push(fabric_ms);
            }
            // This benchmark alternates capture and release only.
            Desired::Standby => {}
        }
        // Let the fabric settle before the next change.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let st = r.status();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "provider": provider,
        "client": st.provider_detail,
        "moves": args.moves,
        "capture": stats(capture),
        "release": stats(release),
        "fabric_capture": stats(fabric_capture),
        "fabric_release": stats(fabric_release),
        "errors": st.errors_total,
        "fenced": st.fenced_total,
    }))
}

fn main() -> Result<()> {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // The emulator checks the SigV4 header's shape only; these never leave loopback.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCERBENCH");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "cer-bench-secret");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if !args.mass.is_empty() {
        let mut rows = Vec::new();
        for p in &args.providers {
            for &n in &args.mass {
                let v = rt.block_on(mass::measure(p, n, &args.emulator, &args.fixtures))?;
                eprintln!("{v}");
                rows.push(v);
            }
        }
        let out = json!({"emulator_move_delay_ms": 500, "rows": rows});
        match &args.json {
            Some(path) => std::fs::write(path, serde_json::to_string_pretty(&out)?)?,
            None => println!("{}", serde_json::to_string_pretty(&out)?),
        }
        return Ok(());
    }
    let mut results = Vec::new();
    for p in &args.providers {
        let v = rt.block_on(measure(p, &args))?;
        eprintln!("{v}");
        results.push(v);
    }
    let out = json!({"emulator_move_delay_ms": 500, "results": results});
    match &args.json {
        Some(path) => std::fs::write(path, serde_json::to_string_pretty(&out)?)?,
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(())
}
