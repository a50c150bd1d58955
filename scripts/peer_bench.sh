#!/usr/bin/env bash
# The shared peer benchmark with visionserve as two more targets, fp32 and int8, serving the
# peers' own ResNet-18 (bench/peer_model.py). Extra arguments go to the harness's run.sh, e.g.
#   scripts/peer_bench.sh --rounds 1 --warmup 1 --duration 3 --ceiling-seconds 1   (smoke)
# PEER_BENCH_DIR: the harness (default /work/shared/tools/peer-bench); PEER_MODELS_DIR: where the
# model folders go (default bench/peer-models, git-ignored). The harness's own VENV and
# BENCH_WORK defaults (its env.sh) apply; results land in $BENCH_WORK/results/<timestamp>/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
harness="${PEER_BENCH_DIR:-/work/shared/tools/peer-bench}"
models="$(realpath -m "${PEER_MODELS_DIR:-$root/bench/peer-models}")"
# shellcheck source=/dev/null
source "$harness/env.sh"  # VENV, BENCH_WORK as the harness resolves them

# setup.sh builds its venv, wrk and the inputs our int8 calibration reads; it skips what exists.
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$BENCH_WORK/reference.json" ]; then
  bash "$harness/setup.sh"
fi
[ -x "$root/.venv/bin/python" ] || make -C "$root" install

cd "$root"  # the targets' commands run from here (.venv, python -m app)
# Built once (PEER_REBUILD=1 builds again): a new build is a new sha256, which the service tunes
# afresh at its first start, under whatever load that start meets.
if [ ! -f "$models/peer-models.json" ] || [ -n "${PEER_REBUILD:-}" ]; then
  .venv/bin/python -m bench.peer_model --harness "$harness" --inputs "$BENCH_WORK/inputs" \
    --out "$models" --int8
fi

# One model per store, the other tasks off; the tuning profile kept with the models.
serve() {
  printf 'VISION_MODEL_DIR=%q VISION_DEFAULT_CLASSIFIER=%q VISION_DEFAULT_DETECTOR=none ' "$1" "$2"
  printf 'VISION_DEFAULT_SEGMENTER=none VISION_TUNING_DIR=%q ' "$models/tuning"
  printf 'VISION_LOG_LEVEL=WARNING VISION_PORT={port} exec .venv/bin/python -m app'
}
# Each store's runtime and batch size measured now, before the rounds, not in a round's first
# start (PEER_TUNE=0 keeps the profiles of an earlier run).
if [ "${PEER_TUNE:-1}" != 0 ]; then
  for store in fp32/resnet18-peer int8/resnet18-peer-int8; do
    env VISION_MODEL_DIR="$models/${store%%/*}" VISION_DEFAULT_CLASSIFIER="${store##*/}" \
      VISION_DEFAULT_DETECTOR=none VISION_DEFAULT_SEGMENTER=none \
      VISION_TUNING_DIR="$models/tuning" VISION_LOG_LEVEL=INFO .venv/bin/python -m app tune
  done
fi
# /classify answers the top 5 by default (top_k=5), as the peers do.
url='http://127.0.0.1:{port}/classify'
exec bash "$harness/run.sh" --targets ceiling,naive,litserve,torchserve \
  --target visionserve "$(serve "$models/fp32" resnet18-peer)" "$url" image \
  --target visionserve-int8 "$(serve "$models/int8" resnet18-peer-int8)" "$url" image \
  "$@"
