//! Live-system tests (root only; skipped otherwise): reserve a few real 2M
//! pages and give them back, mount hugetlbfs on a temp dir and unmount it.
//! Every change is undone by a guard, also when an assertion fails.

mod common;

use std::sync::Mutex;

use cer_hugepages::{HugepageError, PageSize};
use common::{can_touch_system, pool_total, MountGuard, PoolGuard};
use tempfile::TempDir;

/// The tests share the real 2M pool: one at a time.
static LIVE: Mutex<()> = Mutex::new(());

#[test]
fn reserve_raises_the_real_pool_and_restores_it() {
    if !can_touch_system("reserve_raises_the_real_pool_and_restores_it") {
        return;
    }
    let _lock = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let size = PageSize::SIZE_2M;
    let before = cer_hugepages::status().unwrap();
    let original = before.pool(size).unwrap().total;
    let free_before = before.pool(size).unwrap().free;

    {
        let _guard = PoolGuard {
            size,
            original,
            ours: original + 8,
        };
        let got = cer_hugepages::reserve(size, original + 8, None).unwrap();
        assert_eq!(got, original + 8);
        let after = cer_hugepages::status().unwrap();
        let pool = after.pool(size).unwrap();
        assert_eq!(pool.total, original + 8);
        assert_eq!(pool.free, free_before + 8);
        // The per-node view adds up to the system-wide one.
        let nodes: u64 = after
            .pools
            .iter()
            .filter(|p| p.size == size && p.node.is_some())
            .map(|p| p.total)
            .sum();
        if !after.nodes().is_empty() {
            assert_eq!(nodes, original + 8);
        }
    }
    assert_eq!(pool_total(size), original, "guard restored the pool");
}

#[test]
fn reserve_on_a_numa_node() {
    if !can_touch_system("reserve_on_a_numa_node") {
        return;
    }
    let _lock = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let size = PageSize::SIZE_2M;
    let st = cer_hugepages::status().unwrap();
    let Some(&node) = st.nodes().first() else {
        eprintln!("skipped: no NUMA node directories");
        return;
    };
    let original = st.pool(size).unwrap().total;
    let node_original = st.node_pool(size, node).unwrap().total;
    {
        let _guard = PoolGuard {
            size,
            original,
            ours: original + 2,
        };
        let got = cer_hugepages::reserve(size, node_original + 2, Some(node)).unwrap();
        assert_eq!(got, node_original + 2);
        assert_eq!(pool_total(size), original + 2);
    }
    assert_eq!(pool_total(size), original);

    let err = cer_hugepages::reserve(size, 1, Some(9999)).unwrap_err();
    assert!(
        matches!(err, HugepageError::NoSuchNode { node: 9999, .. }),
        "{err}"
    );
}

#[test]
fn mount_on_a_temp_dir_is_idempotent_and_unmounts() {
    if !can_touch_system("mount_on_a_temp_dir_is_idempotent_and_unmounts") {
        return;
    }
    let _lock = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap();
    let _guard = MountGuard(path.clone());

    let m = cer_hugepages::ensure_mounted(&path, PageSize::SIZE_2M).unwrap();
    assert_eq!(m.path, path);
    assert_eq!(m.page_size(), PageSize::SIZE_2M);
    let st = cer_hugepages::status().unwrap();
    assert!(st.mounts.contains(&m), "{:?}", st.mounts);

    // Again: the same mount, not a second one stacked on it.
    let again = cer_hugepages::ensure_mounted(&path, PageSize::SIZE_2M).unwrap();
    assert_eq!(again, m);
    let count = cer_hugepages::status()
        .unwrap()
        .mounts
        .iter()
        .filter(|x| x.path == path)
        .count();
    assert_eq!(count, 1);

    if cer_hugepages::status()
        .unwrap()
        .pool(PageSize::SIZE_1G)
        .is_some()
    {
        let err = cer_hugepages::ensure_mounted(&path, PageSize::SIZE_1G).unwrap_err();
        assert!(
            matches!(err, HugepageError::MountedOtherSize { .. }),
            "{err}"
        );
    }

    cer_hugepages::unmount(&path).unwrap();
    let st = cer_hugepages::status().unwrap();
    assert!(!st.mounts.iter().any(|x| x.path == path));
    let err = cer_hugepages::unmount(&path).unwrap_err();
    assert!(matches!(err, HugepageError::NotMounted { .. }), "{err}");
}

#[test]
fn ensure_then_check_available_on_a_temp_mount() {
    if !can_touch_system("ensure_then_check_available_on_a_temp_mount") {
        return;
    }
    let _lock = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let size = PageSize::SIZE_2M;
    let dir = TempDir::new().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap();
    let _mount = MountGuard(path.clone());
    let original = pool_total(size);

    let plan = cer_hugepages::ensure_with(16, size, Some(&path)).unwrap();
    let _pool = PoolGuard {
        size,
        original,
        ours: plan.total_after,
    };
    assert_eq!(plan.needed_pages, 8);
    assert!(plan.mounted_now);
    assert_eq!(plan.mount.path, path);
    assert!(plan.total_after >= plan.total_before);
    cer_hugepages::check_available(16).unwrap();

    // A second ensure for the same amount changes nothing.
    let again = cer_hugepages::ensure_with(16, size, Some(&path)).unwrap();
    assert!(!again.changed(), "{again}");
}
