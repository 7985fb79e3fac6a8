# setns(3, CLONE_NEWNET) from inside an island, through libc (python 3.11 has no os.setns).
import ctypes
import os

c = ctypes.CDLL(None, use_errno=True)
r = c.setns(3, 0x40000000)
print("setns:", r, os.strerror(ctypes.get_errno()) if r else "joined")
