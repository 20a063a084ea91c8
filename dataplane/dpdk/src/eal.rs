//! The DPDK Environment Abstraction Layer: one-time initialization and
//! teardown ([`Eal`]), lcore queries, and launching Rust closures on worker
//! lcores ([`launch`] / [`wait_lcore`]).

use std::ffi::{c_char, c_int, c_void, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};

use dpdk_sys as sys;

use crate::error::{rte_errno, DpdkError};
use crate::{mempool, port};

const STATE_UNINIT: u8 = 0;
const STATE_INITIALIZING: u8 = 1;
const STATE_RUNNING: u8 = 2;
const STATE_FINISHED: u8 = 3;

/// Lifecycle of the process's single EAL.
static EAL_STATE: AtomicU8 = AtomicU8::new(STATE_UNINIT);

/// Value [`wait_lcore`] returns for a launched closure that panicked.
pub const LCORE_PANICKED: i32 = i32::MIN;

/// True between a successful [`Eal::init`] and `rte_eal_cleanup`.
pub(crate) fn eal_running() -> bool {
    EAL_STATE.load(Ordering::Acquire) == STATE_RUNNING
}

/// Fails with [`DpdkError::EalNotRunning`] unless the EAL is up.
pub(crate) fn require_eal(call: &'static str) -> Result<(), DpdkError> {
    if eal_running() {
        Ok(())
    } else {
        Err(DpdkError::EalNotRunning { call })
    }
}

/// The initialized EAL of this process.
///
/// There is at most one per process: a second [`Eal::init`] fails with
/// [`DpdkError::AlreadyInitialized`], also after the first was dropped
/// (DPDK cannot re-initialize). The thread that calls `init` becomes the
/// main lcore; `Eal` is neither `Send` nor `Sync`, so it is also dropped
/// there.
///
/// Dropping it (or [`Eal::shutdown`]) waits for every worker lcore to
/// return (`rte_eal_mp_wait_lcore`: tell your workers to stop first). Then,
/// if no [`crate::Mempool`] is still alive, it closes every port and, once
/// no [`crate::Mbuf`] is out either, calls `rte_eal_cleanup`. Otherwise
/// cleanup is skipped with a warning and DPDK memory stays mapped until the
/// process exits, so nothing alive ever points into released memory.
/// Drop it last, after every thread that uses DPDK objects has finished:
/// non-EAL threads still polling a port while it is closed would race with
/// the driver.
pub struct Eal {
    app_args: Vec<String>,
    torn_down: bool,
    /// Not Send/Sync: teardown must run on the main lcore.
    _main_lcore_only: PhantomData<*mut ()>,
}

impl Eal {
    /// Initializes the EAL with a full command line: `args[0]` is the
    /// program name, the rest are EAL arguments (e.g. `-l 0-1 --no-huge -m
    /// 256 --no-pci --vdev=net_af_packet0,iface=veth0`). A `--` ends the EAL
    /// arguments; what follows is in [`Eal::app_args`].
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        const CALL: &str = "rte_eal_init";
        if args.is_empty() {
            return Err(DpdkError::InvalidArgument {
                call: CALL,
                reason: "the argument list is empty; args[0] must be the program name".into(),
            });
        }
        let cargs = args
            .iter()
            .map(|a| {
                CString::new(a.as_str()).map_err(|_| DpdkError::InvalidArgument {
                    call: CALL,
                    reason: format!("argument {a:?} contains a NUL byte"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let argc = c_int::try_from(cargs.len()).map_err(|_| DpdkError::InvalidArgument {
            call: CALL,
            reason: format!("{} arguments is too many", cargs.len()),
        })?;

        if EAL_STATE
            .compare_exchange(
                STATE_UNINIT,
                STATE_INITIALIZING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return Err(DpdkError::AlreadyInitialized);
        }

        // rte_eal_init may permute argv and some DPDK versions keep pointers
        // into it; the strings and the array are leaked on purpose (once per
        // process, a few hundred bytes) so they outlive the EAL.
        let cargs_len = cargs.len();
        let mut argv: Vec<*mut c_char> = cargs.into_iter().map(CString::into_raw).collect();
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = Vec::leak(argv);

        // SAFETY: argv holds argc valid NUL-terminated strings followed by a
        // NULL, all leaked ('static); the EAL_STATE guard ensures this is the
        // only rte_eal_init call in the process at this point.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let errno = rte_errno();
            // DPDK decides whether a retry is possible (it answers EALREADY
            // if not), so a failed attempt does not consume our guard.
            EAL_STATE.store(STATE_UNINIT, Ordering::Release);
            return Err(DpdkError::call(CALL, args[1..].join(" "), errno));
        }
        // rte_eal_init returns how many arguments after argv[0] it parsed
        // (the "--" included) and getopt may have permuted argv, so the
        // application's arguments are read back from the array it used.
        let app_args = argv[(ret as usize + 1).min(cargs_len)..cargs_len]
            .iter()
            .map(|&p| {
                // SAFETY: each entry still points to one of the leaked
                // NUL-terminated strings (getopt only reorders pointers).
                unsafe { std::ffi::CStr::from_ptr(p) }
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        EAL_STATE.store(STATE_RUNNING, Ordering::Release);
        log::info!(
            "DPDK {} EAL up: main lcore {}, {} lcores, tsc {} Hz",
            sys::DPDK_VERSION,
            main_lcore(),
            lcore_count(),
            tsc_hz()
        );
        Ok(Eal {
            app_args,
            torn_down: false,
            _main_lcore_only: PhantomData,
        })
    }

    /// The arguments after the EAL's own (those after `--`), in order.
    pub fn app_args(&self) -> &[String] {
        &self.app_args
    }
}

impl Eal {
    /// Tears the EAL down now and reports whether `rte_eal_cleanup` ran:
    /// waits for all workers, then closes every port and cleans up, unless
    /// a mempool or an mbuf is still alive (then everything is left in
    /// place and [`DpdkError::CleanupSkipped`] says why). Dropping the `Eal`
    /// does the same and logs the outcome.
    pub fn shutdown(mut self) -> Result<(), DpdkError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), DpdkError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        // SAFETY: called on the main lcore (Eal is !Send); blocks until every
        // worker lcore has returned from its launched function.
        unsafe { sys::rte_eal_mp_wait_lcore() };

        let held = mempool::live_pools_held();
        if held > 0 {
            return Err(DpdkError::CleanupSkipped {
                reason: format!(
                    "{held} mempool(s) still alive; ports and DPDK memory stay in place until exit"
                ),
            });
        }
        for p in port::Port::all() {
            p.close();
        }
        let leaked = mempool::reap_released_pools();
        if leaked > 0 {
            return Err(DpdkError::CleanupSkipped {
                reason: format!(
                    "{leaked} released mempool(s) still have mbufs in use (an Mbuf outlives the Eal)"
                ),
            });
        }
        let runtime_dir = runtime_dir();
        EAL_STATE.store(STATE_FINISHED, Ordering::Release);
        // SAFETY: no Mempool, Mbuf or open port remains (checked above), all
        // workers are idle, and this is the main lcore.
        let rc = unsafe { sys::rte_eal_cleanup() };
        if rc != 0 {
            return Err(DpdkError::call("rte_eal_cleanup", "", rc));
        }
        // EAL leaves its runtime directory behind, e.g. /var/run/dpdk/<file-
        // prefix>, and in it, without --no-shconf, the primary's shared
        // config files (config, fbarray_*: megabytes each) that only
        // secondary processes of this prefix would read. This process is the
        // primary: remove them, then the directory if nothing else is left.
        if let Some(dir) = runtime_dir {
            remove_primary_files(&dir);
            let _ = std::fs::remove_dir(dir);
        }
        log::info!("DPDK EAL cleaned up");
        Ok(())
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            log::warn!("{e}");
        }
    }
}

/// Removes the files a primary process's EAL creates in its runtime
/// directory (`config`, `fbarray_*`, `hugepage_info`, `mp_socket*`);
/// anything else there is left alone.
fn remove_primary_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == "config"
            || name == "hugepage_info"
            || name.starts_with("fbarray_")
            || name.starts_with("mp_socket")
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The EAL's runtime directory (`rte_eal_get_runtime_dir`), e.g.
/// `/var/run/dpdk/rte`; `None` without a running EAL.
pub fn runtime_dir() -> Option<std::path::PathBuf> {
    if !eal_running() {
        return None;
    }
    // SAFETY: returns a pointer to a NUL-terminated static buffer inside the
    // EAL, valid while the EAL is up; it is copied out at once.
    let p = unsafe { sys::rte_eal_get_runtime_dir() };
    if p.is_null() {
        return None;
    }
    // SAFETY: p is non-null and NUL-terminated (see above).
    let s = unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned();
    (!s.is_empty()).then(|| std::path::PathBuf::from(s))
}

/// `rte_lcore_id()` of the calling thread: its lcore id on EAL threads,
/// `u32::MAX` (`LCORE_ID_ANY`) on any other thread.
#[inline]
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local initialized to LCORE_ID_ANY; no EAL needed.
    unsafe { sys::cer_lcore_id() }
}

/// The main lcore (the one that ran [`Eal::init`]); 0 before init.
pub fn main_lcore() -> u32 {
    // SAFETY: reads the static EAL configuration; valid at any time.
    unsafe { sys::rte_get_main_lcore() }
}

/// Number of enabled lcores, main included; 0 before init.
pub fn lcore_count() -> u32 {
    // SAFETY: reads the static EAL configuration; valid at any time.
    unsafe { sys::rte_lcore_count() }
}

/// The enabled worker lcores (every enabled lcore but the main one), in
/// increasing order; empty without a running EAL (before init DPDK's lcore
/// table reads as if every lcore were enabled).
pub fn worker_lcores() -> Vec<u32> {
    let mut out = Vec::new();
    if !eal_running() {
        return out;
    }
    // SAFETY: rte_get_next_lcore only reads the static lcore table and
    // returns RTE_MAX_LCORE when there is no next one; (u32::MAX) as the
    // start means "from the beginning" (DPDK's RTE_LCORE_FOREACH uses -1).
    let mut i = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
    while i < sys::CER_MAX_LCORE {
        out.push(i);
        // SAFETY: as above.
        i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
    }
    out
}

/// NUMA socket of an lcore (`rte_lcore_to_socket_id`), 0 for an invalid one.
pub fn lcore_socket(lcore: u32) -> u32 {
    if lcore >= sys::CER_MAX_LCORE {
        return 0;
    }
    // SAFETY: lcore is below RTE_MAX_LCORE, the size of the table read.
    unsafe { sys::rte_lcore_to_socket_id(lcore) }
}

type LcoreFn = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// Entry point DPDK calls on the worker lcore.
unsafe extern "C" fn lcore_trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<LcoreFn> leaked by `launch` for exactly this
    // call; DPDK hands it to exactly one invocation of this function.
    let f: Box<LcoreFn> = unsafe { Box::from_raw(arg.cast::<LcoreFn>()) };
    match catch_unwind(AssertUnwindSafe(move || (*f)())) {
        Ok(rc) => rc,
        Err(_) => {
            log::error!(
                "function launched on lcore {} panicked; wait_lcore returns LCORE_PANICKED",
                lcore_id()
            );
            LCORE_PANICKED
        }
    }
}

/// Runs `f` on worker lcore `lcore` (`rte_eal_remote_launch`). Returns at
/// once; [`wait_lcore`] collects `f`'s return value ([`LCORE_PANICKED`] if
/// it panicked). Must be called from the main lcore, with the target lcore
/// idle (never launched, or already waited for).
pub fn launch(lcore: u32, f: Box<dyn FnOnce() -> i32 + Send + 'static>) -> Result<(), DpdkError> {
    const CALL: &str = "rte_eal_remote_launch";
    require_eal(CALL)?;
    let workers = worker_lcores();
    if !workers.contains(&lcore) {
        return Err(DpdkError::NotAWorker { lcore, workers });
    }
    let me = lcore_id();
    if me != main_lcore() {
        return Err(DpdkError::InvalidArgument {
            call: CALL,
            reason: format!(
                "must be called from the main lcore {}, not from lcore {}",
                main_lcore(),
                if me == u32::MAX {
                    "none (a non-EAL thread)".to_string()
                } else {
                    me.to_string()
                }
            ),
        });
    }
    let arg = Box::into_raw(Box::new(f));
    // SAFETY: lcore is an enabled worker (checked), the trampoline has the
    // lcore_function_t ABI, and arg stays valid until the trampoline takes
    // it back.
    let rc = unsafe { sys::rte_eal_remote_launch(Some(lcore_trampoline), arg.cast(), lcore) };
    match rc {
        0 => Ok(()),
        rc if rc == -libc::EBUSY => {
            // SAFETY: on -EBUSY DPDK stored nothing; the closure was never
            // handed to the worker, so we still own it.
            drop(unsafe { Box::from_raw(arg) });
            Err(DpdkError::call(
                CALL,
                format!("lcore {lcore} (busy: wait_lcore it first)"),
                rc,
            ))
        }
        rc => {
            // On other errors (-EPIPE) DPDK may or may not have handed the
            // closure over; leaking it is the only choice that cannot
            // double-free.
            Err(DpdkError::call(CALL, format!("lcore {lcore}"), rc))
        }
    }
}

/// Waits for the function launched on `lcore` to return and gives its
/// return value (`rte_eal_wait_lcore`); 0 if nothing was launched there,
/// `-EINVAL` for an lcore id out of range. Call it from the main lcore.
pub fn wait_lcore(lcore: u32) -> i32 {
    if lcore >= sys::CER_MAX_LCORE {
        return -libc::EINVAL;
    }
    // SAFETY: lcore indexes the static lcore table (bounds checked above);
    // for an lcore that was never launched DPDK returns 0 at once.
    unsafe { sys::rte_eal_wait_lcore(lcore) }
}

/// True when `lcore` is idle and can be given work with [`launch`].
pub fn lcore_is_idle(lcore: u32) -> bool {
    if lcore >= sys::CER_MAX_LCORE || !eal_running() {
        return false;
    }
    // SAFETY: lcore indexes the static lcore table (bounds checked above).
    unsafe { sys::rte_eal_get_lcore_state(lcore) == sys::WAIT }
}

/// Reads the time-stamp counter (`rte_rdtsc`): cycles since reset.
#[inline]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc is available on every x86_64 CPU and has no memory effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: reads the cycle counter; no memory effects.
        unsafe { sys::cer_rdtsc() }
    }
}

/// Registers this primary process with DPDK's packet capture framework
/// (`rte_pdump_init`), so `dpdk-dumpcap` / `dpdk-pdump` run as secondary
/// processes with the same `--file-prefix` can attach to its ports. Fails
/// (ENOTSUP) when the EAL runs without multi-process support (`--no-shconf`).
pub fn pdump_init() -> Result<(), DpdkError> {
    // SAFETY: called after rte_eal_init on the main thread; registers a
    // multi-process action and a memzone, nothing of ours is passed.
    let rc = unsafe { sys::rte_pdump_init() };
    if rc == 0 {
        Ok(())
    } else {
        Err(DpdkError::from_rte_errno(
            "rte_pdump_init",
            "packet capture framework",
        ))
    }
}

/// Frequency of [`tsc`] in Hz as measured by the EAL (`rte_get_tsc_hz`);
/// 0 before [`Eal::init`].
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a static the EAL sets during init; 0 before.
    unsafe { sys::rte_get_tsc_hz() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_eal_thread_has_no_lcore_id() {
        assert_eq!(lcore_id(), u32::MAX);
        assert_eq!(std::thread::spawn(lcore_id).join().unwrap(), u32::MAX);
    }

    #[test]
    fn tsc_moves_forward() {
        let a = tsc();
        std::thread::sleep(std::time::Duration::from_millis(1));
        let b = tsc();
        assert!(b > a, "tsc went from {a} to {b}");
    }

    #[test]
    fn init_rejects_bad_arguments_before_touching_dpdk() {
        assert!(matches!(
            Eal::init(&[]),
            Err(DpdkError::InvalidArgument { .. })
        ));
        let err = Eal::init(&["prog".into(), "bad\0arg".into()])
            .err()
            .unwrap();
        assert!(err.to_string().contains("NUL"), "{err}");
        // Neither attempt consumed the once-per-process guard.
        assert_eq!(EAL_STATE.load(Ordering::Acquire), STATE_UNINIT);
    }

    #[test]
    fn launch_without_eal_is_an_error() {
        let err = launch(1, Box::new(|| 0)).unwrap_err();
        assert!(matches!(err, DpdkError::EalNotRunning { .. }), "{err}");
        assert_eq!(wait_lcore(u32::MAX), -libc::EINVAL);
        assert!(!lcore_is_idle(u32::MAX));
        assert!(worker_lcores().is_empty());
    }
}
