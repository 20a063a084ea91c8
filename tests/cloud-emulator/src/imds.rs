//! AWS IMDSv2 (tokens required, as with `HttpTokens=required`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hyper::{Method, Response, StatusCode};

use crate::faults::FaultKind;
use crate::server::{reply, Body, Emulator, Gate, Outcome, Req};
use crate::state::Nic;

const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const MAX_TOKENS: usize = 10_000;

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    reply(status, "text/plain", body.into())
}

fn status_page(status: StatusCode) -> Response<Body> {
    text(status, status.canonical_reason().unwrap_or("").to_string())
}

/// Serves one IMDS request. `instance` is the instance of a dedicated IMDS listener, `None` on the
/// main listener (then the caller's, `State::imds_instance_for`).
pub async fn handle(emulator: &Emulator, instance: Option<&str>, req: &Req) -> Outcome {
    let path = req.path.clone();
    match emulator.fault_gate("imds", &path).await {
        Gate::Proceed => {}
        Gate::Fail(FaultKind::Throttle) => {
            return Outcome::Reply(status_page(StatusCode::TOO_MANY_REQUESTS))
        }
        Gate::Fail(FaultKind::Denied) => return Outcome::Reply(status_page(StatusCode::FORBIDDEN)),
        Gate::Fail(_) => return Outcome::Reply(status_page(StatusCode::INTERNAL_SERVER_ERROR)),
        Gate::Timeout { hold, .. } => {
            tokio::time::sleep(hold).await;
            return Outcome::Drop;
        }
    }
    Outcome::Reply(serve(emulator, instance, req))
}

fn serve(emulator: &Emulator, instance: Option<&str>, req: &Req) -> Response<Body> {
    if req.path == "/latest/api/token" {
        if req.method != Method::PUT {
            return status_page(StatusCode::METHOD_NOT_ALLOWED);
        }
        if req.headers.contains_key("x-forwarded-for") {
            return status_page(StatusCode::FORBIDDEN);
        }
        let ttl = req
            .header(TTL_HEADER)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|t| (1..=21_600).contains(t));
        let Some(ttl) = ttl else {
            return status_page(StatusCode::BAD_REQUEST);
        };
        let token = format!("{:032x}", emulator.random128());
        let token = format!("AQAEA{}==", &token);
        let now = Instant::now();
        {
            let mut tokens = emulator
                .imds_tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if tokens.len() >= MAX_TOKENS {
                tokens.retain(|_, exp| *exp > now);
            }
            if tokens.len() >= MAX_TOKENS {
                return status_page(StatusCode::SERVICE_UNAVAILABLE);
            }
            tokens.insert(token.clone(), now + Duration::from_secs(ttl));
        }
        let mut r = text(StatusCode::OK, token);
        r.headers_mut()
            .insert(TTL_HEADER, ttl.to_string().parse().expect("digits"));
        return r;
    }
    if req.method != Method::GET && req.method != Method::HEAD {
        return status_page(StatusCode::METHOD_NOT_ALLOWED);
    }
    let valid = req.header(TOKEN_HEADER).is_some_and(|t| {
        emulator
            .imds_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(t)
            .is_some_and(|exp| *exp > Instant::now())
    });
    if !valid {
        return status_page(StatusCode::UNAUTHORIZED);
    }
    let Some(rest) = req.path.strip_prefix("/latest/meta-data") else {
        return status_page(StatusCode::NOT_FOUND);
    };
    let rest = rest.trim_start_matches('/');
    match metadata(emulator, instance, req.peer.map(|p| p.ip()), rest) {
        Some(body) => text(StatusCode::OK, body),
        None => status_page(StatusCode::NOT_FOUND),
    }
}

fn lines<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| s.as_ref())
        .collect::<Vec<_>>()
        .join("\n")
}

fn metadata(
    emulator: &Emulator,
    instance: Option<&str>,
    client: Option<IpAddr>,
    path: &str,
) -> Option<String> {
    let mut state = emulator.state();
    let instance = match instance {
        Some(i) => i.to_string(),
        None => state.imds_instance_for(Instant::now(), client)?,
    };
    let region = state.region.clone();
    let instance_type = state.instance_type(Some(&instance)).name;
    let view = state.visible(Instant::now()).clone();
    let mut nics: Vec<&Nic> = view
        .nics
        .values()
        .filter(|n| n.instance.as_deref() == Some(instance.as_str()))
        .collect();
    nics.sort_by_key(|n| n.device_index);
    let primary = nics.first().copied();
    let subnet_of = |n: &Nic| state.subnets.get(&n.subnet).cloned();
    let az = primary
        .and_then(subnet_of)
        .map(|s| s.availability_zone)
        .unwrap_or_else(|| format!("{region}a"));
    let p = path.trim_end_matches('/');
    let v = match p {
        "" => lines(&[
            "instance-id",
            "instance-type",
            "local-ipv4",
            "mac",
            "network/",
            "placement/",
        ]),
        "instance-id" => instance.clone(),
        "instance-type" => instance_type.to_string(),
        "mac" => primary?.mac.clone(),
        "local-ipv4" => primary?.primary_ip.to_string(),
        "placement" => lines(&["availability-zone", "region"]),
        "placement/region" => region,
        "placement/availability-zone" => az,
        "network" => "interfaces/".to_string(),
        "network/interfaces" => "macs/".to_string(),
        "network/interfaces/macs" => lines(
            &nics
                .iter()
                .map(|n| format!("{}/", n.mac))
                .collect::<Vec<_>>(),
        ),
        _ => {
            let rest = p.strip_prefix("network/interfaces/macs/")?;
            let (mac, key) = rest.split_once('/').unwrap_or((rest, ""));
            let n = nics.iter().find(|n| n.mac.eq_ignore_ascii_case(mac))?;
            let subnet = subnet_of(n);
            match key {
                "" => lines(&[
                    "device-number",
                    "interface-id",
                    "local-ipv4s",
                    "mac",
                    "subnet-id",
                    "subnet-ipv4-cidr-block",
                    "vpc-id",
                ]),
                "device-number" => n.device_index.to_string(),
                "interface-id" => n.id.clone(),
                "local-ipv4s" => lines(
                    &std::iter::once(n.primary_ip)
                        .chain(n.secondary_ips.iter().copied())
                        .map(|ip| ip.to_string())
                        .collect::<Vec<_>>(),
                ),
                "mac" => n.mac.clone(),
                "subnet-id" => n.subnet.clone(),
                "subnet-ipv4-cidr-block" => subnet?.cidr,
                "vpc-id" => subnet?.vpc,
                _ => return None,
            }
        }
    };
    Some(v)
}
