#!/usr/bin/env bash
# The prepared GPU check (issue 28): one command on a CUDA machine with a fresh checkout.
#
#   benchmarks/gpu_check.sh [--dry-run] [--no-install] [--python PY] [--budget SECONDS]
#
# Steps, each with its own timeout (and never past the whole budget, 480 s by default):
#   install     python3 -m venv .venv-gpu && pip install -e '.[gpu]'   (--no-install: use PY as it is)
#   cuda        torch sees a CUDA device; faiss imports and counts its GPUs
#   knn         faiss-gpu / torch (CUDA) / exact (CPU) agree on one 20,000-row bank
#   embedded    pytest -m gpu on the embedded set: every scenario against golden/ on CUDA
#   elpv-clean  the ELPV clean gate (golden/elpv-efficientnet_lite0/clean.json) on CUDA
#   scale       benchmarks/bench_scale.py --sizes 1 3 --device cuda (seconds per phase)
# Then one table: step, pass/fail, seconds, peak GPU memory (nvidia-smi, sampled every 0.2 s), and the
# scale step's per-phase table.  Without CUDA it refuses before installing anything (exit 2).
# --dry-run names each step and prints its command, runs nothing and needs no GPU.
set -u
cd "$(dirname "$0")/.."

DRY=0 INSTALL=1 PY="" BUDGET=480 LOGS="${GPU_CHECK_LOGS:-/tmp/ad-repro-gpu-check}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --no-install) INSTALL=0 ;;
        --python) PY="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$PY" ]; then
    if [ "$INSTALL" = 1 ]; then PY=.venv-gpu/bin/python; else PY=python3; fi
fi

GATE="AD_REPRO_REQUIRE_CUDA=1 PYTHONUNBUFFERED=1"
PYTEST="$PY -m pytest -p no:cacheprovider -q"
NAMES=(install cuda knn embedded elpv-clean scale)
TIMEOUTS=(240 60 90 180 180 240)
COMMANDS=(
    "python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -q -e '.[gpu]'"
    "$PY -c \"import torch, faiss; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), 'faiss GPUs:', faiss.get_num_gpus())\""
    "$GATE $PYTEST -m gpu tests/test_knn_gpu.py"
    "$GATE $PYTEST -m gpu tests/test_regression.py -k embedded"
    "$GATE $PYTEST -m regression tests/test_regression_elpv.py -k clean"
    "$GATE $PY benchmarks/bench_scale.py --sizes 1 3 --device cuda --work /tmp/ad-repro-gpu-scale"
)

if [ "$DRY" = 1 ]; then
    echo "gpu_check --dry-run: ${#NAMES[@]} steps, budget ${BUDGET} s, python $PY"
    for i in "${!NAMES[@]}"; do
        if [ "${NAMES[$i]}" = install ] && [ "$INSTALL" = 0 ]; then
            echo "step ${NAMES[$i]} (skipped: --no-install)"; continue
        fi
        echo "step ${NAMES[$i]} (timeout ${TIMEOUTS[$i]} s): ${COMMANDS[$i]}"
    done
    exit 0
fi

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no CUDA GPU here (nvidia-smi finds none): this check runs on a CUDA machine; see --dry-run" >&2
    exit 2
fi

mkdir -p "$LOGS"
START=$(date +%s)
ROWS=()
FAILED=0
for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    if [ "$name" = install ] && [ "$INSTALL" = 0 ]; then ROWS+=("| $name | skipped (--no-install) | 0 | - |"); continue; fi
    left=$(( BUDGET - ($(date +%s) - START) ))
    if [ "$left" -le 5 ]; then ROWS+=("| $name | not run: budget of $BUDGET s spent | 0 | - |"); FAILED=1; continue; fi
    limit=${TIMEOUTS[$i]}; [ "$limit" -gt "$left" ] && limit=$left
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$LOGS/$name.mem" 2>/dev/null &
    sampler=$!
    t0=$(date +%s.%N)
    echo "== $name (timeout $limit s): ${COMMANDS[$i]}"
    timeout --kill-after=10 "$limit" bash -c "${COMMANDS[$i]}" > "$LOGS/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    peak=$(sort -n "$LOGS/$name.mem" 2>/dev/null | tail -1)
    case $rc in
        0) status=pass ;;
        124|137) status="FAIL (timed out after $limit s)"; FAILED=1 ;;
        *) status="FAIL (exit $rc)"; FAILED=1 ;;
    esac
    tail -3 "$LOGS/$name.log"
    ROWS+=("| $name | $status | $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") | ${peak:--} |")
    if [ "$name" = install ] || [ "$name" = cuda ]; then [ $rc -ne 0 ] && break; fi
done

echo
echo "| step | result | seconds | peak GPU memory MiB |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if [ -f "$LOGS/scale.log" ]; then
    echo
    echo "scale (benchmarks/bench_scale.py --sizes 1 3 --device cuda), seconds per phase:"
    grep '^|' "$LOGS/scale.log"
fi
echo "logs: $LOGS/<step>.log; total $(( $(date +%s) - START )) s"
exit $FAILED
