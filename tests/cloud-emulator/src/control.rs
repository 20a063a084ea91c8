//! The emulator's own JSON control API under `/_emulator/` (documented in the crate docs).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::faults::FaultSpec;
use crate::limits::Limits;
use crate::server::{json, Body, Emulator, Req};
use crate::state::Seed;

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response<Body> {
    json(status, &json!({ "error": msg.to_string() }))
}

fn query_param<'a>(req: &'a Req, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    form_urlencoded::parse(req.query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// An optional unsigned query parameter; the error names it and its value.
fn number_param(req: &Req, name: &str) -> Result<Option<u64>, String> {
    match query_param(req, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("bad {name} {v:?}")),
    }
}

/// Serves one control API request.
pub async fn handle(emulator: &Emulator, req: &Req) -> Response<Body> {
    if req.too_large {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let path = req.path.trim_end_matches('/');
    match (&req.method, path) {
        (&Method::GET, "/_emulator/holders") => holders(emulator, req).await,
        (&Method::GET, "/_emulator/state") => state(emulator),
        (&Method::GET, "/_emulator/journal") => journal(emulator, req),
        (&Method::GET, "/_emulator/faults") => json(
            StatusCode::OK,
            &json!({ "faults": emulator.faults().list() }),
        ),
        (&Method::POST, "/_emulator/faults") => add_faults(emulator, req),
        (&Method::DELETE, "/_emulator/faults") => {
            emulator.faults().clear();
            json(StatusCode::OK, &json!({ "faults": [] }))
        }
        (&Method::POST, "/_emulator/reset") => reset(emulator, req),
        (&Method::POST, "/_emulator/config") => config(emulator, req),
        (&Method::POST, "/_emulator/nics/delete") => delete_nic(emulator, req),
        (&Method::POST, "/_emulator/nics/detach") => detach_nic(emulator, req),
        (&Method::POST, "/_emulator/nics/attach") => attach_nic(emulator, req),
        (&Method::GET, "/_emulator/stats") => json(StatusCode::OK, &emulator.stats().report()),
        (&Method::DELETE, "/_emulator/stats") => {
            let mut stats = emulator.stats();
            stats.clear();
            json(StatusCode::OK, &stats.report())
        }
        (
            _,
            "/_emulator/holders"
            | "/_emulator/state"
            | "/_emulator/journal"
            | "/_emulator/faults"
            | "/_emulator/reset"
            | "/_emulator/config"
            | "/_emulator/nics/delete"
            | "/_emulator/nics/detach"
            | "/_emulator/nics/attach"
            | "/_emulator/stats",
        ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", req.path),
        ),
    }
}

/// Longest `wait_ms` accepted by the holder long poll.
const MAX_WAIT_MS: u64 = 60_000;

async fn holders(emulator: &Emulator, req: &Req) -> Response<Body> {
    let ip = match query_param(req, "ip") {
        None => None,
        Some(v) => match v.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => return error(StatusCode::BAD_REQUEST, format!("bad ip {v:?}")),
        },
    };
    let (since, wait_ms) = match (number_param(req, "since"), number_param(req, "wait_ms")) {
        (Ok(s), Ok(w)) => (s, w.unwrap_or(0)),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    if wait_ms > MAX_WAIT_MS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("wait_ms must be at most {MAX_WAIT_MS}"),
        );
    }
    // Long poll: wait until the visible generation passes `since` (or `wait_ms` elapses).
    if let Some(since) = since {
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let now = Instant::now();
            let generation = {
                let mut state = emulator.state();
                state.settle(now);
                state.generation
            };
            if generation > since || now >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10).min(deadline - now)).await;
        }
    }
    let provider = query_param(req, "provider").map(|p| p.into_owned());
    let network = query_param(req, "network").map(|p| p.into_owned());
    let mut state = emulator.state();
    let now = Instant::now();
    let holders: Vec<_> = state
        .holders(now)
        .into_iter()
        .filter(|h| ip.is_none_or(|ip| h.ip == ip))
        .filter(|h| provider.as_deref().is_none_or(|p| h.provider == p))
        .filter(|h| network.as_deref().is_none_or(|n| h.network == n))
        .collect();
    let pending = state.pending(now);
    json(
        StatusCode::OK,
        &json!({ "generation": state.generation, "holders": holders, "pending": pending }),
    )
}

fn state(emulator: &Emulator) -> Response<Body> {
    let mut state = emulator.state();
    let now = Instant::now();
    let visible: Vec<_> = state.visible(now).nics.values().cloned().collect();
    let target: Vec<_> = state.target().nics.values().cloned().collect();
    let subnets: Vec<_> = state.subnets.values().cloned().collect();
    let pending = state.pending(now);
    json(
        StatusCode::OK,
        &json!({
            "region": state.region,
            "move_delay_ms": state.move_delay.as_millis() as u64,
            "imds_instance": state.imds_instance,
            "imds_clients": state.imds_clients,
            "generation": state.generation,
            "subnets": subnets,
            "nics": visible,
            "target_nics": target,
            "pending": pending,
            "faults": emulator.faults().list(),
            "default_instance_type": state.default_instance_type.name,
            "instance_types": state
                .instance_types
                .iter()
                .map(|(i, t)| (i.clone(), t.name))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "azure_max_ip_configs": state.azure_max_ip_configs,
            "oci_max_secondary_ips": state.oci_max_secondary_ips,
            "limits": emulator.limits(),
            "clock_offset_secs": emulator.clock_offset(),
        }),
    )
}

/// `?since=SEQ`: every accepted change after SEQ, with the request that caused it.
fn journal(emulator: &Emulator, req: &Req) -> Response<Body> {
    let since = match number_param(req, "since") {
        Ok(n) => n.unwrap_or(0),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let state = emulator.state();
    json(
        StatusCode::OK,
        &json!({
            "entries": state.journal(since),
            "dropped": state.journal_dropped,
        }),
    )
}

fn add_faults(emulator: &Emulator, req: &Req) -> Response<Body> {
    let v: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
    };
    let specs: Result<Vec<FaultSpec>, _> = match v {
        Value::Array(_) => serde_json::from_value(v),
        other => serde_json::from_value(other).map(|s| vec![s]),
    };
    let specs = match specs {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad fault: {e}")),
    };
    let mut faults = emulator.faults();
    for s in specs {
        faults.add(s);
    }
    json(StatusCode::OK, &json!({ "faults": faults.list() }))
}

fn reset(emulator: &Emulator, req: &Req) -> Response<Body> {
    let seed = if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        None
    } else {
        match serde_json::from_slice::<Seed>(&req.body) {
            Ok(s) => Some(s),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad seed: {e}")),
        }
    };
    match emulator.reset(seed) {
        Ok(()) => json(StatusCode::OK, &json!({ "reset": true })),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("bad seed: {e}")),
    }
}

/// `{"move_delay_ms": n, "limits": {...}, "clock_offset_secs": s}` (each optional): `limits`
/// replaces the rate limits (the seed section's shape; absent keys take their defaults; every
/// bucket starts full); `clock_offset_secs` sets how far the emulator's clock is from the host's.
fn config(emulator: &Emulator, req: &Req) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        move_delay_ms: Option<u64>,
        limits: Option<Limits>,
        clock_offset_secs: Option<i64>,
    }
    let c: Config = match serde_json::from_slice(&req.body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad config: {e}")),
    };
    if c.move_delay_ms.is_some_and(|ms| ms > 3_600_000) {
        return error(
            StatusCode::BAD_REQUEST,
            "move_delay_ms must be at most 3600000",
        );
    }
    if c.clock_offset_secs
        .is_some_and(|s| s.abs() > crate::state::MAX_CLOCK_OFFSET_SECS)
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "clock_offset_secs must be within +-{}",
                crate::state::MAX_CLOCK_OFFSET_SECS
            ),
        );
    }
    if let Some(Err(e)) = c.limits.as_ref().map(Limits::validate) {
        return error(StatusCode::BAD_REQUEST, format!("bad config: {e}"));
    }
    if let Some(limits) = c.limits {
        emulator.set_limits(limits);
    }
    if let Some(secs) = c.clock_offset_secs {
        emulator.set_clock_offset(secs);
    }
    let mut state = emulator.state();
    if let Some(ms) = c.move_delay_ms {
        state.move_delay = Duration::from_millis(ms);
    }
    json(
        StatusCode::OK,
        &json!({
            "move_delay_ms": state.move_delay.as_millis() as u64,
            "limits": emulator.limits(),
            "clock_offset_secs": emulator.clock_offset(),
        }),
    )
}

/// `{"id": NIC}`: the NIC is deleted (its VM terminated), as an operator would in the console.
fn delete_nic(emulator: &Emulator, req: &Req) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Delete {
        id: String,
    }
    let d: Delete = match serde_json::from_slice(&req.body) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request: {e}")),
    };
    let mut state = emulator.state();
    match state.delete_nic(Instant::now(), &d.id) {
        Ok(()) => json(StatusCode::OK, &json!({ "deleted": d.id })),
        Err(_) => error(StatusCode::NOT_FOUND, format!("no such NIC: {}", d.id)),
    }
}

/// `{"id": NIC}`: the NIC is detached from its instance, as an operator would in the console.
/// AWS and Azure keep it (and its addresses), unattached. OCI deletes a secondary VNIC when it
/// is detached: an OCI VNIC is deleted as by `nics/delete`.
fn detach_nic(emulator: &Emulator, req: &Req) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Detach {
        id: String,
    }
    let d: Detach = match serde_json::from_slice(&req.body) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request: {e}")),
    };
    let mut state = emulator.state();
    let now = Instant::now();
    let provider = state.target().nics.get(&d.id).map(|n| n.provider.clone());
    if provider.as_deref() == Some("oci") {
        return match state.delete_nic(now, &d.id) {
            Ok(()) => json(
                StatusCode::OK,
                &json!({ "detached": d.id, "deleted": true }),
            ),
            Err(_) => error(StatusCode::NOT_FOUND, format!("no such NIC: {}", d.id)),
        };
    }
    match state.detach(now, &d.id) {
        Ok(instance) => json(
            StatusCode::OK,
            &json!({ "detached": d.id, "instance": instance }),
        ),
        Err(e) => detach_error(&e),
    }
}

/// `{"id": NIC, "instance": I}` (`instance` optional: the one it was detached from).
fn attach_nic(emulator: &Emulator, req: &Req) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Attach {
        id: String,
        instance: Option<String>,
    }
    let a: Attach = match serde_json::from_slice(&req.body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request: {e}")),
    };
    let mut state = emulator.state();
    match state.attach(Instant::now(), &a.id, a.instance.as_deref()) {
        Ok(instance) => json(
            StatusCode::OK,
            &json!({ "attached": a.id, "instance": instance }),
        ),
        Err(e) => detach_error(&e),
    }
}

fn detach_error(e: &crate::state::DetachError) -> Response<Body> {
    let status = match e {
        crate::state::DetachError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e)
}
