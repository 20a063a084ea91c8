//! Helpers shared by the integration tests: privilege checks, the real 2M
//! pool, and a guard that puts the pool back however a test ends.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use cer_hugepages::PageSize;

/// Whether the tests run as root (real sysfs writes and mounts need it).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The real system-wide `nr_hugepages` file of `size`.
pub fn nr_file(size: PageSize) -> PathBuf {
    Path::new("/sys/kernel/mm/hugepages")
        .join(size.sysfs_dir_name())
        .join("nr_hugepages")
}

/// Current system-wide pool total of `size`.
pub fn pool_total(size: PageSize) -> u64 {
    fs::read_to_string(nr_file(size))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Root and a 2M pool: what the tests that touch the live system need.
/// Prints why and returns false otherwise.
pub fn can_touch_system(test: &str) -> bool {
    if !is_root() {
        eprintln!("{test}: skipped: needs root");
        return false;
    }
    if !nr_file(PageSize::SIZE_2M).exists() {
        eprintln!("{test}: skipped: no 2M hugepage pool");
        return false;
    }
    true
}

/// Puts a pool back to `original` on drop, unless someone else changed it
/// meanwhile (then it is left alone and reported).
pub struct PoolGuard {
    pub size: PageSize,
    pub original: u64,
    pub ours: u64,
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let now = pool_total(self.size);
        if now == self.ours && now != self.original {
            if let Err(e) = cer_hugepages::reserve(self.size, self.original, None) {
                eprintln!(
                    "could not restore the {} pool to {}: {e}",
                    self.size, self.original
                );
            }
        } else if now != self.original {
            eprintln!(
                "{} pool is {now}, not the {} this test set: left alone (changed by someone else)",
                self.size, self.ours
            );
        }
    }
}

/// Unmounts `path` on drop if it is still a hugetlbfs mount.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let mounted = cer_hugepages::status()
            .map(|s| s.mounts.iter().any(|m| m.path == self.0))
            .unwrap_or(false);
        if mounted {
            if let Err(e) = cer_hugepages::unmount(&self.0) {
                eprintln!("could not unmount {}: {e}", self.0.display());
            }
        }
    }
}
