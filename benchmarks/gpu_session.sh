#!/usr/bin/env bash
# One device command of issue #15's reference run: benchmarks/gpu_reference.py's steps in order of worth, each
# capped so that the whole command ends inside BUDGET_S (default 530 s, under the 10-minute command limit), and a
# step cut by its cap still leaves the steps before it in RESULTS. CoreEcho's recipe runs last with whatever
# time is left: cut short, its log still gives seconds per epoch.
#
#   run(carry=[".whl"], timeout_s=580): bash benchmarks/gpu_session.sh <commit> $OUT [STEP:CAP_S ...]
#
# A STEP is one of gpu_reference.py's steps or a script of benchmarks/ (its output saved as STEP.txt); with none
# given, the default list below runs. The first lease (2026-11-30) ran env infer step bench synth coreecho.
#
# Here, once: echo /.whl/ >> .git/info/exclude; bash ../shared/tools/gpu-wheels.sh
set -uo pipefail
COMMIT=${1:?commit}; RESULTS=${2:?results folder}; shift 2; BUDGET_S=${BUDGET_S:-530}
STEPS=("$@")
((${#STEPS[@]})) || STEPS=(env:40 step:150 infer:70 profile_dwconv.py:90 profile_uniformer.py:60 bench:60 synth:240
                         coreecho:9999)
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
  local name=$1 cap=$2 left=$((END - SECONDS)) command
  ((left < cap)) && cap=$left
  if ((cap < 20)); then echo "== $name: skipped, ${left} s left" | tee -a "$LOG"; return; fi
  echo "== $name: at most $cap s (t=$SECONDS s)" | tee -a "$LOG"
  if [[ $name == *.py ]]; then
    command=($PYTHON benchmarks/$name)
  else
    command=($PYTHON benchmarks/gpu_reference.py "$name" --results "$RESULTS" $EXTRA)
  fi
  # the log keeps every progress line (seconds per batch of a cut run); the output shows the rest
  timeout "$cap" "${command[@]}" 2>&1 | tr '\r' '\n' | tee -a "$LOG" \
    | tee $([[ $name == *.py ]] && echo "$RESULTS/${name%.py}.txt") \
    | grep --line-buffered -v -E '^(Epoch [0-9]+/[0-9]+ : \|.*|\s*)$'
  echo "== $name: exit ${PIPESTATUS[0]} at t=$SECONDS s" | tee -a "$LOG"
}

for entry in "${STEPS[@]}"; do
  step "${entry%%:*}" "${entry##*:}"
done
du -sh /tmp/echobook-gpu-reference 2>/dev/null | tee -a "$LOG"
ls "$RESULTS"
