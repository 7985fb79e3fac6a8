# socket(AF_VSOCK) inside an island: the islands' seccomp profile answers EPERM; exit 3 says so.
import socket

try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    print("vsock socket opened")
except OSError as e:
    print("socket(AF_VSOCK):", e)
    raise SystemExit(3)
