//! Test-run plumbing shared by every end-to-end test: one dataplane test at
//! a time ([`serial`]), the root check, unique name tags, and the paths of
//! the workspace's built binaries and of the Python programs in
//! `tests/scripts/`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Tests that start dataplanes (pinned polling cores) run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails clearly when not root (network namespaces need it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "end-to-end tests create network namespaces and need root"
    );
}

/// A short unique tag for names (interface names are limited to 15 bytes).
pub fn tag() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n}", std::process::id() % 0xfff)
}

/// A built binary of this workspace (same profile as the running program):
/// next to it (a binary in target/<profile>) or one level up (a test in
/// target/<profile>/deps).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let here = exe.parent().expect("exe dir");
    let p = [here.join(name), here.parent().map(|d| d.join(name)).unwrap_or_default()]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not built next to {}; run `cargo build --workspace --bins` with the same profile first (scripts/test does)",
                exe.display()
            )
        });
    p
}

/// A Python program of `tests/scripts/`, run by path (so the programs
/// there can import each other).
pub fn test_script(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Polls `f` every 20 ms until it holds; returns the time waited, or an
/// error naming `what` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: std::time::Duration,
    mut f: impl FnMut() -> bool,
) -> anyhow::Result<std::time::Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    anyhow::bail!("timed out after {timeout:?} waiting for {what}")
}
