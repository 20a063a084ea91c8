//! OCI request signing (draft-cavage HTTP signatures, RSA-SHA256, `version="1"`) and the two
//! credential sources the OCI client supports:
//!
//! - **API key**: `keyId="{tenancy}/{user}/{fingerprint}"`, signed with the key file's private
//!   key (PKCS#1 or PKCS#8 PEM).
//! - **Instance principal**: the instance metadata service hands out a leaf certificate, its
//!   private key and the intermediate certificate (`/opc/v2/identity/{cert,key,intermediate}.pem`,
//!   `Authorization: Bearer Oracle`). A fresh RSA session key is generated, and the federation
//!   endpoint (`POST {auth}/v1/x509`, signed with the leaf key as
//!   `keyId="{tenancy}/fed-x509/{leaf SHA-1 fingerprint}"`, tenancy from the leaf subject's
//!   `OU=opc-tenant:...`) trades them for a security token; requests are then signed with the
//!   session key as `keyId="ST${token}"`. The token is renewed (with fresh certificates and a new
//!   session key) before it expires, or after the API refused it.
//!
//! Signed headers: `date (request-target) host`, plus `x-content-sha256 content-type
//! content-length` for requests with a body (POST, PUT).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::provider::{CaptureError, ErrorKind};

const PROVIDER: &str = "oci";

/// Headers to add to a request: (name, value), `authorization` last.
pub type SignedHeaders = Vec<(&'static str, String)>;

fn config_err(step: &str, message: impl Into<String>) -> CaptureError {
    CaptureError::new(ErrorKind::Config, PROVIDER, step, message)
}

/// An RSA private key from PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
pub fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, String> {
    let pem = pem.trim();
    if pem.contains("ENCRYPTED") {
        return Err("encrypted private keys are not supported: use an unencrypted PEM".into());
    }
    RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|e| format!("not an RSA private key in PEM (PKCS#8 or PKCS#1): {e}"))
}

/// The DER of the first PEM block labelled `label`.
pub fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64).ok()
}

/// The SHA-1 fingerprint of a certificate's DER, as OCI prints it (`AB:CD:...`).
pub fn cert_fingerprint(der: &[u8]) -> String {
    use sha1::Digest as _;
    sha1::Sha1::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The tenancy OCID in a certificate's subject (`OU=opc-tenant:ocid1.tenancy...`).
pub fn cert_tenancy(der: &[u8]) -> Result<String, String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| format!("cannot parse the leaf certificate: {e}"))?;
    let subject = cert.tbs_certificate.subject.to_string();
    let i = subject
        .find("opc-tenant:")
        .ok_or_else(|| format!("no OU=opc-tenant:... in the certificate subject {subject:?}"))?;
    let t: String = subject[i + "opc-tenant:".len()..]
        .chars()
        .take_while(|c| *c != ',' && *c != '+' && *c != '\\')
        .collect();
    if t.is_empty() {
        return Err(format!(
            "empty opc-tenant in the certificate subject {subject:?}"
        ));
    }
    Ok(t)
}

/// Signs one request: returns the headers to send (`date`, `host`, body headers,
/// `authorization`). `url` is absolute; `body` is the exact bytes sent (POST / PUT).
pub fn sign(
    key_id: &str,
    key: &RsaPrivateKey,
    method: &str,
    url: &url::Url,
    body: Option<&[u8]>,
) -> SignedHeaders {
    sign_at(key_id, key, method, url, body, SystemTime::now())
}

/// [`sign`] with `now` as the request's `date` (the host's time corrected by the skew a
/// [`Clock`] learned).
pub fn sign_at(
    key_id: &str,
    key: &RsaPrivateKey,
    method: &str,
    url: &url::Url,
    body: Option<&[u8]>,
    now: SystemTime,
) -> SignedHeaders {
    let date = httpdate::fmt_http_date(now);
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let method = method.to_ascii_lowercase();
    let mut headers: SignedHeaders = vec![("date", date.clone()), ("host", host.clone())];
    let mut names = vec!["date", "(request-target)", "host"];
    let mut lines = vec![
        format!("date: {date}"),
        format!("(request-target): {method} {target}"),
        format!("host: {host}"),
    ];
    if let Some(b) = body {
        let sha = B64.encode(Sha256::digest(b));
        let len = b.len().to_string();
        lines.push(format!("x-content-sha256: {sha}"));
        lines.push("content-type: application/json".to_string());
        lines.push(format!("content-length: {len}"));
        names.extend(["x-content-sha256", "content-type", "content-length"]);
        headers.push(("x-content-sha256", sha));
        headers.push(("content-type", "application/json".to_string()));
        headers.push(("content-length", len));
    }
    let signing = lines.join("\n");
    let sig = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone()).sign(signing.as_bytes());
    headers.push((
        "authorization",
        format!(
            "Signature version=\"1\",keyId=\"{key_id}\",algorithm=\"rsa-sha256\",headers=\"{}\",signature=\"{}\"",
            names.join(" "),
            B64.encode(sig.to_bytes())
        ),
    ));
    headers
}

/// Skew changes smaller than this are measurement noise (the `Date` header has a resolution of
/// one second, and the round trip blurs it further): not learned.
const SKEW_NOISE_MS: i64 = 2_000;

/// A skew at least this large is worth a warning (and is named in error messages).
pub const SKEW_WARN: Duration = Duration::from_secs(60);

/// The OCI API's clock as this client sees it: the host's clock plus the skew learned from the
/// `Date` header of the API's replies (the server's time at about the middle of the round trip,
/// as NTP and the AWS SDKs estimate it). OCI refuses a request whose signed `date` is more than
/// 5 minutes off its own clock (401 `NotAuthenticated`); signing with [`Clock::now`] keeps the
/// requests inside that window whatever the host's clock says.
#[derive(Debug, Default)]
pub struct Clock {
    /// Server minus host, in milliseconds.
    skew_ms: std::sync::atomic::AtomicI64,
}

impl Clock {
    /// The host's time corrected by the learned skew.
    pub fn now(&self) -> SystemTime {
        shift(SystemTime::now(), self.skew_ms())
    }

    /// The learned skew (server minus host), in milliseconds.
    pub fn skew_ms(&self) -> i64 {
        self.skew_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Learns the skew from a reply's `Date` header, for a request sent at `sent` and answered
    /// at `received` (host clock). Returns the new skew when it changed by more than the noise
    /// (then logged), `None` otherwise (no or unreadable `Date`, or no change).
    pub fn learn(&self, date: Option<&str>, sent: SystemTime, received: SystemTime) -> Option<i64> {
        let server = httpdate::parse_http_date(date?).ok()?;
        let rtt = received.duration_since(sent).unwrap_or_default();
        let midpoint = sent + rtt / 2;
        // A reply the server took a long time over tells little about its clock.
        if rtt > Duration::from_secs(60) {
            return None;
        }
        let measured = match server.duration_since(midpoint) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        // Within the noise of a right clock: no correction at all.
        let measured = if measured.abs() <= SKEW_NOISE_MS {
            0
        } else {
            measured
        };
        let old = self.skew_ms();
        if (measured - old).abs() <= SKEW_NOISE_MS && !(measured == 0 && old != 0) {
            return None;
        }
        self.skew_ms
            .store(measured, std::sync::atomic::Ordering::Relaxed);
        let text = skew_text(measured);
        if Duration::from_millis(measured.unsigned_abs()) >= SKEW_WARN {
            log::warn!(
                "oci: {text}; requests are now signed with the API's time (was a skew of {} ms)",
                old
            );
        } else {
            log::info!("oci: {text} (was a skew of {old} ms)");
        }
        Some(measured)
    }
}

/// `t` moved by `ms` milliseconds (either way).
fn shift(t: SystemTime, ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        t.checked_add(d)
    } else {
        t.checked_sub(d)
    }
    .unwrap_or(t)
}

/// "the host clock is 600.0 s behind the OCI API's (its Date header)", for logs and errors.
pub fn skew_text(skew_ms: i64) -> String {
    if skew_ms == 0 {
        return "the host clock agrees with the OCI API's (its Date header)".to_string();
    }
    format!(
        "clock skew: the host clock is {:.1} s {} the OCI API's (its Date header)",
        skew_ms.unsigned_abs() as f64 / 1000.0,
        if skew_ms > 0 { "behind" } else { "ahead of" }
    )
}

/// A security token session (instance principal): the token and its session key.
pub struct Session {
    token: String,
    key: RsaPrivateKey,
    renew_at: SystemTime,
}

/// How requests are signed.
pub enum Credentials {
    ApiKey {
        key_id: String,
        key: RsaPrivateKey,
    },
    InstancePrincipal {
        imds: String,
        auth: String,
        session: tokio::sync::Mutex<Option<Session>>,
    },
}

impl Credentials {
    /// API key credentials from the key file.
    pub fn api_key(
        tenancy: &str,
        user: &str,
        fingerprint: &str,
        key_file: &std::path::Path,
    ) -> Result<Credentials, CaptureError> {
        let pem = std::fs::read_to_string(key_file).map_err(|e| {
            config_err(
                "API key",
                format!("cannot read key_file {}: {e}", key_file.display()),
            )
        })?;
        let key = parse_private_key(&pem)
            .map_err(|e| config_err("API key", format!("key_file {}: {e}", key_file.display())))?;
        Ok(Credentials::ApiKey {
            key_id: format!("{tenancy}/{user}/{fingerprint}"),
            key,
        })
    }

    /// Instance principal credentials (nothing is fetched until the first request).
    pub fn instance_principal(imds: &str, auth: &str) -> Credentials {
        Credentials::InstancePrincipal {
            imds: imds.trim_end_matches('/').to_string(),
            auth: auth.trim_end_matches('/').to_string(),
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// Signs a request with the current credentials (renewing an instance principal session
    /// when due).
    pub async fn sign(
        &self,
        http: &reqwest::Client,
        clock: &Clock,
        method: &str,
        url: &url::Url,
        body: Option<&[u8]>,
    ) -> Result<SignedHeaders, CaptureError> {
        match self {
            Credentials::ApiKey { key_id, key } => {
                Ok(sign_at(key_id, key, method, url, body, clock.now()))
            }
            Credentials::InstancePrincipal {
                imds,
                auth,
                session,
            } => {
                let mut s = session.lock().await;
                // Token lifetimes are on the API's clock.
                let due = s.as_ref().is_none_or(|s| clock.now() >= s.renew_at);
                if due {
                    *s = Some(federate(http, clock, imds, auth).await?);
                }
                let s = s
                    .as_ref()
                    .ok_or_else(|| config_err("instance principal", "no security token session"))?;
                Ok(sign_at(
                    &format!("ST${}", s.token),
                    &s.key,
                    method,
                    url,
                    body,
                    clock.now(),
                ))
            }
        }
    }

    /// Drops a session the API refused, so the next request federates again.
    pub async fn invalidate(&self) {
        if let Credentials::InstancePrincipal { session, .. } = self {
            *session.lock().await = None;
        }
    }
}

/// Classifies a failed metadata / federation answer.
fn answer_error(step: &str, status: reqwest::StatusCode, body: &str) -> CaptureError {
    let kind = match status.as_u16() {
        429 => ErrorKind::Throttled,
        s if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Config,
    };
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = v.get("code").and_then(Value::as_str).unwrap_or("");
    let msg = v
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.chars().take(200).collect());
    CaptureError::new(
        kind,
        PROVIDER,
        step,
        format!("HTTP {} {code}: {msg}", status.as_u16()),
    )
}

fn transport(step: &str, e: &reqwest::Error) -> CaptureError {
    let what = if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    CaptureError::new(ErrorKind::Transient, PROVIDER, step, format!("{what}: {e}"))
}

async fn imds_get(http: &reqwest::Client, imds: &str, file: &str) -> Result<String, CaptureError> {
    let step = format!("instance metadata {file}");
    let r = http
        .get(format!("{imds}/opc/v2/identity/{file}"))
        .header("Authorization", "Bearer Oracle")
        .send()
        .await
        .map_err(|e| transport(&step, &e))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| transport(&step, &e))?;
    if !status.is_success() {
        return Err(answer_error(&step, status, &text));
    }
    Ok(text)
}

/// Fetches the instance identity and trades it for a security token and session key.
async fn federate(
    http: &reqwest::Client,
    clock: &Clock,
    imds: &str,
    auth: &str,
) -> Result<Session, CaptureError> {
    let step = "instance principal federation";
    let cert_pem = imds_get(http, imds, "cert.pem").await?;
    let key_pem = imds_get(http, imds, "key.pem").await?;
    let inter_pem = imds_get(http, imds, "intermediate.pem").await?;
    let bad = |what: &str, e: String| {
        CaptureError::new(ErrorKind::Transient, PROVIDER, step, format!("{what}: {e}"))
    };
    let leaf = pem_der(&cert_pem, "CERTIFICATE")
        .ok_or_else(|| bad("cert.pem", "not a PEM certificate".into()))?;
    let inter = pem_der(&inter_pem, "CERTIFICATE")
        .ok_or_else(|| bad("intermediate.pem", "not a PEM certificate".into()))?;
    let leaf_key = parse_private_key(&key_pem).map_err(|e| bad("key.pem", e))?;
    let tenancy = cert_tenancy(&leaf).map_err(|e| bad("cert.pem", e))?;
    // A 2048-bit key takes a moment to generate: off the async threads.
    let session_key = tokio::task::spawn_blocking(|| {
        RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| bad("session key", e.to_string()))?
    .map_err(|e| bad("session key", e))?;
    let spki = session_key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| bad("session key", e.to_string()))?;
    let body = json!({
        "certificate": B64.encode(&leaf),
        "publicKey": B64.encode(spki.as_bytes()),
        "intermediateCertificates": [B64.encode(&inter)],
        "purpose": "DEFAULT",
        "fingerprintAlgorithm": "SHA256",
    })
    .to_string();
    let url = url::Url::parse(&format!("{auth}/v1/x509"))
        .map_err(|e| config_err(step, format!("auth endpoint {auth:?}: {e}")))?;
    let key_id = format!("{tenancy}/fed-x509/{}", cert_fingerprint(&leaf));
    // Signed with the API's time; a refusal whose Date shows a new skew is signed again once.
    let mut attempt = 0;
    let text = loop {
        attempt += 1;
        let headers = sign_at(
            &key_id,
            &leaf_key,
            "post",
            &url,
            Some(body.as_bytes()),
            clock.now(),
        );
        let mut req = http.post(url.clone()).body(body.clone());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let sent = SystemTime::now();
        let r = req.send().await.map_err(|e| transport(step, &e))?;
        let date = r
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let learned = clock.learn(date.as_deref(), sent, SystemTime::now());
        let status = r.status();
        let text = r.text().await.map_err(|e| transport(step, &e))?;
        if status == reqwest::StatusCode::UNAUTHORIZED && learned.is_some() && attempt == 1 {
            continue;
        }
        if !status.is_success() {
            let mut e = answer_error(step, status, &text);
            let skew = clock.skew_ms();
            if Duration::from_millis(skew.unsigned_abs()) >= SKEW_WARN {
                e.message = format!("{} ({})", e.message, skew_text(skew));
            }
            return Err(e);
        }
        break text;
    };
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let token = v
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("federation answer", "no token".into()))?
        .to_string();
    // The token's exp is on the API's clock.
    let now = clock.now();
    let exp = token_expiry(&token).unwrap_or(now + Duration::from_secs(600));
    let left = exp.duration_since(now).unwrap_or(Duration::ZERO);
    // Renew five minutes early, or half-way through a short-lived token.
    let renew_at = now + left.saturating_sub(Duration::from_secs(300).min(left / 2));
    Ok(Session {
        token,
        key: session_key,
        renew_at,
    })
}

/// The `exp` claim of a JWT security token.
fn token_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = B64URL.decode(payload.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expiry_reads_the_exp_claim() {
        let claims = B64URL.encode(br#"{"exp": 2000000000}"#);
        let t = format!("e30.{claims}.sig");
        assert_eq!(
            token_expiry(&t),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(token_expiry("garbage"), None);
    }

    #[test]
    fn pem_blocks_and_fingerprints() {
        assert!(pem_der("nothing here", "CERTIFICATE").is_none());
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_der(pem, "CERTIFICATE").unwrap(), vec![0, 1, 2]);
        assert_eq!(cert_fingerprint(b"").len(), 20 * 3 - 1);
        assert!(parse_private_key("-----BEGIN ENCRYPTED PRIVATE KEY-----").is_err());
    }

    #[test]
    fn the_clock_learns_the_skew_from_date_headers() {
        let c = Clock::default();
        let t0 = SystemTime::now();
        let date = |t: SystemTime| httpdate::fmt_http_date(t);
        // No header, garbage, or a right clock: nothing learned.
        assert_eq!(c.learn(None, t0, t0), None);
        assert_eq!(c.learn(Some("yesterday"), t0, t0), None);
        assert_eq!(c.learn(Some(&date(t0)), t0, t0), None);
        assert_eq!(c.skew_ms(), 0);
        // The server ten minutes ahead (the host behind).
        let ahead = t0 + Duration::from_secs(600);
        let s = c.learn(Some(&date(ahead)), t0, t0).unwrap();
        assert!((598_000..=601_000).contains(&s), "{s}");
        let now = c.now().duration_since(SystemTime::now()).unwrap();
        assert!(now >= Duration::from_secs(597), "{now:?}");
        assert!(skew_text(s).contains("behind"), "{}", skew_text(s));
        // The same again is noise; the clock fixed (NTP) goes back to no correction.
        assert_eq!(c.learn(Some(&date(ahead)), t0, t0), None);
        assert_eq!(c.learn(Some(&date(t0)), t0, t0), Some(0));
        // Behind.
        let s = c
            .learn(Some(&date(t0 - Duration::from_secs(900))), t0, t0)
            .unwrap();
        assert!(s < -898_000, "{s}");
        assert!(skew_text(s).contains("ahead of"));
        // A reply that took minutes is not trusted.
        let slow = t0 + Duration::from_secs(120);
        assert_eq!(c.learn(Some(&date(t0)), t0, slow), None);
    }
}
