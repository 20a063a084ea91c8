//! Build script for `dpdk-sys`: finds the system DPDK 22.11 with pkg-config,
//! compiles the C shim (`csrc/shim.c`) over DPDK's static inline functions
//! with DPDK's own cflags, and generates Rust declarations with bindgen.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Oldest and first unsupported DPDK release: the binding is written and
/// tested against the 22.11 LTS ABI (shared objects `*.so.23`).
const DPDK_MIN: &str = "22.11";
const DPDK_MAX_EXCLUSIVE: &str = "22.12";

const INSTALL_HINT: &str = "install the system DPDK with \
     `apt-get install libdpdk-dev dpdk pkg-config libclang-dev` (Debian 12 ships DPDK 22.11)";

/// Functions the binding declares. Everything else stays out of the
/// generated file to keep it small and reviewable.
const FUNCTIONS: &[&str] = &[
    // EAL, lcores, launch, time, errors
    "rte_eal_init",
    "rte_eal_cleanup",
    "rte_eal_get_runtime_dir",
    "rte_strerror",
    "rte_get_main_lcore",
    "rte_lcore_count",
    "rte_lcore_is_enabled",
    "rte_get_next_lcore",
    "rte_lcore_to_socket_id",
    "rte_socket_id",
    "rte_eal_remote_launch",
    "rte_eal_wait_lcore",
    "rte_eal_mp_wait_lcore",
    "rte_eal_get_lcore_state",
    "rte_get_tsc_hz",
    // packet capture framework (dpdk-dumpcap, dpdk-pdump attach to it)
    "rte_pdump_init",
    // mempool / mbuf
    "rte_pktmbuf_pool_create",
    "rte_mempool_free",
    "rte_mempool_lookup",
    "rte_mempool_avail_count",
    "rte_mempool_in_use_count",
    // ethdev
    "rte_eth_dev_count_avail",
    "rte_eth_dev_count_total",
    "rte_eth_dev_is_valid_port",
    "rte_eth_find_next_owned_by",
    "rte_eth_dev_get_port_by_name",
    "rte_eth_dev_get_name_by_port",
    "rte_eth_dev_info_get",
    "rte_eth_dev_configure",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_socket_id",
    "rte_eth_dev_set_mtu",
    "rte_eth_dev_get_mtu",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_dev_close",
    "rte_eth_macaddr_get",
    "rte_eth_dev_default_mac_addr_set",
    "rte_eth_link_get_nowait",
    "rte_eth_stats_get",
    "rte_eth_stats_reset",
    "rte_eth_promiscuous_enable",
    "rte_eth_promiscuous_disable",
    "rte_eth_promiscuous_get",
    // receive interrupts (event-driven idle wake-up of polling cores)
    "rte_eth_dev_rx_intr_enable",
    "rte_eth_dev_rx_intr_disable",
    "rte_eth_dev_rx_intr_ctl_q_get_fd",
    // hot-plug of devices after EAL init (e.g. the exception-path TAP)
    "rte_dev_probe",
    // our shim
    "cer_.*",
];

const TYPES: &[&str] = &[
    "rte_mbuf",
    "rte_mempool",
    "rte_eth_conf",
    "rte_eth_dev_info",
    "rte_eth_stats",
    "rte_eth_link",
    "rte_ether_addr",
    "rte_eth_rxconf",
    "rte_eth_txconf",
    "rte_lcore_state_t",
    "lcore_function_t",
    "cer_mbuf_layout",
];

const VARS: &[&str] = &[
    "CER_.*",
    "RTE_ETH_MQ_RX_.*",
    "RTE_ETH_MQ_TX_.*",
    "RTE_ETH_LINK_UP",
    "RTE_ETH_LINK_DOWN",
    "RTE_ETH_LINK_FULL_DUPLEX",
    "RTE_ETH_LINK_HALF_DUPLEX",
    "RTE_ETH_SPEED_NUM_NONE",
    "RTE_ETH_SPEED_NUM_UNKNOWN",
    "RTE_ETH_DEV_NO_OWNER",
    "RTE_ETHER_ADDR_LEN",
    "RTE_ETHER_MTU",
    "SOCKET_ID_ANY",
];

/// Structs bindgen must not lay out field by field: we only ever hold
/// pointers to them, and their definitions carry cache-line alignment and
/// per-lcore arrays that are irrelevant to Rust.
const OPAQUE: &[&str] = &["rte_mempool", "rte_mbuf_ext_shared_info"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let csrc = manifest_dir.join("csrc");
    for f in ["shim.c", "shim.h", "bindings.h"] {
        println!("cargo:rerun-if-changed={}", csrc.join(f).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");

    let lib = pkg_config::Config::new()
        .range_version(DPDK_MIN..DPDK_MAX_EXCLUSIVE)
        .cargo_metadata(true)
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!(
                "dpdk-sys needs libdpdk {DPDK_MIN}.x found through pkg-config: {e}\n{INSTALL_HINT}"
            )
        });

    let cflags = dpdk_cflags();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    compile_shim(&csrc, &cflags);
    generate_bindings(&csrc, &cflags, &out_dir);
    write_build_facts(&lib, &out_dir);

    // Let dependents (links = "dpdk") see where the headers are.
    if let Some(inc) = lib.include_paths.first() {
        println!("cargo:include={}", inc.display());
    }
    println!("cargo:version={}", lib.version);
}

/// The full `pkg-config --cflags libdpdk`, including `-include rte_config.h`
/// and DPDK's `-march=` baseline (corei7 on Debian's x86_64 build), which
/// the pkg-config crate does not expose. `-march=native` is refused: the
/// build must not depend on the build machine's CPU.
fn dpdk_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let out = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{pkg_config} --cflags libdpdk`: {e}\n{INSTALL_HINT}")
        });
    if !out.status.success() {
        panic!(
            "`{pkg_config} --cflags libdpdk` failed: {}\n{INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout).expect("pkg-config output is not UTF-8");
    let mut flags = Vec::new();
    for flag in text.split_whitespace() {
        if flag == "-march=native" || flag == "-mtune=native" {
            println!("cargo:warning=dropping `{flag}` from libdpdk cflags: builds must not depend on the build host CPU");
            continue;
        }
        flags.push(flag.to_string());
    }
    flags
}

fn compile_shim(csrc: &Path, cflags: &[String]) {
    let mut build = cc::Build::new();
    build
        .file(csrc.join("shim.c"))
        .include(csrc)
        // The shim is fast-path glue: keep it optimized in debug builds too.
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        // DPDK's own headers trip these with -Wextra.
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-sign-compare");
    for f in cflags {
        build.flag(f);
    }
    build.compile("cer_dpdk_shim");
}

fn generate_bindings(csrc: &Path, cflags: &[String], out_dir: &Path) {
    let mut builder = bindgen::Builder::default()
        .header(csrc.join("bindings.h").to_string_lossy())
        .clang_arg(format!("-I{}", csrc.display()))
        .clang_args(cflags.iter())
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_debug(false)
        .generate_comments(false)
        .layout_tests(true)
        .allowlist_recursively(true);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    for o in OPAQUE {
        builder = builder.opaque_type(o);
    }
    let bindings = builder.generate().unwrap_or_else(|e| {
        panic!("bindgen failed on the DPDK headers: {e}\n(bindgen needs libclang: {INSTALL_HINT})")
    });
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("cannot write bindings.rs");
}

/// Facts about the DPDK installation for diagnostics at run time: its
/// version and the directory EAL loads poll-mode driver plugins from.
fn write_build_facts(lib: &pkg_config::Library, out_dir: &Path) {
    let libdir = lib
        .link_paths
        .first()
        .cloned()
        .or_else(|| pkg_variable("libdir").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/usr/lib"));
    let pmd_dir = std::fs::read_dir(libdir.join("dpdk"))
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("pmds-"))
                })
                .max()
        })
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let facts = format!(
        "/// Version of the DPDK the binding was generated from (pkg-config).\n\
         pub const DPDK_VERSION: &str = {:?};\n\
         /// Directory of the DPDK poll-mode driver plugins found at build time\n\
         /// (empty if none was found). EAL loads every plugin in its built-in\n\
         /// plugin directory when DPDK is linked as shared libraries.\n\
         pub const PMD_DIR: &str = {:?};\n",
        lib.version, pmd_dir
    );
    std::fs::write(out_dir.join("build_facts.rs"), facts).expect("cannot write build_facts.rs");
}

fn pkg_variable(name: &str) -> Option<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let out = Command::new(pkg_config)
        .args([&format!("--variable={name}"), "libdpdk"])
        .output()
        .ok()?;
    let v = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!v.is_empty()).then_some(v)
}
