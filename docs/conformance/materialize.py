"""Make a complete, runnable copy of the conformance kit: the committed kit plus the files it takes from the
shared data folder instead of committing copies of them (shared_files.json lists them).

    PYTHONPATH=. python docs/conformance/materialize.py OUT [--force]

The repository never holds byte copies of ../shared (the project's rule), so the committed artifacts lack
e.g. anti_weight/tokenizer.model, which is stories260K's tok512.model unchanged. Each placed file is checked
against the sha256 its artifact.json records, then the whole artifact passes `verify`. The shared folder is
runtime.presets.shared_dir() ($LLAMA_COMPRESS_SHARED, else ../shared beside the checkout).

check.py needs no materialised copy: it reads only expected.safetensors and quant_vectors.safetensors.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent
REPO = KIT.parent.parent
sys.path.insert(0, str(REPO))

from runtime.atomic import atomic_dir  # noqa: E402
from runtime.errors import UserError  # noqa: E402
from runtime.presets import shared_dir  # noqa: E402
from runtime.quant.artifact import read_manifest, sha256_file, verify  # noqa: E402

SHARED_FILES = "shared_files.json"  # {artifact dir in the kit: {file in the artifact: path under shared_dir()}}


def shared_files(kit: Path = KIT) -> dict[str, dict[str, str]]:
    return json.loads((kit / SHARED_FILES).read_text())


def place_shared_files(kit: Path, shared: Path | None = None) -> None:
    """Copy every file shared_files.json names from `shared` into the artifacts of the kit copy `kit`,
    each verified against its artifact's manifest; raises UserError naming the file and the fix."""
    shared = Path(shared) if shared is not None else shared_dir()
    for art_rel, files in shared_files(kit).items():
        art = kit / art_rel
        listed = read_manifest(art).get("files", {})
        for rel, shared_rel in sorted(files.items()):
            src = shared / shared_rel
            if rel not in listed:
                raise UserError(f"{SHARED_FILES} names {art_rel}/{rel}, which {art_rel}/artifact.json does not "
                                "list: the kit is inconsistent; rebuild it with scripts/make_conformance_kit.py")
            if not src.is_file():
                raise UserError(f"the conformance kit takes {art_rel}/{rel} from the shared data, but {src} does "
                                "not exist: set LLAMA_COMPRESS_SHARED to the shared folder (the one holding "
                                f"{Path(shared_rel).parts[0]}/), or place it at ../shared beside the checkout")
            want, got = listed[rel]["sha256"], sha256_file(src)
            if got != want:
                raise UserError(f"{src} has sha256 {got}, but {art_rel}/artifact.json records {want} for {rel}: "
                                "the shared data differs from the one the kit was built from; restore it (check "
                                "data/SHA256SUMS there) or rebuild the kit with scripts/make_conformance_kit.py")
            shutil.copyfile(src, art / rel)
        problems = verify(art)
        if problems:
            raise UserError(f"the materialised {art_rel} failed its checksum check: {'; '.join(problems[:3])}: "
                            "the committed kit was changed; restore it from git or rebuild it")


def materialize(out: str | Path, shared: Path | None = None, overwrite: bool = False) -> Path:
    """Write the complete kit (committed files + shared files) to `out`, atomically; returns `out`."""
    out = Path(out)
    with atomic_dir(out, overwrite) as tmp:
        shutil.copytree(KIT, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        place_shared_files(tmp, shared)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="directory to create (the complete kit)")
    ap.add_argument("--force", action="store_true", help="replace `out` if it exists")
    a = ap.parse_args()
    try:
        materialize(a.out, overwrite=a.force)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: run e.g. runtime run --quant {a.out}/static/artifact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
