#!/usr/bin/env bash
# One command for a GPU machine: install what is missing from prepared wheels (no network), run the CUDA
# test tier and the GPU benchmarks, and write a summary (passed / failed, figures) to OUTDIR.
#
#   scripts/gpu_check.sh OUTDIR [--dry-run] [--only install|tier|bench] [--budget SECONDS]
#
# * Wheels: `make gpu-wheels` (on a machine with PyPI) fills .whl/ (ignored by git) with the packages a
#   CUDA + PyTorch image lacks (basicsr, yacs, resize-right, lmdb, for CPython 3.12 / manylinux x86-64).
#   Only modules that do not import are installed, into a scratch folder put first on PYTHONPATH; the
#   package itself is used from this checkout (PYTHONPATH), as is every test and benchmark.
# * Without CUDA, or with --dry-run, the same steps run end to end: the CUDA tier reports its tests as
#   skipped and the benchmarks run in their tiny CPU modes (they only check that the scripts work).
# * Everything fits in --budget seconds (default 450, within the 8 minutes a device check may take): each
#   step gets at most the time left, and steps that no longer fit are reported as skipped.
# * OUTDIR receives at most 8 files: summary.md, env.txt, cuda_tier.txt, cuda_tier.xml, bench_*.txt.
# Exit status: 0 when every step that ran succeeded, 1 otherwise.
set -u -o pipefail

usage() { echo "usage: $0 OUTDIR [--dry-run] [--only install|tier|bench] [--budget SECONDS]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1; shift
DRY=0; ONLY=all; BUDGET=450
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY=1 ;;
        --only) ONLY=${2:?}; shift ;;
        --budget) BUDGET=${2:?}; shift ;;
        *) usage ;;
    esac
    shift
done
case $ONLY in all|install|tier|bench) ;; *) usage ;; esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.md
START=$(date +%s)
FAILED=0
ROWS=()

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); echo "[gpu_check] $1: $2 ($3 s) $4" >&2; }

# Runs "$@" with at most min(limit, time left) seconds; output to a file. Sets STEP_RC and STEP_S.
run_step() {
    local limit=$1 log=$2; shift 2
    local remaining; remaining=$(left)
    [ "$remaining" -lt "$limit" ] && limit=$remaining
    if [ "$limit" -lt 10 ]; then STEP_RC=skip; STEP_S=0; return; fi
    local t0; t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
    STEP_RC=$?
    STEP_S=$(( $(date +%s) - t0 ))
    if [ "$STEP_RC" = 124 ] || [ "$STEP_RC" = 137 ]; then STEP_RC="timeout after ${limit} s"; fi
}

# ---------------------------------------------------------------------------------------------- environment
export PYTHONUNBUFFERED=1
CUDA=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
if [ "$DRY" = 1 ] || [ "$CUDA" != 1 ]; then
    MODE=dry-run; export CUDA_VISIBLE_DEVICES=""
    [ "$DRY" = 1 ] || NOTE="no CUDA device: CUDA parts are reported as skipped"
else
    MODE=gpu
fi
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname), mode $MODE"
    "$PYTHON" - <<'EOF' 2>&1
import platform, torch
print(f'python {platform.python_version()} ({platform.machine()}), torch {torch.__version__}, '
      f'CUDA runtime {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}')
try:
    import triton
    print(f'triton {triton.__version__}')
except ImportError:
    print('triton: not installed')
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f'device: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs')
EOF
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    uptime
} > "$OUT/env.txt" 2>&1

# ---------------------------------------------------------------------------------------------- install
SITE=${GPU_CHECK_SITE:-/tmp/basicsr_lmar_site}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# module name -> distribution that provides it (the plugin's and basicsr's import-time needs)
MODULES="basicsr:basicsr yacs:yacs resize_right:resize-right lmdb:lmdb"
missing_modules() {
    local pair missing=""
    for pair in $MODULES; do
        "$PYTHON" -c "import ${pair%%:*}" > /dev/null 2>&1 || missing="$missing ${pair#*:}"
    done
    echo $missing
}
if [ "$ONLY" = all ] || [ "$ONLY" = install ] || [ "$ONLY" = tier ] || [ "$ONLY" = bench ]; then
    t0=$(date +%s)
    MISSING=$(missing_modules)
    if [ -z "$MISSING" ]; then
        row install ok $(( $(date +%s) - t0 )) "nothing missing: basicsr, yacs, resize_right, lmdb import"
    else
        wheels=()
        for dist in $MISSING; do
            pattern=$(echo "$dist" | tr '-' '_')
            found=$(ls "$REPO"/.whl/"$pattern"-*.whl 2>/dev/null | head -1)
            [ -n "$found" ] && wheels+=("$found")
        done
        if [ ${#wheels[@]} -eq 0 ]; then
            row install FAILED 0 "missing: $MISSING; no wheels in .whl/ (run make gpu-wheels here and carry .whl)"
            FAILED=1
        else
            mkdir -p "$SITE"
            if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
                    "${wheels[@]}" > "$OUT/install.log" 2>&1; then
                export PYTHONPATH="$SITE:$PYTHONPATH"
                STILL=$(missing_modules)
                if [ -z "$STILL" ]; then
                    row install ok $(( $(date +%s) - t0 )) "installed from .whl: $MISSING"
                    rm -f "$OUT/install.log"
                else
                    row install FAILED $(( $(date +%s) - t0 )) "still not importable: $STILL (see install.log)"
                    FAILED=1
                fi
            else
                row install FAILED $(( $(date +%s) - t0 )) "pip install from .whl failed (see install.log)"
                FAILED=1
            fi
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------- CUDA tier
if [ "$ONLY" = all ] || [ "$ONLY" = tier ]; then
    run_step 210 "$OUT/cuda_tier.txt" "$PYTHON" -m pytest -m cuda "$REPO/tests/cuda" -q -rfEs -p no:cacheprovider \
        --junitxml="$OUT/cuda_tier.xml" --rootdir="$REPO" -c "$REPO/setup.cfg"
    if [ "$STEP_RC" = skip ]; then
        row "CUDA tier" skipped 0 "time budget spent"
    else
        COUNTS=$("$PYTHON" - "$OUT/cuda_tier.xml" <<'EOF' 2>/dev/null || echo "no report"
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
total, failures, errors, skipped = (int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped'))
print(f'{total - failures - errors - skipped} passed, {failures} failed, {errors} errors, {skipped} skipped')
EOF
)
        if [ "$STEP_RC" = 0 ]; then status=ok; else status=FAILED; FAILED=1; fi
        [ "$MODE" = dry-run ] && COUNTS="$COUNTS (no CUDA device: every CUDA test skipped)"
        row "CUDA tier (pytest -m cuda)" "$status" "$STEP_S" "$COUNTS$([ "$STEP_RC" = 0 ] || echo " rc=$STEP_RC")"
    fi
fi

# ---------------------------------------------------------------------------------------------- benchmarks
BENCH=$REPO/scripts/benchmarks
bench() {  # name limit args...
    local name=$1 limit=$2; shift 2
    run_step "$limit" "$OUT/$name.txt" "$PYTHON" "$@"
    if [ "$STEP_RC" = skip ]; then row "$name" skipped 0 "time budget spent"; return; fi
    local last; last=$(grep -v '^\s*$' "$OUT/$name.txt" | tail -1 | cut -c1-160)
    if [ "$STEP_RC" = 0 ]; then row "$name" ok "$STEP_S" "$last"; else row "$name" FAILED "$STEP_S" "rc=$STEP_RC: $last"; FAILED=1; fi
}
if [ "$ONLY" = all ] || [ "$ONLY" = bench ]; then
    if [ "$MODE" = gpu ]; then
        bench bench_car_op 120 "$BENCH/bench_car_op.py" --device cuda --repeat 5
        bench bench_lmar_gpu 50 "$BENCH/bench_lmar_gpu.py" --device cuda --repeat 10
        bench bench_hcd_gpu 70 "$BENCH/bench_hcd_gpu.py" --device cuda --repeat 3
    else
        bench bench_car_op 150 "$BENCH/bench_car_op.py" --device cpu --tiny
        bench bench_lmar_gpu 120 "$BENCH/bench_lmar_gpu.py" --device cpu --size 64 96 --repeat 1
        bench bench_hcd_gpu 150 "$BENCH/bench_hcd_gpu.py" --device cpu --sizes 16 --steps 1 --repeat 1 --skip-paper-irn
    fi
fi

# ---------------------------------------------------------------------------------------------- summary
{
    echo "# GPU check ($MODE)"
    echo
    [ -n "${NOTE:-}" ] && echo "$NOTE" && echo
    sed 's/^/    /' "$OUT/env.txt"
    echo
    echo "| step | status | seconds | detail |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "total: $(elapsed) s of a $BUDGET s budget; result: $([ "$FAILED" = 0 ] && echo PASSED || echo FAILED)"
    for name in bench_car_op bench_lmar_gpu bench_hcd_gpu; do
        if [ -s "$OUT/$name.txt" ]; then
            echo; echo "## $name"; echo; cat "$OUT/$name.txt"
        fi
    done
    if [ -s "$OUT/cuda_tier.txt" ]; then
        echo; echo "## CUDA tier (last lines)"; echo; echo '```'; tail -25 "$OUT/cuda_tier.txt"; echo '```'
    fi
} > "$SUMMARY"
echo "[gpu_check] summary: $SUMMARY ($([ "$FAILED" = 0 ] && echo PASSED || echo FAILED), $(elapsed) s)" >&2
exit "$FAILED"
