//! Discovery: reads the hugepage pools (system-wide and per NUMA node), the
//! hugetlbfs mounts and the default page size from sysfs and procfs, under a
//! root directory so tests can point it at a fake tree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::mount::{parse_mounts, Mount};
use crate::{HugepageError, PageSize};

/// System-wide pools, relative to the root.
pub(crate) const SYS_POOLS: &str = "sys/kernel/mm/hugepages";
/// NUMA nodes, relative to the root.
pub(crate) const SYS_NODES: &str = "sys/devices/system/node";
/// Mount table, relative to the root.
pub(crate) const PROC_MOUNTS: &str = "proc/mounts";
/// Memory summary (default hugepage size), relative to the root.
pub(crate) const PROC_MEMINFO: &str = "proc/meminfo";

/// One hugepage pool: a page size, system-wide (`node: None`) or on one NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pool {
    /// Page size of the pool.
    pub size: PageSize,
    /// NUMA node, or `None` for the system-wide view of this size.
    pub node: Option<u32>,
    /// Pages in the pool (`nr_hugepages`).
    pub total: u64,
    /// Pages not mapped by anyone (`free_hugepages`).
    pub free: u64,
    /// Free pages already promised to a mapping (`resv_hugepages`; the kernel
    /// keeps this counter system-wide only, so it is 0 for node pools).
    pub reserved: u64,
    /// Pages above `nr_hugepages` allocated through overcommit (`surplus_hugepages`).
    pub surplus: u64,
}

impl Pool {
    /// Pages a new mapping can still get: free and not promised to another mapping.
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }
}

/// Everything the kernel says about hugepages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// System-wide pools by ascending size, then per-node pools by node and size.
    pub pools: Vec<Pool>,
    /// hugetlbfs mounts, in /proc/mounts order.
    pub mounts: Vec<Mount>,
    /// The default hugepage size (`Hugepagesize` in /proc/meminfo), in KiB.
    pub default_size_kib: u64,
}

impl Status {
    /// The default hugepage size.
    pub fn default_size(&self) -> PageSize {
        PageSize::from_kib(self.default_size_kib)
    }

    /// The system-wide pool of `size`, if the kernel has one.
    pub fn pool(&self, size: PageSize) -> Option<&Pool> {
        self.pools
            .iter()
            .find(|p| p.size == size && p.node.is_none())
    }

    /// The pool of `size` on NUMA node `node`.
    pub fn node_pool(&self, size: PageSize, node: u32) -> Option<&Pool> {
        self.pools
            .iter()
            .find(|p| p.size == size && p.node == Some(node))
    }

    /// Page sizes the kernel supports, ascending.
    pub fn sizes(&self) -> Vec<PageSize> {
        self.pools
            .iter()
            .filter(|p| p.node.is_none())
            .map(|p| p.size)
            .collect()
    }

    /// NUMA nodes that have hugepage pools, ascending.
    pub fn nodes(&self) -> Vec<u32> {
        let mut nodes: Vec<u32> = self.pools.iter().filter_map(|p| p.node).collect();
        nodes.dedup();
        nodes
    }

    /// hugetlbfs mounts of `size`.
    pub fn mounts_of(&self, size: PageSize) -> impl Iterator<Item = &Mount> {
        self.mounts
            .iter()
            .filter(move |m| m.page_size_kib == size.kib)
    }

    /// MiB a new mapping can get from system-wide pools that have a hugetlbfs
    /// mount (what DPDK can use).
    pub fn available_mounted_mib(&self) -> u64 {
        self.pools
            .iter()
            .filter(|p| p.node.is_none() && self.mounts_of(p.size).next().is_some())
            .map(|p| p.size.mib_of(p.available()))
            .sum()
    }
}

/// Reads the live system (`/sys`, `/proc`).
pub fn status() -> Result<Status, HugepageError> {
    status_from(Path::new("/"))
}

/// Reads a sysfs/procfs tree rooted at `root` (`root/sys/...`, `root/proc/...`).
pub fn status_from(root: &Path) -> Result<Status, HugepageError> {
    let default_size_kib = read_default_size(&root.join(PROC_MEMINFO))?;

    let sys_pools = root.join(SYS_POOLS);
    if !sys_pools.is_dir() {
        return Err(HugepageError::NoHugetlb { path: sys_pools });
    }
    let mut pools = Vec::new();
    for (size, dir) in pool_dirs(&sys_pools)? {
        pools.push(read_pool(&dir, size, None)?);
    }

    for (node, node_dir) in node_dirs(&root.join(SYS_NODES))? {
        let hp = node_dir.join("hugepages");
        if !hp.is_dir() {
            continue;
        }
        for (size, dir) in pool_dirs(&hp)? {
            pools.push(read_pool(&dir, size, Some(node))?);
        }
    }

    let mounts_path = root.join(PROC_MOUNTS);
    let mounts_text = read_string(&mounts_path)?;
    let mounts = parse_mounts(&mounts_text, PageSize::from_kib(default_size_kib))
        .into_iter()
        .filter(|e| e.fstype == "hugetlbfs")
        .map(|e| Mount {
            path: e.path,
            page_size_kib: e.page_size.kib,
        })
        .collect();

    Ok(Status {
        pools,
        mounts,
        default_size_kib,
    })
}

/// The pool directory of `size`, system-wide or on `node`, under `root`.
pub(crate) fn pool_dir(root: &Path, size: PageSize, node: Option<u32>) -> PathBuf {
    match node {
        None => root.join(SYS_POOLS).join(size.sysfs_dir_name()),
        Some(n) => root
            .join(SYS_NODES)
            .join(format!("node{n}"))
            .join("hugepages")
            .join(size.sysfs_dir_name()),
    }
}

/// `hugepages-<N>kB` directories in `dir`, ascending by size.
fn pool_dirs(dir: &Path) -> Result<Vec<(PageSize, PathBuf)>, HugepageError> {
    let mut out: Vec<(PageSize, PathBuf)> = read_dir_names(dir)?
        .into_iter()
        .filter_map(|name| PageSize::from_sysfs_dir_name(&name).map(|s| (s, dir.join(name))))
        .collect();
    out.sort();
    Ok(out)
}

/// `node<N>` directories in `dir`, ascending by node; none if `dir` does not
/// exist (a kernel without NUMA support).
fn node_dirs(dir: &Path) -> Result<Vec<(u32, PathBuf)>, HugepageError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out: Vec<(u32, PathBuf)> = read_dir_names(dir)?
        .into_iter()
        .filter_map(|name| {
            let n = name.strip_prefix("node")?.parse().ok()?;
            Some((n, dir.join(name)))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, HugepageError> {
    let read_err = |source| HugepageError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn read_pool(dir: &Path, size: PageSize, node: Option<u32>) -> Result<Pool, HugepageError> {
    Ok(Pool {
        size,
        node,
        total: read_count(&dir.join("nr_hugepages"))?,
        free: read_count(&dir.join("free_hugepages"))?,
        reserved: read_count_or_zero(&dir.join("resv_hugepages"))?,
        surplus: read_count_or_zero(&dir.join("surplus_hugepages"))?,
    })
}

pub(crate) fn read_string(path: &Path) -> Result<String, HugepageError> {
    fs::read_to_string(path).map_err(|source| HugepageError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a sysfs page counter (one decimal number and a newline).
pub(crate) fn read_count(path: &Path) -> Result<u64, HugepageError> {
    let text = read_string(path)?;
    text.trim().parse().map_err(|_| HugepageError::Parse {
        path: path.to_path_buf(),
        what: "a page count",
        value: text.trim().to_string(),
    })
}

fn read_count_or_zero(path: &Path) -> Result<u64, HugepageError> {
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        _ => read_count(path),
    }
}

/// `Hugepagesize:    2048 kB` from /proc/meminfo.
fn read_default_size(path: &Path) -> Result<u64, HugepageError> {
    let text = read_string(path)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .ok_or_else(|| HugepageError::Parse {
            path: path.to_path_buf(),
            what: "a Hugepagesize line (kernel without hugetlbfs support?)",
            value: String::new(),
        })?;
    let value = line.trim();
    value
        .strip_suffix("kB")
        .and_then(|n| n.trim().parse::<u64>().ok())
        .filter(|&k| k > 0)
        .ok_or_else(|| HugepageError::Parse {
            path: path.to_path_buf(),
            what: "the Hugepagesize value in kB",
            value: value.to_string(),
        })
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake sysfs/procfs tree in a tempdir, shaped like the kernel's.

    use std::fs;
    use std::path::Path;

    use crate::PageSize;

    /// Writes a pool directory with the given counters (resv only for system pools).
    pub fn pool(root: &Path, size: PageSize, node: Option<u32>, counts: [u64; 4]) {
        let [total, free, resv, surplus] = counts;
        let dir = super::pool_dir(root, size, node);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("nr_hugepages"), format!("{total}\n")).unwrap();
        fs::write(dir.join("free_hugepages"), format!("{free}\n")).unwrap();
        fs::write(dir.join("surplus_hugepages"), format!("{surplus}\n")).unwrap();
        if node.is_none() {
            fs::write(dir.join("resv_hugepages"), format!("{resv}\n")).unwrap();
            fs::write(dir.join("nr_overcommit_hugepages"), "0\n").unwrap();
        }
    }

    pub fn meminfo(root: &Path, default_kib: u64) {
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::write(
            root.join(super::PROC_MEMINFO),
            format!(
                "MemTotal:       24684000 kB\nHugePages_Total:       0\n\
                 Hugepagesize:       {default_kib} kB\nHugetlb:               0 kB\n"
            ),
        )
        .unwrap();
    }

    pub fn mounts(root: &Path, text: &str) {
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::write(root.join(super::PROC_MOUNTS), text).unwrap();
    }

    /// A two-node machine with 2M and 1G pools and two hugetlbfs mounts.
    pub fn numa_machine(root: &Path) {
        meminfo(root, 2048);
        pool(root, PageSize::SIZE_2M, None, [512, 300, 20, 0]);
        pool(root, PageSize::SIZE_1G, None, [4, 4, 0, 0]);
        pool(root, PageSize::SIZE_2M, Some(0), [256, 100, 0, 0]);
        pool(root, PageSize::SIZE_2M, Some(1), [256, 200, 0, 0]);
        pool(root, PageSize::SIZE_1G, Some(0), [2, 2, 0, 0]);
        pool(root, PageSize::SIZE_1G, Some(1), [2, 2, 0, 0]);
        // Files the kernel also has there, which must be ignored.
        fs::create_dir_all(root.join("sys/devices/system/node/power")).unwrap();
        fs::write(root.join("sys/devices/system/node/online"), "0-1\n").unwrap();
        mounts(
            root,
            "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n\
             hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n\
             nodev /mnt/huge\\0401G hugetlbfs rw,relatime,pagesize=1024M 0 0\n\
             tmpfs /run tmpfs rw,nosuid,nodev,size=2468400k,mode=755 0 0\n",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    #[test]
    fn reads_numa_machine_with_2m_and_1g_pools() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        let s = status_from(t.path()).unwrap();

        assert_eq!(s.default_size(), PageSize::SIZE_2M);
        assert_eq!(s.sizes(), vec![PageSize::SIZE_2M, PageSize::SIZE_1G]);
        assert_eq!(s.nodes(), vec![0, 1]);
        assert_eq!(
            s.pools
                .iter()
                .map(|p| (p.size.kib, p.node))
                .collect::<Vec<_>>(),
            vec![
                (2048, None),
                (1048576, None),
                (2048, Some(0)),
                (1048576, Some(0)),
                (2048, Some(1)),
                (1048576, Some(1)),
            ]
        );
        let p2m = s.pool(PageSize::SIZE_2M).unwrap();
        assert_eq!(
            (p2m.total, p2m.free, p2m.reserved, p2m.surplus),
            (512, 300, 20, 0)
        );
        assert_eq!(p2m.available(), 280);
        let n1 = s.node_pool(PageSize::SIZE_2M, 1).unwrap();
        assert_eq!((n1.total, n1.free, n1.reserved), (256, 200, 0));
        assert_eq!(s.node_pool(PageSize::SIZE_1G, 0).unwrap().total, 2);

        assert_eq!(
            s.mounts,
            vec![
                Mount {
                    path: "/dev/hugepages".into(),
                    page_size_kib: 2048
                },
                Mount {
                    path: "/mnt/huge 1G".into(),
                    page_size_kib: 1048576
                },
            ]
        );
        // 280 free 2M pages (560 MiB) + 4 free 1G pages (4096 MiB), both mounted.
        assert_eq!(s.available_mounted_mib(), 560 + 4096);
    }

    #[test]
    fn machine_without_numa_or_mounts() {
        let t = TempDir::new().unwrap();
        fake::meminfo(t.path(), 2048);
        fake::pool(t.path(), PageSize::SIZE_2M, None, [0, 0, 0, 0]);
        fake::mounts(t.path(), "proc /proc proc rw 0 0\n");
        let s = status_from(t.path()).unwrap();
        assert_eq!(s.pools.len(), 1);
        assert!(s.nodes().is_empty());
        assert!(s.mounts.is_empty());
        assert_eq!(s.available_mounted_mib(), 0);
    }

    #[test]
    fn mount_without_pagesize_option_uses_default_size() {
        let t = TempDir::new().unwrap();
        fake::meminfo(t.path(), 1048576);
        fake::pool(t.path(), PageSize::SIZE_1G, None, [1, 1, 0, 0]);
        fake::mounts(t.path(), "none /huge hugetlbfs rw,relatime 0 0\n");
        let s = status_from(t.path()).unwrap();
        assert_eq!(s.default_size(), PageSize::SIZE_1G);
        assert_eq!(s.mounts[0].page_size_kib, 1048576);
        assert_eq!(s.available_mounted_mib(), 1024);
    }

    #[test]
    fn missing_hugepage_support_is_named() {
        let t = TempDir::new().unwrap();
        fake::meminfo(t.path(), 2048);
        fake::mounts(t.path(), "");
        let err = status_from(t.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, HugepageError::NoHugetlb { .. }), "{msg}");
        assert!(
            msg.contains("sys/kernel/mm/hugepages does not exist"),
            "{msg}"
        );
        assert!(msg.contains("CONFIG_HUGETLBFS"), "{msg}");
    }

    #[test]
    fn garbage_counter_names_file_and_value() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        let f = pool_dir(t.path(), PageSize::SIZE_1G, Some(1)).join("free_hugepages");
        fs::write(&f, "lots\n").unwrap();
        let msg = status_from(t.path()).unwrap_err().to_string();
        assert!(msg.contains(&f.display().to_string()), "{msg}");
        assert!(msg.contains("\"lots\""), "{msg}");
        assert!(msg.contains("page count"), "{msg}");
    }

    #[test]
    fn garbage_meminfo_is_named() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        fs::write(t.path().join(PROC_MEMINFO), "Hugepagesize: two megs\n").unwrap();
        let msg = status_from(t.path()).unwrap_err().to_string();
        assert!(msg.contains("proc/meminfo"), "{msg}");
        assert!(msg.contains("two megs"), "{msg}");

        fs::write(t.path().join(PROC_MEMINFO), "MemTotal: 1 kB\n").unwrap();
        let msg = status_from(t.path()).unwrap_err().to_string();
        assert!(msg.contains("Hugepagesize"), "{msg}");
    }

    #[test]
    fn missing_mounts_file_is_named() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        fs::remove_file(t.path().join(PROC_MOUNTS)).unwrap();
        let msg = status_from(t.path()).unwrap_err().to_string();
        assert!(msg.starts_with("cannot read "), "{msg}");
        assert!(msg.contains("proc/mounts"), "{msg}");
    }

    #[test]
    fn reads_the_live_system_when_it_has_hugepages() {
        if !Path::new("/sys/kernel/mm/hugepages").is_dir() {
            eprintln!("skipped: this kernel has no hugepages");
            return;
        }
        let s = status().unwrap();
        assert!(s.pool(s.default_size()).is_some(), "{s:?}");
    }
}
