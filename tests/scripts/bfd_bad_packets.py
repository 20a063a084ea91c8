# Malformed and stray BFD control packets to DST:3784, one per kind, each a
# drop the receiver must count by name. Used by tests/tests/bfd.rs.
#   ttl          a well-formed packet sent with TTL 64 (single hop needs 255)
#   version      version 2
#   detect_mult_zero  detect multiplier 0
#   no_session   Your Discriminator that no session has
#   short        3 bytes
import socket
import struct
import sys

dst = sys.argv[1]


def packet(version=1, state=1, mult=3, my_disc=0x5EED, your_disc=0):
    # RFC 5880 4.1: vers/diag, state/flags, detect mult, length, discriminators,
    # desired min tx, required min rx, required min echo rx (microseconds).
    return struct.pack(
        "!BBBBIIIII",
        (version << 5),
        (state << 6),
        mult,
        24,
        my_disc,
        your_disc,
        300000,
        300000,
        0,
    )


def send(data, ttl):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.sendto(data, (dst, 3784))
    s.close()


send(packet(), 64)
send(packet(version=2), 255)
send(packet(mult=0), 255)
send(packet(state=3, your_disc=0xDEADBEEF), 255)
send(b"\x20\x40\x03", 255)
print("sent 5")
