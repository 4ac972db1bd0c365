"""Keep freed memory in the process, so that every forward does not fault its pages in again.

glibc hands blocks above a threshold (at most 32 MB) straight to ``mmap`` and gives them back
on free, and trims the top of the heap; a Video Swin forward allocates and frees hundreds of
megabytes of activations, so on Linux each forward took ~100k page faults (~0.1 s of a 0.8 s
bf16 Swin-T view on 2 cores, 10-15% of the time, in fp32 and bf16 alike). With mmap off and
trimming off, freed blocks are reused; the process keeps its high-water mark (the peak memory
is unchanged, only never returned before exit).

Applied once per process by :class:`vswin_cli.engine.Engine`. Left alone where the C library is
not glibc, where the user tunes malloc already (``MALLOC_*`` or ``GLIBC_TUNABLES`` set), or with
``VSWIN_KEEP_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_lock = threading.Lock()
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Turn off glibc's mmap for large blocks and heap trimming in this process; True if done."""
    global _applied
    with _lock:
        if _applied is not None:
            return _applied
        _applied = False
        if os.environ.get("VSWIN_KEEP_MEMORY", "") == "0" or any(os.environ.get(name) for name in _USER_SETTINGS):
            return False
        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        # Both or neither helps: either alone makes glibc map or trim more often, not less.
        # mallopt fails only on an unknown parameter, which these are not on glibc.
        no_mmap = mallopt(M_MMAP_MAX, 0)
        no_trim = mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        _applied = bool(no_mmap and no_trim)
        return _applied
