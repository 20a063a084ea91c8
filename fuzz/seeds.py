#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into
fuzz/corpus/<target>/seed-*: valid messages and frames the fuzzer mutates
from (it finds the rest). The encodings follow the harnesses in fuzz/src:
`dataplane::Step::read` and `replies::read_script` (lengths are big-endian
u16). Run from anywhere; existing seed files are rewritten, other corpus
files are left alone."""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip4(a):
    return bytes(int(x) for x in a.split("."))


def ipv4(src, dst, proto, payload, ttl=64, flags_frag=0, ident=1, options=b""):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident,
                    flags_frag, ttl, proto, 0, ip4(src), ip4(dst)) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp_syn(sport, dport, mss=1460):
    opts = struct.pack("!BBH", 2, 4, mss)
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, (5 + 1) << 4, 0x02, 65535, 0, 0) + opts


def icmp_echo(ident=1, seq=1, data=b"ping" * 4):
    h = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return h[:2] + struct.pack("!H", csum(h)) + h[4:]


def eth(dst, src, ethertype, payload):
    return bytes(dst) + bytes(src) + struct.pack("!H", ethertype) + payload


LAN_MAC = [2, 0, 0, 0, 1, 1]
WAN_MAC = [2, 0, 0, 0, 2, 1]
HOST_MAC = [2, 0, 0, 0, 1, 0x10]
BCAST = [0xFF] * 6


def step(op, extra, data):
    return bytes([op]) + bytes(extra) + struct.pack("!H", len(data)) + data


def dataplane():
    endpoints = ["10.77.1.1", "10.77.2.1", "10.77.3.1", "10.77.4.1", "10.77.5.1"]
    seeds = {}
    # The host's traffic to every tunnel endpoint: UDP, a TCP SYN (MSS clamp),
    # a big datagram (fragmentation or frag-needed), TTL 1 (time exceeded).
    for i, ep in enumerate(endpoints):
        seeds["host-udp-%d" % i] = step(0x02, [], ipv4("10.1.0.16", ep, 17, udp(1000, 2000, b"x" * 64)))
        seeds["host-syn-%d" % i] = step(0x02, [], ipv4("10.1.0.16", ep, 6, tcp_syn(1000, 80)))
    seeds["host-big-df"] = step(0x02, [], ipv4("10.1.0.16", "10.77.2.1", 17, udp(1, 2, b"y" * 3000), flags_frag=0x4000))
    seeds["host-big"] = step(0x02, [], ipv4("10.1.0.16", "10.77.3.1", 17, udp(1, 2, b"y" * 3000)))
    seeds["host-ttl1"] = step(0x02, [], ipv4("10.1.0.16", "10.77.1.1", 17, udp(1, 2, b"z"), ttl=1))
    seeds["host-ping-router"] = step(0x02, [], ipv4("10.1.0.16", "10.1.0.1", 1, icmp_echo()))
    seeds["host-to-default"] = step(0x02, [], ipv4("10.1.0.16", "192.0.2.1", 17, udp(1, 2, b"d" * 32)))
    seeds["host-lsrr"] = step(0x02, [], ipv4("10.1.0.16", "10.77.1.1", 17, udp(1, 2, b"o"),
                                             options=bytes([131, 7, 4, 10, 77, 1, 1, 0])))
    # Tunnel peers' traffic to the host, one per kind (inner from the far endpoint).
    for i, ep in enumerate(endpoints[:4]):
        inner = ipv4(ep, "10.1.0.16", 17, udp(2000, 1000, b"r" * 48))
        seeds["decap-%d" % i] = step(0x05, [i], inner)
    # Outer fragments of a GRE packet (the tunnel stage reassembles them).
    inner = ipv4("10.77.2.1", "10.1.0.16", 17, udp(2000, 1000, b"F" * 1600))
    gre = bytes([0x20, 0, 0x08, 0]) + struct.pack("!I", 0x01020304) + inner
    first, second = gre[:1480], gre[1480:]
    f1 = ipv4("10.2.0.32", "10.2.0.1", 47, first, flags_frag=0x2000, ident=77)
    f2 = ipv4("10.2.0.32", "10.2.0.1", 47, second, flags_frag=1480 // 8, ident=77)
    seeds["gre-fragments"] = (step(0x01, [1], eth(WAN_MAC, [2, 0, 0, 0, 2, 0x20], 0x0800, f1))
                              + step(0x01, [1], eth(WAN_MAC, [2, 0, 0, 0, 2, 0x20], 0x0800, f2)))
    # ARP: a request for the router, one for a proxied /32, a GARP.
    def arp(op, sha, spa, tha, tpa):
        return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + bytes(sha) + ip4(spa) + bytes(tha) + ip4(tpa)
    seeds["arp-router"] = step(0x00, [0], eth(BCAST, HOST_MAC, 0x0806, arp(1, HOST_MAC, "10.1.0.16", [0] * 6, "10.1.0.1")))
    seeds["arp-proxy"] = step(0x00, [0], eth(BCAST, HOST_MAC, 0x0806, arp(1, HOST_MAC, "10.1.0.16", [0] * 6, "10.77.1.1")))
    seeds["garp"] = step(0x00, [0], eth(BCAST, [2, 0, 0, 0, 1, 0x99], 0x0806, arp(1, [2, 0, 0, 0, 1, 0x99], "10.1.0.17", [0] * 6, "10.1.0.17")))
    # Unresolved local endpoint: the ARP pending path, then time passes.
    seeds["pending-then-clock"] = (step(0x02, [], ipv4("10.77.1.1", "10.1.0.17", 17, udp(1, 2, b"p")))
                                   + step(0x0A, [], b"") [:1] + struct.pack("!H", 200) + struct.pack("!H", 0))
    # A kernel frame from each TAP; IPv6 neighbor solicitation on the LAN.
    seeds["tap-lan"] = step(0x00, [2], eth(HOST_MAC, LAN_MAC, 0x0800, ipv4("10.1.0.1", "10.1.0.16", 17, udp(179, 179, b"k"))))
    seeds["tap-wan"] = step(0x00, [3], eth([2, 0, 0, 0, 2, 0xFE], WAN_MAC, 0x0800, ipv4("10.2.0.1", "10.2.0.254", 6, tcp_syn(179, 179))))
    ns = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + bytes.fromhex("fe800000000000000000000000000001") + bytes([1, 1] + HOST_MAC)
    v6 = struct.pack("!IHBB", 0x60000000, len(ns), 58, 255) + bytes.fromhex("fe800000000000000000000000000010") + bytes.fromhex("ff0200000000000000000001ff000001") + ns
    seeds["ipv6-ns"] = step(0x00, [0], eth([0x33, 0x33, 0xFF, 0, 0, 1], HOST_MAC, 0x86DD, v6))
    # A full tx ring and an empty pool while traffic flows.
    seeds["tx-full"] = step(0x0B, [1, 0], b"") + seeds["host-udp-0"] + seeds["host-big"]
    seeds["no-mbuf"] = step(0x0C, [0], b"") + seeds["host-ttl1"] + seeds["arp-router"]
    for name, data in seeds.items():
        write("dataplane_frames", name, data)
    # WireGuard: sealed inner packets to the host, a raw handshake-shaped datagram.
    wg = {
        "sealed-udp": step(0x08, [], ipv4("10.77.5.1", "10.1.0.16", 17, udp(1, 2, b"w" * 100))),
        "sealed-ping": step(0x08, [], ipv4("10.77.5.1", "10.1.0.1", 1, icmp_echo())),
        "sealed-keepalive": step(0x08, [], b""),
        "raw-init": step(0x05, [4], struct.pack("<I", 1) + bytes(144)),
        "raw-data": step(0x05, [4], struct.pack("<I", 4) + struct.pack("<I", 1) + bytes(8) + bytes(32)),
        "host-to-wg": seeds["host-udp-4"],
    }
    for name, data in wg.items():
        write("dataplane_wireguard", name, data)


def control():
    def lines(*msgs):
        return ("\n".join(json.dumps(m) for m in msgs) + "\n").encode()

    changes = [
        {"op": "endpoint_set", "ip": "10.77.1.1", "action": {"kind": "tunnel", "tunnel": 1}},
        {"op": "endpoint_set", "ip": "10.1.0.16", "action": {"kind": "local", "port": "lan"}},
        {"op": "endpoint_set", "ip": "10.77.9.9", "action": {"kind": "drop"}},
        {"op": "endpoint_del", "ip": "10.77.9.9"},
        {"op": "route_set", "prefix": "0.0.0.0/0", "nexthops": [{"port": "wan", "gateway": "10.2.0.254"}]},
        {"op": "route_set", "prefix": "192.0.2.0/24", "nexthops": [{"port": "wan", "gateway": "10.2.0.254"}, {"port": "wan", "gateway": "10.2.0.253"}]},
        {"op": "route_del", "prefix": "192.0.2.0/24"},
        {"op": "neighbor_set", "port": "wan", "ip": "10.2.0.254", "mac": "02:00:00:00:02:fe"},
        {"op": "neighbor_del", "port": "wan", "ip": "10.2.0.254"},
        {"op": "proxy_arp_set", "ip": "10.77.1.1"},
        {"op": "proxy_arp_del", "ip": "10.77.1.1"},
        {"op": "proxy_arp_active", "active": True},
    ]
    write("dataplane_control", "full-sync", lines(
        {"type": "sync_begin", "seq": 1},
        {"type": "changes", "seq": 2, "changes": changes},
        {"type": "sync_end", "seq": 3},
        {"type": "ping", "seq": 4},
        {"type": "command", "seq": 5, "command": {"op": "gratuitous_arp", "port": "lan", "ip": "10.77.1.1", "count": 3}},
        {"cmd": "fib", "limit": 10},
    ))
    write("dataplane_control", "incremental", lines(
        {"type": "changes", "seq": 1, "changes": changes[:3]},
        {"type": "changes", "seq": 2, "changes": changes[3:]},
        {"type": "hello", "version": 1, "client": "cerctl"},
        {"type": "changes", "seq": 1, "changes": [changes[0]]},
    ))
    for i, cmd in enumerate(["state", "counters", "ports", "neighbors", "neighbors6", "proxy_arp",
                             "snapshot", "fib", "feed", "tunnels"]):
        write("dataplane_control", "admin-%d" % i, lines({"cmd": cmd}))


def bgp():
    def msg(t, body):
        return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), t) + body

    def attr(flags, code, value):
        if flags & 0x10:
            return struct.pack("!BBH", flags, code, len(value)) + value
        return struct.pack("!BBB", flags, code, len(value)) + value

    caps = bytes([2, 6, 1, 4, 0, 1, 0, 1]) + bytes([2, 6, 65, 4, 0, 0, 0xFD, 0xE8]) + bytes([2, 2, 2, 0])
    open_ = msg(1, struct.pack("!BHH4sB", 4, 23456, 90, ip4("10.0.0.2"), len(caps)) + caps)
    path4 = attr(0x40, 2, bytes([2, 2]) + struct.pack("!II", 65001, 4200000000))
    attrs = (attr(0x40, 1, b"\0") + path4 + attr(0x40, 3, ip4("10.0.0.2")) + attr(0x80, 4, struct.pack("!I", 0))
             + attr(0x40, 5, struct.pack("!I", 100)) + attr(0xC0, 8, struct.pack("!I", 0xFDE80001))
             + attr(0xC0, 16, bytes([0, 2, 0, 1, 0, 0, 0, 2])) + attr(0xC0, 32, struct.pack("!III", 65000, 1, 2))
             + attr(0x80, 9, ip4("10.0.0.9")) + attr(0x80, 10, ip4("10.0.0.8")) + attr(0x40, 6, b"")
             + attr(0xC0, 7, struct.pack("!I4s", 65001, ip4("10.0.0.3"))))
    nlri = bytes([32]) + ip4("10.77.1.1") + bytes([24, 192, 0, 2])
    update = msg(2, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri)
    withdraw = msg(2, struct.pack("!H", 5) + bytes([32]) + ip4("10.77.1.1") + struct.pack("!H", 0))
    mp = struct.pack("!HBB", 2, 1, 32) + bytes.fromhex("fe800000000000000000000000000001" * 2) + b"\0" + bytes([32]) + ip4("10.77.2.1")
    mp_update = msg(2, struct.pack("!H", 0) + struct.pack("!H", 0) )
    mp_attrs = attr(0x40, 1, b"\0") + attr(0x40, 2, b"") + attr(0x80, 14, mp)
    mp_update = msg(2, struct.pack("!H", 0) + struct.pack("!H", len(mp_attrs)) + mp_attrs)
    seeds = {
        "open": open_,
        "keepalive": msg(4, b""),
        "notification": msg(3, bytes([6, 2]) + b"shutdown"),
        "route-refresh": msg(5, struct.pack("!HBB", 1, 0, 1)),
        "update": update,
        "withdraw": withdraw,
        "update-rfc5549": mp_update,
    }
    for name, data in seeds.items():
        write("bgp_decode", name, data)
        if data[18] == 2:
            # The bgp_update harness reads a session octet first: 0, no ADD-PATH.
            write("bgp_update", name, b"\0" + data[19:])
    # ADD-PATH sessions (session octet 1): a 4-octet path id before each prefix,
    # in the NLRI field, the withdrawn routes and MP_REACH_NLRI.
    ap_nlri = struct.pack("!I", 1) + nlri[:5] + struct.pack("!I", 2) + nlri[5:]
    write("bgp_update", "add-path-update", b"\1" + struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + ap_nlri)
    ap_withdrawn = struct.pack("!I", 7) + bytes([32]) + ip4("10.77.1.1")
    write("bgp_update", "add-path-withdraw", b"\1" + struct.pack("!H", len(ap_withdrawn)) + ap_withdrawn + struct.pack("!H", 0))
    ap_mp = mp[:-5] + struct.pack("!I", 3) + mp[-5:]
    ap_mp_attrs = attr(0x40, 1, b"\0") + attr(0x40, 2, b"") + attr(0x80, 14, ap_mp)
    write("bgp_update", "add-path-rfc5549", b"\1" + struct.pack("!H", 0) + struct.pack("!H", len(ap_mp_attrs)) + ap_mp_attrs)


def providers():
    def script(replies):
        out = bytes([len(replies) - 1])
        statuses = [200, 200, 200, 201, 202, 204, 400, 401, 403, 404, 409, 412, 429, 503]
        headers = ["Retry-After", "ETag", "opc-next-page", "opc-request-id", "Location",
                   "Azure-AsyncOperation", "x-ms-request-id", "Content-Type", "x-amzn-RequestId", "if-match"]
        for status, hdrs, body in replies:
            out += bytes([statuses.index(status), len(hdrs)])
            for k, v in hdrs:
                out += bytes([headers.index(k), len(v)]) + v.encode()
            body = body if isinstance(body, bytes) else json.dumps(body).encode()
            out += struct.pack("!H", len(body)) + body
        return out

    def case(call, last_octet=10, stale_at=0):
        return bytes([call, last_octet, stale_at])

    nic = "/subscriptions/s1/resourceGroups/g1/providers/Microsoft.Network/networkInterfaces/"
    token = (200, [], {"access_token": "t0k3n", "expires_in": "3600", "token_type": "Bearer"})

    def ipconf(name, ip, primary=False):
        return {"name": name, "id": nic + "cer/ipConfigurations/" + name, "etag": "W/\"1\"",
                "properties": {"privateIPAddress": ip, "primary": primary,
                               "subnet": {"id": "/subscriptions/s1/resourceGroups/g1/providers/Microsoft.Network/virtualNetworks/v/subnets/s"}}}

    def nic_body(name, confs):
        return {"id": nic + name, "name": name, "etag": "W/\"7\"", "properties": {"ipConfigurations": confs}}

    ours = nic_body("cer", [ipconf("primary", "10.0.0.4", True)])
    theirs = nic_body("workload", [ipconf("primary", "10.0.0.5", True), ipconf("w1", "10.0.0.10")])
    listing = (200, [], {"value": [ours, theirs], "nextLink": ""})
    for call in range(5):
        write("azure_replies", "call%d-list" % call, case(call) + script([token, listing, (200, [], ours), (200, [], ours)]))
    write("azure_replies", "capture-async", case(1) + script([
        token, listing, (200, [], ours),
        (201, [("Azure-AsyncOperation", "{server}/op/1"), ("Retry-After", "0")], ours),
        (200, [], {"status": "Succeeded"}), (200, [], ours)]))
    write("azure_replies", "throttled", case(0) + script([
        token, (429, [("Retry-After", "1")], {"error": {"code": "TooManyRequests", "message": "slow down"}}), listing]))
    write("azure_replies", "paged", case(4) + script([
        token, (200, [], {"value": [ours], "nextLink": "{server}/page2"}), (200, [], {"value": [theirs]})]))

    vnic = {"id": "ocid1.vnic.oc1.fuzz.cer", "subnetId": "ocid1.subnet.oc1.fuzz.s1"}
    def pip(ip, vnic_id, primary=False, n=1):
        return {"id": "ocid1.privateip.oc1.fuzz.%d" % n, "ipAddress": ip, "vnicId": vnic_id,
                "isPrimary": primary, "subnetId": "ocid1.subnet.oc1.fuzz.s1"}
    listed = (200, [("opc-request-id", "r1")], [pip("10.0.0.10", "ocid1.vnic.oc1.fuzz.workload", n=2)])
    for call in range(5):
        write("oci_replies", "call%d" % call, case(call) + script([
            listed, (200, [("ETag", "e1")], pip("10.0.0.10", "ocid1.vnic.oc1.fuzz.workload", n=2)),
            (200, [("ETag", "e2")], pip("10.0.0.10", "ocid1.vnic.oc1.fuzz.cer", n=2)),
            (200, [], [pip("10.0.0.4", "ocid1.vnic.oc1.fuzz.cer", True, 3)])]))
    write("oci_replies", "paged", case(4) + script([
        (200, [("opc-next-page", "p2")], [pip("10.0.0.4", "ocid1.vnic.oc1.fuzz.cer", True, 3)]),
        (200, [], [pip("10.0.0.11", "ocid1.vnic.oc1.fuzz.cer", n=4)])]))
    write("oci_replies", "conflict", case(1, 10, 2) + script([
        listed, (409, [], {"code": "Conflict", "message": "busy"}), (412, [], {"code": "PreconditionFailed", "message": "etag"}),
        (200, [("ETag", "e3")], pip("10.0.0.10", "ocid1.vnic.oc1.fuzz.cer", n=2))]))
    _ = vnic

    ns = ' xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'

    def enis(*items, token=None):
        body = "".join(
            "<item><networkInterfaceId>%s</networkInterfaceId><subnetId>subnet-0fuzz</subnetId>"
            "<vpcId>vpc-0fuzz</vpcId><status>in-use</status><privateIpAddressesSet>%s</privateIpAddressesSet></item>"
            % (eni, "".join("<item><privateIpAddress>%s</privateIpAddress><primary>%s</primary></item>"
                            % (ip, "true" if primary else "false") for ip, primary in ips))
            for eni, ips in items)
        nt = "<nextToken>%s</nextToken>" % token if token else ""
        return ("<DescribeNetworkInterfacesResponse%s><requestId>r1</requestId><networkInterfaceSet>%s"
                "</networkInterfaceSet>%s</DescribeNetworkInterfacesResponse>" % (ns, body, nt)).encode()

    ours = ("eni-0cer", [("10.0.0.4", True)])
    theirs = ("eni-0workload", [("10.0.0.5", True), ("10.0.0.10", False)])
    assigned = ("<AssignPrivateIpAddressesResponse%s><requestId>r2</requestId><networkInterfaceId>eni-0cer"
                "</networkInterfaceId><assignedPrivateIpAddressesSet><item><privateIpAddress>10.0.0.10"
                "</privateIpAddress></item></assignedPrivateIpAddressesSet></AssignPrivateIpAddressesResponse>" % ns).encode()
    unassigned = ("<UnassignPrivateIpAddressesResponse%s><requestId>r3</requestId><return>true</return>"
                  "</UnassignPrivateIpAddressesResponse>" % ns).encode()
    throttled = (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
                 b"</Message></Error></Errors><RequestID>r4</RequestID></Response>")
    xml = [("Content-Type", "text/xml;charset=UTF-8")]
    for call in range(5):
        write("aws_replies", "call%d" % call, case(call) + script([
            (200, xml, enis(theirs)), (200, xml, assigned), (200, xml, enis(ours, theirs)), (200, xml, unassigned)]))
    write("aws_replies", "paged", case(4) + script([
        (200, xml, enis(ours, token="t2")), (200, xml, enis(("eni-0cer", [("10.0.0.11", False)])))]))
    write("aws_replies", "throttled", case(1) + script([(400, xml, throttled), (200, xml, enis(theirs)), (200, xml, assigned)]))


def control_plane():
    base = """[node]
name = "cer-a"
router_id = "10.10.0.2"
asn = 65000
transport_address = "10.10.0.2"

[bgp]
hold_time = 9
connect_retry_secs = 1
graceful_restart_secs = 120
listen = ["10.10.0.2"]
[[bgp.neighbor]]
address = "10.10.0.1"
remote_as = "internal"
description = "route reflector"

[sam]
identity = "65000:1002"
marker_community = "65000:999"
marker_prefix = "10.255.0.2/32"
pool = ["10.77.60.0/24"]
endpoints = ["10.77.60.10"]
state_file = "/nonexistent/endpoints.json"

[[tunnel]]
id = 3
remote = "10.10.0.3"
name = "cer-b"
kind = "gre"
"""
    captures = {
        "onprem": '[capture]\nmode = "onprem"\nvrrp_instance = "VI_1"\ngarp_count = 3\n',
        "aws": '[capture]\nmode = "aws"\n[capture.aws]\nregion = "eu-west-1"\neni_id = "eni-0abc"\nendpoint_url = "http://127.0.0.1:1"\n'
               '[capture.reconciler]\nconfirm_timeout_secs = 15\nresync_secs = 15\nbackoff_max_secs = 5\n',
        "azure": '[capture]\nmode = "azure"\n[capture.azure]\nnic_id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/n"\n',
        "oci": '[capture]\nmode = "oci"\n[capture.oci]\nvnic_id = "ocid1.vnic.oc1.x.y"\nsubnet_id = "ocid1.subnet.oc1.x.y"\nregion = "eu-frankfurt-1"\n'
               'auth = { type = "instance_principal" }\n',
    }
    write("control_config", "base", base.encode())
    for name, c in captures.items():
        write("control_config", name, (base + c).encode())
    write("control_config", "reflector", (base.replace('remote_as = "internal"', 'remote_as = "internal"\nroute_reflector_client = true')
                                         + '[dataplane]\nfeed_socket = "/run/x.sock"\nlan_port = "lan"\n[admin]\nsocket = "/run/c.sock"\n').encode())

    def lines(*msgs):
        return ("\n".join(json.dumps(m) for m in msgs) + "\n").encode()
    write("control_admin", "all", lines(
        {"cmd": "status"}, {"cmd": "bgp_summary"}, {"cmd": "bgp_rib"}, {"cmd": "bgp_rib", "prefix": "10.77.60.10/32"},
        {"cmd": "owners"}, {"cmd": "markers"}, {"cmd": "fib"}, {"cmd": "trap"}, {"cmd": "trap", "since": 3},
        {"cmd": "capture"}, {"cmd": "explain", "ip": "10.77.60.10"}))
    write("control_admin", "endpoints", lines(
        {"cmd": "endpoint_add", "ip": "10.77.60.11"}, {"cmd": "endpoint_add", "ip": "10.77.60.12", "local_pref": 200},
        {"cmd": "endpoint_move", "ip": "10.77.60.11"}, {"cmd": "explain", "ip": "10.77.60.11"},
        {"cmd": "endpoint_remove", "ip": "10.77.60.10"}, {"cmd": "owners"}, {"cmd": "endpoint_add", "ip": "192.0.2.1"}))


if __name__ == "__main__":
    control_plane()
    dataplane()
    control()
    bgp()
    providers()
