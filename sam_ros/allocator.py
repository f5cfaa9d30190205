"""Keep a long-running process's memory flat: large blocks go back to the OS when freed.

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), after which
frame-sized tensors come from the heap and fragment it: a 10-minute 30 Hz soak of the node grew 609 ->
702 MB in one step. Fixing the thresholds (as MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ do) kept it
flat at ~420 MB (bench/soak.py). Only on glibc; elsewhere nothing changes.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
THRESHOLD_BYTES = 1 << 20


def return_large_blocks_to_os(threshold_bytes: int = THRESHOLD_BYTES) -> bool:
    """Blocks above ``threshold_bytes`` are mmapped and unmapped when freed; False where not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, threshold_bytes))
