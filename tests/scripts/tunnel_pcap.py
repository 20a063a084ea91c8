#!/usr/bin/python3
"""Independent checks of CER's encapsulations with scapy (not our code).

check PCAP_OUTER PCAP_INNER KIND OUTER_SRC OUTER_DST [KEY_OR_PORT]
    Every tunnel packet in PCAP_OUTER (captured on the WAN) must be KIND with
    outer src/dst = the CER transport addresses; its inner IPv4 packet must
    equal, byte for byte except TTL and header checksum, the packet captured
    at the workload (PCAP_INNER), matched by src/dst/IP id. Prints a summary.
send IFACE DST_MAC KIND OUTER_SRC OUTER_DST INNER_SRC INNER_DST ICMP_ID [KEY_OR_PORT]
    Builds a KIND packet carrying an ICMP echo request and sends it on IFACE.
outer PCAP KIND SRCS DSTS INNER_SRC INNER_DST POOL [KEY_OR_PORT]
    Every IPv4 packet in PCAP from one of the comma-separated CER addresses
    SRCS to one of DSTS (BGP and ICMP between the routers aside) must be a
    well-formed KIND packet; its inner addresses must lie in POOL. Prints
    `whole matched other`: the inner packets, those that are ICMP from
    INNER_SRC to INNER_DST, and the rest. Used by tests/tests/acceptance.rs.
replies PCAP ICMP_ID INNER_SRC
    Counts the encapsulated ICMP echo replies with ICMP_ID from INNER_SRC in
    PCAP (the layers above make scapy dissect through every encapsulation);
    prints the count, exits 1 when there is none.
"""
import ipaddress
import sys

from scapy.all import (GRE, ICMP, IP, UDP, BitField, ByteField, Ether, Packet, ShortField,
                       bind_layers, raw, rdpcap, sendp)


class GUE(Packet):
    """draft-ietf-intarea-gue, version 0 header (scapy has none)."""
    name = "GUE"
    fields_desc = [BitField("version", 0, 2), BitField("c", 0, 1), BitField("hlen", 0, 5),
                   ByteField("proto", 4), ShortField("flags", 0)]


FOU_PORT, GUE_PORT = 5555, 6080
bind_layers(UDP, IP, dport=FOU_PORT)
bind_layers(UDP, GUE, dport=GUE_PORT)
bind_layers(GUE, IP, proto=4)


def inner_of(pkt, kind, key_or_port, snapped=False):
    """The inner packet of a KIND tunnel packet, its outer headers checked.
    `snapped`: the capture may keep only the first bytes of each packet, so
    the UDP length can only be checked as covering what was captured."""
    ip = pkt[IP]
    if kind == "ipip":
        assert ip.proto == 4, f"outer proto {ip.proto}"
        return ip.payload
    if kind == "gre":
        assert ip.proto == 47, f"outer proto {ip.proto}"
        g = pkt[GRE]
        assert g.proto == 0x0800, hex(g.proto)
        assert g.version == 0 and g.routing_present == 0 and g.chksum_present == 0
        if key_or_port is not None:
            assert g.key_present == 1 and g.key == key_or_port, f"GRE key {g.key}"
        else:
            assert g.key_present == 0
        return g.payload
    u = pkt[UDP]
    assert u.sport >= 49152, f"UDP source port {u.sport} carries no flow entropy"
    assert u.len >= len(raw(u)) if snapped else u.len == len(raw(u)), "UDP length"
    if kind == "fou":
        assert u.dport == (key_or_port or FOU_PORT)
        return u.payload
    if kind == "gue":
        assert u.dport == (key_or_port or GUE_PORT)
        g = pkt[GUE]
        assert (g.version, g.c, g.hlen, g.proto, g.flags) == (0, 0, 0, 4, 0), g.summary()
        return g.payload
    raise SystemExit(f"unknown kind {kind}")


def is_tunnel(pkt, kind):
    if IP not in pkt:
        return False
    proto = pkt[IP].proto
    return {"ipip": proto == 4, "gre": proto == 47}.get(kind, proto == 17 and UDP in pkt and pkt[UDP].dport in (FOU_PORT, GUE_PORT))


def norm(b):
    """IPv4 bytes without TTL and header checksum."""
    b = bytearray(b)
    b[8] = 0
    b[10:12] = b"\x00\x00"
    return bytes(b)


def check(outer_pcap, inner_pcap, kind, src, dst, key_or_port):
    # Workload-side packets, normalised (TTL and header checksum zeroed).
    # Matched by content: Linux sends DF packets with IP id 0, so ids are not keys.
    sent = set()
    for p in rdpcap(inner_pcap):
        if IP in p and p[IP].flags.MF == 0 and p[IP].frag == 0:
            i = p[IP]
            sent.add(norm(raw(i)[: i.len]))
    n = whole = matched = 0
    for p in rdpcap(outer_pcap):
        if not is_tunnel(p, kind):
            continue
        ip = p[IP]
        if ip.flags.MF or ip.frag:
            continue  # outer fragments: the far end reassembles
        assert {ip.src, ip.dst} == {src, dst}, f"outer {ip.src} -> {ip.dst}"
        ib = raw(inner_of(p, kind, key_or_port))
        i = IP(ib)
        n += 1
        if i.flags.MF or i.frag:
            continue  # inner fragments made by the tunnel MTU
        whole += 1
        assert norm(ib[: i.len]) in sent, f"inner differs from what the workload sent (beyond TTL): {i.summary()}"
        matched += 1
    assert n > 0, "no tunnel packets captured"
    assert matched > 0 and matched == whole, f"{matched} of {whole} inner packets matched"
    print(f"{kind}: {n} tunnel packets, outer {src}<->{dst}, all {matched} whole inner packets identical to the workload's except TTL")


def outer(pcap, kind, srcs, dsts, isrc, idst, pool, key_or_port):
    srcs, dsts, net = set(srcs.split(",")), set(dsts.split(",")), ipaddress.ip_network(pool)
    whole = matched = other = 0
    for p in rdpcap(pcap):
        if IP not in p:
            continue
        o = p[IP]
        if o.src not in srcs or o.dst not in dsts or o.flags.MF or o.frag:
            continue
        if o.proto in (1, 6):
            continue  # BGP or ICMP between the routers themselves
        i = IP(raw(inner_of(p, kind, key_or_port, snapped=True)))
        whole += 1
        assert ipaddress.ip_address(i.src) in net and ipaddress.ip_address(i.dst) in net, f"inner {i.src} -> {i.dst} outside {pool}"
        if (i.src, i.dst) == (isrc, idst) and i.proto == 1:
            matched += 1
        else:
            other += 1
    print(whole, matched, other)


def send(iface, dst_mac, kind, osrc, odst, isrc, idst, icmp_id, key_or_port):
    inner = IP(src=isrc, dst=idst, ttl=64) / ICMP(type=8, id=icmp_id, seq=1) / (b"scapy-built " * 4)
    outer = Ether(dst=dst_mac) / IP(src=osrc, dst=odst, ttl=64)
    if kind == "ipip":
        pkt = outer / inner
    elif kind == "gre":
        g = GRE(proto=0x0800, key_present=1, key=key_or_port) if key_or_port is not None else GRE(proto=0x0800)
        pkt = outer / g / inner
    elif kind == "fou":
        pkt = outer / UDP(sport=50000, dport=key_or_port or FOU_PORT) / inner
    elif kind == "gue":
        pkt = outer / UDP(sport=50000, dport=key_or_port or GUE_PORT) / GUE() / inner
    else:
        raise SystemExit(f"unknown kind {kind}")
    sendp(pkt, iface=iface, verbose=False)
    print(f"sent {kind}: {pkt.summary()}")


def replies(pcap, icmp_id, src):
    from scapy.all import ICMP, IP, rdpcap

    ok = [p for p in rdpcap(pcap) if ICMP in p and p[ICMP].type == 0 and p[ICMP].id == icmp_id and IP in p and p[IP].src == src]
    print(len(ok))
    if not ok:
        print("no encapsulated echo reply to the scapy-built request", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "check":
        check(a[1], a[2], a[3], a[4], a[5], int(a[6]) if len(a) > 6 else None)
    elif a and a[0] == "outer":
        outer(a[1], a[2], a[3], a[4], a[5], a[6], a[7], int(a[8]) if len(a) > 8 else None)
    elif a and a[0] == "replies":
        replies(a[1], int(a[2]), a[3])
    elif a and a[0] == "send":
        send(a[1], a[2], a[3], a[4], a[5], a[6], a[7], int(a[8]), int(a[9]) if len(a) > 9 else None)
    else:
        print(__doc__)
        sys.exit(2)
