//! Errors of the DPDK binding: every failed DPDK call is reported with the
//! call's name, what it was called on, and `rte_strerror` of the error code,
//! so a log line alone tells an operator what went wrong.

use std::ffi::CStr;

use dpdk_sys as sys;

/// An error from the DPDK binding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    /// A DPDK call returned an error code (or set `rte_errno`).
    #[error("{call}({context}) failed: {message} (errno {errno})")]
    Call {
        /// The DPDK function, e.g. `rte_eth_dev_configure`.
        call: &'static str,
        /// What it was called on, e.g. `port 0 "net_af_packet0"`.
        context: String,
        /// The positive error code (`rte_errno` or the negated return value).
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// `Eal::init` was called a second time in this process.
    #[error("rte_eal_init was already called in this process; DPDK's EAL can be initialized only once per process")]
    AlreadyInitialized,
    /// An operation that needs a running EAL was attempted without one
    /// (before `Eal::init`, or after the `Eal` was dropped).
    #[error("{call} needs a running DPDK EAL: call Eal::init first (and keep the Eal alive)")]
    EalNotRunning {
        /// The operation that was attempted.
        call: &'static str,
    },
    /// An argument was rejected before calling into DPDK.
    #[error("{call}: invalid argument: {reason}")]
    InvalidArgument {
        /// The operation that was attempted.
        call: &'static str,
        /// Why the argument is invalid, naming the value.
        reason: String,
    },
    /// A port was asked for more queues than its device supports.
    #[error("port {port} {name:?}: {requested} {direction} queues requested, but the device supports at most {max}")]
    TooManyQueues {
        /// The port id.
        port: u16,
        /// The port's device name.
        name: String,
        /// `"rx"` or `"tx"`.
        direction: &'static str,
        /// Queues asked for.
        requested: u16,
        /// Queues the device supports (`rte_eth_dev_info.max_{rx,tx}_queues`).
        max: u16,
    },
    /// No ethdev port has the given device name.
    #[error("no DPDK port named {name:?} (ports: {available}); check the --vdev / PCI allow-list EAL arguments")]
    NoSuchPort {
        /// The name looked up.
        name: String,
        /// Names of the ports that do exist, comma separated.
        available: String,
    },
    /// EAL teardown left DPDK in place because something still uses it.
    #[error("skipping rte_eal_cleanup: {reason}")]
    CleanupSkipped {
        /// What is still alive.
        reason: String,
    },
    /// `launch` was given an lcore that is not an enabled worker lcore.
    #[error("lcore {lcore} is not an enabled worker lcore (workers: {workers:?}); check the EAL -l/--lcores argument")]
    NotAWorker {
        /// The lcore asked for.
        lcore: u32,
        /// The enabled worker lcores.
        workers: Vec<u32>,
    },
}

impl DpdkError {
    /// Builds a [`DpdkError::Call`] from an explicit positive error code.
    pub fn call(call: &'static str, context: impl Into<String>, errno: i32) -> DpdkError {
        let errno = errno.abs();
        DpdkError::Call {
            call,
            context: context.into(),
            errno,
            message: strerror(errno),
        }
    }

    /// Builds a [`DpdkError::Call`] from the calling thread's `rte_errno`,
    /// for DPDK calls that signal failure with -1 or NULL.
    pub fn from_rte_errno(call: &'static str, context: impl Into<String>) -> DpdkError {
        DpdkError::call(call, context, rte_errno())
    }

    /// The positive error code of a failed DPDK call, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DpdkError::Call { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// The calling thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int; valid before and after EAL init.
    unsafe { sys::cer_errno() }
}

/// `rte_strerror(errno)` as an owned string: DPDK's own codes
/// (`E_RTE_SECONDARY`, `E_RTE_NO_CONFIG`) and the libc ones.
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any int, needs no EAL, and returns a
    // pointer to a NUL-terminated string (static, or a per-thread buffer
    // that stays valid until the next call on this thread); it is copied
    // out before anything else runs on this thread.
    unsafe {
        let p = sys::rte_strerror(errno);
        if p.is_null() {
            format!("error {errno}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_error_names_call_context_and_strerror() {
        let e = DpdkError::call(
            "rte_eth_dev_configure",
            "port 0 \"net_tap0\"",
            -libc::EINVAL,
        );
        assert_eq!(e.errno(), Some(libc::EINVAL));
        let text = e.to_string();
        assert_eq!(
            text,
            "rte_eth_dev_configure(port 0 \"net_tap0\") failed: Invalid argument (errno 22)"
        );
    }

    #[test]
    fn dpdk_specific_errno_has_dpdk_text() {
        // E_RTE_SECONDARY is __ELASTERROR (1000) + 1.
        let text = strerror(1001);
        assert!(text.contains("secondary"), "{text}");
    }

    #[test]
    fn too_many_queues_names_both_numbers() {
        let e = DpdkError::TooManyQueues {
            port: 3,
            name: "net_af_packet0".into(),
            direction: "rx",
            requested: 8,
            max: 1,
        };
        let text = e.to_string();
        assert!(text.contains("8 rx queues requested"), "{text}");
        assert!(text.contains("at most 1"), "{text}");
        assert_eq!(e.errno(), None);
    }

    #[test]
    fn from_rte_errno_reads_the_thread_local() {
        // SAFETY: writes the calling thread's rte_errno.
        unsafe { sys::cer_set_errno(libc::ENOMEM) };
        let e = DpdkError::from_rte_errno("rte_pktmbuf_pool_create", "name \"p\"");
        assert_eq!(e.errno(), Some(libc::ENOMEM));
        assert!(e.to_string().contains("Cannot allocate memory"), "{e}");
    }
}
