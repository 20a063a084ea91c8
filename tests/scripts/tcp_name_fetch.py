# Connects to ADDR:7000 (retrying for 8 s) and prints what the responder sends.
# Used by tests/tests/dataplane.rs (FETCH).
import socket, sys, time
deadline = time.time() + 8
while True:
    try:
        s = socket.create_connection((sys.argv[1], 7000), timeout=2)
        print(s.recv(64).decode())
        break
    except OSError as e:
        if time.time() > deadline:
            print("error", e)
            sys.exit(1)
        time.sleep(0.2)
