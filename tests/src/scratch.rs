//! [`Scratch`]: a test's own directory for configs, logs and sockets,
//! removed on drop unless `CER_KEEP_SCRATCH` is set.

use crate::tag;
use anyhow::Result;
use std::path::PathBuf;

/// A scratch directory removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Result<Scratch> {
        let path = std::env::temp_dir().join(format!("cer-e2e-{name}-{}", tag()));
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("CER_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
