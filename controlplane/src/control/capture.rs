//! Cloud capture in cer-control: builds the provider client named by
//! `[capture] mode` and starts the reconciler once it exists. A client that
//! cannot be built (no credentials, IMDS unreachable) is retried with
//! backoff and the reason shown in `cerctl show capture` / `explain`;
//! BGP and the dataplane feed run on regardless. The reconciler's memory of
//! where each captured /32 came from persists next to the endpoint state.

use super::config::{Capture, CaptureMode, ControlConfig};
use cer_capture::{CaptureError, CaptureProvider, Reconciler, ReconcilerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Reconciler settings from the config.
pub fn reconciler_config(cfg: &ControlConfig) -> ReconcilerConfig {
    let t = &cfg.capture.reconciler;
    ReconcilerConfig {
        concurrency: t.concurrency,
        confirm_timeout: Duration::from_secs(t.confirm_timeout_secs),
        resync: Duration::from_secs(t.resync_secs),
        backoff_max: Duration::from_secs(t.backoff_max_secs),
        pool: cfg.sam.pool.iter().map(|p| (p.addr(), p.len())).collect(),
        origins_file: Some(origins_file(&cfg.sam.state_file)),
        pair_nics: cfg.capture.pair_nics.clone(),
        ..ReconcilerConfig::default()
    }
}

/// Where the reconciler remembers which holder each captured /32 came from:
/// next to the endpoint state file, named after it (`endpoints.json` ->
/// `endpoints.capture-origins.json`), so nodes sharing a directory never
/// share it.
pub fn origins_file(state_file: &Path) -> PathBuf {
    state_file.with_extension("capture-origins.json")
}

/// The provider client for this node's capture mode.
pub async fn build_provider(c: &Capture) -> Result<Arc<dyn CaptureProvider>, CaptureError> {
    let missing = |what: &'static str| {
        CaptureError::new(
            cer_capture::ErrorKind::Config,
            what,
            "config",
            format!("[capture.{what}] is missing"),
        )
    };
    Ok(match c.mode {
        CaptureMode::Aws => {
            let a = c.aws.as_ref().ok_or_else(|| missing("aws"))?;
            Arc::new(cer_capture_aws::AwsProvider::new(a).await?)
        }
        CaptureMode::Azure => {
            let a = c.azure.as_ref().ok_or_else(|| missing("azure"))?;
            Arc::new(cer_capture::azure::AzureProvider::new(a)?)
        }
        CaptureMode::Oci => {
            let a = c.oci.as_ref().ok_or_else(|| missing("oci"))?;
            Arc::new(cer_capture::oci::OciProvider::new(a)?)
        }
        CaptureMode::None | CaptureMode::Onprem => {
            return Err(CaptureError::new(
                cer_capture::ErrorKind::Config,
                "none",
                "config",
                "capture.mode is not a cloud",
            ))
        }
    })
}

/// Builds the provider in the background (retrying) and starts `r` on it.
pub fn spawn(r: Reconciler, c: Capture) {
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            match build_provider(&c).await {
                Ok(p) => {
                    log::info!("capture: {} ready", p.describe());
                    r.start(p);
                    return;
                }
                Err(e) => {
                    log::error!(
                        "capture: cannot start the {} client: {e}; retrying in {} s",
                        c.mode.name(),
                        delay.as_secs()
                    );
                    r.set_provider_error(c.mode.name(), Some(e.to_string()));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_file_is_named_after_the_state_file() {
        assert_eq!(
            origins_file(Path::new("/var/lib/cer/endpoints.json")),
            PathBuf::from("/var/lib/cer/endpoints.capture-origins.json")
        );
        assert_eq!(
            origins_file(Path::new("/run/lab/aws-endpoints.json")),
            PathBuf::from("/run/lab/aws-endpoints.capture-origins.json")
        );
    }
}
