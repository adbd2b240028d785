"""Memory facts of this machine (MemAvailable) and byte formatting, shared by the compressor's and
the runtime's pre-flight checks."""
from __future__ import annotations

import os

GiB = 1024**3


def mem_available() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), None where unknown.

    LLAMA_COMPRESS_MEM_AVAILABLE (bytes) overrides it: tests and containers whose /proc/meminfo shows
    the host's memory rather than the cgroup limit."""
    env = os.environ.get("LLAMA_COMPRESS_MEM_AVAILABLE")
    if env:
        return int(env)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def fmt_bytes(n: int | float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"
