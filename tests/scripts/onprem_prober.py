# Sends an ARP request for TARGET on IFACE every 50 ms until killed.
# Used by tests/tests/onprem.rs (PROBER).
import sys, time
from scapy.all import Ether, ARP, conf, get_if_hwaddr
conf.verb = 0
iface, src, target = sys.argv[1], sys.argv[2], sys.argv[3]
mac = get_if_hwaddr(iface)
pkt = Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=1, hwsrc=mac, psrc=src, pdst=target)
s = conf.L2socket(iface=iface)
print("probing", target, flush=True)
while True:
    s.send(pkt)
    time.sleep(0.05)
