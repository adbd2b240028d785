"""The allocator policy of the long layer loops (runtime/memory.py): freed memory is reused without fresh
page faults, and release_free_memory() still hands it back to the kernel.

Each case runs in its own interpreter: the policy is process-wide and must not leak into the test process.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import memory

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(memory._libc() is None, reason="glibc only (the policy is a no-op elsewhere)")

_PROBE = r"""
import json, resource, sys, torch
from runtime.memory import heap_for_layer_loops, release_free_memory

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

if sys.argv[1] == "policy":
    heap_for_layer_loops()
w = torch.randn(4096, 4096)  # 64 MB temporaries: above glibc's largest dynamic mmap threshold (32 MiB)

def step():  # what a range search does thousands of times: the same few large temporaries again
    return float(((w / 3.0).round().clamp(-8, 8) * 3.0 - w).pow(2).sum())

step()
f0 = faults()
for _ in range(5):
    step()
f_loop = faults() - f0
n = 16 << 20
x = torch.ones(4 * n); before = rss_anon(); del x
release_free_memory()
print(json.dumps({"faults": f_loop, "returned": before - rss_anon(), "bytes": 4 * n * 4}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_policy_reuses_freed_large_temporaries_instead_of_fresh_pages():
    pages = 4096 * 4096 * 4 // 4096  # one 64 MB temporary in 4 KiB pages
    default, policy = _probe("default"), _probe("policy")
    assert default["faults"] > 5 * 3 * pages, default  # glibc's default: each temporary comes back as fresh pages
    assert policy["faults"] < default["faults"] / 4, (policy, default)  # measured ~10x fewer


def test_release_free_memory_still_returns_freed_memory_under_the_policy():
    r = _probe("policy")
    assert r["returned"] > 0.9 * r["bytes"], r
