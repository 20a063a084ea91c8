//! `PageSize`: a hugepage size in KiB, with the spellings operators and the
//! kernel use for it ("2M", "1G", "hugepages-2048kB", "pagesize=2M").

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::HugepageError;

/// A hugepage size, in KiB (2048 for 2M pages, 1048576 for 1G pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PageSize {
    /// Size of one page in KiB.
    pub kib: u64,
}

impl PageSize {
    /// 2 MiB pages (x86_64 and arm64 default).
    pub const SIZE_2M: PageSize = PageSize { kib: 2048 };
    /// 1 GiB pages.
    pub const SIZE_1G: PageSize = PageSize { kib: 1024 * 1024 };

    /// A page size of `kib` KiB.
    pub const fn from_kib(kib: u64) -> Self {
        PageSize { kib }
    }

    /// Size of one page in bytes.
    pub const fn bytes(self) -> u64 {
        self.kib * 1024
    }

    /// The pool directory name the kernel uses under `/sys/kernel/mm/hugepages`.
    pub fn sysfs_dir_name(self) -> String {
        format!("hugepages-{}kB", self.kib)
    }

    /// Parses a pool directory name such as `hugepages-2048kB`.
    pub fn from_sysfs_dir_name(name: &str) -> Option<Self> {
        let kib = name.strip_prefix("hugepages-")?.strip_suffix("kB")?;
        kib.parse().ok().filter(|&k| k > 0).map(Self::from_kib)
    }

    /// Pages of this size needed to hold `mib` MiB (rounded up).
    pub fn pages_for_mib(self, mib: u64) -> u64 {
        (mib * 1024).div_ceil(self.kib)
    }

    /// Whole MiB held by `pages` pages of this size (rounded down).
    pub fn mib_of(self, pages: u64) -> u64 {
        pages * self.kib / 1024
    }
}

impl fmt::Display for PageSize {
    /// The short form the kernel's `pagesize=` mount option uses: `2M`, `1G`, `64K`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1024;
        const GIB: u64 = 1024 * 1024;
        if self.kib >= GIB && self.kib.is_multiple_of(GIB) {
            write!(f, "{}G", self.kib / GIB)
        } else if self.kib >= MIB && self.kib.is_multiple_of(MIB) {
            write!(f, "{}M", self.kib / MIB)
        } else {
            write!(f, "{}K", self.kib)
        }
    }
}

impl FromStr for PageSize {
    type Err = HugepageError;

    /// Accepts `2M`, `2MB`, `2MiB`, `2048kB`, `2048K`, `1G`, `1GB`, `1GiB`
    /// (case-insensitive) and the kernel's byte count such as `2097152`
    /// only with an explicit `B` suffix (`2097152B`): a bare number is
    /// rejected because KiB and bytes are both common.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || HugepageError::InvalidSize {
            value: s.to_string(),
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| invalid())?;
        let kib = match unit.to_ascii_lowercase().as_str() {
            "k" | "kb" | "kib" => Some(n),
            "m" | "mb" | "mib" => n.checked_mul(1024),
            "g" | "gb" | "gib" => n.checked_mul(1024 * 1024),
            "b" if n.is_multiple_of(1024) => Some(n / 1024),
            _ => None,
        }
        .ok_or_else(invalid)?;
        if kib == 0 || !kib.is_power_of_two() {
            return Err(invalid());
        }
        Ok(PageSize::from_kib(kib))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operator_spellings() {
        for s in [
            "2M", "2m", "2MB", "2MiB", "2048kB", "2048K", "2097152B", " 2M ",
        ] {
            assert_eq!(s.parse::<PageSize>().unwrap(), PageSize::SIZE_2M, "{s}");
        }
        for s in ["1G", "1GB", "1gib", "1024M", "1048576kB"] {
            assert_eq!(s.parse::<PageSize>().unwrap(), PageSize::SIZE_1G, "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2",
            "M",
            "2X",
            "-2M",
            "3M",
            "0M",
            "2 M",
            "99999999999999999999G",
        ] {
            let err = s.parse::<PageSize>().unwrap_err();
            assert!(err.to_string().contains("use 2M or 1G"), "{s}: {err}");
        }
    }

    #[test]
    fn displays_like_the_kernel_mount_option() {
        assert_eq!(PageSize::SIZE_2M.to_string(), "2M");
        assert_eq!(PageSize::SIZE_1G.to_string(), "1G");
        assert_eq!(PageSize::from_kib(64).to_string(), "64K");
        assert_eq!(PageSize::from_kib(32 * 1024 * 1024).to_string(), "32G");
    }

    #[test]
    fn sysfs_names_round_trip() {
        assert_eq!(PageSize::SIZE_2M.sysfs_dir_name(), "hugepages-2048kB");
        assert_eq!(
            PageSize::from_sysfs_dir_name("hugepages-1048576kB"),
            Some(PageSize::SIZE_1G)
        );
        assert_eq!(PageSize::from_sysfs_dir_name("hugepages-kB"), None);
        assert_eq!(PageSize::from_sysfs_dir_name("hugepages-0kB"), None);
        assert_eq!(PageSize::from_sysfs_dir_name("transparent"), None);
    }

    #[test]
    fn page_arithmetic_rounds_the_safe_way() {
        assert_eq!(PageSize::SIZE_2M.pages_for_mib(512), 256);
        assert_eq!(PageSize::SIZE_2M.pages_for_mib(3), 2);
        assert_eq!(PageSize::SIZE_1G.pages_for_mib(1), 1);
        assert_eq!(PageSize::SIZE_1G.pages_for_mib(0), 0);
        assert_eq!(PageSize::SIZE_2M.mib_of(3), 6);
        assert_eq!(PageSize::SIZE_1G.mib_of(2), 2048);
    }
}
