#!/usr/bin/env bash
# One device command of issue #15's reference run: benchmarks/gpu_reference.py's steps in order of worth, each
# capped so that the whole command ends inside BUDGET_S (default 530 s, under the 10-minute command limit), and a
# step cut by its cap still leaves the steps before it in RESULTS. CoreEcho's recipe runs last with whatever
# time is left: cut short, its log still gives seconds per epoch.
#
#   run(carry=[".whl"], timeout_s=580): bash benchmarks/gpu_session.sh <commit> $OUT
#
# Here, once: echo /.whl/ >> .git/info/exclude; bash ../shared/tools/gpu-wheels.sh
set -uo pipefail
COMMIT=${1:?commit}; RESULTS=${2:?results folder}; BUDGET_S=${BUDGET_S:-530}
PYTHON=${PYTHON:-python3}; EXTRA=${EXTRA:-}  # here, to test the script: PYTHON=.venv/bin/python EXTRA=--smoke
if [[ $PYTHON == python3 ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 ECHOBOOK_COMMIT=$COMMIT
END=$((SECONDS + BUDGET_S))
LOG=$RESULTS/log.txt
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"

step() {  # step NAME CAP_S: run one step for at most CAP_S seconds and never past the budget
  local name=$1 cap=$2 left=$((END - SECONDS))
  ((left < cap)) && cap=$left
  if ((cap < 20)); then echo "== $name: skipped, ${left} s left" | tee -a "$LOG"; return; fi
  echo "== $name: at most $cap s (t=$SECONDS s)" | tee -a "$LOG"
  # the log keeps every progress line (seconds per batch of a cut run); the output shows the rest
  timeout "$cap" $PYTHON benchmarks/gpu_reference.py "$name" --results "$RESULTS" $EXTRA 2>&1 | tr '\r' '\n' \
    | tee -a "$LOG" | grep --line-buffered -v -E '^(Epoch [0-9]+/[0-9]+ : \|.*|\s*)$'
  echo "== $name: exit ${PIPESTATUS[0]} at t=$SECONDS s" | tee -a "$LOG"
}

step env 40
step infer 70
step step 150
step bench 60
step synth 200
step coreecho 9999
du -sh /tmp/echobook-gpu-reference 2>/dev/null | tee -a "$LOG"
ls "$RESULTS"
