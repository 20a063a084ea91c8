//! Ethernet ports (`rte_ethdev`): lookup by device name, configuration
//! (queues, descriptors, RSS, MTU, promiscuous mode), start/stop/close,
//! link, MAC and statistics, and the burst receive/transmit fast path.

use std::ffi::{c_char, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU16, Ordering};

use arrayvec::ArrayVec;
use dpdk_sys as sys;

use crate::eal::require_eal;
use crate::error::DpdkError;
use crate::mbuf::Mbuf;
use crate::mempool::Mempool;

const MAX_PORTS: usize = sys::CER_MAX_ETHPORTS as usize;

/// What this crate configured on a port: the mempool its receive queues
/// draw from (so the pool is not freed under the device), the configured
/// queue counts, and the queue counts the fast path may use right now
/// (the configured ones while the port is started, else 0), so bursts on
/// unconfigured queues or stopped ports never reach the driver.
struct PortSlot {
    pool: AtomicPtr<sys::rte_mempool>,
    rx_queues: AtomicU16,
    tx_queues: AtomicU16,
    rx_active: AtomicU16,
    tx_active: AtomicU16,
    started: AtomicBool,
}

impl PortSlot {
    const fn new() -> PortSlot {
        PortSlot {
            pool: AtomicPtr::new(ptr::null_mut()),
            rx_queues: AtomicU16::new(0),
            tx_queues: AtomicU16::new(0),
            rx_active: AtomicU16::new(0),
            tx_active: AtomicU16::new(0),
            started: AtomicBool::new(false),
        }
    }

    /// Closes the fast path (before the driver is stopped or reconfigured).
    fn deactivate(&self) {
        self.rx_active.store(0, Ordering::Release);
        self.tx_active.store(0, Ordering::Release);
    }

    /// Opens the fast path on the configured queues (after a start).
    fn activate(&self) {
        self.rx_active
            .store(self.rx_queues.load(Ordering::Acquire), Ordering::Release);
        self.tx_active
            .store(self.tx_queues.load(Ordering::Acquire), Ordering::Release);
    }

    fn clear(&self) {
        self.deactivate();
        self.rx_queues.store(0, Ordering::Release);
        self.tx_queues.store(0, Ordering::Release);
        self.pool.store(ptr::null_mut(), Ordering::Release);
        self.started.store(false, Ordering::Release);
    }
}

static PORT_SLOTS: [PortSlot; MAX_PORTS] = [const { PortSlot::new() }; MAX_PORTS];

/// True if a port configured by this crate (and not closed) uses `pool`.
pub(crate) fn pool_in_use_by_port(pool: *mut sys::rte_mempool) -> bool {
    PORT_SLOTS
        .iter()
        .any(|s| s.pool.load(Ordering::Acquire) == pool)
}

/// An ethdev port, by id. `Copy`: it is only a handle; the device lives
/// until [`Port::close`] (or [`crate::Eal`] teardown).
///
/// Threading: the slow-path methods may be called from any thread, but not
/// concurrently with each other on the same port. As in DPDK, each receive
/// queue and each transmit queue must be polled by one thread at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    id: u16,
}

/// How to set a port up ([`Port::configure`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSetup {
    /// Receive queues (one per polling core that reads this port).
    pub rx_queues: u16,
    /// Transmit queues (one per polling core that sends on this port).
    pub tx_queues: u16,
    /// Receive descriptors per queue (clamped to the device's limits).
    pub rx_desc: u16,
    /// Transmit descriptors per queue (clamped to the device's limits).
    pub tx_desc: u16,
    /// MTU to set (L3 bytes, without Ethernet header); `None` keeps the
    /// device's current one.
    pub mtu: Option<u16>,
    /// Spread received flows over the receive queues by RSS (used only
    /// with more than one receive queue and when the device supports it).
    pub rss: bool,
    /// Receive frames for any destination MAC.
    pub promiscuous: bool,
    /// Per-queue receive interrupts (`intr_conf.rxq`), so an idle core can
    /// sleep on [`Port::rx_intr_fd`] instead of polling. Only for drivers
    /// that have them (tap, virtio_user, vhost; not af_packet, af_xdp,
    /// memif): `configure` fails on the others.
    pub rx_interrupts: bool,
}

impl Default for PortSetup {
    /// One queue each way, 1024 descriptors, device MTU, no RSS, not
    /// promiscuous.
    fn default() -> PortSetup {
        PortSetup {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            rss: false,
            promiscuous: false,
            rx_interrupts: false,
        }
    }
}

/// Link state of a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Carrier is up.
    pub up: bool,
    /// Speed in Mbit/s; 0 when unknown or not applicable.
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Basic counters of a port (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped by the device because no receive descriptor was
    /// free (the polling core is too slow).
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive failures because the mempool was empty.
    pub rx_nombuf: u64,
}

/// Clamps a requested queue count against the device maximum.
fn check_queue_count(
    port: u16,
    name: &str,
    direction: &'static str,
    requested: u16,
    max: u16,
) -> Result<(), DpdkError> {
    if requested == 0 {
        return Err(DpdkError::InvalidArgument {
            call: "Port::configure",
            reason: format!("port {port} {name:?}: at least one {direction} queue is needed"),
        });
    }
    if requested > max {
        return Err(DpdkError::TooManyQueues {
            port,
            name: name.to_string(),
            direction,
            requested,
            max,
        });
    }
    Ok(())
}

/// The `rte_eth_conf` for `setup` on a device described by `info`.
fn eth_conf(setup: &PortSetup, info: &sys::rte_eth_dev_info) -> sys::rte_eth_conf {
    let mut conf = sys::rte_eth_conf::default();
    if setup.rss && setup.rx_queues > 1 {
        let hf = (sys::CER_ETH_RSS_IP | sys::CER_ETH_RSS_TCP | sys::CER_ETH_RSS_UDP)
            & info.flow_type_rss_offloads;
        if hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = ptr::null_mut(); // device default key
            conf.rx_adv_conf.rss_conf.rss_hf = hf;
            if info.rx_offload_capa & sys::CER_ETH_RX_OFFLOAD_RSS_HASH != 0 {
                conf.rxmode.offloads |= sys::CER_ETH_RX_OFFLOAD_RSS_HASH;
            }
        }
    }
    if let Some(mtu) = setup.mtu {
        conf.rxmode.mtu = u32::from(mtu);
    }
    if setup.rx_interrupts {
        conf.intr_conf.set_rxq(1);
    }
    conf
}

impl Port {
    /// The port whose device has this name (`rte_eth_dev_get_port_by_name`),
    /// e.g. `net_af_packet0`, `net_tap0` or a PCI address `0000:03:00.0`.
    pub fn by_name(dev_name: &str) -> Result<Port, DpdkError> {
        const CALL: &str = "rte_eth_dev_get_port_by_name";
        let cname = CString::new(dev_name).map_err(|_| DpdkError::InvalidArgument {
            call: CALL,
            reason: format!("device name {dev_name:?} contains a NUL byte"),
        })?;
        let mut id = 0u16;
        // SAFETY: cname is a valid C string and id a valid out pointer for
        // the duration of the call; only the static port table is read.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if rc != 0 {
            let available = Port::all()
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(DpdkError::NoSuchPort {
                name: dev_name.to_string(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available
                },
            });
        }
        Ok(Port { id })
    }

    /// The port with this id, if it exists (`rte_eth_dev_is_valid_port`).
    pub fn from_id(id: u16) -> Result<Port, DpdkError> {
        // SAFETY: validates the id against the static port table.
        if usize::from(id) < MAX_PORTS && unsafe { sys::rte_eth_dev_is_valid_port(id) } == 1 {
            Ok(Port { id })
        } else {
            Err(DpdkError::call(
                "rte_eth_dev_is_valid_port",
                format!("port {id}"),
                libc::ENODEV,
            ))
        }
    }

    /// Hot-plugs a device after EAL init (`rte_dev_probe`) from a devargs
    /// string like the `--vdev` argument, e.g. `net_tap1,iface=cer-tap1`,
    /// and returns its port (the one named by the part before the comma).
    pub fn attach(devargs: &str) -> Result<Port, DpdkError> {
        const CALL: &str = "rte_dev_probe";
        require_eal(CALL)?;
        let cargs = CString::new(devargs).map_err(|_| DpdkError::InvalidArgument {
            call: CALL,
            reason: format!("devargs {devargs:?} contain a NUL byte"),
        })?;
        // SAFETY: cargs is a valid C string for the duration of the call.
        let rc = unsafe { sys::rte_dev_probe(cargs.as_ptr()) };
        if rc != 0 {
            return Err(DpdkError::call(CALL, format!("{devargs:?}"), rc));
        }
        let name = devargs.split(',').next().unwrap_or(devargs);
        Port::by_name(name)
    }

    /// Number of ports available to the application (`rte_eth_dev_count_avail`).
    pub fn count() -> u16 {
        // SAFETY: reads the static port table.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// All available ports, in id order.
    pub fn all() -> Vec<Port> {
        let mut out = Vec::new();
        let max = MAX_PORTS as u64;
        // SAFETY: rte_eth_find_next_owned_by reads the static port table and
        // returns RTE_MAX_ETHPORTS when there is no further port; this is
        // DPDK's RTE_ETH_FOREACH_DEV.
        let mut p =
            unsafe { sys::rte_eth_find_next_owned_by(0, u64::from(sys::RTE_ETH_DEV_NO_OWNER)) };
        while p < max {
            out.push(Port { id: p as u16 });
            // SAFETY: as above; p + 1 <= RTE_MAX_ETHPORTS.
            p = unsafe {
                sys::rte_eth_find_next_owned_by(p as u16 + 1, u64::from(sys::RTE_ETH_DEV_NO_OWNER))
            };
        }
        out
    }

    /// The port id.
    #[inline]
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name (`rte_eth_dev_get_name_by_port`); empty if the port
    /// no longer exists.
    pub fn name(&self) -> String {
        let mut buf = [0 as c_char; sys::CER_ETH_NAME_MAX_LEN as usize];
        // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes, the size DPDK writes at
        // most (NUL included).
        let rc = unsafe { sys::rte_eth_dev_get_name_by_port(self.id, buf.as_mut_ptr()) };
        if rc != 0 {
            return String::new();
        }
        // SAFETY: on success buf holds a NUL-terminated string.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    fn context(&self) -> String {
        format!("port {} {:?}", self.id, self.name())
    }

    fn dev_info(&self) -> Result<sys::rte_eth_dev_info, DpdkError> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out pointer; DPDK validates the port id.
        let rc = unsafe { sys::rte_eth_dev_info_get(self.id, &mut info) };
        if rc != 0 {
            return Err(DpdkError::call("rte_eth_dev_info_get", self.context(), rc));
        }
        Ok(info)
    }

    /// The poll-mode driver's name, e.g. `net_af_packet`; empty if unknown.
    pub fn driver_name(&self) -> String {
        match self.dev_info() {
            Ok(info) if !info.driver_name.is_null() => {
                // SAFETY: driver_name points to the driver's static name.
                unsafe { CStr::from_ptr(info.driver_name) }
                    .to_string_lossy()
                    .into_owned()
            }
            _ => String::new(),
        }
    }

    /// Most receive queues the device supports (0 if unknown).
    pub fn max_rx_queues(&self) -> u16 {
        self.dev_info().map(|i| i.max_rx_queues).unwrap_or(0)
    }

    /// Most transmit queues the device supports (0 if unknown).
    pub fn max_tx_queues(&self) -> u16 {
        self.dev_info().map(|i| i.max_tx_queues).unwrap_or(0)
    }

    /// NUMA socket of the device (`rte_eth_dev_socket_id`), or
    /// [`crate::SOCKET_ANY`] when unknown (virtual devices).
    pub fn socket(&self) -> i32 {
        // SAFETY: DPDK validates the port id.
        unsafe { sys::rte_eth_dev_socket_id(self.id) }
    }

    /// Configures a stopped port: `rte_eth_dev_configure` (RSS over IP/TCP/
    /// UDP when `setup.rss`, more than one receive queue and the device
    /// supports it), descriptor counts clamped with
    /// `rte_eth_dev_adjust_nb_rx_tx_desc`, receive queues drawing from
    /// `pool` and transmit queues set up on the port's NUMA socket, the MTU
    /// and promiscuous mode. Fails if the device has fewer queues than asked.
    pub fn configure(&self, setup: &PortSetup, pool: &Mempool) -> Result<(), DpdkError> {
        require_eal("rte_eth_dev_configure")?;
        let info = self.dev_info()?;
        let name = self.name();
        check_queue_count(self.id, &name, "rx", setup.rx_queues, info.max_rx_queues)?;
        check_queue_count(self.id, &name, "tx", setup.tx_queues, info.max_tx_queues)?;
        if let Some(mtu) = setup.mtu {
            if mtu < info.min_mtu || mtu > info.max_mtu {
                return Err(DpdkError::InvalidArgument {
                    call: "rte_eth_dev_configure",
                    reason: format!(
                        "port {} {name:?}: MTU {mtu} outside the device's range {}..={}",
                        self.id, info.min_mtu, info.max_mtu
                    ),
                });
            }
        }
        let conf = eth_conf(setup, &info);
        if setup.rss && setup.rx_queues > 1 && conf.rxmode.mq_mode != sys::RTE_ETH_MQ_RX_RSS {
            log::warn!(
                "port {} {name:?}: driver {:?} offers no RSS configuration for IP/TCP/UDP; \
                 how received flows spread over the {} rx queues is up to the driver \
                 (af_packet uses kernel fanout, others may deliver everything to queue 0)",
                self.id,
                self.driver_name(),
                setup.rx_queues
            );
        }

        let slot = &PORT_SLOTS[usize::from(self.id)];
        if slot.started.load(Ordering::Acquire) {
            return Err(DpdkError::call(
                "rte_eth_dev_configure",
                format!("{}: the port is started, stop it first", self.context()),
                libc::EBUSY,
            ));
        }
        // The fast path stays closed while queues are being (re)built.
        slot.deactivate();
        slot.rx_queues.store(0, Ordering::Release);
        slot.tx_queues.store(0, Ordering::Release);

        // SAFETY: conf is a fully initialized rte_eth_conf that outlives the
        // call; DPDK validates the port id and the queue counts.
        let rc =
            unsafe { sys::rte_eth_dev_configure(self.id, setup.rx_queues, setup.tx_queues, &conf) };
        if rc != 0 {
            return Err(DpdkError::call(
                "rte_eth_dev_configure",
                format!(
                    "{}, {} rx / {} tx queues",
                    self.context(),
                    setup.rx_queues,
                    setup.tx_queues
                ),
                rc,
            ));
        }

        let (mut rx_desc, mut tx_desc) = (setup.rx_desc, setup.tx_desc);
        // SAFETY: both are valid in/out pointers for the duration of the call.
        let rc =
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rx_desc, &mut tx_desc) };
        if rc != 0 {
            return Err(DpdkError::call(
                "rte_eth_dev_adjust_nb_rx_tx_desc",
                self.context(),
                rc,
            ));
        }
        if (rx_desc, tx_desc) != (setup.rx_desc, setup.tx_desc) {
            log::info!(
                "port {} {name:?}: descriptors adjusted to the device limits: rx {} -> {rx_desc}, tx {} -> {tx_desc}",
                self.id,
                setup.rx_desc,
                setup.tx_desc
            );
        }

        // SOCKET_ID_ANY (-1) is passed through as DPDK's unsigned "any".
        let socket = self.socket() as u32;
        // Record the pool before the receive queues start holding its mbufs.
        slot.pool.store(pool.as_ptr(), Ordering::Release);
        for q in 0..setup.rx_queues {
            // SAFETY: the port is configured with rx_queues queues (q is in
            // range); a NULL rx_conf selects the device defaults; pool is a
            // live packet mempool recorded in the slot, so it is not freed
            // while the port uses it.
            let rc = unsafe {
                sys::rte_eth_rx_queue_setup(self.id, q, rx_desc, socket, ptr::null(), pool.as_ptr())
            };
            if rc != 0 {
                return Err(DpdkError::call(
                    "rte_eth_rx_queue_setup",
                    format!(
                        "{}, queue {q}, {rx_desc} descriptors, socket {}",
                        self.context(),
                        self.socket()
                    ),
                    rc,
                ));
            }
        }
        for q in 0..setup.tx_queues {
            // SAFETY: as above; a NULL tx_conf selects the device defaults.
            let rc =
                unsafe { sys::rte_eth_tx_queue_setup(self.id, q, tx_desc, socket, ptr::null()) };
            if rc != 0 {
                return Err(DpdkError::call(
                    "rte_eth_tx_queue_setup",
                    format!(
                        "{}, queue {q}, {tx_desc} descriptors, socket {}",
                        self.context(),
                        self.socket()
                    ),
                    rc,
                ));
            }
        }

        if let Some(mtu) = setup.mtu {
            // rxmode.mtu already told ethdev; this also applies it to the
            // device (e.g. the kernel interface under af_packet or tap).
            // SAFETY: DPDK validates the port id.
            let rc = unsafe { sys::rte_eth_dev_set_mtu(self.id, mtu) };
            if rc == -libc::ENOTSUP {
                log::debug!(
                    "port {} {name:?}: driver has no MTU setter; ethdev MTU is {mtu}",
                    self.id
                );
            } else if rc != 0 {
                return Err(DpdkError::call(
                    "rte_eth_dev_set_mtu",
                    format!("{}, MTU {mtu}", self.context()),
                    rc,
                ));
            }
        }

        if setup.promiscuous {
            // SAFETY: DPDK validates the port id.
            let rc = unsafe { sys::rte_eth_promiscuous_enable(self.id) };
            if rc != 0 {
                return Err(DpdkError::call(
                    "rte_eth_promiscuous_enable",
                    self.context(),
                    rc,
                ));
            }
        } else {
            // SAFETY: DPDK validates the port id.
            let rc = unsafe { sys::rte_eth_promiscuous_disable(self.id) };
            if rc != 0 && rc != -libc::ENOTSUP {
                log::debug!(
                    "{}",
                    DpdkError::call("rte_eth_promiscuous_disable", self.context(), rc)
                );
            }
        }

        slot.rx_queues.store(setup.rx_queues, Ordering::Release);
        slot.tx_queues.store(setup.tx_queues, Ordering::Release);
        Ok(())
    }

    /// Starts a configured port (`rte_eth_dev_start`).
    pub fn start(&self) -> Result<(), DpdkError> {
        require_eal("rte_eth_dev_start")?;
        // SAFETY: DPDK validates the port id and its configuration.
        let rc = unsafe { sys::rte_eth_dev_start(self.id) };
        if rc != 0 {
            return Err(DpdkError::call("rte_eth_dev_start", self.context(), rc));
        }
        let slot = &PORT_SLOTS[usize::from(self.id)];
        slot.started.store(true, Ordering::Release);
        slot.activate();
        Ok(())
    }

    /// True between a successful [`Port::start`] and [`Port::stop`] / [`Port::close`].
    pub fn is_started(&self) -> bool {
        PORT_SLOTS[usize::from(self.id)]
            .started
            .load(Ordering::Acquire)
    }

    /// Stops the port (`rte_eth_dev_stop`); its queues stay configured.
    /// Bursts on a stopped port return 0.
    pub fn stop(&self) -> Result<(), DpdkError> {
        require_eal("rte_eth_dev_stop")?;
        let slot = &PORT_SLOTS[usize::from(self.id)];
        slot.deactivate();
        // SAFETY: DPDK validates the port id.
        let rc = unsafe { sys::rte_eth_dev_stop(self.id) };
        if rc != 0 {
            if slot.started.load(Ordering::Acquire) {
                slot.activate();
            }
            return Err(DpdkError::call("rte_eth_dev_stop", self.context(), rc));
        }
        slot.started.store(false, Ordering::Release);
        Ok(())
    }

    /// Stops (if needed) and closes the port, releasing the device
    /// (`rte_eth_dev_close`); the id becomes invalid. Errors are logged.
    pub fn close(&self) {
        if !crate::eal::eal_running() {
            return;
        }
        let context = self.context();
        let slot = &PORT_SLOTS[usize::from(self.id)];
        slot.deactivate();
        if slot.started.swap(false, Ordering::AcqRel) {
            // SAFETY: DPDK validates the port id.
            let rc = unsafe { sys::rte_eth_dev_stop(self.id) };
            if rc != 0 && rc != -libc::ENODEV {
                log::warn!(
                    "{}",
                    DpdkError::call("rte_eth_dev_stop", context.clone(), rc)
                );
            }
        }
        // SAFETY: DPDK validates the port id; the port is stopped.
        let rc = unsafe { sys::rte_eth_dev_close(self.id) };
        if rc != 0 && rc != -libc::ENODEV {
            log::warn!("{}", DpdkError::call("rte_eth_dev_close", context, rc));
        }
        // The queues (and the mbufs they held) are released.
        slot.clear();
    }

    /// The port's MAC address (`rte_eth_macaddr_get`); all zeros if the
    /// port no longer exists.
    pub fn mac(&self) -> [u8; 6] {
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: addr is a valid out pointer; DPDK validates the port id.
        let rc = unsafe { sys::rte_eth_macaddr_get(self.id, &mut addr) };
        if rc != 0 {
            log::debug!(
                "{}",
                DpdkError::call("rte_eth_macaddr_get", self.context(), rc)
            );
            return [0; 6];
        }
        addr.addr_bytes
    }

    /// Sets the port's MAC address (`rte_eth_dev_default_mac_addr_set`).
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        require_eal("rte_eth_dev_default_mac_addr_set")?;
        let mut addr = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: addr is valid for the duration of the call; DPDK validates
        // the port id.
        let rc = unsafe { sys::rte_eth_dev_default_mac_addr_set(self.id, &mut addr) };
        if rc != 0 {
            return Err(DpdkError::call(
                "rte_eth_dev_default_mac_addr_set",
                format!("{}, {}", self.context(), format_mac(&mac)),
                rc,
            ));
        }
        Ok(())
    }

    /// Link state without waiting (`rte_eth_link_get_nowait`); down if it
    /// cannot be read.
    pub fn link(&self) -> LinkStatus {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: link is a valid out pointer; DPDK validates the port id.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) };
        if rc != 0 {
            log::debug!(
                "{}",
                DpdkError::call("rte_eth_link_get_nowait", self.context(), rc)
            );
            return LinkStatus::default();
        }
        let speed = link.link_speed;
        LinkStatus {
            up: u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP,
            speed_mbps: if speed == sys::RTE_ETH_SPEED_NUM_UNKNOWN {
                0
            } else {
                speed
            },
            full_duplex: u32::from(link.link_duplex()) == sys::RTE_ETH_LINK_FULL_DUPLEX,
        }
    }

    /// The port's basic counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: s is a valid out pointer; DPDK validates the port id.
        let rc = unsafe { sys::rte_eth_stats_get(self.id, &mut s) };
        if rc != 0 {
            return Err(DpdkError::call("rte_eth_stats_get", self.context(), rc));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Zeroes the port's basic counters (`rte_eth_stats_reset`).
    pub fn reset_stats(&self) -> Result<(), DpdkError> {
        // SAFETY: DPDK validates the port id.
        let rc = unsafe { sys::rte_eth_stats_reset(self.id) };
        if rc != 0 {
            return Err(DpdkError::call("rte_eth_stats_reset", self.context(), rc));
        }
        Ok(())
    }

    /// Receives up to the spare capacity of `out` from receive queue
    /// `queue` (`rte_eth_rx_burst`), appending to `out`; returns how many
    /// arrived. Never allocates or blocks. Returns 0 (without calling the
    /// driver) for a queue that is not configured or a port not started.
    #[inline]
    pub fn rx_burst<const N: usize>(&self, queue: u16, out: &mut ArrayVec<Mbuf, N>) -> usize {
        let len = out.len();
        let room = (N - len).min(usize::from(u16::MAX)) as u16;
        if room == 0
            || queue
                >= PORT_SLOTS[usize::from(self.id)]
                    .rx_active
                    .load(Ordering::Relaxed)
        {
            return 0;
        }
        // SAFETY: the queue is configured on this port (checked above); the
        // spare capacity has `room` slots for *mut rte_mbuf (Mbuf is a
        // transparent non-null pointer) and DPDK initializes the first `n`
        // of them with owned, non-null mbufs.
        unsafe {
            let slots = out.as_mut_ptr().add(len).cast::<*mut sys::rte_mbuf>();
            let n = usize::from(sys::cer_eth_rx_burst(self.id, queue, slots, room));
            out.set_len(len + n);
            n
        }
    }

    /// Sends `bufs` on transmit queue `queue` (`rte_eth_tx_burst`); returns
    /// how many were taken. The sent mbufs (a prefix) are removed from
    /// `bufs`, now owned by the driver; the unsent ones stay in `bufs`, in
    /// order, for the caller to retry or drop. Never allocates or blocks.
    /// Sends nothing on a queue that is not configured or a port not started.
    #[inline]
    pub fn tx_burst<const N: usize>(&self, queue: u16, bufs: &mut ArrayVec<Mbuf, N>) -> usize {
        let len = bufs.len().min(usize::from(u16::MAX));
        if len == 0
            || queue
                >= PORT_SLOTS[usize::from(self.id)]
                    .tx_active
                    .load(Ordering::Relaxed)
        {
            return 0;
        }
        let total = bufs.len();
        // SAFETY: the queue is configured on this port (checked above); the
        // first `len` slots hold owned mbufs. DPDK takes ownership of the
        // first `n`; they are overwritten by moving the unsent tail to the
        // front (a raw move: nothing is dropped or duplicated) and the
        // length is cut to the unsent count.
        unsafe {
            let slots = bufs.as_mut_ptr().cast::<*mut sys::rte_mbuf>();
            let n = usize::from(sys::cer_eth_tx_burst(self.id, queue, slots, len as u16));
            if n > 0 {
                if n < total {
                    ptr::copy(slots.add(n), slots, total - n);
                }
                bufs.set_len(total - n);
            }
            n
        }
    }
}

impl Port {
    /// The file descriptor that becomes readable when receive queue `queue`
    /// has packets while its interrupt is enabled
    /// (`rte_eth_dev_rx_intr_ctl_q_get_fd`); `None` when the port was not
    /// configured with `rx_interrupts` or the driver has none.
    pub fn rx_intr_fd(&self, queue: u16) -> Option<i32> {
        // SAFETY: DPDK validates the port id and the queue index.
        let fd = unsafe { sys::rte_eth_dev_rx_intr_ctl_q_get_fd(self.id, queue) };
        (fd >= 0).then_some(fd)
    }

    /// Arms the receive interrupt of `queue` (`rte_eth_dev_rx_intr_enable`)
    /// before the polling core sleeps; false if the driver refused.
    #[inline]
    pub fn rx_intr_enable(&self, queue: u16) -> bool {
        // SAFETY: DPDK validates the port id and the queue index; it only
        // touches the queue's interrupt state.
        unsafe { sys::rte_eth_dev_rx_intr_enable(self.id, queue) == 0 }
    }

    /// Disarms it again once the core is awake (`rte_eth_dev_rx_intr_disable`).
    #[inline]
    pub fn rx_intr_disable(&self, queue: u16) {
        // SAFETY: as above.
        unsafe { sys::rte_eth_dev_rx_intr_disable(self.id, queue) };
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {} {:?}", self.id, self.name())
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_count_errors_name_both_numbers() {
        let e = check_queue_count(2, "net_af_packet0", "tx", 4, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port 2 \"net_af_packet0\": 4 tx queues requested, but the device supports at most 1"
        );
        assert!(check_queue_count(2, "x", "rx", 0, 8).is_err());
        assert!(check_queue_count(2, "x", "rx", 8, 8).is_ok());
    }

    #[test]
    fn rss_only_with_several_queues_and_device_support() {
        let mut info = sys::rte_eth_dev_info {
            flow_type_rss_offloads: sys::CER_ETH_RSS_IP | sys::CER_ETH_RSS_UDP,
            rx_offload_capa: sys::CER_ETH_RX_OFFLOAD_RSS_HASH,
            ..Default::default()
        };
        let mut setup = PortSetup {
            rx_queues: 4,
            rss: true,
            ..PortSetup::default()
        };
        let conf = eth_conf(&setup, &info);
        assert_eq!(conf.rxmode.mq_mode, sys::RTE_ETH_MQ_RX_RSS);
        let hf = conf.rx_adv_conf.rss_conf.rss_hf;
        assert_eq!(hf, sys::CER_ETH_RSS_IP | sys::CER_ETH_RSS_UDP);
        assert_ne!(conf.rxmode.offloads & sys::CER_ETH_RX_OFFLOAD_RSS_HASH, 0);

        setup.rx_queues = 1;
        assert_eq!(
            eth_conf(&setup, &info).rxmode.mq_mode,
            sys::RTE_ETH_MQ_RX_NONE
        );

        setup.rx_queues = 4;
        info.flow_type_rss_offloads = 0;
        assert_eq!(
            eth_conf(&setup, &info).rxmode.mq_mode,
            sys::RTE_ETH_MQ_RX_NONE
        );
    }

    #[test]
    fn mtu_goes_into_rxmode() {
        let info = sys::rte_eth_dev_info::default();
        let setup = PortSetup {
            mtu: Some(9000),
            ..PortSetup::default()
        };
        assert_eq!(eth_conf(&setup, &info).rxmode.mtu, 9000);
        assert_eq!(eth_conf(&PortSetup::default(), &info).rxmode.mtu, 0);
    }

    #[test]
    fn mac_formatting() {
        assert_eq!(
            format_mac(&[0x02, 0, 0xab, 1, 2, 0xff]),
            "02:00:ab:01:02:ff"
        );
    }

    #[test]
    fn unknown_port_without_eal() {
        let e = Port::by_name("net_nope0").unwrap_err();
        assert!(e.to_string().contains("ports: none"), "{e}");
        assert!(Port::from_id(0).is_err());
        assert!(Port::from_id(u16::MAX).is_err());
        assert_eq!(Port::count(), 0);
        assert!(Port::all().is_empty());
    }
}
