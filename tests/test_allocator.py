"""recipes.allocator: freed tensors reused instead of faulted in afresh (counted, not timed)."""

import subprocess
import sys

from recipes.allocator import keep_freed_memory

# Allocates, fills and frees a 360 MB tensor, then a 120 MB one twice; prints the minor page
# faults of the two 120 MB rounds (the first round grows the heap either way).
PROBE = """
import resource, sys, torch
from recipes.allocator import keep_freed_memory
said = keep_freed_memory() if sys.argv[1] == "keep" else "default"
faults = []
for size in (90_000_000, 30_000_000, 30_000_000):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensor = torch.empty(size).fill_(1.0)
    del tensor
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(said)
print(sum(faults[1:]))
"""


def _probe(mode, env=None):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True
    )
    said, faults = result.stdout.strip().splitlines()
    return said, int(faults)


def test_freed_tensors_are_reused_without_page_faults():
    said, faults = _probe("keep", env={"PATH": "/usr/bin:/bin"})
    assert said.startswith("glibc malloc keeps freed memory"), said
    assert faults < 2_000, faults  # 120 MB is 29,297 pages of 4 KiB
    said, faults = _probe("default", env={"PATH": "/usr/bin:/bin"})
    assert faults > 2 * 20_000, faults  # glibc's default: a fresh mapping every round


def test_the_users_own_allocator_settings_are_left_alone():
    for environ, name in (
        ({"MALLOC_ARENA_MAX_": "2"}, "MALLOC_ARENA_MAX_"),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}, "GLIBC_TUNABLES"),
        ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "LD_PRELOAD"),
    ):
        assert keep_freed_memory(environ=environ) == f"not changed: the environment sets {name}"
