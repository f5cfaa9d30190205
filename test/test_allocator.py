"""The allocator setting takes effect: glibc then maps a 2 MiB block instead of carving it from the heap."""
import subprocess
import sys

PROBE = """
import ctypes, sys
from sam_ros.allocator import return_large_blocks_to_os
libc = ctypes.CDLL(None)
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
big = libc.malloc(16 << 20); libc.free(big)  # glibc now serves blocks up to 16 MiB from the heap
if sys.argv[1] == "on":
    assert return_large_blocks_to_os()
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def mapped_blocks(setting: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, setting], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_large_blocks_are_mapped_only_with_the_setting():
    assert mapped_blocks("off") == 0  # the raised dynamic threshold: from the heap
    assert mapped_blocks("on") == 1   # mmapped, so freeing it returns it to the OS
