#!/usr/bin/env bash
# The GPU check: run on a machine with a CUDA GPU and only torch, numpy and h5py installed, from the repository:
#
#   scripts/gpu_check.sh              # solve, the default sweep on cuda and on cpu, bench, CUDA vs CPU equilibria
#   scripts/gpu_check.sh --cpu-only   # the same steps with the CPU in place of CUDA (checks the script itself)
#
# PYTHON picks the interpreter (default python3); BENCH_ARGS and AGREE_ARGS add to the arguments of bench (e.g.
# --quick) and of gpu_check.py agree (e.g. --samples 16 --repeats 3).
# Writes each step's JSON and gpu_check.json (the summary) to $OUT when it is set, else to a temporary folder.
# Without CUDA (and without --cpu-only) it says "no CUDA: ..." and exits 3, having measured nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
DIR=${OUT:-$(mktemp -d)}
mkdir -p "$DIR"

cpu_only=0
case "${1:-}" in
  --cpu-only) cpu_only=1 ;;
  "") ;;
  *) echo "usage: scripts/gpu_check.sh [--cpu-only]" >&2; exit 2 ;;
esac

found=$("$PY" scripts/gpu_check.py probe); cuda=$?
echo "gpu_check: $found"
if [ "$cuda" -ne 0 ] && [ "$cpu_only" -eq 0 ]; then
  printf '{"cuda": false, "probe": "%s"}\n' "$found" > "$DIR/gpu_check.json"
  echo "gpu_check: nothing measured (run with --cpu-only to check the script on the CPU)" >&2
  exit 3
fi
DEV=cuda; [ "$cpu_only" -eq 1 ] && DEV=cpu

failed=0
step() {  # step NAME COMMAND...: the command's stdout (JSON) to $DIR/NAME.json; a failure is reported, not fatal
  local name=$1; shift
  local t0=$SECONDS
  if "$@" > "$DIR/$name.json" 2> "$DIR/$name.err"; then
    echo "gpu_check: $name ok ($((SECONDS - t0)) s)"
  else
    echo "gpu_check: $name FAILED: $(grep -v '^\s*$' "$DIR/$name.err" | tail -1)" >&2
    failed=1
  fi
}

step solve        "$PY" -m deqstudio solve --device "$DEV" --json
step sweep_cpu    "$PY" -m deqstudio sweep --device cpu --json --restart
step sweep_device "$PY" -m deqstudio sweep --device "$DEV" --json --restart
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
step bench        "$PY" -m deqstudio bench --device "$DEV" --no-gui --json ${BENCH_ARGS:-}
# shellcheck disable=SC2086
step agree        "$PY" scripts/gpu_check.py agree --device "$DEV" ${AGREE_ARGS:-}

"$PY" scripts/gpu_check.py summary --dir "$DIR" --out "$DIR/gpu_check.json"
echo "gpu_check: summary in $DIR/gpu_check.json"
exit $failed
