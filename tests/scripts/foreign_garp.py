# Three gratuitous ARP replies claiming IP from MAC on IFACE: a second holder.
# Used by tests/tests/onprem.rs (FOREIGN_GARP).
import sys, time
from scapy.all import Ether, ARP, conf
conf.verb = 0
iface, ip, mac = sys.argv[1], sys.argv[2], sys.argv[3]
pkt = Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst="ff:ff:ff:ff:ff:ff", pdst=ip)
s = conf.L2socket(iface=iface)
for _ in range(3):
    s.send(pkt)
    time.sleep(0.1)
