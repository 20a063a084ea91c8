//! Shared test helpers: the `cer-cloud-emulator` binary on a loopback port 0 with a JSON seed,
//! stopped by a Drop guard (also when a test fails), and its control API.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// The emulator binary next to this test executable (`target/<profile>/cer-cloud-emulator`).
fn emulator_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> -> target/<profile>/cer-cloud-emulator
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable under target/<profile>/deps");
    let bin = profile_dir.join(format!(
        "cer-cloud-emulator{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build -p cer-cloud-emulator, with the same profile as the tests)",
        bin.display()
    );
    bin
}

/// A running emulator process; killed and reaped on drop.
pub struct Emulator {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
    http: reqwest::Client,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Emulator {
    /// Starts the emulator binary with `seed` (JSON) on 127.0.0.1:0.
    pub fn start(seed: &Value) -> Emulator {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cer-capture-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("seed.json");
        std::fs::write(&path, seed.to_string()).expect("write seed");
        let mut child = Command::new(emulator_binary())
            .args(["--listen", "127.0.0.1:0", "--state"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the emulator binary");
        let stdout = child.stdout.take().expect("stdout");
        // Guard before reading, so a failing read still kills it.
        let mut guard = Emulator {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's first line");
        guard.addr = line
            .trim()
            .strip_prefix("cer-cloud-emulator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("listening address");
        guard
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.url()));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("control API answers");
        let status = r.status();
        let v: Value = r.json().await.expect("control API answers JSON");
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Adds fault rules (`POST /_emulator/faults`).
    pub async fn fault(&self, rules: Value) {
        self.control(reqwest::Method::POST, "/_emulator/faults", Some(rules))
            .await;
    }

    /// Deletes a NIC (its VM terminated), as an operator would.
    pub async fn delete_nic(&self, id: &str) {
        self.control(
            reqwest::Method::POST,
            "/_emulator/nics/delete",
            Some(serde_json::json!({ "id": id })),
        )
        .await;
    }

    /// A control API `POST` answering JSON (status 2xx asserted).
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::POST, path, Some(body)).await
    }

    /// `POST /_emulator/config` (move delay, limits, clock offset).
    pub async fn config(&self, body: Value) -> Value {
        self.control(reqwest::Method::POST, "/_emulator/config", Some(body))
            .await
    }

    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "/_emulator/faults", None)
            .await;
    }

    /// `/_emulator/state`.
    pub async fn state(&self) -> Value {
        self.control(reqwest::Method::GET, "/_emulator/state", None)
            .await
    }

    /// The target view's NICs holding `ip`: (nic id, primary).
    pub async fn target_holders(&self, ip: &str) -> Vec<(String, bool)> {
        let s = self.state().await;
        let mut out = Vec::new();
        for n in s["target_nics"].as_array().cloned().unwrap_or_default() {
            if n["primary_ip"] == ip {
                out.push((n["id"].as_str().unwrap().to_string(), true));
            }
            if n["secondary_ips"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == ip))
            {
                out.push((n["id"].as_str().unwrap().to_string(), false));
            }
        }
        out
    }

    /// The whole target view (for "unchanged" assertions).
    pub async fn target(&self) -> Value {
        self.state().await["target_nics"].clone()
    }

    /// Waits until nothing is pending (the visible view caught up).
    pub async fn settle(&self) {
        for _ in 0..200 {
            let s = self.state().await;
            if s["pending"].as_array().is_some_and(|p| p.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("emulator changes never settled");
    }
}

/// A fence the test can close (or that closes itself after `n` checks).
#[derive(Clone)]
pub struct TestFence {
    pub open: Arc<AtomicBool>,
}

impl TestFence {
    pub fn new(open: bool) -> TestFence {
        TestFence {
            open: Arc::new(AtomicBool::new(open)),
        }
    }
}

/// Asserts a future finishes within `secs` (nothing may hang).
pub async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {secs} s"))
}

/// Path of a test fixture.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
