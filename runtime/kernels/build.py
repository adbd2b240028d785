"""One safe way to compile a C++ kernel on first use, shared by every kernel of the runtime.

torch's load_inline builds in ~/.cache/torch_extensions/<name> behind a lock file; a build killed mid-way
(Ctrl-C, OOM, a test timeout) leaves that lock behind and every later run waits on it forever. Here each
build happens in a private temporary directory under the project's cache ($LLAMA_COMPRESS_CACHE/kernels,
default ~/.cache/llama-compress/kernels, or $LLAMA_COMPRESS_KERNELS_DIR) and the finished library is renamed into place, so:
  - there is no lock: two processes building at once each finish and the last rename wins (same bytes);
  - a killed build leaves only its own temporary directory, which the next build removes once its owner
    process is dead, and a half-written library is never visible under the final name;
  - the final name holds a hash of the source, the compiler flags, torch's version and the Python ABI, so
    a cache shared by machines or venvs never hands one a library built for another. The flags are
    explicit `-m...` target flags (never -march=native), checked against the CPU before loading.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

import torch

_TMP_PREFIX = ".build-"
_loaded: dict[str, ModuleType] = {}


def kernels_cache() -> Path:
    """$LLAMA_COMPRESS_KERNELS_DIR, else $LLAMA_COMPRESS_CACHE/kernels (default ~/.cache/llama-compress/kernels)."""
    from ..presets import cache_dir

    d = os.environ.get("LLAMA_COMPRESS_KERNELS_DIR")
    return Path(d) if d else cache_dir() / "kernels"


def build_key(name: str, source: str, cflags: Sequence[str], ldflags: Sequence[str]) -> str:
    """The module name a build is stored under: `name` + a hash of everything that changes the binary."""
    h = hashlib.sha256()
    for part in (source, " ".join(cflags), " ".join(ldflags), torch.__version__, sys.version,
                 sys.implementation.cache_tag or ""):
        h.update(part.encode())
        h.update(b"\0")
    return f"{name}_{h.hexdigest()[:16]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_builds(root: Path, max_age_s: float = 24 * 3600) -> list[Path]:
    """Remove temporary build directories whose owner process is dead (or that are older than a day)."""
    removed = []
    if not root.is_dir():
        return removed
    for d in root.glob(f"{_TMP_PREFIX}*"):
        try:
            pid = int(d.name[len(_TMP_PREFIX):].split("-")[0])
        except ValueError:
            pid = -1
        try:
            old = time.time() - d.stat().st_mtime > max_age_s
        except OSError:
            continue
        if pid <= 0 or not _pid_alive(pid) or old:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _import(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_extension(name: str, source: str, functions: Sequence[str], cflags: Sequence[str] = (),
                    ldflags: Sequence[str] = (), label: str | None = None,
                    echo: Callable[[str], None] | None = None, torch_headers: bool = True) -> ModuleType:
    """Compile `source` (a torch C++ extension exposing `functions`) once and return the loaded module.

    Raises whatever the compiler raised (the caller turns it into a fallback and a reason). `label` names
    the kernel in the one-line notice printed while it compiles. torch_headers=False: plain pybind11
    functions, no torch/extension.h (seconds to compile instead of a minute).
    """
    cflags, ldflags = list(cflags), list(ldflags)
    key = build_key(name, source + f"//headers={torch_headers}", cflags, ldflags)
    if key in _loaded:
        return _loaded[key]
    root = kernels_cache()
    final = root / f"{key}.so"
    if final.is_file():
        try:
            mod = _import(key, final)
            _loaded[key] = mod
            return mod
        except ImportError:  # damaged or foreign: rebuild over it
            pass
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(root)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=root))
    say = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    say(f"compiling the {label or name} kernel (once, ~1 min) into {root}")
    try:
        from torch.utils.cpp_extension import load_inline

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = load_inline(key, cpp_sources=[source], functions=list(functions), extra_cflags=cflags,
                              extra_ldflags=ldflags, build_directory=str(tmp), verbose=False,
                              no_implicit_headers=not torch_headers, with_pytorch_error_handling=torch_headers)
        built = tmp / f"{key}.so"
        if not built.is_file():
            raise RuntimeError(f"the build left no {built.name}")
        os.replace(built, final)  # atomic: the final name only ever holds a complete library
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _loaded[key] = mod
    return mod
