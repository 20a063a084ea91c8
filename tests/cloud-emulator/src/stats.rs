//! Call statistics (`GET /_emulator/stats`): per provider and API action, how many calls were
//! served (answered 2xx), throttled (refused by a rate limit or a `throttle` fault) and failed
//! (any other error, or a connection dropped by a `timeout` fault).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

/// How one call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallResult {
    Served,
    Throttled,
    Failed,
}

impl CallResult {
    /// Served for a 2xx answer, else failed (throttles are recorded as such by the caller).
    pub fn of(status: StatusCode) -> CallResult {
        if status.is_success() {
            CallResult::Served
        } else {
            CallResult::Failed
        }
    }
}

/// The action recorded for a request whose action is missing or not one the emulator serves
/// (arbitrary client strings are never keys).
pub const UNKNOWN_ACTION: &str = "(unknown)";

#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Counts {
    served: u64,
    throttled: u64,
    failed: u64,
}

/// The counters since `since` (start, `DELETE /_emulator/stats` or a reset).
#[derive(Debug)]
pub struct CallStats {
    since: SystemTime,
    calls: BTreeMap<(&'static str, &'static str), Counts>,
}

impl Default for CallStats {
    fn default() -> Self {
        CallStats {
            since: SystemTime::now(),
            calls: BTreeMap::new(),
        }
    }
}

impl CallStats {
    pub fn record(&mut self, provider: &'static str, action: &'static str, result: CallResult) {
        let c = self.calls.entry((provider, action)).or_default();
        match result {
            CallResult::Served => c.served += 1,
            CallResult::Throttled => c.throttled += 1,
            CallResult::Failed => c.failed += 1,
        }
    }

    /// Zeroes every counter.
    pub fn clear(&mut self) {
        *self = CallStats::default();
    }

    /// `{"calls": [{"provider", "action", "served", "throttled", "failed"}], "since_unix_ms"}`,
    /// ordered by provider and action.
    pub fn report(&self) -> Value {
        let calls: Vec<Value> = self
            .calls
            .iter()
            .map(|((provider, action), c)| {
                json!({
                    "provider": provider,
                    "action": action,
                    "served": c.served,
                    "throttled": c.throttled,
                    "failed": c.failed,
                })
            })
            .collect();
        let since = self
            .since
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        json!({ "calls": calls, "since_unix_ms": since })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_provider_and_action() {
        let mut s = CallStats::default();
        s.record("aws", "AssignPrivateIpAddresses", CallResult::Served);
        s.record("aws", "AssignPrivateIpAddresses", CallResult::Throttled);
        s.record(
            "aws",
            "AssignPrivateIpAddresses",
            CallResult::of(StatusCode::BAD_REQUEST),
        );
        s.record(
            "azure",
            "PutNetworkInterface",
            CallResult::of(StatusCode::OK),
        );
        let r = s.report();
        assert_eq!(
            r["calls"],
            json!([
                {"provider": "aws", "action": "AssignPrivateIpAddresses", "served": 1, "throttled": 1, "failed": 1},
                {"provider": "azure", "action": "PutNetworkInterface", "served": 1, "throttled": 0, "failed": 0}
            ])
        );
        assert!(r["since_unix_ms"].as_u64().unwrap() > 0);
        s.clear();
        assert_eq!(s.report()["calls"], json!([]));
    }
}
