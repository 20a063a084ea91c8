//! Changing the pools: setting `nr_hugepages` (and checking what the kernel
//! really gave), `ensure` (enough free hugepage memory, mounted) and the
//! read-only `check_available` the dataplane runs before EAL init.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::mount::{mount_point, sys_mount, Mount, MountPoint, DEFAULT_MOUNT_PATH};
use crate::status::{pool_dir, read_count, status_from, Status};
use crate::{HugepageError, PageSize};

/// What [`ensure`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The page size used.
    pub size: PageSize,
    /// MiB asked for.
    pub mib: u64,
    /// Pages of `size` needed for `mib`.
    pub needed_pages: u64,
    /// Pages free and not promised to a mapping before anything was done.
    pub available_before: u64,
    /// Pool total (`nr_hugepages`) before.
    pub total_before: u64,
    /// Pool total after (equal to `total_before` when nothing was reserved).
    pub total_after: u64,
    /// The hugetlbfs mount serving `size`.
    pub mount: Mount,
    /// Whether this call mounted it (false: an existing mount was reused).
    pub mounted_now: bool,
}

impl Plan {
    /// Pages this call added to the pool.
    pub fn reserved_now(&self) -> u64 {
        self.total_after.saturating_sub(self.total_before)
    }

    /// Whether this call changed anything on the system.
    pub fn changed(&self) -> bool {
        self.reserved_now() > 0 || self.mounted_now
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} MiB = {} x {} pages: ",
            self.mib, self.needed_pages, self.size
        )?;
        if self.reserved_now() > 0 {
            write!(
                f,
                "{} were available, pool raised from {} to {} pages; ",
                self.available_before, self.total_before, self.total_after
            )?;
        } else {
            write!(
                f,
                "{} available in a pool of {} pages, nothing reserved; ",
                self.available_before, self.total_before
            )?;
        }
        if self.mounted_now {
            write!(f, "mounted hugetlbfs on {}", self.mount.path.display())
        } else {
            write!(
                f,
                "hugetlbfs already mounted on {}",
                self.mount.path.display()
            )
        }
    }
}

/// Sets the pool of `size` (system-wide, or on NUMA node `node`) to `pages`
/// pages and returns the pool total the kernel reports afterwards.
///
/// This is an absolute setting, like writing `nr_hugepages`: a smaller value
/// than the current one gives free pages back to the system. If the kernel
/// could not allocate all the pages it keeps the ones it got and this returns
/// [`HugepageError::Short`], whose message says how to get more.
pub fn reserve(size: PageSize, pages: u64, node: Option<u32>) -> Result<u64, HugepageError> {
    reserve_in(Path::new("/"), size, pages, node, write_count)
}

/// Makes sure at least `mib` MiB of default-size hugepages are free and
/// mounted: raises the pool by what is missing, and mounts hugetlbfs on
/// /dev/hugepages unless a mount of that size already exists.
pub fn ensure(mib: u64) -> Result<Plan, HugepageError> {
    let size = status_from(Path::new("/"))?.default_size();
    ensure_with(mib, size, None)
}

/// [`ensure`] with an explicit page size and, optionally, mount point (by
/// default an existing hugetlbfs mount of `size` is reused, or
/// /dev/hugepages is mounted).
pub fn ensure_with(
    mib: u64,
    size: PageSize,
    mount_path: Option<&Path>,
) -> Result<Plan, HugepageError> {
    ensure_in(
        Path::new("/"),
        mib,
        size,
        mount_path,
        write_count,
        sys_mount,
    )
}

/// Checks, without changing anything, that `mib` MiB of hugepages are free on
/// mounted hugetlbfs. The error says how much is free and the command to fix it.
pub fn check_available(mib: u64) -> Result<(), HugepageError> {
    check_status(&status_from(Path::new("/"))?, mib)
}

/// The decision behind [`check_available`], on a status already read.
pub fn check_status(status: &Status, mib: u64) -> Result<(), HugepageError> {
    let system = || status.pools.iter().filter(|p| p.node.is_none());
    if status.mounts.is_empty() {
        return Err(HugepageError::NoMount {
            needed_mib: mib,
            free_mib: system().map(|p| p.size.mib_of(p.available())).sum(),
        });
    }
    let free_mib = status.available_mounted_mib();
    if free_mib >= mib {
        return Ok(());
    }
    let detail = system()
        .map(|p| {
            let mount = status.mounts_of(p.size).next().map_or_else(
                || "not mounted".to_string(),
                |m| format!("on {}", m.path.display()),
            );
            format!(
                "{}: {} of {} pages available, {}",
                p.size,
                p.available(),
                p.total,
                mount
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(HugepageError::NotEnough {
        needed_mib: mib,
        free_mib,
        detail,
    })
}

/// Writes a page count to a sysfs `nr_hugepages` file.
fn write_count(path: &Path, pages: u64) -> Result<(), HugepageError> {
    let err = |source| HugepageError::Write {
        path: path.to_path_buf(),
        value: pages,
        source,
    };
    let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
    f.write_all(format!("{pages}\n").as_bytes()).map_err(err)
}

/// [`reserve`] under `root`, with `write` doing the sysfs write.
pub(crate) fn reserve_in(
    root: &Path,
    size: PageSize,
    pages: u64,
    node: Option<u32>,
    write: impl FnOnce(&Path, u64) -> Result<(), HugepageError>,
) -> Result<u64, HugepageError> {
    let dir = pool_dir(root, size, node);
    if !dir.is_dir() {
        return Err(missing_pool(root, size, node));
    }
    let file = dir.join("nr_hugepages");
    write(&file, pages)?;
    let got = read_count(&file)?;
    if got < pages {
        return Err(HugepageError::Short {
            wanted: pages,
            got,
            size,
        });
    }
    Ok(got)
}

/// The right error for a pool directory that does not exist.
fn missing_pool(root: &Path, size: PageSize, node: Option<u32>) -> HugepageError {
    match status_from(root) {
        Err(e) => e,
        Ok(st) => match node {
            Some(n) if st.pool(size).is_some() => HugepageError::NoSuchNode {
                node: n,
                size,
                path: pool_dir(root, size, node),
                present: join(st.nodes()),
            },
            _ => HugepageError::UnsupportedSize {
                size,
                path: pool_dir(root, size, None),
                supported: join(st.sizes()),
            },
        },
    }
}

fn join<T: fmt::Display>(items: Vec<T>) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`ensure_with`] under `root`, with injectable sysfs write and mount(2).
pub(crate) fn ensure_in(
    root: &Path,
    mib: u64,
    size: PageSize,
    mount_path: Option<&Path>,
    write: impl FnOnce(&Path, u64) -> Result<(), HugepageError>,
    mount_fn: impl FnOnce(&Path, &str) -> Result<(), HugepageError>,
) -> Result<Plan, HugepageError> {
    let st = status_from(root)?;
    let pool = st
        .pool(size)
        .ok_or_else(|| missing_pool(root, size, None))?
        .clone();
    let needed_pages = size.pages_for_mib(mib);
    let available_before = pool.available();

    // Settle the mount point before reserving anything, so a conflict there
    // does not leave pages reserved for nothing.
    let existing = st.mounts_of(size).next();
    let mount_point = match (mount_path, existing) {
        (Some(path), _) => mount_point(root, path, size)?,
        (None, Some(existing)) => MountPoint::Mounted(existing.clone()),
        (None, None) => mount_point(root, Path::new(DEFAULT_MOUNT_PATH), size)?,
    };

    let total_after = if available_before < needed_pages {
        let target = pool.total + (needed_pages - available_before);
        reserve_in(root, size, target, None, write)?
    } else {
        pool.total
    };

    let (mount, mounted_now) = match mount_point {
        MountPoint::Mounted(m) => (m, false),
        MountPoint::Free(path) => {
            mount_fn(&path, &format!("pagesize={size}"))?;
            (
                Mount {
                    path,
                    page_size_kib: size.kib,
                },
                true,
            )
        }
    };

    Ok(Plan {
        size,
        mib,
        needed_pages,
        available_before,
        total_before: pool.total,
        total_after,
        mount,
        mounted_now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::fake;
    use std::fs;
    use tempfile::TempDir;

    /// A kernel that allocates at most `limit` pages.
    fn kernel_with_limit(limit: u64) -> impl FnOnce(&Path, u64) -> Result<(), HugepageError> {
        move |path, pages| {
            fs::write(path, format!("{}\n", pages.min(limit))).unwrap();
            Ok(())
        }
    }

    #[test]
    fn reserve_writes_and_reads_back() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        let got = reserve_in(
            t.path(),
            PageSize::SIZE_2M,
            600,
            None,
            kernel_with_limit(u64::MAX),
        );
        assert_eq!(got.unwrap(), 600);
        let file = pool_dir(t.path(), PageSize::SIZE_2M, None).join("nr_hugepages");
        assert_eq!(fs::read_to_string(file).unwrap(), "600\n");

        let got = reserve_in(
            t.path(),
            PageSize::SIZE_1G,
            3,
            Some(1),
            kernel_with_limit(u64::MAX),
        );
        assert_eq!(got.unwrap(), 3);
        let st = status_from(t.path()).unwrap();
        assert_eq!(st.node_pool(PageSize::SIZE_1G, 1).unwrap().total, 3);
        assert_eq!(st.node_pool(PageSize::SIZE_1G, 0).unwrap().total, 2);
    }

    #[test]
    fn short_reservation_says_what_to_do() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        let err =
            reserve_in(t.path(), PageSize::SIZE_1G, 8, None, kernel_with_limit(5)).unwrap_err();
        assert!(
            matches!(
                err,
                HugepageError::Short {
                    wanted: 8,
                    got: 5,
                    size: PageSize::SIZE_1G
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("asked the kernel for 8 hugepages of 1G, it has 5"),
            "{msg}"
        );
        assert!(msg.contains("Free memory"), "{msg}");
        assert!(msg.contains("hugepagesz=1G hugepages=8"), "{msg}");
        assert!(msg.contains("kernel command line"), "{msg}");
    }

    #[test]
    fn reserve_names_missing_size_and_node() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        let never = |_: &Path, _: u64| -> Result<(), HugepageError> { panic!("must not write") };

        let err = reserve_in(t.path(), PageSize::from_kib(64), 1, None, never).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("hugepage size 64K is not supported"), "{msg}");
        assert!(msg.contains("supported sizes: 2M, 1G"), "{msg}");

        let err = reserve_in(t.path(), PageSize::SIZE_2M, 1, Some(7), never).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("NUMA node 7 has no 2M hugepage pool"), "{msg}");
        assert!(
            msg.contains("node7/hugepages/hugepages-2048kB does not exist"),
            "{msg}"
        );
        assert!(msg.contains("nodes present: 0, 1"), "{msg}");
    }

    #[test]
    fn write_errors_name_the_file_and_hint_root() {
        let e = HugepageError::Write {
            path: "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages".into(),
            value: 8,
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let msg = e.to_string();
        assert!(msg.starts_with(
            "cannot write 8 to /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
        ));
        assert!(msg.ends_with("; run as root"), "{msg}");
    }

    #[test]
    fn ensure_raises_by_what_is_missing_and_mounts() {
        let t = TempDir::new().unwrap();
        fake::meminfo(t.path(), 2048);
        // 10 pages, 10 free, 2 of them promised: 8 available.
        fake::pool(t.path(), PageSize::SIZE_2M, None, [10, 10, 2, 0]);
        fake::mounts(t.path(), "proc /proc proc rw 0 0\n");
        let mnt = t.path().join("hp");
        let plan = ensure_in(
            t.path(),
            64,
            PageSize::SIZE_2M,
            Some(&mnt),
            kernel_with_limit(u64::MAX),
            |_, opts| {
                assert_eq!(opts, "pagesize=2M");
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(plan.needed_pages, 32);
        assert_eq!(plan.available_before, 8);
        assert_eq!((plan.total_before, plan.total_after), (10, 34));
        assert_eq!(plan.reserved_now(), 24);
        assert!(plan.mounted_now);
        assert!(plan.changed());
        assert_eq!(plan.mount.path, fs::canonicalize(&mnt).unwrap());
        let text = plan.to_string();
        assert!(text.contains("pool raised from 10 to 34 pages"), "{text}");
        assert!(text.contains("mounted hugetlbfs on"), "{text}");
    }

    #[test]
    fn ensure_reuses_existing_pages_and_mount() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        let plan = ensure_in(
            t.path(),
            512,
            PageSize::SIZE_2M,
            None,
            |_, _| panic!("enough pages: must not write"),
            |_, _| panic!("already mounted: must not mount"),
        )
        .unwrap();
        assert_eq!(plan.needed_pages, 256);
        assert_eq!(plan.available_before, 280);
        assert_eq!(plan.total_after, 512);
        assert_eq!(plan.mount.path, Path::new("/dev/hugepages"));
        assert!(!plan.changed());
        assert!(plan.to_string().contains("nothing reserved"), "{plan}");
        assert!(
            plan.to_string()
                .contains("already mounted on /dev/hugepages"),
            "{plan}"
        );
    }

    #[test]
    fn ensure_reports_a_short_kernel() {
        let t = TempDir::new().unwrap();
        fake::meminfo(t.path(), 2048);
        fake::pool(t.path(), PageSize::SIZE_2M, None, [0, 0, 0, 0]);
        fake::mounts(t.path(), "");
        let err = ensure_in(
            t.path(),
            512,
            PageSize::SIZE_2M,
            Some(t.path()),
            kernel_with_limit(100),
            |_, _| panic!("must not mount after a failed reservation"),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                HugepageError::Short {
                    wanted: 256,
                    got: 100,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn ensure_checks_the_mount_point_before_reserving() {
        let t = TempDir::new().unwrap();
        fake::meminfo(t.path(), 2048);
        fake::pool(t.path(), PageSize::SIZE_2M, None, [0, 0, 0, 0]);
        fake::pool(t.path(), PageSize::SIZE_1G, None, [0, 0, 0, 0]);
        let mnt = fs::canonicalize(t.path()).unwrap().join("hp");
        fs::create_dir(&mnt).unwrap();
        fake::mounts(
            t.path(),
            &format!("hugetlbfs {} hugetlbfs rw,pagesize=2M 0 0\n", mnt.display()),
        );
        let err = ensure_in(
            t.path(),
            1024,
            PageSize::SIZE_1G,
            Some(&mnt),
            |_, _| panic!("a conflicting mount point must stop before any reservation"),
            |_, _| panic!("must not mount"),
        )
        .unwrap_err();
        assert!(
            matches!(err, HugepageError::MountedOtherSize { .. }),
            "{err}"
        );
        let st = status_from(t.path()).unwrap();
        assert_eq!(st.pool(PageSize::SIZE_1G).unwrap().total, 0);
    }

    #[test]
    fn check_counts_only_mounted_sizes() {
        let t = TempDir::new().unwrap();
        fake::numa_machine(t.path());
        let mut st = status_from(t.path()).unwrap();
        check_status(&st, 4656).unwrap();
        let err = check_status(&st, 4657).unwrap_err();
        assert!(err.to_string().contains("only 4656 MiB free"), "{err}");

        // Without the 1G mount only 560 MiB (280 x 2M) is usable.
        st.mounts.retain(|m| m.page_size() == PageSize::SIZE_2M);
        let msg = check_status(&st, 1024).unwrap_err().to_string();
        assert!(
            msg.starts_with("1024 MiB of hugepages needed, only 560 MiB free on mounted hugetlbfs"),
            "{msg}"
        );
        assert!(
            msg.contains("2M: 280 of 512 pages available, on /dev/hugepages"),
            "{msg}"
        );
        assert!(
            msg.contains("1G: 4 of 4 pages available, not mounted"),
            "{msg}"
        );
        assert!(
            msg.contains("run `scripts/hugepages --mb 1024` as root"),
            "{msg}"
        );

        st.mounts.clear();
        let msg = check_status(&st, 64).unwrap_err().to_string();
        assert!(
            msg.contains("no hugetlbfs is mounted (4656 MiB free in the pools)"),
            "{msg}"
        );
        assert!(msg.contains("scripts/hugepages --mb 64"), "{msg}");
    }
}
