//! The dataplane's Prometheus metrics: what one scrape of `/metrics` shows
//! and where it comes from. The metrics thread (never a polling core) asks
//! the manager for a `MetricsSample`, as the admin socket asks for its views
//! (`manager/views.rs`): the manager reads the cores' single-writer counters
//! with relaxed loads and the ports' PMD statistics, so the polling path gets
//! no lock, no syscall and no extra write. The sample becomes text here.

use cer_shared::admin::{CoreCounters, FeedState, PortState, SnapshotState};
use cer_shared::metrics::{Families, Labels};
use std::collections::BTreeMap;

/// One scrape's worth of dataplane state, taken by the manager thread.
#[derive(Debug, Clone, Default)]
pub struct MetricsSample {
    pub node: String,
    pub cores: Vec<CoreCounters>,
    pub ports: Vec<PortState>,
    pub snapshot: SnapshotState,
    pub feed: FeedState,
    pub proxy_arp_active: bool,
}

fn port(p: &str) -> Labels {
    vec![("port", p.to_string())]
}

fn lcore(c: &CoreCounters) -> Labels {
    vec![("lcore", c.lcore.to_string())]
}

/// Sums a per-core map (rx, tx, drops, events) over every core.
fn summed(
    cores: &[CoreCounters],
    pick: impl Fn(&CoreCounters) -> &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for c in cores {
        for (k, v) in pick(c) {
            *out.entry(k.clone()).or_insert(0) += v;
        }
    }
    out
}

/// Every metric family of the dataplane (names in README "Metrics").
pub fn families(s: &MetricsSample) -> Families {
    let mut f = Families::default();
    f.gauge(
        "cer_dataplane_info",
        "Always 1; the node name as a label.",
        vec![(vec![("node", s.node.clone())], 1.0)],
    );
    type HwPick = fn(&PortState) -> u64;
    let hw: [(&'static str, &'static str, HwPick); 9] = [
        (
            "cer_dataplane_port_rx_packets",
            "Packets received on the port (PMD statistics).",
            |p| p.hw.ipackets,
        ),
        (
            "cer_dataplane_port_tx_packets",
            "Packets sent on the port (PMD statistics).",
            |p| p.hw.opackets,
        ),
        (
            "cer_dataplane_port_rx_bytes",
            "Bytes received on the port (PMD statistics).",
            |p| p.hw.ibytes,
        ),
        (
            "cer_dataplane_port_tx_bytes",
            "Bytes sent on the port (PMD statistics).",
            |p| p.hw.obytes,
        ),
        (
            "cer_dataplane_port_rx_missed",
            "Packets the NIC dropped because the receive ring was full (imissed).",
            |p| p.hw.imissed,
        ),
        (
            "cer_dataplane_port_rx_errors",
            "Erroneous received packets (ierrors).",
            |p| p.hw.ierrors,
        ),
        (
            "cer_dataplane_port_tx_errors",
            "Packets the PMD failed to send (oerrors).",
            |p| p.hw.oerrors,
        ),
        (
            "cer_dataplane_port_rx_nombuf",
            "Receive failures for want of an mbuf (rx_nombuf).",
            |p| p.hw.rx_nombuf,
        ),
        (
            "cer_dataplane_port_kernel_ring_drops",
            "af_packet ports: frames the kernel dropped, the PMD's ring full.",
            |p| p.hw.kernel_ring_drops,
        ),
    ];
    for (name, help, pick) in hw {
        f.counter(
            name,
            help,
            s.ports.iter().map(|p| (port(&p.name), pick(p))).collect(),
        );
    }
    f.counter(
        "cer_dataplane_port_link_down_events",
        "Times the port's link went down since start.",
        s.ports
            .iter()
            .map(|p| (port(&p.name), p.link_down_events))
            .collect(),
    );
    f.gauge(
        "cer_dataplane_port_up",
        "1 while the port's link is up, else 0.",
        s.ports
            .iter()
            .map(|p| (port(&p.name), f64::from(u8::from(p.link_up))))
            .collect(),
    );
    f.counter(
        "cer_dataplane_engine_rx_packets",
        "Packets the polling cores received per I/O port (ports and exception TAPs), summed over cores.",
        summed(&s.cores, |c| &c.rx).into_iter().map(|(k, v)| (port(&k), v)).collect(),
    );
    f.counter(
        "cer_dataplane_engine_tx_packets",
        "Packets the polling cores handed to each I/O port for sending, summed over cores.",
        summed(&s.cores, |c| &c.tx)
            .into_iter()
            .map(|(k, v)| (port(&k), v))
            .collect(),
    );
    f.counter(
        "cer_dataplane_drops",
        "Packets dropped, by named reason (show counters), summed over cores.",
        summed(&s.cores, |c| &c.drops)
            .into_iter()
            .map(|(k, v)| (vec![("reason", k)], v))
            .collect(),
    );
    f.counter(
        "cer_dataplane_events",
        "Notable events that are not drops (ARP replies, ICMP errors, punts ...), summed over cores.",
        summed(&s.cores, |c| &c.events)
            .into_iter()
            .map(|(k, v)| (vec![("event", k)], v))
            .collect(),
    );
    f.counter(
        "cer_dataplane_core_busy_cycles",
        "TSC cycles in polls that received packets.",
        s.cores.iter().map(|c| (lcore(c), c.busy_cycles)).collect(),
    );
    f.counter(
        "cer_dataplane_core_idle_cycles",
        "TSC cycles in polls that received nothing, and in idle sleeps.",
        s.cores.iter().map(|c| (lcore(c), c.idle_cycles)).collect(),
    );
    f.gauge(
        "cer_dataplane_core_busy_ratio",
        "Busy cycles / (busy + idle cycles) since start; for a window use the two cycle counters' rates.",
        s.cores
            .iter()
            .map(|c| {
                let all = c.busy_cycles.saturating_add(c.idle_cycles);
                let r = if all == 0 { 0.0 } else { c.busy_cycles as f64 / all as f64 };
                (lcore(c), r)
            })
            .collect(),
    );
    f.counter(
        "cer_dataplane_core_stalls",
        "Polls that took over 100 us without sleeping (the core was taken away).",
        s.cores.iter().map(|c| (lcore(c), c.stalls)).collect(),
    );
    f.counter(
        "cer_dataplane_core_bursts",
        "Receive bursts processed.",
        s.cores.iter().map(|c| (lcore(c), c.bursts)).collect(),
    );
    f.gauge(
        "cer_dataplane_core_snapshot_generation",
        "The snapshot generation the core forwards with (behind cer_dataplane_snapshot_generation while it switches).",
        s.cores.iter().map(|c| (lcore(c), c.snapshot_version as f64)).collect(),
    );
    f.gauge1(
        "cer_dataplane_snapshot_generation",
        "The generation of the newest published forwarding snapshot.",
        s.snapshot.version as f64,
    );
    f.gauge1(
        "cer_dataplane_snapshot_endpoints",
        "Endpoint /32s in the snapshot.",
        s.snapshot.endpoints as f64,
    );
    f.gauge1(
        "cer_dataplane_snapshot_routes",
        "Routes in the snapshot.",
        s.snapshot.routes as f64,
    );
    f.gauge1(
        "cer_dataplane_snapshot_neighbors",
        "Resolved neighbors in the snapshot.",
        s.snapshot.neighbors as f64,
    );
    f.gauge1(
        "cer_dataplane_snapshot_build_seconds",
        "Time the last snapshot took to build.",
        s.snapshot.built_us as f64 / 1e6,
    );
    f.gauge1(
        "cer_dataplane_feed_connected",
        "1 while a FIB feed session (cer-control or cerctl) is connected.",
        f64::from(u8::from(s.feed.connected)),
    );
    f.gauge1(
        "cer_dataplane_feed_last_seq",
        "Sequence number of the last feed message applied in the current session.",
        s.feed.last_seq as f64,
    );
    f.counter1(
        "cer_dataplane_feed_sessions",
        "Feed sessions accepted since start.",
        s.feed.sessions,
    );
    f.counter1(
        "cer_dataplane_feed_errors",
        "Feed messages refused or sessions ended in error.",
        s.feed.errors,
    );
    f.counter1(
        "cer_dataplane_feed_syncs_completed",
        "Full synchronisations from the controller applied.",
        s.feed.syncs_completed,
    );
    f.gauge1(
        "cer_dataplane_proxy_arp_gate_open",
        "1 while the proxy-ARP gate is open (on-prem capture: this router answers for remote /32s).",
        f64::from(u8::from(s.proxy_arp_active)),
    );
    f.gauge1(
        "cer_dataplane_proxy_arp_entries",
        "/32s in the proxy-ARP set.",
        s.snapshot.proxy_arp as f64,
    );
    f.counter1(
        "cer_dataplane_stalls",
        "Times the whole process was stopped longer than the stall guard.",
        s.feed.stalls,
    );
    f.counter1(
        "cer_dataplane_gate_closed_on_disconnect",
        "Times the proxy-ARP gate closed because its owner (cer-control) disconnected.",
        s.feed.gate_closed_on_disconnect,
    );
    f.counter1(
        "cer_dataplane_gate_closed_on_stall",
        "Times a stall of this process closed an open proxy-ARP gate.",
        s.feed.gate_closed_on_stall,
    );
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::DropReason;

    fn sample() -> MetricsSample {
        let core = |lcore: u32, rx: u64, drops: u64| CoreCounters {
            lcore,
            busy_cycles: 300,
            idle_cycles: 100,
            rx: [("lan0".to_string(), rx), ("wantap".to_string(), 1)].into(),
            drops: DropReason::ALL
                .iter()
                .map(|d| {
                    (
                        d.name().to_string(),
                        if *d == DropReason::NoRoute { drops } else { 0 },
                    )
                })
                .collect(),
            ..Default::default()
        };
        MetricsSample {
            node: "n1".into(),
            cores: vec![core(1, 10, 2), core(2, 5, 3)],
            ports: vec![PortState {
                name: "lan0".into(),
                driver: "net_af_packet".into(),
                device: String::new(),
                mac: cer_shared::MacAddr([2, 0, 0, 0, 0, 1]),
                address: String::new(),
                mtu: 1500,
                link_up: true,
                link_down_events: 0,
                speed_mbps: 0,
                proxy_arp: false,
                exception_tap: None,
                hw: cer_shared::admin::PortHwStats {
                    ipackets: 15,
                    ibytes: 1500,
                    ..Default::default()
                },
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_drop_reason_and_port_is_exported_and_summed_over_cores() {
        let text = families(&sample()).render().unwrap();
        for d in DropReason::ALL {
            let line = format!("cer_dataplane_drops_total{{reason=\"{}\"}} ", d.name());
            assert!(text.contains(&line), "missing {line}");
        }
        assert!(
            text.contains("cer_dataplane_drops_total{reason=\"no_route\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("cer_dataplane_engine_rx_packets_total{port=\"lan0\"} 15\n"));
        assert!(text.contains("cer_dataplane_engine_rx_packets_total{port=\"wantap\"} 2\n"));
        assert!(text.contains("cer_dataplane_port_rx_bytes_total{port=\"lan0\"} 1500\n"));
        assert!(text.contains("cer_dataplane_port_up{port=\"lan0\"} 1"));
        assert!(
            text.contains("cer_dataplane_core_busy_ratio{lcore=\"1\"} 0.75"),
            "{text}"
        );
        assert!(text.contains("cer_dataplane_info{node=\"n1\"} 1"));
    }
}
