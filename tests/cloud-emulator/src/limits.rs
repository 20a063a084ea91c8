//! API rate limits: the seed's `[limits]` section and the token buckets it configures. Each
//! metered call takes one token from its bucket; a bucket refills continuously up to its
//! capacity, and an empty one refuses the call (the front end answers its provider's throttle).

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One token bucket: `capacity` tokens, refilled at `refill_per_sec`. `capacity = 0` turns the
/// bucket off (calls are not metered); `refill_per_sec = 0` makes it a budget that never refills.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    pub capacity: u32,
    pub refill_per_sec: f64,
}

const fn bucket(capacity: u32, refill_per_sec: f64) -> BucketSpec {
    BucketSpec {
        capacity,
        refill_per_sec,
    }
}

/// The `[limits]` seed section (also `POST /_emulator/config {"limits": ...}`); absent keys take
/// the defaults. Defaults are the providers' documented figures except where noted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// `false` turns every bucket off.
    pub enabled: bool,
    /// EC2 `AssignPrivateIpAddresses` (100, 5/s: AWS documents it as its own bucket).
    pub aws_assign: BucketSpec,
    /// EC2 `UnassignPrivateIpAddresses` (100, 5/s: its own bucket too).
    pub aws_unassign: BucketSpec,
    /// EC2 non-mutating actions, one bucket per action: `DescribeInstanceTypes` and
    /// `DescribeNetworkInterfaces` with a filter, ids or pagination (100, 20/s).
    pub aws_describe: BucketSpec,
    /// EC2 `DescribeNetworkInterfaces` without filter, ids or pagination (50, 10/s: AWS's
    /// "unfiltered and unpaginated non-mutating actions").
    pub aws_describe_unfiltered: BucketSpec,
    /// ARM writes (PUT, POST, PATCH) per subscription (200, 10/s).
    pub azure_writes: BucketSpec,
    /// ARM deletes per subscription (200, 10/s).
    pub azure_deletes: BucketSpec,
    /// ARM reads (GET) per subscription (250, 25/s).
    pub azure_reads: BucketSpec,
    /// OCI `privateIps` mutations, PUT / POST / DELETE (50, 10/s: OCI publishes no figures; the
    /// emulator's choice).
    pub oci_mutations: BucketSpec,
    /// OCI `privateIps` reads (100, 20/s: the emulator's choice).
    pub oci_reads: BucketSpec,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            enabled: true,
            aws_assign: bucket(100, 5.0),
            aws_unassign: bucket(100, 5.0),
            aws_describe: bucket(100, 20.0),
            aws_describe_unfiltered: bucket(50, 10.0),
            azure_writes: bucket(200, 10.0),
            azure_deletes: bucket(200, 10.0),
            azure_reads: bucket(250, 25.0),
            oci_mutations: bucket(50, 10.0),
            oci_reads: bucket(100, 20.0),
        }
    }
}

/// Which bucket a call draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    AwsAssign,
    AwsUnassign,
    AwsDescribe,
    AwsDescribeUnfiltered,
    AzureWrites,
    AzureDeletes,
    AzureReads,
    OciMutations,
    OciReads,
}

impl Limits {
    /// Checks every bucket (a refill rate must be a finite number >= 0).
    pub fn validate(&self) -> Result<(), String> {
        for (name, b) in self.buckets() {
            if !b.refill_per_sec.is_finite() || b.refill_per_sec < 0.0 {
                return Err(format!(
                    "limits.{name}.refill_per_sec must be a number >= 0, not {}",
                    b.refill_per_sec
                ));
            }
        }
        Ok(())
    }

    fn buckets(&self) -> [(&'static str, BucketSpec); 9] {
        [
            ("aws_assign", self.aws_assign),
            ("aws_unassign", self.aws_unassign),
            ("aws_describe", self.aws_describe),
            ("aws_describe_unfiltered", self.aws_describe_unfiltered),
            ("azure_writes", self.azure_writes),
            ("azure_deletes", self.azure_deletes),
            ("azure_reads", self.azure_reads),
            ("oci_mutations", self.oci_mutations),
            ("oci_reads", self.oci_reads),
        ]
    }

    pub fn spec(&self, class: Class) -> BucketSpec {
        match class {
            Class::AwsAssign => self.aws_assign,
            Class::AwsUnassign => self.aws_unassign,
            Class::AwsDescribe => self.aws_describe,
            Class::AwsDescribeUnfiltered => self.aws_describe_unfiltered,
            Class::AzureWrites => self.azure_writes,
            Class::AzureDeletes => self.azure_deletes,
            Class::AzureReads => self.azure_reads,
            Class::OciMutations => self.oci_mutations,
            Class::OciReads => self.oci_reads,
        }
    }
}

/// What a bucket decided for one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Admission {
    /// The bucket is off (or limits are disabled): not metered.
    Unmetered,
    /// A token was taken; `remaining` whole tokens are left.
    Admitted { remaining: u64 },
    /// The bucket is empty: refuse the call. A token is available again in `retry_after_secs`
    /// (rounded up, at least 1; at most an hour, also for a bucket that never refills).
    Throttled { retry_after_secs: u64 },
}

/// Longest Retry-After answered.
const MAX_RETRY_AFTER_SECS: f64 = 3600.0;

/// Buckets kept before full (idle) ones are forgotten: the scope (an Azure subscription) comes
/// from the request path.
const MAX_BUCKETS: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, spec: BucketSpec, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * spec.refill_per_sec).min(f64::from(spec.capacity));
        self.at = now;
    }
}

/// The configured limits and the live buckets, keyed by class and scope (the action for EC2's
/// per-action describe buckets, the subscription for ARM, empty otherwise).
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    buckets: HashMap<(Class, String), Bucket>,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// New limits; every bucket starts full again.
    pub fn set(&mut self, limits: Limits) {
        self.limits = limits;
        self.buckets.clear();
    }

    /// Takes a token for one call of `class` in `scope`.
    pub fn take(&mut self, class: Class, scope: &str, now: Instant) -> Admission {
        let spec = self.limits.spec(class);
        if !self.limits.enabled || spec.capacity == 0 {
            return Admission::Unmetered;
        }
        if self.buckets.len() >= MAX_BUCKETS {
            let limits = &self.limits;
            self.buckets.retain(|(c, _), b| {
                let s = limits.spec(*c);
                b.refill(s, now);
                b.tokens < f64::from(s.capacity)
            });
        }
        let b = self
            .buckets
            .entry((class, scope.to_string()))
            .or_insert(Bucket {
                tokens: f64::from(spec.capacity),
                at: now,
            });
        b.refill(spec, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Admission::Admitted {
                remaining: b.tokens.floor() as u64,
            };
        }
        let wait = if spec.refill_per_sec > 0.0 {
            ((1.0 - b.tokens) / spec.refill_per_sec).ceil()
        } else {
            MAX_RETRY_AFTER_SECS
        };
        Admission::Throttled {
            retry_after_secs: wait.clamp(1.0, MAX_RETRY_AFTER_SECS) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(spec: BucketSpec) -> RateLimiter {
        RateLimiter::new(Limits {
            aws_assign: spec,
            ..Limits::default()
        })
    }

    #[test]
    fn a_burst_empties_the_bucket_and_refill_lets_calls_through() {
        let mut l = limiter(bucket(3, 2.0));
        let t0 = Instant::now();
        let take = |l: &mut RateLimiter, t| l.take(Class::AwsAssign, "", t);
        assert_eq!(take(&mut l, t0), Admission::Admitted { remaining: 2 });
        assert_eq!(take(&mut l, t0), Admission::Admitted { remaining: 1 });
        assert_eq!(take(&mut l, t0), Admission::Admitted { remaining: 0 });
        assert_eq!(
            take(&mut l, t0),
            Admission::Throttled {
                retry_after_secs: 1
            }
        );
        // 2 tokens/s: one token after 500 ms, none left after taking it.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(take(&mut l, t1), Admission::Admitted { remaining: 0 });
        assert!(matches!(take(&mut l, t1), Admission::Throttled { .. }));
        // Never more than the capacity.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(take(&mut l, t2), Admission::Admitted { remaining: 2 });
        // Other classes and scopes have their own buckets.
        assert_eq!(
            l.take(Class::AwsUnassign, "", t0),
            Admission::Admitted { remaining: 99 }
        );
    }

    #[test]
    fn retry_after_is_the_time_to_the_next_token_rounded_up() {
        let mut l = limiter(bucket(1, 0.2));
        let t0 = Instant::now();
        l.take(Class::AwsAssign, "", t0);
        assert_eq!(
            l.take(Class::AwsAssign, "", t0),
            Admission::Throttled {
                retry_after_secs: 5
            }
        );
        // A budget that never refills.
        let mut l = limiter(bucket(1, 0.0));
        l.take(Class::AwsAssign, "", t0);
        assert_eq!(
            l.take(Class::AwsAssign, "", t0 + Duration::from_secs(1000)),
            Admission::Throttled {
                retry_after_secs: 3600
            }
        );
    }

    #[test]
    fn off_and_disabled_buckets_do_not_meter() {
        let t0 = Instant::now();
        let mut l = limiter(bucket(0, 0.0));
        for _ in 0..1000 {
            assert_eq!(l.take(Class::AwsAssign, "", t0), Admission::Unmetered);
        }
        let mut l = RateLimiter::new(Limits {
            enabled: false,
            ..Limits::default()
        });
        assert_eq!(l.take(Class::OciReads, "", t0), Admission::Unmetered);
        // Setting new limits refills every bucket.
        let mut l = limiter(bucket(1, 0.0));
        l.take(Class::AwsAssign, "", t0);
        l.set(l.limits().clone());
        assert!(matches!(
            l.take(Class::AwsAssign, "", t0),
            Admission::Admitted { .. }
        ));
    }

    #[test]
    fn the_section_parses_with_defaults_and_is_checked() {
        let l: Limits =
            toml::from_str(
            "enabled = true\naws_assign = { capacity = 5, refill_per_sec = 0.5 }\naws_unassign = { capacity = 100, refill_per_sec = 5 }",
        )
                .unwrap();
        assert_eq!(l.aws_assign, bucket(5, 0.5));
        assert_eq!(l.aws_unassign, bucket(100, 5.0));
        assert_eq!(l.azure_reads, Limits::default().azure_reads);
        assert!(toml::from_str::<Limits>("nope = 1").is_err());
        let bad = Limits {
            oci_reads: bucket(1, -1.0),
            ..Limits::default()
        };
        assert!(bad.validate().unwrap_err().contains("oci_reads"));
        assert!(Limits::default().validate().is_ok());
    }
}
