# Receives one TCP connection on ADDR PORT; prints the byte count, the sha256 and the MSS it saw.
# Used by tests/src/lib.rs (TCP_RECEIVER).
import hashlib, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, port))
l.listen(1)
c, _ = l.accept()
mss = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
h = hashlib.sha256()
n = 0
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b)
    n += len(b)
c.close()
print(n, h.hexdigest(), mss, flush=True)
