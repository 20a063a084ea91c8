//! Missing credentials: with no credentials anywhere in the standard chain (environment,
//! profile files, IMDS role) `AwsProvider::new` fails with a `Config` error naming what to set.
//! A separate test binary, so its environment does not mix with the tests that set dummy keys.

mod common;

use cer_capture::ErrorKind;
use cer_capture_aws::{AwsConfig, AwsProvider};
use common::Emulator;

#[tokio::test]
async fn missing_credentials_is_a_config_error() {
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_EC2",
    ] {
        std::env::remove_var(k);
    }
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cer-test/aws-config");
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/cer-test/aws-credentials",
    );
    let emu = Emulator::start();
    let cfg = AwsConfig {
        endpoint_url: Some(emu.endpoint()),
        imds_endpoint: Some(emu.imds_endpoint()),
        ..Default::default()
    };
    let e = AwsProvider::new(&cfg).await.unwrap_err();
    eprintln!("no credentials: {e}");
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert_eq!(e.provider, "aws");
    assert!(e.message.contains("AWS_ACCESS_KEY_ID"), "{e}");
    assert!(e.message.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    // Nothing was asked of EC2 and nothing changed.
    assert_eq!(emu.holder("10.0.1.100").await.as_deref(), Some("eni-wl"));
}
