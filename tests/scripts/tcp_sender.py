# Sends TOTAL bytes over TCP to HOST PORT; prints the count, the sha256 and the seconds taken.
# Used by tests/src/lib.rs (TCP_SENDER).
import hashlib, socket, sys, time
host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = hashlib.sha256(b"cer").digest() * 2048      # 64 KiB, then varied per block
h = hashlib.sha256()
s = socket.create_connection((host, port), timeout=30)
sent = 0
i = 0
t0 = time.time()
while sent < total:
    chunk = hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:]
    chunk = chunk[: min(len(chunk), total - sent)]
    s.sendall(chunk)
    h.update(chunk)
    sent += len(chunk)
    i += 1
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(sent, h.hexdigest(), round(time.time() - t0, 2))
