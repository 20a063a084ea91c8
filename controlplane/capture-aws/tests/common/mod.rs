//! Shared helpers for the integration tests: the test environment (explicit dummy credentials,
//! IMDS credentials off, no profile files), the `cer-cloud-emulator` binary spawned on loopback
//! ports with a seed and stopped by PID when dropped, and a minimal HTTP/1.1 client for the
//! emulator's control API.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Seed of the emulator: our instance `i-cer` has two ENIs (device 0 and 1), a workload ENI
/// in the same subnet holds three secondaries, and another VPC reuses the same CIDR.
pub const SEED: &str = r#"
region = "eu-west-1"
move_delay_ms = 300

[[subnets]]
id = "subnet-1"
cidr = "10.0.1.0/24"
vpc = "vpc-1"

[[subnets]]
id = "subnet-9"
cidr = "10.0.1.0/24"
vpc = "vpc-9"

[[nics]]
id = "eni-cer0"
instance = "i-cer"
subnet = "subnet-1"
primary_ip = "10.0.1.10"
secondary_ips = ["10.0.1.50"]
mac = "02:00:00:00:00:10"
device_index = 0

[[nics]]
id = "eni-cer1"
instance = "i-cer"
subnet = "subnet-1"
primary_ip = "10.0.1.11"
secondary_ips = ["10.0.1.111"]
mac = "02:00:00:00:00:11"
device_index = 1

[[nics]]
id = "eni-wl"
instance = "i-wl"
subnet = "subnet-1"
primary_ip = "10.0.1.20"
secondary_ips = ["10.0.1.100", "10.0.1.101", "10.0.1.102"]
mac = "02:00:00:00:00:20"

[[nics]]
id = "eni-far"
instance = "i-far"
subnet = "subnet-9"
primary_ip = "10.0.1.9"
secondary_ips = ["10.0.1.150"]
mac = "02:00:00:00:00:99"
"#;

static ENV: Once = Once::new();

/// Makes the SDK's standard chain deterministic and loopback-only: dummy static credentials
/// from the environment, no profile files, IMDS credentials disabled (discovery still goes to
/// the loopback IMDS override). Call first in every test.
pub fn test_env() {
    ENV.call_once(|| {
        for k in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_EC2",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        ] {
            std::env::remove_var(k);
        }
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCERTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "cer-test-secret");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cer-test/aws-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/cer-test/aws-credentials",
        );
    });
}

/// A free loopback port (bound then released; the caller binds it again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The `cer-cloud-emulator` binary of this build: next to the test executable's directory
/// (`target/<profile>/deps/..`), or `CER_CLOUD_EMULATOR`.
pub fn emulator_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CER_CLOUD_EMULATOR") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let mut candidates = Vec::new();
    if let Some(deps) = exe.parent() {
        if let Some(profile) = deps.parent() {
            candidates.push(profile.join("cer-cloud-emulator"));
        }
        candidates.push(deps.join("cer-cloud-emulator"));
    }
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "cer-cloud-emulator binary not found (looked at {candidates:?}): build it with \
         `cargo build [--release] -p cer-cloud-emulator` (cargo test --workspace does) or set \
         CER_CLOUD_EMULATOR"
    );
}

/// A running emulator process, killed by PID when dropped.
pub struct Emulator {
    child: Child,
    /// Main listener: EC2 API and /_emulator control API.
    pub addr: SocketAddr,
    /// IMDS listener for instance `i-cer`.
    pub imds: SocketAddr,
    dir: PathBuf,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Emulator {
    /// Spawns the emulator with [`SEED`] on loopback, with an IMDS listener for `i-cer`.
    pub fn start() -> Emulator {
        let bin = emulator_binary();
        let dir = std::env::temp_dir().join(format!(
            "cer-capture-aws-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let seed = dir.join("seed.toml");
        std::fs::write(&seed, SEED).expect("write seed");
        let mut last_err = String::new();
        for _ in 0..5 {
            let imds: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = Command::new(&bin)
                .args(["--listen", "127.0.0.1:0", "--state"])
                .arg(&seed)
                .arg("--imds")
                .arg(format!("{imds}=i-cer"))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut line = String::new();
            let stdout = child.stdout.take().expect("stdout piped");
            let _ = BufReader::new(stdout).read_line(&mut line);
            let addr = line
                .trim()
                .strip_prefix("cer-cloud-emulator listening on ")
                .and_then(|a| a.parse::<SocketAddr>().ok());
            match addr {
                Some(addr) => {
                    return Emulator {
                        child,
                        addr,
                        imds,
                        dir,
                    }
                }
                None => {
                    // Most likely the picked IMDS port was taken meanwhile: try another.
                    last_err = format!("unexpected first line {line:?}");
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("the emulator did not start: {last_err}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn imds_endpoint(&self) -> String {
        format!("http://{}", self.imds)
    }

    /// The NIC the holder API reports for `ip` (visible view).
    pub async fn holder(&self, ip: &str) -> Option<String> {
        let v = self
            .json("GET", &format!("/_emulator/holders?ip={ip}"), "")
            .await;
        v["holders"]
            .as_array()
            .and_then(|h| h.first())
            .and_then(|h| h["nic"].as_str())
            .map(str::to_string)
    }

    /// The full emulator state.
    pub async fn state(&self) -> serde_json::Value {
        self.json("GET", "/_emulator/state", "").await
    }

    /// Adds fault rules (a JSON rule or array).
    pub async fn fault(&self, rules: serde_json::Value) {
        self.json("POST", "/_emulator/faults", &rules.to_string())
            .await;
    }

    /// The active fault rules.
    pub async fn faults(&self) -> serde_json::Value {
        self.json("GET", "/_emulator/faults", "").await["faults"].take()
    }

    pub async fn clear_faults(&self) {
        self.json("DELETE", "/_emulator/faults", "").await;
    }

    /// Deletes a NIC (its VM terminated), as an operator would.
    pub async fn delete_nic(&self, id: &str) {
        self.json(
            "POST",
            "/_emulator/nics/delete",
            &serde_json::json!({ "id": id }).to_string(),
        )
        .await;
    }

    pub async fn set_move_delay(&self, ms: u64) {
        self.json(
            "POST",
            "/_emulator/config",
            &serde_json::json!({ "move_delay_ms": ms }).to_string(),
        )
        .await;
    }

    /// One control-API call answering JSON (status 200 asserted).
    pub async fn json(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let (status, text) = http(self.addr, method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // The emulator answers with Content-Length; tolerate chunked bodies anyway.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `f` every 100 ms until it returns true or `within` passed; true on success.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    loop {
        if f().await {
            return true;
        }
        if t0.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
