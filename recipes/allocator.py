"""glibc's malloc told to keep freed memory for reuse: every entry script calls it at start-up.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves each request above
32 MB with a fresh ``mmap`` and hands it back with ``munmap`` on free, so every large
intermediate of a step (a [8, 16, 424, 508] activation of PIQ's decoder is 110 MB) is a new
mapping whose pages the kernel must fault in and zero on first touch. On the 2-core AVX2-only
AMD EPYC (a VM) that cost more than the arithmetic: the offline quickstart's PIQ step spent
146 s of its 249 s in the kernel. With ``mmap`` off for the heap (``M_MMAP_MAX = 0``) and the
heap's top kept (``M_TRIM_THRESHOLD`` 2 GiB), freed blocks are reused: 249 s -> 147 s, the
same test metrics to the last digit (the allocator changes no arithmetic). The process keeps
its peak memory instead of returning it between steps; the peak itself does not change.

Nothing is changed where the user has chosen an allocator or its settings (``LD_PRELOAD`` of
jemalloc / tcmalloc, ``MALLOC_*_`` variables, ``GLIBC_TUNABLES`` with ``glibc.malloc``), nor
outside Linux or on a C library without ``mallopt`` (musl).

Example
-------
>>> keep_freed_memory(environ={"MALLOC_MMAP_MAX_": "65536"})
'not changed: the environment sets MALLOC_MMAP_MAX_'
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int: 2 GiB


def _users_choice(environ) -> str | None:
    """The environment variable by which the user chose an allocator or its settings, or None."""
    for name in environ:
        if name.startswith("MALLOC_") and name.endswith("_"):
            return name
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    if environ.get("LD_PRELOAD"):
        return "LD_PRELOAD"
    return None


def keep_freed_memory(environ=None) -> str:
    """Sets glibc's ``M_MMAP_MAX`` to 0 and ``M_TRIM_THRESHOLD`` to 2 GiB for this process (and
    the processes it forks); returns what was done, in words."""
    environ = os.environ if environ is None else environ
    chosen = _users_choice(environ)
    if chosen:
        return f"not changed: the environment sets {chosen}"
    if not sys.platform.startswith("linux"):
        return "not changed: not Linux"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "not changed: the C library has no mallopt"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "not changed: mallopt refused"
    return "glibc malloc keeps freed memory (M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB)"
