//! Shared helpers: a seed, a minimal HTTP/1.1 client over tokio, EC2 and XML helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use cer_cloud_emulator::{Running, Seed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const SEED: &str = r#"
region = "eu-west-1"
move_delay_ms = 400
imds_instance = "i-a"

[[subnets]]
id = "subnet-1"
cidr = "10.0.1.0/24"
vpc = "vpc-1"

[[nics]]
id = "eni-a"
instance = "i-a"
subnet = "subnet-1"
primary_ip = "10.0.1.10"
secondary_ips = ["10.0.1.100"]
mac = "02:00:00:00:00:0a"

[[nics]]
id = "eni-b"
instance = "i-b"
subnet = "subnet-1"
primary_ip = "10.0.1.20"
mac = "02:00:00:00:00:0b"

[[nics]]
id = "eni-c"
instance = "i-b"
subnet = "subnet-1"
primary_ip = "10.0.1.30"
mac = "02:00:00:00:00:0c"
"#;

pub fn seed() -> Seed {
    toml::from_str(SEED).expect("test seed parses")
}

/// Starts the emulator on loopback port 0, with an extra IMDS listener for `i-b`.
pub async fn start() -> Running {
    let imds = [("127.0.0.1:0".parse().unwrap(), "i-b".to_string())];
    cer_cloud_emulator::start(seed(), "127.0.0.1:0".parse().unwrap(), &imds)
        .await
        .expect("emulator starts")
}

#[derive(Debug)]
pub struct Resp {
    /// 0 when the server closed the connection without answering.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let s = TcpStream::connect(addr).await.expect("connect");
    exchange(s, addr, method, path, headers, body).await
}

/// As [`http`], from the local address `src` (e.g. 127.0.0.2: the emulator tells callers apart
/// by their address).
pub async fn http_from(
    src: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(src, 0))
        .expect("bind source address");
    let s = sock.connect(addr).await.expect("connect");
    exchange(s, addr, method, path, headers, body).await
}

async fn exchange(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (413-style) before reading a huge body; ignore write errors then.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await;
    match read {
        Ok(Ok(_)) | Ok(Err(_)) => {}
        Err(_) => panic!("no answer within 10 s for {method} {path}"),
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    if raw.is_empty() {
        return Resp {
            status: 0,
            headers: Vec::new(),
            body: String::new(),
        };
    }
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// An EC2 query API call (form-encoded POST, `Version=2016-11-15` added).
pub async fn ec2(addr: SocketAddr, params: &[(&str, &str)]) -> Resp {
    let mut f = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        f.append_pair(k, v);
    }
    f.append_pair("Version", "2016-11-15");
    let body = f.finish();
    http(
        addr,
        "POST",
        "/",
        &[(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        body.as_bytes(),
    )
    .await
}

/// Text of every `<tag>...</tag>` in document order.
pub fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

/// Asserts `r` is an EC2 error document with `code` and HTTP `status`.
pub fn assert_ec2_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "status for {code}: {}", r.body);
    assert!(
        r.body
            .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<Response><Errors><Error><Code>"),
        "error document shape: {}",
        r.body
    );
    assert_eq!(
        tag_values(&r.body, "Code"),
        vec![code.to_string()],
        "{}",
        r.body
    );
    assert_eq!(tag_values(&r.body, "Message").len(), 1, "{}", r.body);
    let id = tag_values(&r.body, "RequestID");
    assert_eq!(id.len(), 1, "{}", r.body);
    assert_eq!(id[0].len(), 36, "uuid-shaped request id: {}", id[0]);
}

/// The ENI ids DescribeNetworkInterfaces reports as holding `ip`.
pub async fn described_holders(addr: SocketAddr, ip: &str) -> Vec<String> {
    let r = ec2(
        addr,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "addresses.private-ip-address"),
            ("Filter.1.Value.1", ip),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    tag_values(&r.body, "networkInterfaceId")
}

/// The NIC the holder API reports for `ip` (None: nobody holds it).
pub async fn api_holder(addr: SocketAddr, ip: &str) -> Option<String> {
    let r = http(
        addr,
        "GET",
        &format!("/_emulator/holders?ip={ip}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let h = v["holders"].as_array().expect("holders array");
    assert!(h.len() <= 1, "{v}");
    h.first()
        .map(|h| h["nic"].as_str().expect("nic").to_string())
}

/// Starts the emulator on loopback port 0 with a seed given as JSON.
pub async fn start_json(seed: serde_json::Value) -> Running {
    let seed: Seed = serde_json::from_value(seed).expect("test seed parses");
    cer_cloud_emulator::start(seed, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .expect("emulator starts")
}

/// Every journal entry (accepted change) so far.
pub async fn journal(addr: SocketAddr) -> Vec<serde_json::Value> {
    let r = http(addr, "GET", "/_emulator/journal", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["entries"].as_array().expect("entries").clone()
}

/// `POST /_emulator/config` with `body`; must be accepted.
pub async fn config(addr: SocketAddr, body: serde_json::Value) -> serde_json::Value {
    let r = http(
        addr,
        "POST",
        "/_emulator/config",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// The `calls` of `GET /_emulator/stats`.
pub async fn stats(addr: SocketAddr) -> serde_json::Value {
    let r = http(addr, "GET", "/_emulator/stats", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["calls"].clone()
}

/// An OCI `Authorization` header of the right shape (seeds without keys check only the shape).
pub const OCI_SIG: &str = r#"Signature version="1",keyId="ocid1.tenancy.oc1..t/ocid1.user.oc1..u/aa:bb",algorithm="rsa-sha256",headers="(request-target) date host",signature="AAAA""#;

/// An OCI request with [`OCI_SIG`] and a JSON body.
pub async fn oci_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Resp {
    let b = body.map(|b| b.to_string()).unwrap_or_default();
    http(
        addr,
        method,
        path,
        &[
            ("Authorization", OCI_SIG),
            ("Content-Type", "application/json"),
        ],
        b.as_bytes(),
    )
    .await
}

/// An ARM request with a bearer token and `api-version`.
pub async fn arm_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Resp {
    let b = body.map(|b| b.to_string()).unwrap_or_default();
    http(
        addr,
        method,
        &format!("{path}?api-version=2023-09-01"),
        &[
            ("Authorization", "Bearer token"),
            ("Content-Type", "application/json"),
        ],
        b.as_bytes(),
    )
    .await
}

/// A SigV4 `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`) for `t`.
pub fn amz_date(t: std::time::SystemTime) -> String {
    let iso = cer_cloud_emulator::server::iso8601(t);
    // 2026-12-07T05:50:00.000Z -> 20261207T055000Z
    format!(
        "{}{}{}T{}{}{}Z",
        &iso[0..4],
        &iso[5..7],
        &iso[8..10],
        &iso[11..13],
        &iso[14..16],
        &iso[17..19]
    )
}
