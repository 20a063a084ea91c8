# Reads a pcap of the transport side and checks that every outer packet between two CER
# addresses is well-formed KIND (GRE with the key, IPIP, FOU or GUE v0 to its port); counts the
# inner ICMP echo requests by inner src/dst; no inner address outside the pool. Prints
# `whole matched other`. Used by tests/src/apps/capture.rs (OUTER_CHECK).
import ipaddress, sys
from scapy.all import GRE, IP, UDP, BitField, ByteField, Packet, ShortField, bind_layers, raw, rdpcap
class GUE(Packet):
    """draft-ietf-intarea-gue, version 0 (scapy has none)."""
    name = "GUE"
    fields_desc = [BitField("version", 0, 2), BitField("c", 0, 1), BitField("hlen", 0, 5),
                   ByteField("proto", 4), ShortField("flags", 0)]
pcap, kind, srcs, dsts, isrc, idst, pool = sys.argv[1:8]
fou_port, gue_port, gre_key = int(sys.argv[8]), int(sys.argv[9]), sys.argv[10]
bind_layers(UDP, IP, dport=fou_port)
bind_layers(UDP, GUE, dport=gue_port)
bind_layers(GUE, IP, proto=4)
srcs, dsts, pool = set(srcs.split(",")), set(dsts.split(",")), ipaddress.ip_network(pool)
whole = matched = other = 0
for p in rdpcap(pcap):
    if IP not in p:
        continue
    o = p[IP]
    if o.src not in srcs or o.dst not in dsts or o.flags.MF or o.frag:
        continue
    if o.proto == 6 or (o.proto == 1):
        continue  # BGP or ICMP between the routers themselves
    if kind == "ipip":
        assert o.proto == 4, f"outer proto {o.proto}: {p.summary()}"
        inner = o.payload
    elif kind == "gre":
        assert o.proto == 47, f"outer proto {o.proto}: {p.summary()}"
        g = p[GRE]
        assert g.proto == 0x0800 and g.key_present == 1 and str(g.key) == gre_key, f"GRE {g.summary()} key {g.key}"
        inner = g.payload
    else:
        assert o.proto == 17, f"outer proto {o.proto}: {p.summary()}"
        u = p[UDP]
        if kind == "fou":
            assert u.dport == fou_port, f"FOU port {u.dport}"
            inner = u.payload
        else:
            assert u.dport == gue_port, f"GUE port {u.dport}"
            g = p[GUE]
            assert (g.version, g.c, g.hlen, g.proto) == (0, 0, 0, 4), g.summary()
            inner = g.payload
    i = IP(raw(inner))
    whole += 1
    assert ipaddress.ip_address(i.src) in pool and ipaddress.ip_address(i.dst) in pool, f"inner {i.src} -> {i.dst} outside {pool}"
    if (i.src, i.dst) == (isrc, idst) and i.proto == 1:
        matched += 1
    else:
        other += 1
print(whole, matched, other)
