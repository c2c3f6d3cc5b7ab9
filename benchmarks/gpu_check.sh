#!/usr/bin/env bash
# The prepared GPU check (issue 28): one command on a CUDA machine with a fresh checkout.
#
#   benchmarks/gpu_check.sh [--dry-run] [--no-install] [--python PY] [--budget SECONDS] [--logs DIR]
#
# Steps, each with its own timeout (and never past the whole budget, 480 s by default):
#   install     python3 -m venv .venv-gpu && pip install -e '.[gpu]'   (--no-install: use PY as it is)
#   cuda        torch sees a CUDA device; faiss imports and counts its GPUs
#   knn         faiss-gpu / torch (CUDA) / exact (CPU) agree on one 20,000-row bank
#   embedded    pytest -m gpu on the embedded set: every scenario against golden/ on CUDA
#   elpv-clean  the ELPV clean gate (golden/elpv-efficientnet_lite0/clean.json) on CUDA
#   scale       benchmarks/bench_scale.py --sizes 1 3 --device cuda (seconds per phase; its work in DIR)
# Then one table: step, pass/fail, seconds, peak GPU memory (nvidia-smi, sampled every 0.2 s), and the
# scale step's per-phase table.  Logs (<step>.log, <step>.mem) go into a fresh private folder (mktemp -d),
# or DIR (--logs, or GPU_CHECK_LOGS) when it is new or empty; nothing is written through a link.
# Without CUDA it refuses before installing anything (exit 2).
# --dry-run names each step and prints its command, runs nothing and needs no GPU.
set -u

fail() { echo "gpu_check: $*" >&2; exit 2; }
DRY=0 INSTALL=1 PY="" BUDGET=480 LOGS="${GPU_CHECK_LOGS:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --no-install) INSTALL=0 ;;
        --python|--budget|--logs)
            if [ $# -lt 2 ] || [ -z "$2" ] || [ "${2#--}" != "$2" ]; then fail "$1 needs a value (see --help)"; fi
            case "$1" in --python) PY="$2" ;; --budget) BUDGET="$2" ;; --logs) LOGS="$2" ;; esac
            shift ;;
        -h|--help) sed -n '2,/^[^#]/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
    shift
done
case "$BUDGET" in
    ''|*[!0-9]*|0*) fail "--budget needs a whole number of seconds above 0, got '$BUDGET' (see --help)" ;;
esac
case "$LOGS" in ''|/*) ;; *) LOGS="$PWD/$LOGS" ;; esac  # a named folder is where the caller stands
cd "$(dirname "$0")/.." || exit 2
if [ -z "$PY" ]; then
    if [ "$INSTALL" = 1 ]; then PY=.venv-gpu/bin/python; else PY=python3; fi
fi
# the logs folder: a fresh private one, or the named one if it is new or empty (and no link)
SHOWN=${LOGS:-"<fresh mktemp -d folder>"}
if [ "$DRY" = 0 ] && [ -n "$LOGS" ]; then
    if [ -L "$LOGS" ]; then
        fail "logs folder $LOGS is a symbolic link: name a new or empty folder (or leave --logs out for a fresh private one)"
    elif [ -e "$LOGS" ]; then
        [ -d "$LOGS" ] || fail "logs folder $LOGS is not a folder: name a new or empty folder (or leave --logs out)"
        [ -z "$(ls -A "$LOGS")" ] || fail "logs folder $LOGS already holds files: name a new or empty folder (or leave --logs out for a fresh private one)"
    fi
fi

GATE="AD_REPRO_REQUIRE_CUDA=1 PYTHONUNBUFFERED=1"
PYTEST="$PY -m pytest -p no:cacheprovider -q"
NAMES=(install cuda knn embedded elpv-clean scale)
TIMEOUTS=(240 60 90 180 180 240)
set_commands() {  # $1: the scale step's work folder, as the command line names it
    COMMANDS=(
        "python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -q -e '.[gpu]'"
        "$PY -c \"import torch, faiss; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), 'faiss GPUs:', faiss.get_num_gpus())\""
        "$GATE $PYTEST -m gpu tests/test_knn_gpu.py"
        "$GATE $PYTEST -m gpu tests/test_regression.py -k embedded"
        "$GATE $PYTEST -m regression tests/test_regression_elpv.py -k clean"
        "$GATE $PY benchmarks/bench_scale.py --sizes 1 3 --device cuda --work $1"
    )
}

if [ "$DRY" = 1 ]; then
    if [ -n "$LOGS" ]; then set_commands "$(printf %q "$LOGS/scale-work")"; else set_commands "$SHOWN/scale-work"; fi
    echo "gpu_check --dry-run: ${#NAMES[@]} steps, budget ${BUDGET} s, python $PY, logs $SHOWN"
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

if [ -z "$LOGS" ]; then
    LOGS=$(mktemp -d "${TMPDIR:-/tmp}/ad-repro-gpu-check.XXXXXX") || fail "cannot make a private logs folder in ${TMPDIR:-/tmp}"
elif [ ! -e "$LOGS" ]; then
    mkdir -p -m 700 "$LOGS" || fail "cannot make the logs folder $LOGS"
fi
set_commands "$(printf %q "$LOGS/scale-work")"
set -o noclobber  # a log file that appeared meanwhile (a planted link) is refused, never written through
START=$(date +%s)
ROWS=()
FAILED=0
for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    if [ "$name" = install ] && [ "$INSTALL" = 0 ]; then ROWS+=("| $name | skipped (--no-install) | 0 | - |"); continue; fi
    left=$(( BUDGET - ($(date +%s) - START) ))
    if [ "$left" -le 5 ]; then ROWS+=("| $name | not run: budget of $BUDGET s spent | 0 | - |"); FAILED=1; continue; fi
    limit=${TIMEOUTS[$i]}; [ "$limit" -gt "$left" ] && limit=$left
    for f in "$LOGS/$name.log" "$LOGS/$name.mem"; do
        if [ -e "$f" ] || [ -L "$f" ]; then fail "$f appeared in the logs folder (a link?): not written through; run again"; fi
    done
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
