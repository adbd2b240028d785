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


def heap_for_layer_loops() -> None:
    """Serve every allocation from glibc's heap and give freed memory back to the kernel only when
    release_free_memory() is called (M_MMAP_MAX = 0, M_TRIM_THRESHOLD = -1; a no-op elsewhere).

    Why: a layer's range search allocates and frees the same few hundred MB thousands of times. Served by
    mmap (glibc's default above 32 MiB, or the 4 MiB threshold used before), every one came back as fresh
    pages the kernel had to zero: on 2 layers of LLaMA-2-7B width, 120 M page faults, 249 s of system time
    and 315 s wall, against 4.8 M faults, 83 s and 235 s this way (README "Real scale"). The stages call
    release_free_memory() at their phase boundaries: that, not the mmap threshold, is what stops the
    resident size from climbing layer by layer. Process-wide: the long offline stages call it, the runtime
    does not."""
    lib = _libc()
    if lib is not None:
        lib.mallopt(-4, 0)  # M_MMAP_MAX: no allocation by mmap
        lib.mallopt(-1, -1)  # M_TRIM_THRESHOLD: -1 = never trim on free()


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the kernel (glibc malloc_trim; a no-op elsewhere).

    Why: glibc keeps freed chunks in its heaps (all of them after heap_for_layer_loops), and a long loop of
    large temporaries of changing sizes, like one decoder layer after another, leaves those heaps
    fragmented: the resident size then climbs by layer although nothing is held. malloc_trim(0) returns
    every whole free page, also from the middle of a heap."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def _libc():
    """glibc through ctypes, or None (musl, macOS, Windows: their allocators need neither call)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        try:
            import ctypes

            lib = ctypes.CDLL("libc.so.6")
            if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt"):
                _LIBC = lib
        except OSError:
            pass
    return _LIBC or None


_LIBC = None
