//! The binary: seeded from a file, on a loopback port 0, stopped by PID.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[tokio::test]
async fn binary_serves_the_seed_file() {
    let dir = std::env::temp_dir().join(format!("cer-cloud-emulator-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seed.toml");
    std::fs::write(&path, SEED).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cer-cloud-emulator"))
        .args(["--listen", "127.0.0.1:0", "--move-delay-ms", "0", "--state"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the emulator binary");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("cer-cloud-emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    assert_eq!(
        api_holder(addr, "10.0.1.100").await.as_deref(),
        Some("eni-a")
    );
    let r = http(addr, "GET", "/_emulator/state", &[], b"").await;
    assert_eq!(r.json()["move_delay_ms"], 0);
    let _ = child.kill();
    let _ = child.wait();

    // A bad seed file is refused with a message naming the problem.
    std::fs::write(
        &path,
        "[[nics]]\nid = \"eni-a\"\nsubnet = \"nope\"\nprimary_ip = \"10.0.0.1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cer-cloud-emulator"))
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown subnet"));
    std::fs::remove_dir_all(&dir).unwrap();
}
