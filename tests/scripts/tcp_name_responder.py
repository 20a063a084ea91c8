# Listens on ADDR:7000 and answers every TCP connection with NAME, then closes it.
# Used by tests/tests/dataplane.rs (RESPONDER).
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7000))
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[2].encode())
    c.close()
