//! Classification of AWS SDK, IMDS and credential failures into the capture plane's
//! [`ErrorKind`]s: throttling codes are `Throttled`; 5xx, timeouts, connection and dispatch
//! failures and unreadable replies are `Transient`; authentication failures, unknown ENIs,
//! invalid parameters and everything else the operator has to fix are `Config`. Messages carry
//! the AWS error code and message.

use aws_config::imds::client::error::ImdsError;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use cer_capture::{CaptureError, ErrorKind};

/// Provider name used in every error.
pub const PROVIDER: &str = "aws";

/// EC2 error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// EC2 error codes that mean "try again soon" whatever the HTTP status.
const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
];

/// EC2 error codes that mean "the request's SigV4 date is too far from EC2's clock" whatever
/// the clock says: EC2 answers a request dated more than 15 minutes off with 400
/// `RequestExpired`; the others are other AWS services' names for it.
pub const CLOCK_SKEW_CODES: &[&str] = &[
    "RequestExpired",
    "RequestTimeTooSkewed",
    "RequestInTheFuture",
];

/// Codes that mean a clock skew when the reply's `Date` shows one (else a credentials problem):
/// the AWS SDK's list (`aws-runtime` `service_clock_skew`).
const MAYBE_CLOCK_SKEW_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AccessDeniedException",
];

/// A skew at least this large explains a refusal (the AWS SDK's detection threshold).
pub const SKEW_THRESHOLD: std::time::Duration = std::time::Duration::from_secs(4 * 60);

/// EC2's clock minus the host's, in whole seconds, from a reply's `Date` header.
pub fn skew_secs(date: Option<&str>) -> Option<i64> {
    let server = aws_sdk_ec2::primitives::DateTime::from_str(
        date?,
        aws_sdk_ec2::primitives::DateTimeFormat::HttpDate,
    )
    .ok()?;
    let server = std::time::SystemTime::try_from(server).ok()?;
    let now = std::time::SystemTime::now();
    Some(match server.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    })
}

/// "clock skew: the host clock is 1200 s behind EC2's (its Date header)".
pub fn skew_text(skew: i64) -> String {
    format!(
        "clock skew: the host clock is {} s {} EC2's (its Date header); the SDK signs the next requests with EC2's time",
        skew.unsigned_abs(),
        if skew > 0 { "behind" } else { "ahead of" }
    )
}

/// Whether a refusal with `code` and the reply's `Date` is about the clock: the skew when so.
pub fn clock_skew(code: Option<&str>, date: Option<&str>) -> Option<i64> {
    let code = code?;
    let skew = skew_secs(date);
    let large = skew.filter(|s| s.unsigned_abs() >= SKEW_THRESHOLD.as_secs());
    if CLOCK_SKEW_CODES.contains(&code) {
        return Some(skew.unwrap_or(0));
    }
    if MAYBE_CLOCK_SKEW_CODES.contains(&code) {
        return large;
    }
    None
}

/// An error and its sources, outermost first, joined with ": " on one line (repeated
/// texts, which the SDK's layered errors produce, are dropped).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// The kind of an EC2 service error, from its code and HTTP status.
pub fn kind_of(code: Option<&str>, status: u16) -> ErrorKind {
    if let Some(code) = code {
        if THROTTLING_CODES.contains(&code) {
            return ErrorKind::Throttled;
        }
        if TRANSIENT_CODES.contains(&code) {
            return ErrorKind::Transient;
        }
    }
    match status {
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Config,
    }
}

/// Converts a failed EC2 call into a [`CaptureError`] for `step` (the API action).
pub fn sdk_error<E>(step: &str, err: SdkError<E, HttpResponse>) -> CaptureError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.err();
            let code = e.code();
            let mut kind = kind_of(code, status);
            let mut message = format!(
                "{} (HTTP {status}): {}",
                code.unwrap_or("unknown error code"),
                e.message().unwrap_or("no message")
            );
            let date = ctx.raw().headers().get("date");
            if let Some(skew) = clock_skew(code, date) {
                // The SDK measured the skew from this reply and signs the next requests with
                // EC2's time: worth retrying soon, and the operator sees why it failed.
                kind = ErrorKind::Transient;
                message = if skew == 0 {
                    format!("{message} (clock skew: the request's date was refused; the reply named no usable Date)")
                } else {
                    format!("{message} ({})", skew_text(skew))
                };
            }
            (kind, message)
        }
        SdkError::TimeoutError(_) => (ErrorKind::Transient, format!("timed out: {}", chain(&err))),
        SdkError::DispatchFailure(d) => {
            let text = chain(&err);
            let kind = if d.is_io() || d.is_timeout() {
                ErrorKind::Transient
            } else if d.is_user() || credentials_problem(&text) {
                ErrorKind::Config
            } else {
                ErrorKind::Transient
            };
            (kind, format!("request not delivered: {text}"))
        }
        SdkError::ResponseError(r) => (
            if r.raw().status().as_u16() == 429 {
                ErrorKind::Throttled
            } else {
                ErrorKind::Transient
            },
            format!("unreadable reply: {}", chain(&err)),
        ),
        SdkError::ConstructionFailure(_) => {
            let text = chain(&err);
            (ErrorKind::Config, format!("request not built: {text}"))
        }
        _ => (ErrorKind::Transient, chain(&err)),
    };
    CaptureError::new(kind, PROVIDER, step, message)
}

/// True when a dispatch failure text is about credentials (identity resolution happens
/// right before dispatch; a missing identity is the operator's to fix).
fn credentials_problem(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("credential") || t.contains("identity")
}

/// The operator-facing text for missing credentials.
pub const MISSING_CREDENTIALS: &str = "no AWS credentials found: set AWS_ACCESS_KEY_ID and \
    AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials), or AWS_PROFILE with \
    a profile in ~/.aws/credentials, or attach an IAM role to the instance (IMDS)";

/// Converts a credential chain failure.
pub fn credentials_error(
    err: aws_credential_types::provider::error::CredentialsError,
) -> CaptureError {
    use aws_credential_types::provider::error::CredentialsError as C;
    let detail = chain(&err);
    let (kind, message) = match &err {
        C::CredentialsNotLoaded(_) => (
            ErrorKind::Config,
            format!("{MISSING_CREDENTIALS} ({detail})"),
        ),
        C::ProviderTimedOut(_) => (
            ErrorKind::Transient,
            format!("credential provider timed out: {detail}"),
        ),
        C::InvalidConfiguration(_) | C::ProviderError(_) => (
            ErrorKind::Config,
            format!("credentials rejected or misconfigured: {detail}"),
        ),
        _ => (ErrorKind::Transient, format!("credentials: {detail}")),
    };
    CaptureError::new(kind, PROVIDER, "credentials", message)
}

/// Converts an IMDS failure for `path`.
pub fn imds_error(path: &str, err: ImdsError) -> CaptureError {
    let hint = "set eni_id and region explicitly when not running on EC2";
    let detail = chain(&err);
    let kind = match &err {
        ImdsError::ErrorResponse(r) => match r.response().status().as_u16() {
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Transient,
            _ => ErrorKind::Config,
        },
        ImdsError::FailedToLoadToken(_) | ImdsError::IoError(_) => ErrorKind::Transient,
        _ => ErrorKind::Config,
    };
    CaptureError::new(
        kind,
        PROVIDER,
        format!("IMDS {path}"),
        format!("{detail} ({hint})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(
            kind_of(Some("RequestLimitExceeded"), 503),
            ErrorKind::Throttled
        );
        assert_eq!(kind_of(Some("Throttling"), 400), ErrorKind::Throttled);
        assert_eq!(kind_of(Some("InternalError"), 500), ErrorKind::Transient);
        assert_eq!(kind_of(None, 502), ErrorKind::Transient);
        assert_eq!(kind_of(None, 429), ErrorKind::Throttled);
        assert_eq!(
            kind_of(Some("InvalidNetworkInterfaceID.NotFound"), 400),
            ErrorKind::Config
        );
        assert_eq!(kind_of(Some("AuthFailure"), 401), ErrorKind::Config);
        assert_eq!(
            kind_of(Some("UnauthorizedOperation"), 403),
            ErrorKind::Config
        );
        assert_eq!(
            kind_of(Some("InvalidParameterValue"), 400),
            ErrorKind::Config
        );
    }

    #[test]
    fn clock_skew_refusals() {
        let now = std::time::SystemTime::now();
        let date = |secs: i64| {
            let t = if secs >= 0 {
                now + std::time::Duration::from_secs(secs as u64)
            } else {
                now - std::time::Duration::from_secs(secs.unsigned_abs())
            };
            aws_sdk_ec2::primitives::DateTime::from(t)
                .fmt(aws_sdk_ec2::primitives::DateTimeFormat::HttpDate)
                .unwrap()
        };
        let d = date(1200);
        let s = clock_skew(Some("RequestExpired"), Some(&d)).unwrap();
        assert!((1198..=1201).contains(&s), "{s}");
        assert!(skew_text(s).contains("behind"));
        assert_eq!(clock_skew(Some("RequestExpired"), None), Some(0));
        // AuthFailure is a clock problem only when the Date shows one.
        assert!(clock_skew(Some("AuthFailure"), Some(&date(-1200))).is_some_and(|s| s < 0));
        assert_eq!(clock_skew(Some("AuthFailure"), Some(&date(3))), None);
        assert_eq!(clock_skew(Some("AuthFailure"), None), None);
        assert_eq!(clock_skew(Some("InvalidParameterValue"), Some(&d)), None);
        assert_eq!(clock_skew(None, Some(&d)), None);
    }
}
