//! Files for transfer tests: random content of a given size and its sha256.

use crate::sh;
use anyhow::{Context, Result};
use std::path::Path;

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = sh(&["sha256sum", path.to_str().unwrap()])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

/// Writes `bytes` of pseudo-random content (not compressible, not zeros) to `path`.
pub fn random_file(path: &Path, bytes: u64) -> Result<()> {
    let mb = bytes.div_ceil(1 << 20);
    sh(&[
        "sh",
        "-c",
        &format!(
            "head -c {bytes} /dev/urandom > {p} && test $(stat -c %s {p}) -eq {bytes}",
            p = path.display()
        ),
    ])
    .with_context(|| format!("writing {mb} MiB to {}", path.display()))?;
    Ok(())
}
