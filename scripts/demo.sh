#!/usr/bin/env bash
# The main job on the embedded default: prepare the Brown corpus, train the `mini` preset in this process, and show
# the result (validation loss against the unigram baseline, the loss chart, an evaluation of the checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
duck() { dotnet src/Coordinator/bin/Release/net10.0/duck.dll "$@"; }
run=${DUCK_RUN:-runs/mini}
duck data prepare
if [ -d "$run/checkpoints" ] && [ -n "$(ls -A "$run/checkpoints" 2>/dev/null)" ]; then
  duck train --preset mini --out "$run" --resume
else
  duck train --preset mini --out "$run"
fi
duck eval --checkpoint "$run"
echo "loss chart: $run/loss.svg"
