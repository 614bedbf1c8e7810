#!/usr/bin/env bash
# The candidates of `segment_loop="auto"` (keras_rmt/layers/segment_loops.py,
# AUTO_LOOPS): training tok/s, peak memory and first-call seconds of each
# loop (unrolled, scan, scan with 2 and 4 segments an iteration, with and
# without remat where the count needs it; `auto` is the default, a
# training scan with remat on JAX) at 1, 8 and 32 segments, dropout
# 0.1 and 0, GPT-2-small through benchmarks/run.py, in one device call.
#
# Usage (on the GPU machine, wheels installed, PYTHONPATH set):
#   [BUDGET_S=515] bash benchmarks/gpu_segment_loops.sh OUT_DIR
# Every GPU of the machine runs points from one queue, one process a point
# (its own peak memory, its own first call), most telling points first; a
# point gets the time the call has left, and none starts with less than
# MIN_S seconds left. On a CPU, with the tiny model (checks the script):
#   COUNTS="1 2 4" bash benchmarks/gpu_segment_loops.sh OUT_DIR --quick
# Rows (JSON lines) land in OUT_DIR/segment_loops.jsonl, with a row for each
# point skipped or stopped, and a table is printed at the end.
set -u
out=${1:?usage: gpu_segment_loops.sh OUT_DIR [--quick]}
size=${2:---gpu}
read -r one mid long <<< "${COUNTS:-1 8 32}"
budget=${BUDGET_S:-515}
min_s=${MIN_S:-45}
seconds=${STEP_SECONDS:-1}
start=$(date +%s)
mkdir -p "$out"
queue="$out/.queue"; rows="$out/segment_loops.jsonl"
export KERAS_BACKEND=jax PYTHONPATH=${PYTHONPATH:-$PWD}
if [[ $size == --gpu ]]; then
  # As run.py --gpu sets it for its own processes.
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_triton_gemm=false"
  lanes=$(nvidia-smi -L 2>/dev/null | wc -l)
fi
lanes=${LANES:-${lanes:-1}}; (( lanes > 0 )) || lanes=1

# One line a point: time limit | run.py arguments. At 8 segments (the issue's
# setting) first, then 1 (one segment is never looped: any loop), then 32.
# `auto` is the default: on JAX a training scan with remat. A loop named
# here runs without remat unless `--remat` says so. 32 segments without
# remat: dropout 0.1 needs about 4 x 43 GiB (8 segments: 43.4 GiB on an
# H200), more than the card; dropout 0 about 4 x 30.5 GiB, tried. The
# unrolled loop at 32 segments compiles for minutes (8 segments: 119 s with
# dropout 0.1, 54 s with 0), so it is left out on the GPU, with a row saying
# so.
: > "$queue"
job() { echo "$*" >> "$queue"; }
scan() { echo "--segment-loop scan --scan-unroll $1"; }
for dropout in 0.1 0; do
  d="--dropout $dropout --train-segments"
  job "150|$d $mid --segment-loop auto"
  job "150|$d $mid $(scan 1)"
  job "150|$d $mid $(scan 2)"
  job "200|$d $mid $(scan 4)"
  job "300|$d $mid --segment-loop unrolled"
done
for dropout in 0.1 0; do
  job "120|--dropout $dropout --train-segments $one --segment-loop auto"
done
for dropout in 0.1 0; do
  d="--dropout $dropout --train-segments $long"
  job "200|$d --segment-loop auto"
  job "250|$d $(scan 2) --remat"
  job "300|$d $(scan 4) --remat"
done
job "250|--dropout 0 --train-segments $long $(scan 1)"
skipped=()
if [[ $size == --gpu ]]; then
  skipped+=("--dropout 0.1 --train-segments $long --segment-loop unrolled --remat")
  skipped+=("--dropout 0 --train-segments $long --segment-loop unrolled --remat")
  skipped+=("--dropout 0.1 --train-segments $long $(scan 1)")
else
  job "300|--dropout 0.1 --train-segments $long --segment-loop unrolled --remat"
fi

note() {  # A row for a point that was not measured.
  printf '{"kind": "rmt_train", "args": "%s", "error": "%s"}\n' "$1" "$2" \
    >> "$rows"
  echo "not measured ($2): $1"
}
for args in "${skipped[@]}"; do
  note "$args" "skipped: needs more than the card or minutes of compile"
done
pop() {  # The next point of the queue, for one lane at a time.
  until mkdir "$out/.lock" 2>/dev/null; do sleep 0.1; done
  head -n 1 "$queue"; sed -i 1d "$queue"
  rmdir "$out/.lock"
}
lane() {
  local gpu=$1 line limit args left
  while line=$(pop) && [[ -n $line ]]; do
    limit=${line%%|*}; args=${line#*|}
    left=$(( budget - ($(date +%s) - start) ))
    if (( left < min_s )); then
      note "$args" "skipped: ${left} s left in the call"; continue
    fi
    (( limit > left )) && limit=$left
    echo "lane $gpu, ${limit} s at most: $args"
    # --child: run.py measures in this process, which `timeout` can stop.
    CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" python benchmarks/run.py \
      "$size" --child rmt_train --kinds rmt_train --seconds "$seconds" \
      --log "$rows" $args > "$out/.lane$gpu" 2>&1
    grep "^{" "$out/.lane$gpu" || {
      tail -n 3 "$out/.lane$gpu"
      note "$args" "no result within ${limit} s (first call included)"
    }
  done
}
for (( gpu = 0; gpu < lanes; gpu++ )); do lane "$gpu" & done
wait
rm -f "$queue" "$out"/.lane*

python - "$rows" <<'EOF'
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
print(
    f"{'dropout':>7} {'segs':>4} {'segment_loop':<12} {'unroll':>6} "
    f"{'remat':<5} {'ran':<12} {'tok/s':>9} {'first s':>8} {'peak GiB':>8}"
)
key = lambda r: (-r.get("dropout", 9), r.get("segments", 0), str(r))
for r in sorted(rows, key=key):
    if "args" in r:
        print(f"  {r['args']}: {r['error']}")
        continue
    if "error" in r:
        result = r["error"][:60]
    else:
        peak = (r.get("peak_bytes") or 0) / 2**30
        result = (
            f"{r['tokens_per_s']:>9,.0f} {r['first_call_s']:>8.1f} "
            f"{peak:>8.1f}"
        )
    ran = f"{r.get('loop')}/{r.get('loop_unroll')}"
    ran += "/remat" if r.get("loop_remat") else ""
    print(
        f"{r['dropout']:>7} {r['segments']:>4} {r['segment_loop']:<12} "
        f"{r['scan_unroll']:>6} {str(r['remat']):<5} {ran:<12} {result}"
    )
EOF
echo "done in $(( $(date +%s) - start )) s, $lanes lane(s)"
