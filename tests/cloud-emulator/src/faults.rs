//! Injected faults: each rule matches the next `count` calls of a provider (and optionally one
//! action) and turns them into an internal error, a throttle, a refusal, a delay or a timeout.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a fault does to a matching call.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The provider's internal error (AWS: HTTP 500 `InternalError`). Not executed.
    Error,
    /// The provider's throttle (AWS: HTTP 503 `RequestLimitExceeded`). Not executed.
    Throttle,
    /// The caller is not authorized (AWS: HTTP 403 `UnauthorizedOperation`; Azure: 403
    /// `AuthorizationFailed`; OCI: 404 `NotAuthorizedOrNotFound`, which OCI also answers for
    /// what does not exist; IMDS: 403). Not executed.
    Denied,
    /// Wait `delay_ms`, then handle the call normally.
    Delay,
    /// Hold the call for `delay_ms` (default one hour), then close the connection without a
    /// response. With `apply: true` the call is executed first (the client cannot know).
    Timeout,
}

/// A fault rule as posted to `POST /_emulator/faults`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// `aws`, `imds`, ... or `*` for any.
    #[serde(default = "any")]
    pub provider: String,
    /// The API action (`AssignPrivateIpAddresses`, ...); absent or `*` for any.
    #[serde(default)]
    pub action: Option<String>,
    pub kind: FaultKind,
    /// How many matching calls are affected (default 1).
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// For `timeout`: execute the call before hanging.
    #[serde(default)]
    pub apply: bool,
}

fn any() -> String {
    "*".to_string()
}

fn one() -> u32 {
    1
}

impl FaultSpec {
    fn matches(&self, provider: &str, action: &str) -> bool {
        (self.provider == "*" || self.provider.eq_ignore_ascii_case(provider))
            && match self.action.as_deref() {
                None | Some("*") => true,
                Some(a) => a == action,
            }
    }

    pub fn delay(&self) -> Duration {
        match self.kind {
            FaultKind::Timeout => Duration::from_millis(self.delay_ms.unwrap_or(3_600_000)),
            _ => Duration::from_millis(self.delay_ms.unwrap_or(0)),
        }
    }
}

/// The active fault rules, in the order they were added.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultSpec>,
}

impl Faults {
    pub fn add(&mut self, spec: FaultSpec) {
        if spec.count > 0 {
            self.rules.push(spec);
        }
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn list(&self) -> Vec<FaultSpec> {
        self.rules.clone()
    }

    /// Consumes one use of the first rule matching this call.
    pub fn take(&mut self, provider: &str, action: &str) -> Option<FaultSpec> {
        let i = self
            .rules
            .iter()
            .position(|r| r.matches(provider, action))?;
        let rule = self.rules[i].clone();
        self.rules[i].count -= 1;
        if self.rules[i].count == 0 {
            self.rules.remove(i);
        }
        Some(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_counted_and_matched() {
        let mut f = Faults::default();
        f.add(serde_json::from_str(r#"{"provider":"aws","action":"AssignPrivateIpAddresses","kind":"throttle","count":2}"#).unwrap());
        f.add(serde_json::from_str(r#"{"kind":"error"}"#).unwrap());
        assert_eq!(
            f.take("aws", "DescribeNetworkInterfaces").unwrap().kind,
            FaultKind::Error
        );
        assert!(f.take("aws", "DescribeNetworkInterfaces").is_none());
        assert_eq!(
            f.take("aws", "AssignPrivateIpAddresses").unwrap().kind,
            FaultKind::Throttle
        );
        assert_eq!(
            f.take("aws", "AssignPrivateIpAddresses").unwrap().kind,
            FaultKind::Throttle
        );
        assert!(f.take("aws", "AssignPrivateIpAddresses").is_none());
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind":"nope"}"#).is_err());
        f.add(serde_json::from_str(r#"{"provider":"oci","kind":"denied"}"#).unwrap());
        assert_eq!(
            f.take("oci", "UpdatePrivateIp").unwrap().kind,
            FaultKind::Denied
        );
    }
}
