//! hugetlbfs mounts: parsing /proc/mounts, mounting with the right `pagesize=`
//! (idempotently: an existing matching mount is reused) and unmounting.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::status::{pool_dir, read_string, PROC_MOUNTS, SYS_POOLS};
use crate::{HugepageError, PageSize};

/// The mount point DPDK and systemd use by default.
pub const DEFAULT_MOUNT_PATH: &str = "/dev/hugepages";

/// A hugetlbfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Mount point.
    pub path: PathBuf,
    /// Page size the files on this mount are backed by, in KiB.
    pub page_size_kib: u64,
}

impl Mount {
    /// The page size of this mount.
    pub fn page_size(&self) -> PageSize {
        PageSize::from_kib(self.page_size_kib)
    }
}

/// One line of /proc/mounts, as far as we need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub path: PathBuf,
    pub fstype: String,
    /// `pagesize=` of a hugetlbfs mount (the default size when the option is absent).
    pub page_size: PageSize,
}

/// Parses /proc/mounts text. `default_size` stands in for a hugetlbfs mount
/// that shows no `pagesize=` option (old kernels).
pub(crate) fn parse_mounts(text: &str, default_size: PageSize) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let _source = f.next()?;
            let path = unescape(f.next()?);
            let fstype = f.next()?.to_string();
            let options = f.next().unwrap_or("");
            let page_size = options
                .split(',')
                .find_map(|o| o.strip_prefix("pagesize="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default_size);
            Some(MountEntry {
                path: PathBuf::from(path),
                fstype,
                page_size,
            })
        })
        .collect()
}

/// Undoes the octal escapes the kernel uses in /proc/mounts (`\040` for a
/// space, `\011` tab, `\012` newline, `\134` backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts hugetlbfs of `size` on `path` (created if missing), or returns the
/// mount already there. Fails if `path` holds another filesystem or a
/// hugetlbfs of another page size.
pub fn ensure_mounted(path: &Path, size: PageSize) -> Result<Mount, HugepageError> {
    ensure_mounted_in(Path::new("/"), path, size, sys_mount)
}

/// Unmounts the hugetlbfs mounted on `path`. Fails with
/// [`HugepageError::NotMounted`] if `path` is not a hugetlbfs mount point.
pub fn unmount(path: &Path) -> Result<(), HugepageError> {
    let path = absolute(path)?;
    let path = fs::canonicalize(&path).unwrap_or(path);
    let entries = read_mounts(Path::new("/"), PageSize::SIZE_2M)?;
    match entries.iter().rev().find(|e| e.path == path) {
        Some(e) if e.fstype == "hugetlbfs" => sys_umount(&path),
        _ => Err(HugepageError::NotMounted { path }),
    }
}

/// [`ensure_mounted`] against the tree under `root`, with `mount_fn` doing
/// the actual mount(2) (so the decision logic is testable without root).
pub(crate) fn ensure_mounted_in(
    root: &Path,
    path: &Path,
    size: PageSize,
    mount_fn: impl FnOnce(&Path, &str) -> Result<(), HugepageError>,
) -> Result<Mount, HugepageError> {
    match mount_point(root, path, size)? {
        MountPoint::Mounted(m) => Ok(m),
        MountPoint::Free(path) => {
            mount_fn(&path, &format!("pagesize={size}"))?;
            Ok(Mount {
                path,
                page_size_kib: size.kib,
            })
        }
    }
}

/// What is at a mount point, as far as mounting hugetlbfs of one size goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MountPoint {
    /// hugetlbfs of the right size is already mounted there.
    Mounted(Mount),
    /// Nothing is mounted on this (resolved, existing) directory.
    Free(PathBuf),
}

/// Resolves `path` (creating the directory if missing) and checks it can
/// take a hugetlbfs mount of `size`: the size is supported and nothing else
/// is mounted there. Changes nothing but the directory.
pub(crate) fn mount_point(
    root: &Path,
    path: &Path,
    size: PageSize,
) -> Result<MountPoint, HugepageError> {
    let pool = pool_dir(root, size, None);
    if !pool.is_dir() {
        return Err(HugepageError::UnsupportedSize {
            size,
            path: pool,
            supported: supported_sizes(root),
        });
    }

    let path = absolute(path)?;
    if !path.exists() {
        fs::create_dir_all(&path).map_err(|source| HugepageError::CreateDir {
            path: path.clone(),
            source,
        })?;
    }
    // /proc/mounts shows resolved paths: compare against the resolved one.
    let path = fs::canonicalize(&path).map_err(|source| HugepageError::CreateDir {
        path: path.clone(),
        source,
    })?;
    if !path.is_dir() {
        return Err(HugepageError::InvalidPath {
            path,
            reason: "not a directory",
        });
    }

    // The last entry for a path is the mount on top, the one that is visible.
    let entries = read_mounts(root, size)?;
    match entries.iter().rev().find(|e| e.path == path) {
        None => Ok(MountPoint::Free(path)),
        Some(top) if top.fstype != "hugetlbfs" => Err(HugepageError::MountedOther {
            path,
            fstype: top.fstype.clone(),
        }),
        Some(top) if top.page_size != size => Err(HugepageError::MountedOtherSize {
            path,
            mounted: top.page_size,
            wanted: size,
        }),
        Some(_) => Ok(MountPoint::Mounted(Mount {
            path,
            page_size_kib: size.kib,
        })),
    }
}

fn read_mounts(root: &Path, default_size: PageSize) -> Result<Vec<MountEntry>, HugepageError> {
    let text = read_string(&root.join(PROC_MOUNTS))?;
    Ok(parse_mounts(&text, default_size))
}

fn supported_sizes(root: &Path) -> String {
    let mut sizes: Vec<PageSize> = fs::read_dir(root.join(SYS_POOLS))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| PageSize::from_sysfs_dir_name(e.file_name().to_str()?))
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    if sizes.is_empty() {
        return "none".to_string();
    }
    sizes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes `path` absolute against the current directory and checks it can be
/// passed to the kernel.
fn absolute(path: &Path) -> Result<PathBuf, HugepageError> {
    if path.as_os_str().is_empty() {
        return Err(HugepageError::InvalidPath {
            path: path.to_path_buf(),
            reason: "empty path",
        });
    }
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(HugepageError::InvalidPath {
            path: path.to_path_buf(),
            reason: "contains a NUL byte",
        });
    }
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|source| HugepageError::Read {
        path: PathBuf::from("."),
        source,
    })?;
    Ok(cwd
        .join(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect())
}

fn c_path(path: &Path) -> Result<CString, HugepageError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| HugepageError::InvalidPath {
        path: path.to_path_buf(),
        reason: "contains a NUL byte",
    })
}

/// mount(2) of hugetlbfs with `options` on `path`.
pub(crate) fn sys_mount(path: &Path, options: &str) -> Result<(), HugepageError> {
    let target = c_path(path)?;
    let data = CString::new(options).map_err(|_| HugepageError::InvalidPath {
        path: path.to_path_buf(),
        reason: "mount options contain a NUL byte",
    })?;
    // SAFETY: every pointer is a valid NUL-terminated C string that outlives
    // the call; hugetlbfs reads `data` as a NUL-terminated option string.
    let rc = unsafe {
        libc::mount(
            c"hugetlbfs".as_ptr(),
            target.as_ptr(),
            c"hugetlbfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(HugepageError::Mount {
            path: path.to_path_buf(),
            options: options.to_string(),
            source: io::Error::last_os_error(),
        })
    }
}

/// umount(2) of `path`.
fn sys_umount(path: &Path) -> Result<(), HugepageError> {
    let target = c_path(path)?;
    // SAFETY: `target` is a valid NUL-terminated C string that outlives the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(HugepageError::Unmount {
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        })
    }
}

/// Removes the hugepage files a DPDK primary with EAL `--file-prefix
/// prefix` left on every hugetlbfs mount (`<prefix>map_<n>`; they stay when
/// the EAL ran without `--huge-unlink`, so that secondary processes could
/// map them). Call it after the EAL was cleaned up. Returns how many went.
pub fn remove_dpdk_files(prefix: &str) -> usize {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let stem = format!("{prefix}map_");
    let mut removed = 0;
    for m in parse_mounts(&text, PageSize::from_kib(2048)) {
        if m.fstype != "hugetlbfs" {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&m.path) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name
                .strip_prefix(&stem)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::fake;
    use std::cell::Cell;
    use tempfile::TempDir;

    #[test]
    fn parses_proc_mounts() {
        let text = "proc /proc proc rw,nosuid 0 0\n\
                    hugetlbfs /dev/hugepages hugetlbfs rw,nosuid,nodev,relatime,pagesize=2M 0 0\n\
                    nodev /mnt/huge\\0401G hugetlbfs rw,relatime,pagesize=1024M 0 0\n\
                    none /old hugetlbfs rw 0 0\n\
                    garbage\n";
        let m = parse_mounts(text, PageSize::SIZE_1G);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].path, Path::new("/dev/hugepages"));
        assert_eq!(m[1].page_size, PageSize::SIZE_2M);
        assert_eq!(m[2].path, Path::new("/mnt/huge 1G"));
        assert_eq!(m[2].page_size, PageSize::SIZE_1G);
        assert_eq!(
            m[3].page_size,
            PageSize::SIZE_1G,
            "no pagesize= means default"
        );
    }

    #[test]
    fn unescapes_kernel_octal() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape("/not\\999octal"), "/not\\999octal");
        assert_eq!(unescape("\\"), "\\");
    }

    fn fake_root() -> TempDir {
        let t = TempDir::new().unwrap();
        fake::meminfo(t.path(), 2048);
        fake::pool(t.path(), PageSize::SIZE_2M, None, [0, 0, 0, 0]);
        fake::pool(t.path(), PageSize::SIZE_1G, None, [0, 0, 0, 0]);
        t
    }

    #[test]
    fn mounts_when_absent_with_pagesize_option() {
        let root = fake_root();
        fake::mounts(root.path(), "proc /proc proc rw 0 0\n");
        let target = root.path().join("mnt/huge");
        let called = Cell::new(None);
        let m = ensure_mounted_in(root.path(), &target, PageSize::SIZE_1G, |p, o| {
            called.set(Some((p.to_path_buf(), o.to_string())));
            Ok(())
        })
        .unwrap();
        assert!(target.is_dir(), "mount point created");
        let target = fs::canonicalize(&target).unwrap();
        assert_eq!(called.take(), Some((target.clone(), "pagesize=1G".into())));
        assert_eq!(
            m,
            Mount {
                path: target,
                page_size_kib: 1048576
            }
        );
    }

    #[test]
    fn existing_matching_mount_is_reused() {
        let root = fake_root();
        let target = fs::canonicalize(root.path()).unwrap().join("hp");
        fs::create_dir(&target).unwrap();
        fake::mounts(
            root.path(),
            &format!(
                "hugetlbfs {} hugetlbfs rw,pagesize=2M 0 0\n",
                target.display()
            ),
        );
        let m = ensure_mounted_in(root.path(), &target, PageSize::SIZE_2M, |_, _| {
            panic!("must not mount twice")
        })
        .unwrap();
        assert_eq!(m.path, target);
        assert_eq!(m.page_size(), PageSize::SIZE_2M);
    }

    #[test]
    fn conflicting_mounts_are_refused() {
        let root = fake_root();
        let target = fs::canonicalize(root.path()).unwrap().join("hp");
        fs::create_dir(&target).unwrap();
        let never = |_: &Path, _: &str| -> Result<(), HugepageError> { panic!("must not mount") };

        fake::mounts(
            root.path(),
            &format!(
                "hugetlbfs {} hugetlbfs rw,pagesize=1G 0 0\n",
                target.display()
            ),
        );
        let err = ensure_mounted_in(root.path(), &target, PageSize::SIZE_2M, never).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, HugepageError::MountedOtherSize { .. }),
            "{msg}"
        );
        assert!(msg.contains("of 1G pages, not 2M"), "{msg}");
        assert!(
            msg.contains(&format!("umount {}", target.display())),
            "{msg}"
        );

        // hugetlbfs below, tmpfs on top: the visible one counts.
        fake::mounts(
            root.path(),
            &format!(
                "hugetlbfs {p} hugetlbfs rw,pagesize=2M 0 0\ntmpfs {p} tmpfs rw 0 0\n",
                p = target.display()
            ),
        );
        let err = ensure_mounted_in(root.path(), &target, PageSize::SIZE_2M, never).unwrap_err();
        assert!(
            err.to_string()
                .contains("already a tmpfs mount, not hugetlbfs"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_size_lists_the_supported_ones() {
        let root = TempDir::new().unwrap();
        fake::meminfo(root.path(), 2048);
        fake::pool(root.path(), PageSize::SIZE_2M, None, [0, 0, 0, 0]);
        fake::mounts(root.path(), "");
        let err = ensure_mounted_in(root.path(), root.path(), PageSize::SIZE_1G, |_, _| Ok(()))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("hugepage size 1G is not supported"), "{msg}");
        assert!(msg.contains("hugepages-1048576kB does not exist"), "{msg}");
        assert!(msg.contains("supported sizes: 2M"), "{msg}");
    }

    #[test]
    fn file_as_mount_point_is_refused() {
        let root = fake_root();
        fake::mounts(root.path(), "");
        let file = root.path().join("afile");
        fs::write(&file, "").unwrap();
        let err =
            ensure_mounted_in(root.path(), &file, PageSize::SIZE_2M, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = ensure_mounted_in(root.path(), Path::new(""), PageSize::SIZE_2M, |_, _| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("empty path"), "{err}");
    }

    #[test]
    fn unmount_refuses_a_non_mount_point() {
        let t = TempDir::new().unwrap();
        let err = unmount(t.path()).unwrap_err();
        assert!(matches!(err, HugepageError::NotMounted { .. }), "{err}");
        assert!(err.to_string().contains("nothing to unmount"), "{err}");
    }
}
