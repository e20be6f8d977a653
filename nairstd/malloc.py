"""glibc malloc tuning for large tensors on the CPU (predict, bench and training runs).

By default glibc returns every freed block above ~128 KiB-32 MiB to the OS and page-faults it
back on the next allocation. A 256x256 activation at batch 8 and 16 channels is 32 MiB, so every
training step and every native-resolution forward paid those page faults again (25 % of the CPU
time was system time in a training worker). Keeping freed blocks costs no maths.
"""

from __future__ import annotations

import ctypes
import os

_TUNED = False


def tune_malloc() -> bool:
    """Raise glibc's mmap / trim thresholds to 64 / 128 MiB for this process.

    Measured: na_irstd tiny native branch 7.7 ms -> 3.5 ms at batch 1 (predict); training steps
    in README, "Training throughput". Process-wide and cannot be undone; `NAIRSTD_MALLOC_TUNING=0`
    turns it off (the A/B of `python -m nairstd bench train --malloc both`). Returns False where
    glibc is not available or it is turned off.
    """
    global _TUNED
    if os.environ.get("NAIRSTD_MALLOC_TUNING", "1") == "0":
        return False
    if _TUNED:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 64 << 20) == 1
    _TUNED = ok and libc.mallopt(m_trim_threshold, 128 << 20) == 1
    return _TUNED
