//! The lab's OCI signer (`scripts/cerlab/oci_sign.py`, which the lab's operator requests use)
//! against the CER's (`cer_capture::oci_sign::sign`): the same request, with and without a body,
//! gives the same headers and the same signature. `sign` takes the date from the clock, so the
//! Python signer is given the date the Rust one put in its `date` header; RSA PKCS#1 v1.5 is
//! deterministic, so equal inputs must give byte-equal signatures.
//!
//! Needs `python3` and `openssl` (the Python signer's RSA step), as the lab does.

use std::path::{Path, PathBuf};
use std::process::Command;

use cer_capture::oci_sign::{parse_private_key, sign};
use serde_json::Value;

const KEY_ID: &str = "ocid1.tenancy.oc1..cerlab/ocid1.user.oc1..cerlab/20:3b:97:13:55:1c:1a:9f:46:b0:4c:02:dd:45:28:4c";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn key_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/api_key.pem")
}

/// The Python signer's headers for the same request (`python3 -m cerlab.oci_sign`).
fn python_sign(method: &str, target: &str, host: &str, date: &str, body: Option<&str>) -> Value {
    let mut cmd = Command::new("python3");
    cmd.current_dir(repo().join("scripts"))
        .args([
            "-m",
            "cerlab.oci_sign",
            "--method",
            method,
            "--path",
            target,
        ])
        .args(["--host", host, "--date", date, "--key-id", KEY_ID])
        .arg("--key-file")
        .arg(key_file());
    if let Some(b) = body {
        cmd.args(["--body", b]);
    }
    let out = cmd.output().expect("running python3 -m cerlab.oci_sign");
    assert!(
        out.status.success(),
        "python signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python signer prints JSON")
}

/// Signs `method url [body]` with both signers and compares every header.
fn same_signature(method: &str, url: &str, body: Option<&str>) {
    let key =
        parse_private_key(&std::fs::read_to_string(key_file()).expect("fixture key")).expect("key");
    let url = url::Url::parse(url).expect("url");
    let rust = sign(KEY_ID, &key, method, &url, body.map(str::as_bytes));
    let get = |name: &str| {
        rust.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("rust signer sent no {name} header"))
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let python = python_sign(method, &target, &get("host"), &get("date"), body);
    let python = python.as_object().expect("a JSON object");
    // The order that is signed is in `headers="..."` of the authorization compared below.
    let mut names: Vec<&str> = rust.iter().map(|(k, _)| *k).collect();
    names.sort_unstable();
    let py_names: Vec<&str> = python.keys().map(String::as_str).collect();
    assert_eq!(names, py_names, "the same headers ({method} {url})");
    for (name, value) in &rust {
        assert_eq!(
            python[*name].as_str(),
            Some(value.as_str()),
            "{name} of {method} {url}"
        );
    }
    assert!(get("authorization").contains("algorithm=\"rsa-sha256\""));
}

#[test]
fn get_with_a_query_signs_alike() {
    same_signature(
        "GET",
        "http://169.254.169.254/20160918/privateIps?ipAddress=10.77.60.13&subnetId=ocid1.subnet.oc1.eu-frankfurt-1.cerlab",
        None,
    );
}

#[test]
fn put_with_a_body_signs_alike() {
    same_signature(
        "PUT",
        "http://169.254.169.254/20160918/privateIps/ocid1.privateip.oc1..x",
        Some(r#"{"vnicId":"ocid1.vnic.oc1.eu-frankfurt-1.cerlabworkload"}"#),
    );
}

#[test]
fn post_to_a_host_with_a_port_signs_alike() {
    same_signature(
        "post",
        "http://127.0.0.1:8080/20160918/privateIps",
        Some(r#"{"vnicId":"v","ipAddress":"10.77.60.21"}"#),
    );
}
