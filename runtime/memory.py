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


def limit_heap_fragmentation(threshold: int = 4 << 20) -> None:
    """Serve every allocation of at least `threshold` bytes by its own mmap (glibc M_MMAP_THRESHOLD; a
    no-op elsewhere), so that a freed large tensor goes straight back to the kernel. Setting it also
    stops glibc from raising the threshold (up to 32 MiB) each time such a block is freed, which is
    what lets a layer loop's 4-32 MiB activations and temporaries fragment the heap. Process-wide: the
    long offline stages call it, the runtime does not."""
    lib = _libc()
    if lib is not None:
        lib.mallopt(-3, int(threshold))  # M_MMAP_THRESHOLD


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the kernel (glibc malloc_trim; a no-op elsewhere).

    Why: glibc keeps freed chunks below its mmap threshold (which grows to 32 MiB as large blocks are freed)
    in its heaps, and a long loop of large temporaries of changing sizes, like one decoder layer after
    another, leaves those heaps fragmented: the resident size then climbs by layer although nothing is held.
    malloc_trim(0) returns every whole free page, also from the middle of a heap."""
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
