#!/usr/bin/python3
"""Frames a router must not forward (RFC 1812 and friends), built with scapy
(not our code), for tests/tests/rfc1812.rs. Every frame carries the marker
RFC1812-<case> in its payload, so a capture on the far side shows by name
anything that got through.

send IFACE ROUTER_MAC CASE...
    Sends each named case (see CASES) out of IFACE to ROUTER_MAC (or to the
    broadcast/multicast address the case needs), one after the other.
flood IFACE ROUTER_MAC SRC DST COUNT
    Sends COUNT first fragments (MF set, offset 0, 1000 bytes, distinct IP
    ids) from SRC to DST: datagrams that never complete.
summary PCAP ROUTER_IP...
    Prints JSON: the markers of the frames in PCAP, and how many ICMP errors
    (destination unreachable, time exceeded, parameter problem) came from one
    of the ROUTER_IPs.
"""
import json
import re
import socket
import sys

from scapy.all import (ARP, ICMP, IP, UDP, Ether, IPOption_LSRR, IPOption_RR, IPOption_SSRR,
                       Raw, get_if_hwaddr, raw, rdpcap, sendp)

LAN_HOST = "10.1.0.10"
WAN_HOST = "10.2.0.20"
ROUTER_LAN = "10.1.0.1"
ROUTER = "10.2.0.1"
FOU_PORT, GUE_PORT = 5555, 6080
# A /32 the test feeds as living behind the FOU tunnel to WAN_HOST.
BEHIND_TUNNEL = "10.77.0.9"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def mark(case):
    return Raw(("RFC1812-" + case + " ").encode() * 3)


def data(src, dst, case, ttl=64, options=None, ether_dst=None):
    """An ICMP echo reply: hosts ignore one they did not ask for, so nothing
    answers the frames that get through (the capture sees only them)."""
    ip = IP(src=src, dst=dst, ttl=ttl, options=options or [])
    return (ether_dst, ip / ICMP(type=0, id=1812, seq=1) / mark(case))


def arp_from(psrc, pdst):
    return (BROADCAST, ARP(op=1, psrc=psrc, pdst=pdst))


def inner(src, dst, case):
    return IP(src=src, dst=dst, ttl=64) / ICMP(type=0, id=1812, seq=1) / mark(case)


def fou(case, inner_pkt, length=None):
    """FOU from WAN_HOST to the router; `length` overrides the UDP length."""
    u = UDP(sport=50000, dport=FOU_PORT, chksum=0)
    if length is not None:
        u.len = length
    return (None, IP(src=WAN_HOST, dst=ROUTER) / u / inner_pkt)


def fou_len(case, delta):
    pkt = IP(src=WAN_HOST, dst=ROUTER) / UDP(sport=50000, dport=FOU_PORT, chksum=0) / inner(
        "10.77.0.99", LAN_HOST, case)
    real = len(raw(pkt[UDP]))
    return fou(case, inner("10.77.0.99", LAN_HOST, case), real + delta)


def gue(case, length_delta):
    g = bytes([0, 4, 0, 0])  # GUE version 0, C 0, hlen 0, proto IPv4, flags 0
    payload = g + raw(inner("10.77.0.99", LAN_HOST, case))
    u = UDP(sport=50000, dport=GUE_PORT, chksum=0, len=8 + len(payload) + length_delta)
    return (None, IP(src=WAN_HOST, dst=ROUTER) / u / Raw(payload))


def ipip(case, isrc, idst):
    return (None, IP(src=WAN_HOST, dst=ROUTER, proto=4) / inner(isrc, idst, case))


# name -> (ethernet destination or None for the router's MAC, L3 packet)
CASES = {
    # Sent from the LAN host.
    "control": lambda c: data(LAN_HOST, WAN_HOST, c),
    "src-net0": lambda c: data("0.1.2.3", WAN_HOST, c, ttl=1),
    "src-linklocal": lambda c: data("169.254.1.1", WAN_HOST, c, ttl=1),
    "src-loopback": lambda c: data("127.0.0.1", WAN_HOST, c, ttl=1),
    "src-other-port-broadcast": lambda c: data("10.2.0.255", WAN_HOST, c, ttl=1),
    "src-multicast": lambda c: data("224.0.0.5", WAN_HOST, c, ttl=1),
    "src-router": lambda c: data(ROUTER, WAN_HOST, c, ttl=1),
    "dst-loopback": lambda c: data(LAN_HOST, "127.0.0.1", c),
    "dst-net0": lambda c: data(LAN_HOST, "0.1.2.3", c),
    "dst-linklocal": lambda c: data(LAN_HOST, "169.254.1.1", c),
    "dst-directed-broadcast": lambda c: data(LAN_HOST, "10.2.0.255", c),
    "l2-broadcast-unicast-ip": lambda c: data(LAN_HOST, WAN_HOST, c, ether_dst=BROADCAST),
    "l2-broadcast-unicast-ip-ttl1": lambda c: data(LAN_HOST, WAN_HOST, c, ttl=1, ether_dst=BROADCAST),
    "lsrr": lambda c: data(LAN_HOST, WAN_HOST, c, options=[IPOption_LSRR(routers=[WAN_HOST])]),
    "ssrr": lambda c: data(LAN_HOST, WAN_HOST, c, options=[IPOption_SSRR(routers=[WAN_HOST])]),
    "record-route": lambda c: data(LAN_HOST, WAN_HOST, c, options=[IPOption_RR(routers=["0.0.0.0"])]),
    "urpf-spoofed": lambda c: data("192.0.2.7", WAN_HOST, c),
    "arp-sender-lan-broadcast": lambda c: arp_from("10.1.0.255", ROUTER_LAN),
    "arp-sender-loopback": lambda c: arp_from("127.0.0.1", ROUTER_LAN),
    # Sent from the WAN host (the tunnel peer).
    "fou-control": lambda c: fou(c, inner("10.77.0.99", LAN_HOST, c)),
    "fou-udp-length-8": lambda c: fou(c, inner("10.77.0.99", LAN_HOST, c), 8),
    "fou-udp-length-short": lambda c: fou_len(c, -4),
    "gue-udp-length-long": lambda c: gue(c, 4),
    "hairpin-into-tunnel": lambda c: ipip(c, "10.77.0.99", BEHIND_TUNNEL),
    "hairpin-to-peer": lambda c: ipip(c, "10.77.0.99", WAN_HOST),
    "inner-src-router": lambda c: ipip(c, ROUTER, LAN_HOST),
    "arp-sender-wan-broadcast": lambda c: arp_from("10.2.0.255", ROUTER),
}


def send(iface, router_mac, cases):
    me = get_if_hwaddr(iface)
    frames = []
    for case in cases:
        ether_dst, pkt = CASES[case](case)
        if ARP in pkt:
            pkt.hwsrc = me
        frames.append(Ether(src=me, dst=ether_dst or router_mac) / pkt)
    for f in frames:
        sendp(f, iface=iface, verbose=False)
        print(f"sent {f.summary()}")


def flood(iface, router_mac, src, dst, count):
    me = get_if_hwaddr(iface)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    body = b"F" * 1000
    for i in range(count):
        f = Ether(src=me, dst=router_mac) / IP(src=src, dst=dst, id=(i % 65535) + 1, flags="MF",
                                               frag=0, proto=17) / Raw(body)
        s.send(raw(f))
    print(f"sent {count} first fragments {src} -> {dst}")


MARKER = re.compile(rb"RFC1812-([a-z0-9-]+)")


def summary(pcap, router_ips):
    markers = set()
    icmp_errors = 0
    for p in rdpcap(pcap):
        for m in MARKER.finditer(raw(p)):
            markers.add(m.group(1).decode())
        if IP in p and ICMP in p and p[IP].src in router_ips and p[ICMP].type in (3, 11, 12):
            icmp_errors += 1
    print(json.dumps({"markers": sorted(markers), "icmp_errors_from_router": icmp_errors}))


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "send":
        send(a[1], a[2], a[3:])
    elif len(a) == 6 and a[0] == "flood":
        flood(a[1], a[2], a[3], a[4], int(a[5]))
    elif len(a) >= 3 and a[0] == "summary":
        summary(a[1], set(a[2:]))
    else:
        print(__doc__)
        sys.exit(2)
