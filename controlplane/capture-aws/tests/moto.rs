//! `AwsProvider` against moto (an independent implementation of the EC2 query protocol) for
//! request/response shapes: a VPC, a subnet and two ENIs are created through the SDK, then
//! observe/capture/release run through the provider. moto does not model reassignment (a
//! "moved" address stays on both ENIs) and its address filters match primary addresses only.
//!
//! `moto_server` comes from `CER_MOTO_SERVER` (else `moto_server` on PATH); when it cannot run
//! the test is skipped with a message, unless `CER_REQUIRE_MOTO=1`, which makes it fail.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use cer_capture::{CaptureProvider, ErrorKind, Fence, Holding};
use cer_capture_aws::{AwsConfig, AwsProvider};
use common::{free_port, test_env};

/// moto_server, killed by PID when dropped.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn required() -> bool {
    std::env::var("CER_REQUIRE_MOTO").is_ok_and(|v| v == "1")
}

fn skip_or_fail(why: String) -> Option<(Moto, SocketAddr)> {
    assert!(!required(), "CER_REQUIRE_MOTO=1 but {why}");
    eprintln!("SKIPPED: {why} (pip install 'moto[server]', set CER_MOTO_SERVER)");
    None
}

/// Starts moto_server on a free loopback port; `None` (skip) when it is not available.
async fn start_moto() -> Option<(Moto, SocketAddr)> {
    let program = std::env::var("CER_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = free_port();
    let child = match Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return skip_or_fail(format!("{program} cannot start: {e}")),
    };
    let moto = Moto(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            return skip_or_fail(format!("{program} did not listen on {addr} within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((moto, addr))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[tokio::test]
async fn provider_against_moto() {
    test_env();
    let Some((_moto, addr)) = start_moto().await else {
        return;
    };
    let endpoint = format!("http://{addr}");
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);

    let vpc = ec2
        .create_vpc()
        .cidr_block("10.1.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.1.1.0/24")
        .send()
        .await
        .expect("CreateSubnet");
    let subnet_id = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .unwrap()
        .to_string();
    let mut enis = Vec::new();
    for primary in ["10.1.1.10", "10.1.1.20"] {
        let r = ec2
            .create_network_interface()
            .subnet_id(&subnet_id)
            .private_ip_address(primary)
            .send()
            .await
            .expect("CreateNetworkInterface");
        enis.push(
            r.network_interface()
                .and_then(|n| n.network_interface_id())
                .unwrap()
                .to_string(),
        );
    }
    let (ours, other) = (enis[0].clone(), enis[1].clone());
    ec2.assign_private_ip_addresses()
        .network_interface_id(&other)
        .private_ip_addresses("10.1.1.100")
        .private_ip_addresses("10.1.1.101")
        .send()
        .await
        .expect("AssignPrivateIpAddresses on the other ENI");

    let cfg = AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.clone()),
        eni_id: Some(ours.clone()),
        ..Default::default()
    };
    let p = AwsProvider::new(&cfg).await.expect("provider against moto");
    assert!(p.describe().contains(&vpc_id), "{}", p.describe());

    assert_eq!(p.observe(ip("10.1.1.99")).await.unwrap(), Holding::Nobody);
    assert_eq!(p.observe(ip("10.1.1.10")).await.unwrap(), Holding::Ours);
    assert_eq!(
        p.observe(ip("10.1.1.20")).await.unwrap(),
        Holding::Elsewhere(other.clone())
    );
    // A secondary address: moto's filter misses it, the subnet listing finds it.
    assert_eq!(
        p.observe(ip("10.1.1.100")).await.unwrap(),
        Holding::Elsewhere(other.clone())
    );

    p.capture(ip("10.1.1.100"), &Fence::open())
        .await
        .expect("capture with AllowReassignment");
    // moto keeps the address on both ENIs; ours wins.
    assert_eq!(p.observe(ip("10.1.1.100")).await.unwrap(), Holding::Ours);
    p.capture(ip("10.1.1.100"), &Fence::open())
        .await
        .expect("idempotent capture");
    p.capture(ip("10.1.1.77"), &Fence::open())
        .await
        .expect("capture of a free address");
    assert_eq!(p.observe(ip("10.1.1.77")).await.unwrap(), Holding::Ours);

    p.release(ip("10.1.1.100"), &Fence::open())
        .await
        .expect("release");
    assert_eq!(
        p.observe(ip("10.1.1.100")).await.unwrap(),
        Holding::Elsewhere(other.clone())
    );
    p.release(ip("10.1.1.100"), &Fence::open())
        .await
        .expect("idempotent release");
    // Held elsewhere only: release leaves it alone.
    p.release(ip("10.1.1.101"), &Fence::open()).await.unwrap();
    let d = ec2
        .describe_network_interfaces()
        .network_interface_ids(&other)
        .send()
        .await
        .unwrap();
    let held: Vec<&str> = d.network_interfaces()[0]
        .private_ip_addresses()
        .iter()
        .filter_map(|a| a.private_ip_address())
        .collect();
    assert!(held.contains(&"10.1.1.101"), "{held:?}");

    // A closed fence: nothing is called.
    let closed = || false;
    let e = p
        .capture(ip("10.1.1.101"), &Fence::new(closed))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fenced);

    // An address outside the subnet: moto's error document is classified and reported.
    let e = p.capture(ip("192.168.7.7"), &Fence::open()).await.err();
    if let Some(e) = e {
        assert_ne!(e.kind, ErrorKind::Fenced, "{e}");
        assert!(!e.message.is_empty(), "{e}");
    }

    // An unknown ENI: moto's error document, classified as Config.
    let cfg = AwsConfig {
        eni_id: Some("eni-0123456789abcdef0".into()),
        ..cfg
    };
    let e = AwsProvider::new(&cfg).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(
        e.message.contains("InvalidNetworkInterfaceID.NotFound"),
        "{e}"
    );
}
