"""Run under torchrun by the tensor-parallel tests: several TP jobs in one launch (torchrun starts cost
seconds). Each job runs on a subgroup of ranks; jobs on disjoint ranks run at the same time.

    python -m torch.distributed.run --nproc-per-node 4 tests/tp_worker.py JOBS.json OUT_DIR

JOBS.json: a list of {"name", "ranks", "kind": float|cut|artifact, "path", "ids", "new"}; the first
rank of each job writes OUT_DIR/<name>.json with its output_ids.
"""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from runtime.engine import Engine
from runtime.kv_prefix import prefix_length
from runtime.parallel.dist import TPContext, init_from_env
from runtime.parallel.load import build_tp_model, load_cut_unit


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    torch.set_num_threads(1)
    ctx = init_from_env(torch.device("cpu"))
    me = ctx.rank
    groups = [dist.new_group(j["ranks"]) for j in jobs]  # every rank creates every group, in order
    for job, g in zip(jobs, groups):
        if me not in job["ranks"]:
            continue
        sub = TPContext(job["ranks"].index(me), len(job["ranks"]), g, ctx.device)
        if job["kind"] == "cut":
            model = load_cut_unit(Path(job["path"]), sub, torch.float32)[0]
        elif job["kind"] == "artifact":
            from runtime.loaders import open_source
            from runtime.quant.artifact import ANTI_DIR, open_artifact

            p = Path(job["path"])
            model = build_tp_model(open_source(p / ANTI_DIR), sub, torch.float32, open_artifact(p), artifact_root=p)
        else:
            from runtime.loaders import open_source

            model = build_tp_model(open_source(job["path"]), sub, torch.float32)
        ids = torch.tensor(job["ids"], dtype=torch.int64)
        room = ids.shape[1] + job["new"] + prefix_length(model)  # an artifact's KV prefix takes positions too
        g_out = Engine(model, max_seq_len=room, eos_ids=[]).generate(ids, None, job["new"])
        kv = model.n_kv_local
        if sub.rank == 0:
            (out / f"{job['name']}.json").write_text(json.dumps({"output_ids": g_out.output_ids.tolist(),
                                                                 "n_heads_local": model.layers[0].self_attn.n_heads,
                                                                 "n_kv_local": kv}))
        del model


if __name__ == "__main__":
    main()
