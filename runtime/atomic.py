"""Whole-or-nothing outputs: write under a temporary name, rename when complete.

Temporary names carry the writer's pid (`.NAME.tmp-PID-XXXX`, `.NAME.old-PID`), so a later run can tell
the leftovers of a killed writer (its pid is gone) from those of one still running, and removes them.
`--force` replaces only a directory that one of our manifests describes completely (`check_out`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UserError

# The manifests that make a directory one of ours: file name -> the format name it must declare.
# Each lists every other file it covers under "files" (the import marker too), so --force can tell
# a user's own notes.txt from a file we wrote.
OWNED_MANIFESTS = {"artifact.json": "llama-compress-artifact", "cut.json": "llama-compress-tp-cut",
                   "llama-compress-import.json": "llama-compress-import",
                   "llama-compress-export.json": "llama-compress-export"}
IMPORT_MARKER = "llama-compress-import.json"
EXPORT_MARKER = "llama-compress-export.json"  # compress export's outputs (compress/export/marker.py)

_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-.*)?$")


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(parent: Path, name: str) -> list[Path]:
    """Remove `.name.tmp-PID-*` / `.name.old-PID` left in `parent` by writers that are dead; returns them.

    An `.old-PID` whose writer died between its two renames still holds the previous output: it is put
    back when `name` itself is missing, so a kill never loses the old result.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        m = _TMP_RE.match(p.name)
        if not m or m.group("name") != name or _pid_alive(int(m.group("pid"))):
            continue
        if m.group("kind") == "old" and not (parent / name).exists():
            p.rename(parent / name)
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def _owned_files(d: Path) -> tuple[str, set[str]] | None:
    """(manifest name, the files it covers) if one of our manifests describes `d`, else None."""
    for mf, fmt in OWNED_MANIFESTS.items():
        p = d / mf
        if not p.is_file():
            continue
        try:
            m = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        f = m.get("format") if isinstance(m, dict) else None
        name = f.get("name") if isinstance(f, dict) else f
        if name != fmt or not isinstance(m.get("files"), dict):
            return None
        return mf, {mf, *m["files"]}
    return None


def check_out(out: str | Path, overwrite: bool, option: str = "--out") -> Path:
    """The absolute output path, refused up front (before any work) when writing it would fail or destroy.

    With `overwrite`, an existing `out` is accepted only when one of our manifests lists every file in it:
    a user's own directory (or one with a user's file added) is never deleted.
    """
    p = Path(os.path.abspath(Path(out).expanduser()))
    if not p.name or p == p.parent:
        raise UserError(f"{option} {out}: the filesystem root cannot be an output directory; choose a new directory")
    cwd = Path.cwd().resolve()
    if p.exists() and (cwd == p.resolve() or p.resolve() in cwd.parents):
        raise UserError(f"{option} {out} is the current directory (or holds it): an output directory is replaced "
                        "as a whole, so choose a new directory such as ./out")
    if not p.exists():
        return p
    if not overwrite:
        raise UserError(f"{p} already exists: choose another {option}, or pass --force to replace it "
                        "(only a directory that llama-compress wrote is replaced)")
    if not p.is_dir():
        raise UserError(f"{p} is a file, not an output directory of llama-compress: --force does not replace it; "
                        f"choose another {option}")
    owned = _owned_files(p)
    if owned is None:
        raise UserError(f"{p} is not a directory that llama-compress wrote (no {', '.join(OWNED_MANIFESTS)} "
                        f"of ours): --force replaces only those; choose another {option} "
                        "or move it away yourself")
    mf, files = owned
    extra = sorted(q.relative_to(p).as_posix() for q in p.rglob("*")
                   if (q.is_file() or q.is_symlink()) and q.relative_to(p).as_posix() not in files)
    if extra:
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise UserError(f"{p} holds files its {mf} does not list ({', '.join(extra[:5])}{more}): --force would "
                        f"delete them; move them out of {p} first or choose another {option}")
    return p


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary directory beside `out`; on success it becomes `out`, on error it is removed."""
    out = check_out(out, overwrite, option)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: outputs are for other accounts too
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_out_file(path: str | Path, option: str) -> Path:
    """Refuse, before any work, an output file whose directory is missing or that names a directory."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    if p.is_dir():
        raise UserError(f"{option} {path} is a directory: give a file name, e.g. {Path(path) / 'result.json'}")
    if not p.parent.is_dir():
        raise UserError(f"{option} {path}: directory {p.parent} does not exist; create it first or choose "
                        "another path")
    return p


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
