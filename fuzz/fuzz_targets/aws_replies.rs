//! Fuzzes the AWS capture client: the EC2 Query API's XML replies
//! (DescribeNetworkInterfaces paging, Assign/UnassignPrivateIpAddresses,
//! error documents, throttling) parsed by the AWS SDK, then handled by our
//! code, against replies the input writes. See `cer_fuzz::providers`.
//!
//! The client is built here as `AwsProvider::new` builds it, but with a
//! 1 ms retry backoff (the production one sleeps up to seconds) and static
//! credentials; a new one per input, so the SDK's retry quota starts full.
#![no_main]

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use cer_capture_aws::AwsProvider;
use cer_fuzz::providers::{self, Case};
use cer_fuzz::replies::Server;
use cer_fuzz::runtime;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(case) = Case::read(&mut u) else { return };
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDFUZZ", "secret", None, None, "fuzz"))
        .endpoint_url(Server::get().url())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(1)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(4))
                .build(),
        )
        .build();
    let _rt = runtime().enter();
    let client = aws_sdk_ec2::Client::from_conf(conf);
    let provider =
        AwsProvider::from_client(client, "eni-0cer", "eu-west-1", "vpc-0fuzz", "subnet-0fuzz");
    let _ = providers::run(runtime(), &provider, &case, "eni-0workload", &mut u);
});
