"""Wall time and peak resident memory of a compress stage at real scale (README "Real scale").

Runs the stage as a user would (`compress quantize ...` in a subprocess under GNU time) on a checkpoint,
typically a random-weight LLaMA-2 from ../shared/peers/make_random_llama.py:

    python ../shared/peers/make_random_llama.py --preset 7b --out /data/7b \\
        --tokenizer-model ../shared/data/llama2-tokenizer/tokenizer.model
    python benchmarks/stage_scale.py --model /data/7b --out /data/7b-w8a8 --json results.jsonl -- \\
        --disable-level L6 --calib-samples 64 --calib-seq-len 512

and appends one JSON line: the command, layers, wall seconds, peak RSS (GNU time's "Maximum resident set
size") and the CPU model; the stage's own log (stderr, kept in the output above) gives the seconds per phase.
`--stage sparse` also records the seconds of every layer of the pruning half (`layer_s`, from its log).
Growth per layer: run it on --layers 2 and 4 checkpoints of the same width and compare.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default="quantize", choices=["quantize", "sparse"])
    ap.add_argument("--model", required=True, help="checkpoint directory, or a preset (7b, 13b) with --weights")
    ap.add_argument("--weights", help="the preset's weights directory (its recipe is used)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="append the result here (JSON lines)")
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="-- then options of the stage")
    a = ap.parse_args()
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if not Path(gnu_time).exists():
        sys.exit("GNU time (/usr/bin/time) is needed for the peak resident memory: apt-get install time")
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    exe = Path(sys.executable).with_name("compress")
    cmd = [str(exe), a.stage, "--model", a.model, *(["--weights", a.weights] if a.weights else []), "--out", str(a.out),
           "--threads", str(a.threads), "--force", *rest]
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as ef:  # a file, not a pipe: the progress bars would fill a pipe
        p = subprocess.Popen([gnu_time, "-v", *cmd], stdout=subprocess.PIPE, stderr=ef, text=True)
        lines = []
        for line in p.stdout:  # the stage's log, passed through as it comes and kept for its per-layer times
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        p.wait()
        ef.seek(0)
        err = ef.read()
    wall = time.time() - t0
    sys.stderr.write(err[-4000:])
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    cfg = json.loads((Path(a.weights or a.model) / "config.json").read_text())
    res = {"stage": a.stage, "command": " ".join(cmd[1:]), "exit": p.returncode, "layers": cfg["num_hidden_layers"],
           "hidden": cfg["hidden_size"], "wall_s": round(wall, 1),
           "peak_rss_gib": round(int(m.group(1)) * 1024 / 2**30, 3) if m else None, "cpu": cpu_model(),
           "cores": os.cpu_count()}
    # compress sparse logs "<what>: layer i in S s" per layer of its pruning half (and of its measuring pass)
    per_layer = [(m.group(1), float(m.group(2))) for m in
                 (re.search(r"^\s*(.+?): layer \d+ in ([\d.]+) s", ln) for ln in lines) if m]
    for what in dict.fromkeys(w for w, _ in per_layer):
        res.setdefault("layer_s", {})[what] = [s for w, s in per_layer if w == what]
    man = a.out / "artifact.json"
    if p.returncode == 0 and man.is_file():
        info = json.loads(man.read_text())
        res["artifact_bytes"] = sum(f["bytes"] for f in info["files"].values())
    print(json.dumps(res))
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
